"""Members played in memory, for running the operator's handlers against the Kubernetes
stand-in without member processes (the operator's emulator test and the shipping RBAC
runtime check): :class:`FakeMembers` answers the operator's probe and admin protocols
from a tiny Raft configuration, and :func:`ready_pod` does what the StatefulSet
controller and kubelet would do for one pod."""

from __future__ import annotations

import kubernetes
from kubernetes.client import ApiClient, ApiException

from raftkv.client import Member, NotFound, Progress, StatusInfo
from raftkv_operator.model import PlannerConfig
from raftkv_operator.naming import Addressing
from raftkv_operator.reconcile import OperatorConfig
from support.operator_harness import NS
from support.wait import wait_for

ADDRESSING = Addressing(
    peer_url_template="http://{name}-{ordinal}.fake:2380",
    client_url_template="http://{name}-{ordinal}.fake:2379",
)
CONFIG = OperatorConfig(
    addressing=ADDRESSING,
    planner=PlannerConfig(stabilization_seconds=0.0),
    interval=0.2,
)


class FakeMembers:
    """Members that exist once their pod is "running" (``start``); the leader is
    member 1 at ordinal 0. Adding a learner makes it a member at once."""

    def __init__(self) -> None:
        self.running: dict[int, int] = {}  # ordinal → member id (0 = waiting to join)
        self.config: dict[int, tuple[str, str, bool]] = {}  # id → (name, peer URL, learner)
        self.calls: list[tuple[str, int]] = []

    def start(self, ordinal: int, member_id: int) -> None:
        self.running[ordinal] = member_id
        if member_id == 1 and not self.config:
            self.config[1] = ("kv-0", ADDRESSING.peer_url("kv", NS, 0), False)

    def _ordinal(self, url: str) -> int:
        return int(url.split(".fake")[0].rsplit("-", 1)[1])

    async def status(self, url: str) -> StatusInfo | None:
        k = self._ordinal(url)
        if k not in self.running:
            return None
        member_id = self.running[k]
        members = [
            Member(i, name, [peer], [], learner)
            for i, (name, peer, learner) in sorted(self.config.items())
        ]
        return StatusInfo(
            id=member_id,
            name=f"kv-{k}",
            role="leader" if member_id == 1 else "follower",
            leader=1,
            term=2,
            commit_index=10,
            applied_index=10,
            last_index=10,
            snapshot_index=0,
            members=members,
            progress={i: Progress(10, 11, "replicate", m[2], True) for i, m in self.config.items()},
        )

    async def ready(self, url: str) -> bool:
        return self.running.get(self._ordinal(url), 0) in self.config

    # MemberAdmin

    async def add_learner(self, member_id: int, name: str, peer_url: str, client_url: str) -> None:
        self.calls.append(("add_learner", member_id))
        self.config[member_id] = (name, peer_url, True)

    async def promote(self, member_id: int) -> None:
        self.calls.append(("promote", member_id))
        name, peer, _ = self.config[member_id]
        self.config[member_id] = (name, peer, False)

    async def remove(self, member_id: int) -> None:
        self.calls.append(("remove", member_id))
        if self.config.pop(member_id, None) is None:
            raise NotFound("not_found", "gone", 404)

    async def transfer(self, to_id: int) -> None:
        self.calls.append(("transfer", to_id))


def ready_pod(api: ApiClient, ordinal: int) -> None:
    """What the StatefulSet controller and kubelet would do for one pod."""
    core = kubernetes.client.CoreV1Api(api)
    labels = {"app.kubernetes.io/name": "raftkv", "app.kubernetes.io/instance": "kv"}
    # The controller makes pods only once the StatefulSet exists, and copies its
    # template's labels, among them the member revision the operator reads back (a
    # pod without it would be rolled onto the template).
    apps = kubernetes.client.AppsV1Api(api)
    sts = wait_for(
        "the StatefulSet",
        lambda: apps.read_namespaced_stateful_set("kv", NS),
        ignore=ApiException,
    )
    pod_labels = {**labels, **(sts.spec.template.metadata.labels or {})}
    name = f"kv-{ordinal}"
    core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": name, "labels": pod_labels},
            "spec": {"containers": [{"name": "raftkv", "image": "raftkv:test"}]},
        },
    )
    core.patch_namespaced_pod_status(
        name,
        NS,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        _content_type="application/merge-patch+json",
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            NS,
            {
                "metadata": {"name": f"data-kv-{ordinal}", "labels": labels},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
    except ApiException as exc:
        if exc.status != 409:  # a recreated pod keeps its claim
            raise
