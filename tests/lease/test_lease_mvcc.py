"""The lessor next to the MVCC store, wired as an apply loop would wire them: puts
with a lease attach, re-puts and deletes detach, a revoke deletes its keys in one
MVCC transaction."""

from __future__ import annotations

import pytest

from raftkv.kv.lease import NO_LEASE, LeaseInfo, Lessor
from raftkv.kv.mvcc import DeleteRangeRequest, LeaseNotFound, MVCCStore

T0 = 10.0


def pair() -> tuple[Lessor, MVCCStore]:
    le = Lessor()
    return le, MVCCStore(lease_exists=le.exists)


def test_puts_and_deletes_keep_the_attachments() -> None:
    le, store = pair()
    le.grant(1, 10, T0)
    le.grant(2, 10, T0)
    le.apply_events(store.put(b"a", b"1", lease=1).events)
    le.apply_events(store.put(b"b", b"1", lease=1).events)
    assert le.lookup(1) == LeaseInfo(1, 10, (b"a", b"b"))
    le.apply_events(store.put(b"a", b"2", lease=2).events)  # another lease
    le.apply_events(store.put(b"b", b"2").events)  # no lease
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    assert le.lease_of(b"a") == 2
    le.apply_events(store.put(b"a", ignore_value=True, ignore_lease=True).events)
    assert le.lease_of(b"a") == 2  # ignore_lease keeps the lease
    le.apply_events(store.delete_range(b"a").events)
    assert le.lookup(2) == LeaseInfo(2, 10, ())
    with pytest.raises(LeaseNotFound):
        store.put(b"c", lease=3)


def test_revoke_deletes_the_keys_in_one_transaction() -> None:
    le, store = pair()
    le.grant(7, 10, T0)
    for k in (b"x", b"y", b"z"):
        le.apply_events(store.put(k, b"v", lease=7).events)
    le.apply_events(store.put(b"keep", b"v").events)
    rev = store.revision
    keys = le.revoke(7)
    resp = store.txn(success=[DeleteRangeRequest(k) for k in keys])
    le.apply_events(resp.events)  # the keys are no longer attached: nothing to do
    assert store.revision == rev + 1
    assert [ev.kv.key for ev in resp.events] == [b"x", b"y", b"z"]
    assert [kv.key for kv in store.range(b"\x00", b"\x00").kvs] == [b"keep"]
    assert le.lease_of(b"x") == NO_LEASE
    with pytest.raises(LeaseNotFound):
        store.put(b"x", lease=7)
