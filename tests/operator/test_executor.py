"""The executor carries out each action exactly once and treats repeats as success.

Plain fakes stand in for Kubernetes and the members; every answer that means "already
so" (409 member_exists, 404 on remove, 409 not_a_learner, 409 AlreadyExists on create)
must count as done, and every "not now" answer must be a retry, never an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftkv.client import Indeterminate, NotFound, RaftKVError, Unavailable
from raftkv_operator import metrics
from raftkv_operator.executor import Context, Executor, Outcome
from raftkv_operator.kube import StatusConflict
from raftkv_operator.model import (
    Action,
    AddLearner,
    Bookkeeping,
    Change,
    ChangeKind,
    CreateChildren,
    DeletePVC,
    Done,
    GrowStatefulSet,
    PromoteLearner,
    Reason,
    RemoveMember,
    ReplaceMember,
    SetQuorumLost,
    ShrinkStatefulSet,
    TransferLeadership,
    UpdateStatus,
    Wait,
)
from raftkv_operator.naming import Addressing
from raftkv_operator.objects import RaftKVObject
from raftkv_operator.status import bookkeeping_from_status, bookkeeping_to_status

JSON = dict[str, Any]
BODY: JSON = {
    "apiVersion": "raftkv.dev/v1alpha1",
    "kind": "RaftKV",
    "metadata": {"name": "kv", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"},
    "spec": {"replicas": 3},
}


class FakeKube:
    def __init__(self, existing: set[str] | None = None, conflict: bool = False) -> None:
        self.existing = existing or set()
        self.conflict = conflict
        self.calls: list[tuple[Any, ...]] = []

    async def create(self, obj: JSON) -> bool:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        self.calls.append(("create", key, obj))
        if key in self.existing:
            return False
        self.existing.add(key)
        return True

    async def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(("scale", name, replicas))

    async def delete_pvc(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete_pvc", name))
        return True

    async def update_statefulset_template(
        self, namespace: str, name: str, template: JSON, update_strategy: JSON
    ) -> None:
        self.calls.append(("sts_template", name, template, update_strategy))

    async def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        self.calls.append(("delete_pod", name, uid))
        return True

    async def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.calls.append(("configmap", name, data))

    async def patch_raftkv_status(
        self, namespace: str, name: str, status: JSON, resource_version: str | None
    ) -> str:
        self.calls.append(("status", status, resource_version))
        if self.conflict:
            raise StatusConflict("changed")
        return "8"

    async def remove_raftkv_annotation(self, namespace: str, name: str, key: str) -> None:
        self.calls.append(("remove_annotation", name, key))


class FakeAdmin:
    def __init__(self, error: RaftKVError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[Any, ...]] = []

    async def _do(self, *call: Any) -> None:
        self.calls.append(call)
        if self.error is not None:
            raise self.error

    async def add_learner(self, member_id: int, name: str, peer_url: str, client_url: str) -> None:
        await self._do("add", member_id, name, peer_url, client_url)

    async def promote(self, member_id: int) -> None:
        await self._do("promote", member_id)

    async def remove(self, member_id: int) -> None:
        await self._do("remove", member_id)

    async def transfer(self, to_id: int) -> None:
        await self._do("transfer", to_id)


def run(
    action: Action,
    kube: FakeKube | None = None,
    admin: FakeAdmin | None = None,
    status: JSON | None = None,
) -> tuple[Any, FakeKube, FakeAdmin, list[tuple[str, str, str]]]:
    kube = kube or FakeKube()
    admin = admin or FakeAdmin()
    events: list[tuple[str, str, str]] = []
    ctx = Context(
        rkv=RaftKVObject.from_body(BODY),
        body=BODY,
        resource_version="7",
        previous_status=status or {},
        addressing=Addressing("http://{name}-{ordinal}:2380", "http://{name}-{ordinal}:2379"),
    )
    executor = Executor(kube, admin, lambda *e: events.append(e))
    result = asyncio.run(executor.execute(action, ctx))
    return result, kube, admin, events


BOOK = Bookkeeping("u-1", {0: 1, 1: 2}, 3, Change(ChangeKind.ADD, 1, 2))


def test_wait_and_done_touch_nothing() -> None:
    for action, outcome in ((Wait(Reason.POD_NOT_READY), Outcome.WAIT), (Done(), Outcome.DONE)):
        result, kube, admin, events = run(action)
        assert result.outcome is outcome
        assert kube.calls == []
        assert admin.calls == []
        assert events == []


def test_update_status_writes_bookkeeping_with_the_read_resource_version() -> None:
    result, kube, _, events = run(UpdateStatus(BOOK, Reason.SCALING_UP, "adding 2"))
    assert result.outcome is Outcome.ACTED
    assert result.resource_version == "8"
    ((op, status, rv),) = kube.calls
    assert op == "status"
    assert rv == "7"
    assert bookkeeping_from_status(status) == BOOK
    assert events == [("Normal", "ScalingUp", "adding 2")]


def test_a_stale_status_is_a_conflict_not_a_write() -> None:
    result, _, _, events = run(UpdateStatus(BOOK, Reason.SCALING_UP), FakeKube(conflict=True))
    assert result.outcome is Outcome.CONFLICT
    assert events == []


def test_replace_member_persists_the_new_id_and_warns() -> None:
    book = Bookkeeping("u-1", {0: 1, 1: 4}, 5, Change(ChangeKind.REPLACE, 1, 4, old_member_id=2))
    result, kube, admin, events = run(ReplaceMember(1, 2, 4, book))
    assert result.outcome is Outcome.ACTED
    assert admin.calls == []
    assert bookkeeping_from_status(kube.calls[0][1]) == book
    assert events[0][:2] == ("Warning", "ReplacingMember")


def test_create_children_creates_only_what_is_missing_and_adopts_it() -> None:
    kube = FakeKube(existing={"Service/kv-peer", "Secret/kv-peer-secret"})
    result, kube, _, events = run(CreateChildren(statefulset_replicas=1), kube)
    assert result.outcome is Outcome.ACTED
    kinds = [c[1] for c in kube.calls]
    assert kinds == [
        "Service/kv-peer",
        "Service/kv-client",
        "Secret/kv-peer-secret",
        "ConfigMap/kv-bootstrap",
        "PodDisruptionBudget/kv",
        "StatefulSet/kv",
    ]
    for _, _, obj in kube.calls:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == "u-1"
        assert ref["controller"] is True
    sts = kube.calls[-1][2]
    assert sts["spec"]["replicas"] == 1
    ((_, reason, message),) = events
    assert reason == "ChildrenCreated"
    assert "Secret" not in message


def test_bootstrap_configmap_says_existing_once_bootstrap_is_done() -> None:
    status = bookkeeping_to_status(Bookkeeping("u-1", {0: 1}, 2, None))
    _, kube, _, _ = run(CreateChildren(1), status=status)
    configmap = next(c[2] for c in kube.calls if c[1] == "ConfigMap/kv-bootstrap")
    assert configmap["data"] == {"initial-cluster-state": "existing"}


@pytest.mark.parametrize(
    ("action", "call"),
    [
        (GrowStatefulSet(3), ("scale", "kv", 3)),
        (ShrinkStatefulSet(2), ("scale", "kv", 2)),
        (DeletePVC(2), ("delete_pvc", "data-kv-2")),
    ],
)
def test_kubernetes_steps(action: Action, call: tuple[Any, ...]) -> None:
    result, kube, admin, events = run(action)
    assert result.outcome is Outcome.ACTED
    assert kube.calls == [call]
    assert admin.calls == []
    assert len(events) == 1


MEMBER_ACTIONS: list[tuple[Action, tuple[Any, ...], str]] = [
    (
        AddLearner(1, 2, "kv-1", "http://kv-1:2380"),
        ("add", 2, "kv-1", "http://kv-1:2380", "http://kv-1:2379"),
        "add_learner",
    ),
    (PromoteLearner(2), ("promote", 2), "promote"),
    (RemoveMember(3), ("remove", 3), "remove"),
    (TransferLeadership(3, 1), ("transfer", 1), "transfer_leadership"),
]


@pytest.mark.parametrize(("action", "call", "kind"), MEMBER_ACTIONS)
def test_member_steps_are_counted_and_announced(
    action: Action, call: tuple[Any, ...], kind: str
) -> None:
    before = metrics.count(metrics.MEMBERSHIP_CHANGES, kind)
    result, kube, admin, events = run(action)
    assert result.outcome is Outcome.ACTED
    assert admin.calls == [call]
    assert kube.calls == []
    assert metrics.count(metrics.MEMBERSHIP_CHANGES, kind) == before + 1
    ((kind_, reason, _),) = events
    assert kind_ == "Normal"
    assert reason[0].isupper()
    assert " " not in reason


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (
            AddLearner(1, 2, "kv-1", "http://kv-1:2380"),
            RaftKVError("member_exists", "id 2 in use", 409),
        ),
        (PromoteLearner(2), RaftKVError("not_a_learner", "already a voter", 409)),
        (RemoveMember(3), NotFound("not_found", "member 3 is not in the cluster", 404)),
    ],
)
def test_repeats_are_success(action: Action, error: RaftKVError) -> None:
    result, _, _, _ = run(action, admin=FakeAdmin(error))
    assert result.outcome is Outcome.ACTED


@pytest.mark.parametrize(
    "error",
    [
        RaftKVError("conf_change_in_progress", "one at a time", 409),
        Unavailable("no_leader", "no leader", 503, 1.0),
        Indeterminate("indeterminate", "timed out", 503),
    ],
)
@pytest.mark.parametrize("action", [a for a, _, _ in MEMBER_ACTIONS])
def test_not_now_is_a_retry(action: Action, error: RaftKVError) -> None:
    result, _, _, events = run(action, admin=FakeAdmin(error))
    assert result.outcome is Outcome.RETRY
    assert events == []


def test_a_refused_id_is_a_retry_with_a_warning() -> None:
    error = RaftKVError("id_removed", "never reused", 409)
    result, _, _, events = run(AddLearner(1, 2, "kv-1", "u"), admin=FakeAdmin(error))
    assert result.outcome is Outcome.RETRY
    # 409 is "not now" for the member API; the id clash shows in the next plan.
    assert events == []


def test_quorum_lost_is_announced_once_per_outage() -> None:
    result, kube, admin, events = run(SetQuorumLost("1 of 3 voters healthy"))
    assert result.outcome is Outcome.WAIT
    assert kube.calls == []
    assert admin.calls == []
    assert [e[:2] for e in events] == [("Warning", "QuorumLost")]
    lost = {"conditions": [{"type": "Available", "status": "False", "reason": "QuorumLost"}]}
    _, _, _, events = run(SetQuorumLost("still"), status=lost)
    assert events == []


def test_bookkeeping_round_trips_through_status() -> None:
    for book in (
        Bookkeeping(),
        Bookkeeping("u", {0: 1}, 2, Change(ChangeKind.BOOTSTRAP, 0, 1)),
        Bookkeeping("u", {0: 1, 1: 5}, 6, Change(ChangeKind.ADD, 1, 5, caught_up_since=1e9 + 0.25)),
        Bookkeeping("u", {0: 1, 1: 5}, 6, Change(ChangeKind.REPLACE, 1, 5, old_member_id=2)),
    ):
        assert bookkeeping_from_status(bookkeeping_to_status(book)) == book
