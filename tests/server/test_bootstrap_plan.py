"""How a member starts (new cluster, restart, join, discovery), the identity checks on
its data dir, and the one "was this member removed" rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from raftkv.raft import ConfChange, ConfChangeType, Entry, EntryType, encode_conf_change
from raftkv.server.bootstrap import (
    StartKind,
    StartPlan,
    check_not_removed,
    committed_conf_changes,
    plan_start,
)
from raftkv.server.config import InitialMember, ServerConfig
from raftkv.server.membership import Registry, removes, was_removed
from raftkv.server.meta import IdentityError, MemberMeta

INITIAL = [
    InitialMember(1, "m1", "http://127.0.0.1:7001"),
    InitialMember(2, "m2", "http://127.0.0.1:7002"),
]


@pytest.fixture
def cfg(tmp_path: Path) -> ServerConfig:
    return ServerConfig(name="m2", data_dir=tmp_path / "m2", initial_cluster=INITIAL)


def meta_of(cfg: ServerConfig, member_id: int = 2) -> MemberMeta:
    return MemberMeta(member_id, cfg.name, cfg.cluster_id)


def test_no_state_and_no_join_bootstraps_as_our_initial_member(cfg: ServerConfig) -> None:
    assert plan_start(cfg, None, has_state=False) == StartPlan(StartKind.BOOTSTRAP, 2)


def test_bootstrap_needs_our_name_in_the_initial_cluster(cfg: ServerConfig) -> None:
    with pytest.raises(ValueError, match="not in the initial cluster"):
        plan_start(replace(cfg, name="m9"), None, has_state=False)


def test_state_restarts_as_the_member_the_data_dir_belongs_to(cfg: ServerConfig) -> None:
    plan = plan_start(cfg, meta_of(cfg, 7), has_state=True)
    assert plan == StartPlan(StartKind.RESTART, 7)


def test_state_without_member_json_is_refused(cfg: ServerConfig) -> None:
    with pytest.raises(IdentityError, match=r"holds Raft state but no member\.json"):
        plan_start(cfg, None, has_state=True)


def test_state_of_another_cluster_is_refused(cfg: ServerConfig) -> None:
    other = MemberMeta(2, "m2", "someone-else")
    with pytest.raises(IdentityError, match="check --cluster-token"):
        plan_start(cfg, other, has_state=True)


def test_state_of_another_member_id_is_refused_when_joining(cfg: ServerConfig) -> None:
    joining = replace(cfg, join=True, member_id=5)
    with pytest.raises(IdentityError, match="belongs to member 2, not 5"):
        plan_start(joining, meta_of(cfg), has_state=True)


def test_join_with_an_id(cfg: ServerConfig) -> None:
    joining = replace(cfg, join=True, member_id=5)
    assert plan_start(joining, None, has_state=False) == StartPlan(StartKind.JOIN, 5)


def test_join_takes_the_id_of_member_json(cfg: ServerConfig) -> None:
    joining = replace(cfg, join=True)
    assert plan_start(joining, meta_of(cfg, 6), has_state=False) == StartPlan(StartKind.JOIN, 6)


def test_join_refuses_member_json_of_another_id(cfg: ServerConfig) -> None:
    joining = replace(cfg, join=True, member_id=5)
    with pytest.raises(IdentityError, match="belongs to member 6, not 5"):
        plan_start(joining, meta_of(cfg, 6), has_state=False)


def test_join_without_an_id_discovers_it(cfg: ServerConfig) -> None:
    joining = replace(cfg, join=True, discovery_endpoints=("http://127.0.0.1:7000",))
    assert plan_start(joining, None, has_state=False) == StartPlan(StartKind.DISCOVER)


def test_join_without_an_id_or_discovery_cannot_start(cfg: ServerConfig) -> None:
    with pytest.raises(ValueError, match="--discovery-endpoints"):
        plan_start(replace(cfg, join=True), None, has_state=False)


# --- removal -------------------------------------------------------------------------


def conf_entry(index: int, kind: ConfChangeType, node: int) -> Entry:
    return Entry(1, index, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(kind, node)))


def test_removes_is_only_a_removal_of_that_member() -> None:
    assert removes(ConfChange(ConfChangeType.REMOVE_NODE, 2), 2)
    assert not removes(ConfChange(ConfChangeType.REMOVE_NODE, 3), 2)
    assert not removes(ConfChange(ConfChangeType.ADD_NODE, 2), 2)


def test_was_removed_by_the_registry_or_by_a_change() -> None:
    assert was_removed(2, Registry(removed={2}))
    assert not was_removed(2, Registry(removed={3}))
    assert was_removed(2, Registry(), [ConfChange(ConfChangeType.REMOVE_NODE, 2)])


def test_only_committed_conf_changes_count() -> None:
    entries = [
        Entry(1, 1),
        conf_entry(2, ConfChangeType.ADD_NODE, 3),
        Entry(1, 3, EntryType.CONF_CHANGE, b"\xc1"),  # undecodable: skipped
        conf_entry(4, ConfChangeType.REMOVE_NODE, 2),
    ]
    assert [c.node_id for c in committed_conf_changes(entries, 3)] == [3]
    assert [c.node_id for c in committed_conf_changes(entries, 4)] == [3, 2]


def test_a_removed_member_cannot_restart() -> None:
    removal = [conf_entry(5, ConfChangeType.REMOVE_NODE, 2)]
    check_not_removed(2, Registry(), removal, commit=4)  # not committed: fine
    check_not_removed(3, Registry(), removal, commit=5)  # someone else: fine
    with pytest.raises(IdentityError, match="member 2 was removed"):
        check_not_removed(2, Registry(), removal, commit=5)
    with pytest.raises(IdentityError, match="member 2 was removed"):
        check_not_removed(2, Registry(removed={2}), [], commit=0)
