"""Apply dispatch by entry kind: KV commands (and their dedup), no-ops, member
attributes, configuration changes; writes overwritten by a new leader fail at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from raftkv.kv.command import Command, Op
from raftkv.kv.machine import StateMachine
from raftkv.raft import ConfChange, ConfChangeType, Entry, EntryType, encode_conf_change
from raftkv.server import errors as E
from raftkv.server.apply import Applier, stable_prefix
from raftkv.server.membership import MemberInfo, Registry, encode_attrs
from raftkv.server.waiters import Waiters

ME = 1


@dataclass
class Member:
    """An Applier and everything it reports, for one member (id ME)."""

    kv: StateMachine = field(default_factory=lambda: StateMachine(clock=time.monotonic))
    waiters: Waiters = field(default_factory=Waiters)
    registry: Registry = field(default_factory=Registry)
    peer_syncs: int = 0
    removed: int = 0
    committed: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.applier = Applier(
            self.kv,
            self.waiters,
            registry=lambda: self.registry,
            member_id=lambda: ME,
            on_peers_changed=self._peers,
            on_removed=self._removed,
            on_committed=self.committed.append,
        )

    def _peers(self) -> None:
        self.peer_syncs += 1

    def _removed(self) -> None:
        self.removed += 1

    def apply(self, *entries: Entry) -> None:
        self.applier.apply(list(entries))


def get(m: Member, key: str) -> tuple[bytes, int] | None:
    """(value, mod_revision) of a key, or None."""
    kv = m.kv.get(key.encode())
    return None if kv is None else (kv.value, kv.mod_revision)


def put(index: int, key: str, rid: bytes = b"") -> Entry:
    return Entry(1, index, data=Command(Op.PUT, key, b"v", request_id=rid).encode())


def conf(index: int, kind: ConfChangeType, node: int, ctx: bytes = b"") -> Entry:
    data = encode_conf_change(ConfChange(kind, node, ctx))
    return Entry(1, index, EntryType.CONF_CHANGE, data)


def code_of(fut: asyncio.Future[Any]) -> str | None:
    exc = fut.exception() if fut.done() else None
    return exc.code if isinstance(exc, E.ApiError) else None


@pytest.mark.asyncio
async def test_a_command_resolves_its_writers_and_counts_as_committed() -> None:
    m = Member()
    fut = m.waiters.add_write(b"r1")
    m.apply(put(1, "a", b"r1"), put(2, "b"))
    res = fut.result()
    assert res.ok
    assert res.revision == 2  # the store revision starts at 1
    assert get(m, "b") == (b"v", 3)
    assert m.kv.applied_index == 2
    assert m.committed == [2]


@pytest.mark.asyncio
async def test_a_repeated_request_id_replays_the_first_result() -> None:
    m = Member()
    m.apply(put(1, "a", b"r1"))
    fut = m.waiters.add_write(b"r1")
    m.apply(put(2, "a", b"r1"))
    res = fut.result()
    assert res.replayed
    assert res.revision == 2
    assert get(m, "a") == (b"v", 2)


@pytest.mark.asyncio
async def test_entries_already_applied_are_skipped() -> None:
    m = Member()
    m.apply(put(1, "a"))
    m.apply(put(1, "b"), put(2, "c"))
    assert get(m, "b") is None
    assert get(m, "c") == (b"v", 3)
    assert m.committed == [1, 1]


@pytest.mark.asyncio
async def test_a_noop_at_an_owned_index_fails_that_write_as_overwritten() -> None:
    m = Member()
    fut = m.waiters.add_write(b"mine")
    m.waiters.own(1, [b"mine"])
    m.apply(Entry(2, 1))
    assert code_of(fut) == "proposal_dropped"
    assert m.kv.applied_index == 1
    assert m.committed == []


@pytest.mark.asyncio
async def test_another_write_at_an_owned_index_fails_the_owner_and_resolves_its_own() -> None:
    m = Member()
    mine, theirs = m.waiters.add_write(b"mine"), m.waiters.add_write(b"theirs")
    m.waiters.own(1, [b"mine"])
    m.apply(put(1, "a", b"theirs"))
    assert code_of(mine) == "proposal_dropped"
    assert theirs.result().ok


@pytest.mark.asyncio
async def test_the_owner_s_own_entry_resolves_it() -> None:
    m = Member()
    fut = m.waiters.add_write(b"mine")
    m.waiters.own(1, [b"mine"])
    m.apply(put(1, "a", b"mine"))
    assert fut.result().ok
    assert len(m.waiters) == 0


@pytest.mark.asyncio
async def test_attributes_update_the_registry_and_peers_only_for_others() -> None:
    m = Member()
    m.registry.members = {ME: MemberInfo(ME, "me"), 2: MemberInfo(2, "two")}
    m.apply(Entry(1, 1, data=encode_attrs(MemberInfo(ME, "me", (), ("http://c:1",)))))
    assert m.registry.members[ME].client_urls == ("http://c:1",)
    assert m.peer_syncs == 0
    m.apply(Entry(1, 2, data=encode_attrs(MemberInfo(2, "", ("http://p:2",)))))
    assert m.registry.members[2] == MemberInfo(2, "two", ("http://p:2",))
    assert m.peer_syncs == 1
    assert m.kv.applied_index == 2
    assert m.committed == []


@pytest.mark.asyncio
async def test_an_undecodable_entry_is_skipped_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Member()
    m.apply(Entry(1, 1, data=b"\xc1garbage"))
    assert m.kv.applied_index == 1
    assert "holds no command" in caplog.text


@pytest.mark.asyncio
async def test_a_conf_change_updates_the_registry_and_resolves_its_waiter() -> None:
    m = Member()
    fut = m.waiters.add_conf(1, ConfChange(ConfChangeType.ADD_NODE, 2))
    m.apply(conf(1, ConfChangeType.ADD_NODE, 2, MemberInfo(2, "two", ("http://p:2",)).encode()))
    assert fut.result() is None
    assert m.registry.members[2].name == "two"
    assert m.peer_syncs == 1
    assert m.removed == 0
    assert m.kv.applied_index == 1


@pytest.mark.asyncio
async def test_a_different_change_at_the_waiter_s_index_fails_it() -> None:
    m = Member()
    fut = m.waiters.add_conf(1, ConfChange(ConfChangeType.ADD_NODE, 2))
    m.apply(conf(1, ConfChangeType.REMOVE_NODE, 3))
    assert code_of(fut) == "proposal_dropped"
    assert 3 in m.registry.removed


@pytest.mark.asyncio
async def test_a_conf_waiter_passed_by_other_entries_fails() -> None:
    m = Member()
    fut = m.waiters.add_conf(1, ConfChange(ConfChangeType.ADD_NODE, 2))
    m.apply(Entry(2, 1), put(2, "a"))
    assert code_of(fut) == "proposal_dropped"


@pytest.mark.asyncio
async def test_a_conf_change_at_an_owned_index_fails_the_write() -> None:
    m = Member()
    fut = m.waiters.add_write(b"mine")
    m.waiters.own(1, [b"mine"])
    m.apply(conf(1, ConfChangeType.ADD_LEARNER, 4))
    assert code_of(fut) == "proposal_dropped"


@pytest.mark.asyncio
async def test_our_own_removal_is_reported_once_and_others_are_not() -> None:
    m = Member()
    m.apply(conf(1, ConfChangeType.REMOVE_NODE, 2))
    assert m.removed == 0
    m.apply(conf(2, ConfChangeType.REMOVE_NODE, ME))
    assert m.removed == 1
    assert ME in m.registry.removed


@pytest.mark.asyncio
async def test_an_undecodable_conf_change_only_advances() -> None:
    m = Member()
    m.apply(Entry(1, 1, EntryType.CONF_CHANGE, b"\xc1"))
    assert m.kv.applied_index == 1
    assert m.peer_syncs == 0


def test_stable_prefix_stops_at_the_disk_and_at_a_conf_change() -> None:
    entries = [put(1, "a"), put(2, "b"), conf(3, ConfChangeType.ADD_NODE, 2), put(4, "c")]
    assert stable_prefix(entries, 0) == 0
    assert stable_prefix(entries, 1) == 1
    assert stable_prefix(entries, 9) == 2
    assert stable_prefix(entries[3:], 9) == 1
    assert stable_prefix([], 9) == 0
