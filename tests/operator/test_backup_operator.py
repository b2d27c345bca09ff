"""Scheduled backups through the real operator against the Kubernetes API stand-in.

The operator runs as ``raftkv operator`` does (kopf in a thread), with in-memory
members. The test plays the CronJob controller and the kubelet through the API only:
it makes each backup Job from the CronJob's ``jobTemplate`` (as the controller names
and labels it), and finishes it with the pod's termination message, the save's JSON on
success and the log's tail on failure (``FallbackToLogsOnError``). The CronJob and the
Jobs are validated against the Kubernetes batch/v1 schemas.

One scenario, in order: a RaftKV with ``spec.backup`` gets an owned CronJob; a
successful Job lands in ``status.backup`` (object, applied index, size) with
``BackupFailing=False`` and a Normal Event; a failed Job sets ``BackupFailing=True``
with the error and a Warning Event; the next success clears it; a schedule change
rewrites the CronJob; removing ``spec.backup`` deletes it and the condition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import aiohttp.web
import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv_operator import backup as b
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import RaftKVObject
from raftkv_operator.status import format_time
from support.crd_schema import load_crd
from support.fake_members import CONFIG, FakeMembers, ready_pod
from support.kube_emulator import EmulatorThread, KubeEmulator
from support.operator_harness import NS, OperatorThread, crd_schema, start_emulator
from support.structural import check_crd
from support.wait import wait_for

pytestmark = pytest.mark.timeout(180)

K8S_VERSION = "1.30"
MERGE = "application/merge-patch+json"
TIMEOUT = 60.0  # a deadline for each wait, not a duration
BACKUP = {
    "schedule": "0 3 * * *",
    "retention": 4,
    "s3": {"bucket": "backups", "prefix": "kv", "credentialsSecret": "s3-creds"},
}


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


def plain(api: ApiClient, obj: Any) -> dict[str, Any]:
    return cast("dict[str, Any]", api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]


class CronController:
    """What the CronJob controller, the Job controller and the kubelet do for one run."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.batch: Any = kubernetes.client.BatchV1Api(api)
        self.runs = 0

    def run(self, exit_code: int, message: str) -> str:
        cron = plain(self.api, self.batch.read_namespaced_cron_job("kv-backup", NS))
        self.runs += 1
        name = f"kv-backup-{29000000 + self.runs}"
        template = cron["spec"]["jobTemplate"]
        owner = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": cron["metadata"]["name"],
            "uid": cron["metadata"]["uid"],
            "controller": True,
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": template["metadata"]["labels"],
                "ownerReferences": [owner],
            },
            "spec": template["spec"],
        }
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
        self.batch.create_namespaced_job(NS, job)
        pod_template = template["spec"]["template"]
        pod_labels = {**pod_template["metadata"]["labels"], "job-name": name}
        self.core.create_namespaced_pod(
            NS,
            {
                "metadata": {"name": f"{name}-abcde", "labels": pod_labels},
                "spec": pod_template["spec"],
            },
        )
        (container,) = pod_template["spec"]["containers"]
        now = format_time(1_900_000_000.0 + self.runs * 60)
        terminated = {"exitCode": exit_code, "reason": "Completed", "message": message}
        self.core.patch_namespaced_pod_status(
            f"{name}-abcde",
            NS,
            {
                "status": {
                    "phase": "Succeeded" if exit_code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            },
            _content_type=MERGE,
        )
        if exit_code == 0:
            status: dict[str, Any] = {
                "succeeded": 1,
                "startTime": now,
                "completionTime": now,
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
            }
        else:
            status = {
                "failed": 1,
                "startTime": now,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": now,
                    }
                ],
            }
        self.batch.patch_namespaced_job_status(name, NS, {"status": status}, _content_type=MERGE)
        return name


def result(index: int) -> str:
    return json.dumps(
        {
            "file": f"s3://backups/kv/raftkv-2030T-{index:012d}.snapshot",
            "applied_index": index,
            "keys": 3,
            "bytes": 100 + index,
            "sha256": "cd" * 32,
        }
    )


def test_backup_cronjob_status_condition_and_events(server: EmulatorThread) -> None:
    fake = FakeMembers()
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        core: Any = kubernetes.client.CoreV1Api(api)
        batch: Any = kubernetes.client.BatchV1Api(api)
        cron = CronController(api)

        def status() -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            return dict(obj.get("status") or {})

        def failing() -> dict[str, Any] | None:
            found = [c for c in status().get("conditions", []) if c["type"] == "BackupFailing"]
            return found[0] if found else None

        def events(uid: str) -> list[tuple[str, str, str]]:
            return [
                (e.type, e.reason, e.message)
                for e in core.list_namespaced_event(NS).items
                if e.involved_object.uid == uid
            ]

        with OperatorThread(server.url, CONFIG, probe=fake, admin_for=lambda _: fake):
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaftKV",
                "metadata": {"name": "kv"},
                "spec": {"replicas": 1, "image": "raftkv:test", "backup": BACKUP},
            }
            uid = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)[
                "metadata"
            ]["uid"]
            wait_for("the StatefulSet", lambda: status().get("memberIDs"), ignore=ApiException)
            ready_pod(api, 0)
            fake.start(0, 1)

            # --- the CronJob: owned, valid, as the spec renders it
            made = wait_for(
                "the CronJob",
                lambda: batch.read_namespaced_cron_job("kv-backup", NS),
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            obj = plain(api, made)
            for server_side in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                obj["metadata"].pop(server_side, None)
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            (owner,) = obj["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["uid"], owner["controller"]) == ("RaftKV", uid, True)
            assert obj["spec"]["concurrencyPolicy"] == "Forbid"
            env = {
                e["name"]: e.get("value")
                for e in obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
                    "env"
                ]
            }
            assert env["RAFTKV_BACKUP_TARGET"] == "s3://backups/kv/"
            assert env["RAFTKV_BACKUP_KEEP"] == "4"
            cond = wait_for("BackupFailing", failing, timeout=TIMEOUT, ignore=ApiException)
            assert (cond["status"], cond["reason"]) == ("False", "NoBackupYet")

            # --- a success lands in status.backup
            first = cron.run(0, result(4711))
            got = wait_for(
                "the first backup in status",
                lambda: (
                    (status().get("backup") or {}).get("lastSuccessfulJob") == first
                    and status()["backup"]
                ),
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            assert got["appliedIndex"] == 4711
            assert got["bytes"] == 4811
            assert got["object"] == "s3://backups/kv/raftkv-2030T-000000004711.snapshot"
            now = failing()
            assert now is not None
            assert (now["status"], now["reason"]) == ("False", "BackupSucceeded")
            wait_for(
                "the BackupSucceeded Event",
                lambda: [e for e in events(uid) if e[1] == "BackupSucceeded"],
                timeout=TIMEOUT,
            )

            # --- a failure: condition, message, Warning Event
            error = "error: cannot save s3://backups/kv/: bucket 'backups' does not exist"
            second = cron.run(1, error)

            def failed() -> dict[str, Any] | None:
                c = failing()
                return c if c is not None and c["status"] == "True" else None

            cond = wait_for(
                "BackupFailing=True",
                failed,
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            assert cond["reason"] == "BackupFailed"
            assert second in cond["message"]
            assert error in cond["message"]
            backup = status()["backup"]
            assert backup["lastFailedJob"] == second
            assert backup["lastFailure"] == error
            assert backup["lastSuccessfulJob"] == first  # the last success stays known
            warnings = wait_for(
                "the Warning Event",
                lambda: [e for e in events(uid) if e[:2] == ("Warning", "BackupFailed")],
                timeout=TIMEOUT,
            )
            assert error in warnings[0][2]

            # --- the next success clears it
            third = cron.run(0, result(5000))
            wait_for(
                "BackupFailing cleared",
                lambda: (c := failing()) is not None and c["status"] == "False",
                timeout=TIMEOUT,
                ignore=ApiException,
            )
            backup = status()["backup"]
            assert backup["lastSuccessfulJob"] == third
            assert backup["appliedIndex"] == 5000
            assert backup["lastFailedJob"] == second
            assert len([e for e in events(uid) if e[:2] == ("Warning", "BackupFailed")]) == 1

            # --- a schedule change rewrites the CronJob
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                PLURAL,
                "kv",
                {"spec": {"backup": {**BACKUP, "schedule": "15 */6 * * *"}}},
            )
            wait_for(
                "the new schedule",
                lambda: (
                    batch.read_namespaced_cron_job("kv-backup", NS).spec.schedule == "15 */6 * * *"
                ),
                timeout=TIMEOUT,
                ignore=ApiException,
            )

            # --- turning backups off deletes the CronJob and the condition
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"backup": None}}
            )
            wait_for(
                "the CronJob to go",
                lambda: not batch.list_namespaced_cron_job(NS).items,
                timeout=TIMEOUT,
            )
            wait_for("the condition to go", lambda: failing() is None, timeout=TIMEOUT)
            assert status()["backup"]["lastSuccessfulJob"] == third


@pytest.mark.parametrize(
    ("backup", "error"),
    [
        ({"schedule": "0 3 * * *"}, "exactly one target"),
        (
            {
                "schedule": "0 3 * * *",
                "pvc": {"claimName": "x"},
                "s3": {"bucket": "bkt", "credentialsSecret": "s"},
            },
            "exactly one target",
        ),
        ({"schedule": "0 3 * * *", "pvc": {"claimName": "x", "path": "../etc"}}, "relative"),
        ({"schedule": "0 3 * * *", "pvc": {"claimName": "x", "path": "/abs"}}, "relative"),
        ({"schedule": "0 3 * * *", "retention": 0, "pvc": {"claimName": "x"}}, "retention"),
    ],
)
def test_the_crd_refuses_a_bad_backup_spec(
    server: EmulatorThread, backup: dict[str, Any], error: str
) -> None:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": "bad"},
            "spec": {"replicas": 1, "backup": backup},
        }
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
        assert refused.value.status == 422
        assert error in str(refused.value.body)


def test_the_crd_defaults_a_backup_spec(server: EmulatorThread) -> None:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": "ok"},
            "spec": {"replicas": 1, "backup": {"schedule": "0 3 * * *", "pvc": {"claimName": "x"}}},
        }
        made = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
        backup = made["spec"]["backup"]
        assert backup["retention"] == 7
        assert backup["suspend"] is False
        assert backup["pvc"]["path"] == "raftkv"
        cron = b.cronjob(RaftKVObject.from_body(made))
        assert cron is not None
        kubernetes_validate.validate(cron, K8S_VERSION, strict=True)


def test_a_failing_backup_step_does_not_hold_up_the_members() -> None:
    """The API refuses the Job list (say a Role without it): the pass logs it, the
    members are still bootstrapped and their report written, and ``BackupFailing``
    keeps what status said."""

    class NoJobs(KubeEmulator):
        async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
            resource = request.resource
            if resource is not None and resource.plural == "jobs":
                return aiohttp.web.json_response(
                    {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403},
                    status=403,
                )
            return await super()._handle(request)

    emulator = NoJobs()
    emulator.register_crd(load_crd(), crd_schema, check_crd)
    fake = FakeMembers()
    with (
        EmulatorThread(emulator) as server,
        ApiClient(kubernetes.client.Configuration(host=server.url)) as api,
        OperatorThread(server.url, CONFIG, probe=fake, admin_for=lambda _: fake),
    ):
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": "kv"},
            "spec": {"replicas": 1, "image": "raftkv:test", "backup": BACKUP},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

        def status() -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            return dict(obj.get("status") or {})

        wait_for("the StatefulSet", lambda: status().get("memberIDs"), ignore=ApiException)
        ready_pod(api, 0)
        fake.start(0, 1)

        def ready() -> dict[str, Any] | None:
            rows = {c["type"]: c for c in status().get("conditions", [])}
            return rows if rows.get("Ready", {}).get("status") == "True" else None

        rows = wait_for("Ready", ready, timeout=TIMEOUT, ignore=ApiException)
        assert (rows["BackupFailing"]["status"], rows["BackupFailing"]["reason"]) == (
            "False",
            "NoBackupYet",
        )
        assert not server.emulator.errors, server.emulator.errors
