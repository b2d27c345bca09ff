"""Restore through the real operator against the Kubernetes API stand-in.

The operator runs as ``raftkv operator`` does (kopf in a thread), with in-memory
members; the test plays the kubelet. One scenario: a new 3-member RaftKV with
``spec.restore`` gets a StatefulSet of one pod whose template carries the restore
init container (validated against the apps/v1 schema); the init container fails
(``Init:Error`` with the CLI's error as its termination message), so ``Restored`` is
False with that message and the StatefulSet stays at one pod; the backup then
restores (the member answers with the id the restore picked), the operator adopts
that id, ``Restored`` turns True and the cluster starts growing. And the CRD keeps
``spec.restore`` immutable and settable at creation only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv.client import StatusInfo
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.fake_members import ADDRESSING, CONFIG, FakeMembers
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread, start_emulator
from support.wait import wait_for

pytestmark = pytest.mark.timeout(180)

K8S_VERSION = "1.30"
MERGE = "application/merge-patch+json"
TIMEOUT = 60.0  # a deadline for each wait, not a duration
FROM = "s3://backups/prod/raftkv-20270101T030000Z-000000004711.snapshot"
RESTORE = {"from": FROM, "s3": {"credentialsSecret": "creds"}}
RESTORED_ID = 4_000_000_000
ERROR = f"raftkv snapshot restore: no such object {FROM}"


class RestoredMembers(FakeMembers):
    """:class:`FakeMembers` whose leader is the restored member (not member 1)."""

    async def status(self, url: str) -> StatusInfo | None:
        info = await super().status(url)
        if info is None or RESTORED_ID not in self.config:
            return info
        role = "leader" if info.id == RESTORED_ID else "follower"
        return replace(info, role=role, leader=RESTORED_ID)


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": name},
        "spec": {"image": "raftkv:test", **spec},
    }


def test_a_failed_restore_is_reported_and_a_good_one_adopted(server: EmulatorThread) -> None:
    fake = RestoredMembers()
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        core: Any = kubernetes.client.CoreV1Api(api)
        apps: Any = kubernetes.client.AppsV1Api(api)

        def status() -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            return dict(obj.get("status") or {})

        def restored() -> dict[str, Any] | None:
            found = [c for c in status().get("conditions", []) if c["type"] == "Restored"]
            return found[0] if found else None

        with OperatorThread(server.url, CONFIG, probe=fake, admin_for=lambda _: fake):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, body("kv", replicas=3, restore=RESTORE)
            )
            sts = wait_for(
                "the StatefulSet",
                lambda: apps.read_namespaced_stateful_set("kv", NS),
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            plain = cast("dict[str, Any]", api.sanitize_for_serialization(sts))
            for server_side in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                plain["metadata"].pop(server_side, None)
            plain.pop("status", None)
            kubernetes_validate.validate(plain, K8S_VERSION, strict=True)
            template = plain["spec"]["template"]
            (init,) = template["spec"]["initContainers"]
            assert init["name"] == "restore"
            assert plain["spec"]["replicas"] == 1

            # --- the kubelet: the init container fails (Init:Error, then retried)
            core.create_namespaced_pod(
                NS,
                {
                    "metadata": {"name": "kv-0", "labels": template["metadata"]["labels"]},
                    "spec": template["spec"],
                },
            )
            core.patch_namespaced_pod_status(
                "kv-0",
                NS,
                {
                    "status": {
                        "phase": "Pending",
                        "initContainerStatuses": [
                            {
                                "name": "restore",
                                "image": "raftkv:test",
                                "imageID": "",
                                "ready": False,
                                "restartCount": 1,
                                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                "lastState": {
                                    "terminated": {"exitCode": 1, "message": ERROR + "\n"}
                                },
                            }
                        ],
                    }
                },
                _content_type=MERGE,
            )
            cond = wait_for(
                "Restored=False/RestoreFailed",
                lambda: (c := restored()) is not None and c["reason"] == "RestoreFailed" and c,
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            assert cond["status"] == "False"
            assert cond["message"] == ERROR
            assert apps.read_namespaced_stateful_set("kv", NS).spec.replicas == 1
            assert status()["memberIDs"] == [{"ordinal": 0, "id": 1}]

            # --- the backup is restored: the member answers with the id it picked
            core.patch_namespaced_pod_status(
                "kv-0",
                NS,
                {
                    "status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "initContainerStatuses": [
                            {
                                "name": "restore",
                                "image": "raftkv:test",
                                "imageID": "",
                                "ready": True,
                                "restartCount": 2,
                                "state": {"terminated": {"exitCode": 0, "message": "{}"}},
                            }
                        ],
                    }
                },
                _content_type=MERGE,
            )
            fake.config[RESTORED_ID] = ("kv-0", ADDRESSING.peer_url("kv", NS, 0), False)
            fake.running[0] = RESTORED_ID
            cond = wait_for(
                "Restored=True",
                lambda: (c := restored()) is not None and c["status"] == "True" and c,
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            assert FROM in cond["message"]
            now = status()
            assert {"ordinal": 0, "id": RESTORED_ID} in now["memberIDs"]
            assert now["nextMemberID"] > RESTORED_ID
            # ... and it grows as usual: the next member gets a fresh id, past the
            # restored one.
            wait_for(
                "the StatefulSet to grow",
                lambda: apps.read_namespaced_stateful_set("kv", NS).spec.replicas == 2,
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            assert ("add_learner", RESTORED_ID + 1) in fake.calls


def test_spec_restore_is_immutable_and_set_at_creation_only(server: EmulatorThread) -> None:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, body("a", replicas=1, restore=RESTORE)
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body("b", replicas=1))
        changes = [
            ("a", {"spec": {"restore": {"from": "s3://other/key"}}}, "immutable"),
            ("a", {"spec": {"restore": None}}, "only be set when the RaftKV is created"),
            ("b", {"spec": {"restore": RESTORE}}, "only be set when the RaftKV is created"),
        ]
        for name, patch, words in changes:
            with pytest.raises(ApiException) as refused:
                custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, patch)
            assert refused.value.status == 422, name
            assert words in str(refused.value.body), (name, refused.value.body)
        # Anything else still changes.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 3}}
        )


@pytest.mark.parametrize(
    ("restore", "words"),
    [
        ({"from": "/backups/x.snapshot"}, "s3:// URL"),
        ({"from": "s3://b/k", "pvc": "claim"}, "s3:// URL"),
        ({"from": "../x", "pvc": "claim"}, "'..'"),
    ],
)
def test_a_bad_restore_spec_is_refused(
    server: EmulatorThread, restore: dict[str, Any], words: str
) -> None:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, body("bad", replicas=1, restore=restore)
            )
        assert refused.value.status == 422
        assert words in str(refused.value.body)
