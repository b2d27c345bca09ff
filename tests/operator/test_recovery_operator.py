"""Quorum-loss recovery through the real operator against the Kubernetes API stand-in.

The operator runs as ``raftkv operator`` does (kopf in a thread). :class:`Controller`
plays the StatefulSet controller, the PVC protection finalizer and the kubelet through
the API only: it recreates deleted pods from the StatefulSet's *current* template,
keeps a volume while a pod uses it, and starts each pod's member in
:class:`RecoveryMembers` with the data of its volume. A member whose pod was made from
a template naming it in ``RAFTKV_FORCE_NEW_CLUSTER_POD`` does what ``raftkv serve
--force-new-cluster`` does: it becomes a cluster of itself alone. Nodes can be lost:
their pods never become Ready and their members never answer, until their volume is
deleted and a new one is provisioned elsewhere.

One scenario, in order: a 3-member RaftKV; the annotation on the healthy cluster is
refused (Warning Event, annotation kept, nothing touched); two nodes are lost and the
operator stops at QuorumLost; ``auto`` forces the survivor (one pod deleted, recreated
with the flag), the annotation is removed, ``status.recovery`` and Events say what was
done, and the two others come back one at a time on new volumes with new ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv.client import Member, NotFound, Progress, StatusInfo, Unavailable
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import REVISION_LABEL
from raftkv_operator.planner import majority
from raftkv_operator.recovery_model import ANNOTATION, FORCE_POD_ENV
from support.fake_members import ADDRESSING
from support.fake_members import CONFIG as BASE_CONFIG
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread, start_emulator
from support.wait import wait_for

K8S_VERSION = "1.30"
MERGE = "application/merge-patch+json"
LABELS = {"app.kubernetes.io/name": "raftkv", "app.kubernetes.io/instance": "kv"}
PVC_PROTECTION = "kubernetes.io/pvc-protection"
TIMEOUT = 240.0  # a deadline for each wait, not a duration
CONFIG = replace(
    BASE_CONFIG, planner=replace(BASE_CONFIG.planner, recovery_quorum_loss_seconds=1.0)
)


class RecoveryMembers:
    """A tiny Raft cluster: a leader exists while a majority of voters answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, int] = {}  # ordinal → member id (0: empty, waiting to join)
        self.config: dict[int, tuple[str, str, bool]] = {}  # id → (name, peer URL, learner)
        self.lost: set[int] = set()  # ordinals whose node is gone
        self.removed: set[int] = set()
        self.forced: list[int] = []  # members that became a cluster of themselves alone
        self.calls: list[tuple[str, int]] = []

    def _live_voters(self) -> set[int]:
        live = {m for k, m in self.running.items() if k not in self.lost}
        return {m for m, (_, _, learner) in self.config.items() if not learner} & live

    def leader(self) -> int | None:
        voters = [m for m, c in self.config.items() if not c[2]]
        live = self._live_voters()
        return min(live) if voters and len(live) >= majority(len(voters)) else None

    def start(self, ordinal: int, member_id: int | None, force: bool) -> None:
        with self.lock:
            if member_id is None:  # an empty data dir: it joins as the learner named for it
                named = [m for m, c in self.config.items() if c[0] == f"kv-{ordinal}" and c[2]]
                member_id = named[0] if named else None
            self.running[ordinal] = member_id or 0
            if member_id == 1 and not self.config:
                self.config[1] = ("kv-0", ADDRESSING.peer_url("kv", NS, 0), False)
            if force and member_id and member_id in self.config:
                # raftkv serve --force-new-cluster: itself alone, with its data.
                self.forced.append(member_id)
                for other in [m for m in self.config if m != member_id]:
                    del self.config[other]
                    self.removed.add(other)

    def stop(self, ordinal: int) -> None:
        with self.lock:
            self.running.pop(ordinal, None)

    def _ordinal(self, url: str) -> int:
        return int(url.split(".fake")[0].rsplit("-", 1)[1])

    async def status(self, url: str) -> StatusInfo | None:
        k = self._ordinal(url)
        with self.lock:
            if k not in self.running or k in self.lost:
                return None
            member_id = self.running[k]
            leader = self.leader()
            members = [
                Member(i, name, [peer], [], learner)
                for i, (name, peer, learner) in sorted(self.config.items())
            ]
            progress = {
                i: Progress(10, 11, "replicate", m[2], True) for i, m in self.config.items()
            }
        return StatusInfo(
            id=member_id,
            name=f"kv-{k}",
            role="leader" if member_id == leader and leader is not None else "follower",
            leader=leader or 0,
            term=2,
            commit_index=10,
            applied_index=10,
            last_index=10 + k,
            snapshot_index=0,
            members=members if member_id else [],
            progress=progress if member_id == leader else {},
        )

    async def ready(self, url: str) -> bool:
        k = self._ordinal(url)
        with self.lock:
            return (
                k not in self.lost
                and self.leader() is not None
                and self.running.get(k, 0) in self.config
            )

    # MemberAdmin

    async def add_learner(self, member_id: int, name: str, peer_url: str, client_url: str) -> None:
        with self.lock:
            self.calls.append(("add_learner", member_id))
            if self.leader() is None:
                raise Unavailable("no_leader", "no leader", 503, None)
            self.config[member_id] = (name, peer_url, True)
            k = int(name.rsplit("-", 1)[1])
            if self.running.get(k) == 0:  # an empty data dir adopts the learner's id
                self.running[k] = member_id

    async def promote(self, member_id: int) -> None:
        with self.lock:
            self.calls.append(("promote", member_id))
            name, peer, _ = self.config[member_id]
            self.config[member_id] = (name, peer, False)

    async def remove(self, member_id: int) -> None:
        with self.lock:
            self.calls.append(("remove", member_id))
            if self.config.pop(member_id, None) is None:
                raise NotFound("not_found", "gone", 404)

    async def transfer(self, to_id: int) -> None:
        self.calls.append(("transfer", to_id))


class Controller:
    """StatefulSet controller, PVC protection and kubelet (see the module docstring)."""

    def __init__(self, api: ApiClient, members: RecoveryMembers) -> None:
        self.api = api
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.apps: Any = kubernetes.client.AppsV1Api(api)
        self.custom: Any = kubernetes.client.CustomObjectsApi(api)
        self.members = members
        self.volumes: dict[str, int | None] = {}  # PVC uid → member id in its data dir
        self.pods_deleted: list[int] = []
        self.pvcs_deleted: list[int] = []
        self.forced_pods: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._seen: dict[int, str] = {}
        self.volume_of: dict[int, str] = {}  # ordinal → uid of the PVC its pod uses
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller", daemon=True)

    def __enter__(self) -> Controller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except ApiException as exc:  # a race with the operator; the next round retries
                if exc.status >= 500:
                    self.errors.append(repr(exc))
            self._stop.wait(0.1)

    def lose(self, ordinals: set[int]) -> None:
        """Their nodes are gone: members silent, pods not Ready."""
        with self.members.lock:
            self.members.lost |= ordinals
        for k in ordinals:
            self.core.patch_namespaced_pod_status(
                f"kv-{k}",
                NS,
                {
                    "status": {
                        "phase": "Unknown",
                        "conditions": [{"type": "Ready", "status": "False"}],
                    }
                },
                _content_type=MERGE,
            )

    def sync(self) -> None:
        try:
            sts = self.apps.read_namespaced_stateful_set("kv", NS)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        template = cast(
            "dict[str, Any]",
            self.api.sanitize_for_serialization(sts.spec.template),  # type: ignore[no-untyped-call]
        )
        pods = {p.metadata.name: p for p in self.core.list_namespaced_pod(NS).items}
        pvcs = {
            p.metadata.name: p for p in self.core.list_namespaced_persistent_volume_claim(NS).items
        }
        for k in range(sts.spec.replicas):
            name, claim = f"kv-{k}", f"data-kv-{k}"
            pvc = pvcs.get(claim)
            if name not in pods and k in self._seen:  # our pod was deleted
                volume = self.volume_of.get(k)
                if volume in self.volumes and self.members.running.get(k):
                    self.volumes[volume] = self.members.running[k]  # what its data dir holds
                self.members.stop(k)
                self.pods_deleted.append(k)
                del self._seen[k]
            if pvc is not None and pvc.metadata.deletion_timestamp is not None:
                if name not in pods:  # PVC protection lets go once no pod uses it
                    self.core.patch_namespaced_persistent_volume_claim(
                        claim, NS, {"metadata": {"finalizers": None}}, _content_type=MERGE
                    )
                    self.volumes.pop(pvc.metadata.uid, None)
                    self.pvcs_deleted.append(k)
                    with self.members.lock:
                        self.members.lost.discard(k)  # a new volume, on a node that works
                continue
            if pvc is None:
                pvc = self.core.create_namespaced_persistent_volume_claim(
                    NS,
                    {
                        "metadata": {
                            "name": claim,
                            "labels": LABELS,
                            "finalizers": [PVC_PROTECTION],
                        },
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    },
                )
                self.volumes[pvc.metadata.uid] = None
            if name not in pods:
                self._start(k, name, template, pvc.metadata.uid)

    def _start(self, k: int, name: str, template: dict[str, Any], volume: str) -> None:
        pod = self.core.create_namespaced_pod(
            NS, {"metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}
        )
        self._seen[k] = pod.metadata.uid
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        force = env.get(FORCE_POD_ENV) == name
        if force:
            self.forced_pods.append(template)
        if k in self.members.lost:
            return  # scheduled on the lost node: never runs
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        self.core.patch_namespaced_pod_status(name, NS, {"status": status}, _content_type=MERGE)
        member_id = self.volumes.get(volume)
        if member_id is None and k == 0 and not self.members.config:
            member_id = self._member_id(0)  # ordinal 0 bootstraps the cluster
        self.volume_of[k] = volume
        self.members.start(k, member_id, force)

    def _member_id(self, k: int) -> int | None:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        ids = (cast("dict[str, Any]", obj).get("status") or {}).get("memberIDs") or []
        found = [m["id"] for m in ids if m["ordinal"] == k]
        return int(found[0]) if found else None


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


@pytest.fixture
def api(server: EmulatorThread) -> Iterator[ApiClient]:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as client:
        yield client


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status.get("conditions", []) if c["type"] == kind]
    return dict(found)


def test_forced_recovery_after_losing_two_of_three(server: EmulatorThread, api: ApiClient) -> None:
    core: Any = kubernetes.client.CoreV1Api(api)
    apps: Any = kubernetes.client.AppsV1Api(api)
    custom: Any = kubernetes.client.CustomObjectsApi(api)
    members = RecoveryMembers()

    def rkv() -> dict[str, Any]:
        return cast(
            "dict[str, Any]", custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        )

    def status() -> dict[str, Any]:
        return dict(rkv().get("status") or {})

    def annotate(value: str | None) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "kv", {"metadata": {"annotations": {ANNOTATION: value}}}
        )

    def events(uid: str) -> list[tuple[str | None, str | None, str | None]]:
        return [
            (e.reason, e.type, e.message)
            for e in core.list_namespaced_event(NS).items
            if e.involved_object.uid == uid
        ]

    def with_event(uid: str, reason: str) -> list[tuple[str | None, str | None, str | None]] | None:
        found = events(uid)
        return found if any(r == reason for r, _, _ in found) else None

    def healthy() -> dict[str, Any] | None:
        s = status()
        ok = (
            s.get("conditions")
            and condition(s, "Ready")["status"] == "True"
            and len(s.get("members") or []) == 3
            and not any(m["learner"] for m in s["members"])
        )
        return s if ok else None

    with (
        OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members),
        Controller(api, members) as controller,
    ):
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": "kv"},
            "spec": {"replicas": 3, "image": "raftkv:1"},
        }
        uid = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)["metadata"][
            "uid"
        ]
        first = wait_for("3 healthy members", healthy, timeout=TIMEOUT, ignore=ApiException)
        assert first.get("recovery") is None
        sts = apps.read_namespaced_stateful_set("kv", NS)
        revision = sts.spec.template.metadata.labels[REVISION_LABEL]
        ports = {p.name: p.container_port for p in sts.spec.template.spec.containers[0].ports}
        assert ports["etcd"] == 12379
        for svc in ("kv-client", "kv-peer"):
            service = core.read_namespaced_service(svc, NS)
            assert ("etcd", "etcd") in {(p.name, p.target_port) for p in service.spec.ports}

        # --- on a healthy cluster the annotation is refused, kept, and nothing moves
        annotate("auto")
        refused = wait_for(
            "the refusal", lambda: with_event(uid, "RecoveryRefused"), timeout=TIMEOUT
        )
        assert any(t == "Warning" and "quorum is healthy" in (m or "") for _, t, m in refused)
        assert rkv()["metadata"]["annotations"][ANNOTATION] == "auto"
        assert controller.pods_deleted == []
        assert condition(status(), "Progressing")["reason"] == "RecoveryRefused"
        annotate(None)

        # --- two nodes are lost: the operator stops at QuorumLost
        controller.lose({1, 2})
        wait_for(
            "QuorumLost",
            lambda: condition(status(), "Available")["reason"] == "QuorumLost" or None,
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        assert controller.pods_deleted == []

        # --- a bad value is refused while quorum is lost: Event, condition, nothing touched
        annotate("7")
        invalid = wait_for(
            "the invalid value refused",
            lambda: with_event(uid, "RecoveryInvalid"),
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        assert any(t == "Warning" and "not a member" in (m or "") for _, t, m in invalid)
        wait_for(
            "the condition",
            lambda: condition(status(), "Progressing")["reason"] == "RecoveryInvalid" or None,
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        assert rkv()["metadata"]["annotations"][ANNOTATION] == "7"
        assert status().get("recovery") is None
        assert controller.pods_deleted == []

        # --- auto: the survivor (ordinal 0, member 1) becomes a cluster of itself alone
        annotate("auto")
        done = wait_for(
            "the recovery to complete",
            lambda: (status().get("recovery") or {}).get("phase") == "Complete" and healthy(),
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        record = done["recovery"]
        assert (record["ordinal"], record["memberID"], record["requested"]) == (0, 1, "auto")
        assert record["lastIndex"] == 10
        assert record["annotationRemoved"] is True
        assert record["armed"] is True
        assert record["forcedAt"] >= record["startedAt"]
        assert members.forced == [1]
        assert ANNOTATION not in (rkv()["metadata"].get("annotations") or {})
        # One pod forced; then each stale member's volume, then its pod, in ordinal order.
        assert controller.pods_deleted == [0, 1, 2]
        assert controller.pvcs_deleted == [1, 2]
        (forced,) = controller.forced_pods
        (container,) = forced["spec"]["containers"]
        assert container["command"][:2] == ["/bin/sh", "-c"]
        assert "--force-new-cluster" in container["command"][2]
        assert {"name": FORCE_POD_ENV, "value": "kv-0"} in container["env"]
        assert forced["metadata"]["labels"][REVISION_LABEL] == revision
        # New ids for the members that came back; the old ones were removed.
        ids = {m["ordinal"]: m["id"] for m in done["memberIDs"]}
        assert ids[0] == 1
        assert {ids[1], ids[2]}.isdisjoint({2, 3})
        assert {2, 3} <= members.removed
        # The template is back to normal, at the same revision: no roll followed.
        sts = apps.read_namespaced_stateful_set("kv", NS)
        assert sts.spec.template.metadata.labels[REVISION_LABEL] == revision
        env = {e.name for e in sts.spec.template.spec.containers[0].env}
        assert FORCE_POD_ENV not in env
        assert sts.spec.template.spec.containers[0].command == ["raftkv", "serve"]
        kubernetes_validate.validate(
            api.sanitize_for_serialization(sts),  # type: ignore[no-untyped-call]
            K8S_VERSION,
            strict=True,
        )
        found = wait_for(
            "the recovery's Events",
            lambda: with_event(uid, "RecoveryComplete"),
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        kinds = {(r, t) for r, t, _ in found}
        for wanted in (
            ("RecoveryStarted", "Warning"),
            ("RemovingRecoveryAnnotation", "Normal"),
            ("ForcingNewCluster", "Normal"),
            ("ForcedNewCluster", "Warning"),
            ("RetiringStaleMember", "Normal"),
            ("RecoveryComplete", "Normal"),
        ):
            assert wanted in kinds, (wanted, sorted(kinds))
        assert not controller.errors, controller.errors
