"""`MemberStatus`: the JSON of `/v1/status` (a wire contract: keys, order, values), the
reason `/readyz` gives, and the Raft gauges of `/metrics`."""

from __future__ import annotations

import orjson

from raftkv.metrics import RaftGauges
from raftkv.raft import ConfState, Role, Status
from raftkv.raft.types import PeerProgress, ProgressState
from raftkv.server.membership import MemberInfo, Registry
from raftkv.server.status import MemberStatus

KEYS = [
    "id",
    "name",
    "cluster_id",
    "role",
    "leader",
    "term",
    "commit_index",
    "applied_index",
    "last_index",
    "snapshot_index",
    "removed",
    "members",
    "progress",
    "keys",
    "conf_change_pending",
    "pending_conf_index",
]


def raft_status(role: Role = Role.LEADER, leader: int = 1) -> Status:
    progress = (
        {
            1: PeerProgress(9, 10, ProgressState.REPLICATE, False, True),
            3: PeerProgress(0, 1, ProgressState.PROBE, True, False),
        }
        if role == Role.LEADER
        else {}
    )
    return Status(
        id=1,
        role=role,
        leader=leader,
        term=4,
        vote=1,
        commit=9,
        applied=9,
        last_index=10,
        first_index=1,
        snapshot_index=0,
        conf_state=ConfState(voters=(1,), learners=(3,)),
        progress=progress,
        lead_transferee=0,
    )


REGISTRY = Registry({1: MemberInfo(1, "m1", ("http://p:1",), ("http://c:1",))}, {2})


def status(role: Role = Role.LEADER, leader: int = 1, pending: int = 10) -> MemberStatus:
    return MemberStatus.of(
        raft_status(role, leader),
        member_id=1,
        name="m1",
        cluster_id="abc",
        registry=REGISTRY,
        applied_index=8,
        snapshot_index=5,
        keys=3,
        removed=False,
        pending_conf_index=pending,
    )


def test_the_json_of_a_member_with_a_raft_node() -> None:
    body = status().to_json()
    assert list(body) == KEYS
    assert body == {
        "id": 1,
        "name": "m1",
        "cluster_id": "abc",
        "role": "leader",
        "leader": 1,
        "term": 4,
        "commit_index": 9,
        "applied_index": 8,
        "last_index": 10,
        "snapshot_index": 5,
        "removed": False,
        "members": [
            {
                "id": 1,
                "name": "m1",
                "peer_urls": ["http://p:1"],
                "client_urls": ["http://c:1"],
                "learner": False,
            },
            {"id": 3, "name": "", "peer_urls": [], "client_urls": [], "learner": True},
        ],
        "progress": {
            "1": {
                "match": 9,
                "next": 10,
                "state": "replicate",
                "learner": False,
                "recent_active": True,
            },
            "3": {"match": 0, "next": 1, "state": "probe", "learner": True, "recent_active": False},
        },
        "keys": 3,
        "conf_change_pending": True,
        "pending_conf_index": 10,
    }
    assert list(body["progress"]["1"]) == ["match", "next", "state", "learner", "recent_active"]  # type: ignore[index]
    assert orjson.dumps(body).startswith(b'{"id":1,"name":"m1","cluster_id":"abc","role":"leader"')


def test_the_members_match_the_members_endpoint() -> None:
    body = status().to_json()
    assert body["members"] == REGISTRY.view(ConfState(voters=(1,), learners=(3,)))


def test_conf_change_pending_only_above_the_commit_index() -> None:
    assert not status(pending=9).conf_change_pending
    assert status(pending=10).conf_change_pending


def test_the_json_of_a_joining_member_adds_its_peer_url() -> None:
    body = MemberStatus.joining("m4", "abc", "http://p:4").to_json()
    assert list(body) == [*KEYS, "peer_url"]
    assert body == {
        "id": 0,
        "name": "m4",
        "cluster_id": "abc",
        "role": "joining",
        "leader": 0,
        "term": 0,
        "commit_index": 0,
        "applied_index": 0,
        "last_index": 0,
        "snapshot_index": 0,
        "removed": False,
        "members": [],
        "progress": {},
        "keys": 0,
        "conf_change_pending": False,
        "pending_conf_index": 0,
        "peer_url": "http://p:4",
    }


def test_readiness() -> None:
    assert MemberStatus.joining("m4", "abc", "http://p:4").readiness() == {}
    assert status(Role.FOLLOWER, leader=0).readiness() == {
        "removed": False,
        "leader": 0,
        "member": True,
        "applied": 8,
        "commit": 9,
    }


def test_gauges() -> None:
    assert MemberStatus.joining("m4", "abc", "http://p:4").gauges(0) == RaftGauges(
        False, False, 0, 0, 0, 0, 0, 0, 0, 0
    )
    assert status().gauges(7) == RaftGauges(
        is_leader=True,
        has_leader=True,
        term=4,
        commit_index=9,
        applied_index=8,
        last_log_index=10,
        snapshot_index=5,
        voters=1,
        learners=1,
        proposals_pending=7,
    )
    follower = status(Role.FOLLOWER, leader=0).gauges(0)
    assert not follower.is_leader
    assert not follower.has_leader
