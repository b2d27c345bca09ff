"""The waiter registry: every kind resolves, fails, and is taken out again by a caller
that gives up; `fail_all` reaches every kind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from raftkv.kv.machine import Outcome
from raftkv.raft import ConfChange, ConfChangeType
from raftkv.server import errors as E
from raftkv.server.waiters import Waiters

pytestmark = pytest.mark.asyncio

ADD_2 = ConfChange(ConfChangeType.ADD_NODE, 2)
REMOVE_2 = ConfChange(ConfChangeType.REMOVE_NODE, 2)


def err() -> E.ApiError:
    return E.Unavailable("boom", code="boom")


def failed_with(fut: asyncio.Future[Any], code: str) -> bool:
    exc = fut.exception() if fut.done() and not fut.cancelled() else None
    return isinstance(exc, E.ApiError) and exc.code == code


async def gives_up(fut: asyncio.Future[Any], discard: Callable[[], None]) -> None:
    """What a caller does on timeout: wait a little, then take its future out."""
    try:
        await asyncio.wait_for(fut, 0.01)
    except TimeoutError:
        pass
    finally:
        discard()


# --- writes ------------------------------------------------------------------------


async def test_write_waiters_of_one_request_id_all_get_the_result() -> None:
    w = Waiters()
    a, b = w.add_write(b"r1"), w.add_write(b"r1")
    other = w.add_write(b"r2")
    result = Outcome(7)
    w.resolve_write(b"r1", result)
    assert a.result() is result
    assert b.result() is result
    assert not other.done()
    assert w.counts()["writes"] == 1


async def test_fail_write_fails_only_that_request_id() -> None:
    w = Waiters()
    a, other = w.add_write(b"r1"), w.add_write(b"r2")
    w.fail_write(b"r1", err())
    assert failed_with(a, "boom")
    assert not other.done()
    w.fail_write(b"unknown", err())  # nothing waits: no-op


async def test_a_write_that_times_out_leaves_nothing_behind() -> None:
    w = Waiters()
    keep = w.add_write(b"r1")
    fut = w.add_write(b"r1")
    await gives_up(fut, lambda: w.discard_write(b"r1", fut))
    assert w.counts()["writes"] == 1
    w.discard_write(b"r1", keep)
    assert len(w) == 0
    w.discard_write(b"r1", keep)  # twice is harmless


async def test_index_owners_fail_when_a_snapshot_covers_them() -> None:
    w = Waiters()
    low, high = w.add_write(b"a"), w.add_write(b"b")
    w.own(10, [b"a", b"b"])
    w.fail_owners_through(10, E.indeterminate())
    assert failed_with(low, "indeterminate")
    assert not high.done()
    assert w.pop_owner(10) is None
    assert w.pop_owner(11) == b"b"
    assert w.pop_owner(11) is None


# --- reads ---------------------------------------------------------------------------


async def test_a_read_batch_resolves_at_once_when_its_index_is_applied() -> None:
    w = Waiters()
    r1, r2 = w.add_read(), w.add_read()
    assert w.has_reads()
    reads = w.take_reads()
    assert reads == [r1, r2]
    assert not w.has_reads()
    w.start_batch(b"ctx", reads)
    w.read_state(b"ctx", 5, applied=5)
    assert r1.done()
    assert r2.done()
    assert len(w) == 0


async def test_a_read_batch_waits_for_apply_to_reach_its_index() -> None:
    w = Waiters()
    early, late = w.add_read(), w.add_read()
    assert w.take_reads() == [early, late]
    w.start_batch(b"late", [late])
    w.start_batch(b"early", [early])
    w.read_state(b"late", 9, applied=3)
    w.read_state(b"early", 5, applied=3)
    w.read_state(b"unknown", 1, applied=3)  # not ours: ignored
    assert not early.done()
    assert not late.done()
    w.release_reads(5)  # the second batch in the queue comes first
    assert early.done()
    assert not late.done()
    w.release_reads(9)
    assert late.done()
    assert len(w) == 0


async def test_fail_reads_fails_a_batch_that_could_not_start() -> None:
    w = Waiters()
    r = w.add_read()
    w.fail_reads(w.take_reads(), err())
    assert failed_with(r, "boom")


@pytest.mark.parametrize("stage", ["pending", "batch", "after_apply"])
async def test_a_read_that_times_out_is_taken_out_wherever_it_waits(stage: str) -> None:
    w = Waiters()
    fut = w.add_read()
    if stage != "pending":
        w.start_batch(b"ctx", w.take_reads())
    if stage == "after_apply":
        w.read_state(b"ctx", 9, applied=1)
    await gives_up(fut, lambda: w.discard_read(fut))
    assert len(w) == 0, w.counts()


async def test_a_batch_stays_while_someone_still_waits_on_it() -> None:
    w = Waiters()
    a, b = w.add_read(), w.add_read()
    w.start_batch(b"ctx", w.take_reads())
    w.discard_read(a)
    assert w.counts()["read_batches"] == 1
    w.read_state(b"ctx", 1, applied=1)
    assert b.done()
    assert not a.done()


# --- membership changes and leadership ---------------------------------------------------


async def test_a_conf_waiter_resolves_on_its_own_change() -> None:
    w = Waiters()
    fut = w.add_conf(4, ADD_2)
    w.resolve_conf(4, ConfChange(ConfChangeType.ADD_NODE, 2, b"ctx"), E.overwritten())
    assert fut.result() is None
    assert len(w) == 0


async def test_a_conf_waiter_fails_when_another_change_lands_at_its_index() -> None:
    w = Waiters()
    fut = w.add_conf(4, ADD_2)
    w.resolve_conf(4, REMOVE_2, E.overwritten())
    assert failed_with(fut, "proposal_dropped")


async def test_conf_waiters_passed_by_the_applied_index_fail() -> None:
    w = Waiters()
    passed, ahead = w.add_conf(4, ADD_2), w.add_conf(6, REMOVE_2)
    w.fail_conf_through(5, E.overwritten())
    assert failed_with(passed, "proposal_dropped")
    assert not ahead.done()
    assert w.counts()["conf"] == 1


async def test_a_conf_waiter_that_times_out_is_taken_out_but_not_its_successor() -> None:
    w = Waiters()
    fut = w.add_conf(4, ADD_2)
    await gives_up(fut, lambda: w.discard_conf(4, fut))
    assert len(w) == 0
    newer = w.add_conf(4, REMOVE_2)
    w.discard_conf(4, fut)  # a stale discard leaves the newer waiter alone
    assert w.counts()["conf"] == 1
    assert not newer.done()


async def test_leader_waiters_resolve_when_their_predicate_holds() -> None:
    w = Waiters()
    to2 = w.add_leader(lambda lead: lead == 2)
    any_leader = w.add_leader(lambda lead: lead != 0)
    w.leader_changed(0)
    assert not to2.done()
    assert not any_leader.done()
    w.leader_changed(3)
    assert any_leader.result() == 3
    assert not to2.done()
    w.leader_changed(2)
    assert to2.result() == 2
    assert len(w) == 0


async def test_a_leader_waiter_that_times_out_is_taken_out() -> None:
    w = Waiters()
    fut = w.add_leader(lambda lead: lead == 2)
    await gives_up(fut, lambda: w.discard_leader(fut))
    assert len(w) == 0


# --- all of them ---------------------------------------------------------------------


def one_of_each(w: Waiters) -> list[asyncio.Future[Any]]:
    """A waiter of every kind; the write also owns a log index."""
    write = w.add_write(b"w")
    w.own(1, [b"w"])
    batch = w.add_read()
    w.start_batch(b"batch", w.take_reads())
    after = w.add_read()
    w.start_batch(b"after", w.take_reads())
    w.read_state(b"after", 9, applied=1)
    pending = w.add_read()
    conf = w.add_conf(5, ADD_2)
    leader = w.add_leader(lambda lead: lead == 2)
    return [write, batch, after, pending, conf, leader]


async def test_fail_all_reaches_every_kind() -> None:
    w = Waiters()
    futs = one_of_each(w)
    assert all(n == 1 for n in w.counts().values()), w.counts()
    w.fail_all(E.shutting_down())
    assert all(failed_with(f, "shutting_down") for f in futs)
    assert len(w) == 0, w.counts()


async def test_fail_all_skips_futures_already_done() -> None:
    w = Waiters()
    fut = w.add_write(b"w")
    fut.cancel()
    w.fail_all(err())
    assert fut.cancelled()
