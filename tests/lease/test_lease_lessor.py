"""The lessor's rules, one test each, as etcd v3.5's lessor (server/lease/lessor.go)
and the server around it apply them."""

from __future__ import annotations

import pytest

from raftkv.kv import mvcc
from raftkv.kv.lease import (
    FOREVER,
    MAX_LEASE_ID,
    MAX_LEASE_TTL,
    MIN_LEASE_ID,
    NO_LEASE,
    Granted,
    LeaseError,
    LeaseExists,
    LeaseExpired,
    LeaseInfo,
    LeaseNotFound,
    LeaseTTLTooLarge,
    Lessor,
    NotPrimary,
    TimeToLive,
    min_ttl_for,
)
from raftkv.kv.lease import snapshot as snap
from raftkv.kv.mvcc import Event, EventType, KeyValue

T0 = 1000.0


def leader(**config: int | float) -> Lessor:
    le = Lessor(**config)  # type: ignore[arg-type]
    le.promote(T0)
    return le


# -- grant -----------------------------------------------------------------------------


def test_grant_with_id_zero_allocates_ids_in_order() -> None:
    le = Lessor()
    assert le.grant(0, 10, T0) == Granted(1, 10)
    assert le.grant(0, 10, T0) == Granted(2, 10)
    assert le.leases() == [1, 2]
    assert len(le) == 2


def test_grant_with_id_zero_skips_taken_ids_and_never_reuses_a_revoked_one() -> None:
    le = Lessor()
    le.grant(2, 10, T0)
    assert le.grant(0, 10, T0).id == 1
    assert le.grant(0, 10, T0).id == 3  # 2 is taken
    le.revoke(1)
    assert le.grant(0, 10, T0).id == 4  # the cursor moves on


def test_grant_allocation_wraps_around_to_positive_ids() -> None:
    # The cursor at the top id, through a restore of a crafted (valid) state.
    le = Lessor.from_snapshot(snap.encode(MAX_LEASE_ID, [(1, 10, [])]))
    assert le.grant(0, 10, T0).id == MAX_LEASE_ID
    assert le.grant(0, 10, T0).id == 2  # wraps to 1 (taken), then 2
    full = Lessor.from_snapshot(snap.encode(MAX_LEASE_ID, [(1, 10, []), (MAX_LEASE_ID, 10, [])]))
    assert full.grant(0, 10, T0).id == 2


def test_grant_with_a_chosen_id() -> None:
    le = Lessor()
    assert le.grant(0x7E57, 60, T0) == Granted(0x7E57, 60)
    assert le.exists(0x7E57)
    assert not le.exists(0x7E58)
    assert le.grant(-3, 60, T0).id == -3  # etcd's ids are any non-zero int64
    assert le.grant(MIN_LEASE_ID, 60, T0).id == MIN_LEASE_ID


def test_grant_of_an_existing_id_fails() -> None:
    le = Lessor()
    le.grant(7, 10, T0)
    before = le.snapshot()
    with pytest.raises(LeaseExists, match="etcdserver: lease already exists") as e:
        le.grant(7, 20, T0)
    assert e.value.code == "lease_exists"
    assert e.value.lease == 7
    assert le.snapshot() == before
    assert le.lookup(7) == LeaseInfo(7, 10, ())


@pytest.mark.parametrize("ttl", [-5, 0, 1, 4])
def test_grant_below_the_minimum_ttl_is_raised_to_it(ttl: int) -> None:
    le = Lessor(min_ttl=5)
    assert le.grant(1, ttl, T0) == Granted(1, 5)
    assert le.lookup(1) == LeaseInfo(1, 5, ())


def test_minimum_ttl_default_and_etcds_rule() -> None:
    assert Lessor().min_ttl == 5
    assert Lessor().grant(0, 1, T0).ttl == 5
    assert Lessor(min_ttl=2).grant(0, 1, T0).ttl == 2
    # etcd: ceil(((3 * election ticks) // 2) * tick ms / 1000 ms): 2 s with its defaults.
    assert min_ttl_for(10, 100) == 2
    assert min_ttl_for(10, 1000) == 15
    assert min_ttl_for(20, 100) == 3
    assert min_ttl_for(1, 1) == 1


def test_grant_above_the_maximum_ttl_fails() -> None:
    le = Lessor()
    assert le.grant(1, MAX_LEASE_TTL, T0).ttl == MAX_LEASE_TTL
    with pytest.raises(LeaseTTLTooLarge, match="etcdserver: too large lease TTL") as e:
        le.grant(2, MAX_LEASE_TTL + 1, T0)
    assert e.value.code == "lease_ttl_too_large"
    assert not le.exists(2)


def test_too_large_is_checked_before_exists_as_in_etcd() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    with pytest.raises(LeaseTTLTooLarge):
        le.grant(1, MAX_LEASE_TTL + 1, T0)


@pytest.mark.parametrize("bad", [2**63, MIN_LEASE_ID - 1, 1.0, "1", True])
def test_grant_refuses_ids_that_are_not_int64(bad: object) -> None:
    with pytest.raises(ValueError, match="int64"):
        Lessor().grant(bad, 10, T0)  # type: ignore[arg-type]


def test_grant_refuses_a_ttl_that_is_not_an_int() -> None:
    with pytest.raises(ValueError, match="TTL"):
        Lessor().grant(1, 1.5, T0)  # type: ignore[arg-type]


def test_grant_on_the_leader_counts_time_from_now() -> None:
    le = leader()
    le.grant(1, 10, T0 + 5)
    assert le.expiry(1) == T0 + 15
    assert le.expired(T0 + 14.9) == []
    assert le.expired(T0 + 15) == [1]


def test_grant_on_a_follower_never_expires() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    assert le.expiry(1) == FOREVER


# -- revoke, attach, detach ------------------------------------------------------------


def test_revoke_returns_the_attached_keys_sorted_and_forgets_the_lease() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.grant(2, 10, T0)
    for k in (b"c", b"a", b"b"):
        le.attach(1, k)
    le.attach(2, b"z")
    assert le.revoke(1) == [b"a", b"b", b"c"]
    assert not le.exists(1)
    assert le.lease_of(b"a") == NO_LEASE
    assert le.lease_of(b"z") == 2
    assert le.revoke(2) == [b"z"]
    assert le.leases() == []


def test_revoke_of_an_unknown_lease_fails() -> None:
    le = Lessor()
    with pytest.raises(LeaseNotFound, match="etcdserver: requested lease not found") as e:
        le.revoke(9)
    assert e.value.code == "lease_not_found"
    assert e.value.lease == 9
    # One except clause catches an unknown lease from the MVCC store and the lessor.
    assert isinstance(e.value, mvcc.LeaseNotFound)
    assert isinstance(e.value, LeaseError)


def test_attach_and_detach() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.attach(1, b"k")
    le.attach(1, b"k")
    assert le.lookup(1) == LeaseInfo(1, 10, (b"k",))
    assert le.lease_of(b"k") == 1
    le.detach(1, b"other")  # not attached: nothing to do
    le.detach(1, b"k")
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    assert le.lease_of(b"k") == NO_LEASE
    with pytest.raises(LeaseNotFound):
        le.attach(2, b"k")
    with pytest.raises(LeaseNotFound):
        le.detach(2, b"k")
    with pytest.raises(ValueError, match="bytes"):
        le.attach(1, "k")  # type: ignore[arg-type]


def test_attach_moves_a_key_from_its_old_lease() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.grant(2, 10, T0)
    le.attach(1, b"k")
    le.attach(2, b"k")
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    assert le.lookup(2) == LeaseInfo(2, 10, (b"k",))
    le.detach(1, b"k")  # k is on 2, not 1: left alone
    assert le.lease_of(b"k") == 2


def test_a_put_with_another_lease_moves_the_key() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.grant(2, 10, T0)
    le.on_put(b"k", 1)
    le.on_put(b"k", 1)
    assert le.lookup(1) == LeaseInfo(1, 10, (b"k",))
    le.on_put(b"k", 2)
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    assert le.lookup(2) == LeaseInfo(2, 10, (b"k",))


def test_a_put_without_a_lease_detaches_the_key() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.on_put(b"k", 1)
    le.on_put(b"k", NO_LEASE)
    assert le.lease_of(b"k") == NO_LEASE
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    le.on_put(b"k", NO_LEASE)  # no lease before or after: nothing to do


def test_a_put_with_an_unknown_lease_fails_and_changes_nothing() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.on_put(b"k", 1)
    with pytest.raises(LeaseNotFound):
        le.on_put(b"k", 2)
    assert le.lease_of(b"k") == 1


def test_a_delete_detaches_the_key() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    le.on_put(b"k", 1)
    le.on_delete(b"k")
    assert le.lease_of(b"k") == NO_LEASE
    assert le.lookup(1) == LeaseInfo(1, 10, ())
    le.on_delete(b"never")


def test_apply_events_checks_every_lease_first() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    events = [
        Event(EventType.PUT, KeyValue(b"a", 2, 2, 1, b"", 1)),
        Event(EventType.PUT, KeyValue(b"b", 2, 2, 1, b"", 9)),
    ]
    with pytest.raises(LeaseNotFound):
        le.apply_events(events)
    assert le.lease_of(b"a") == NO_LEASE


# -- time to live ----------------------------------------------------------------------


def test_time_to_live_of_a_missing_lease_answers_minus_one() -> None:
    assert leader().time_to_live(5, T0, keys=True) == TimeToLive(5, -1, 0, ())


def test_time_to_live_reports_remaining_and_granted_ttl_and_keys() -> None:
    le = leader()
    le.grant(1, 10, T0)
    le.attach(1, b"b")
    le.attach(1, b"a")
    assert le.time_to_live(1, T0) == TimeToLive(1, 10, 10)
    assert le.time_to_live(1, T0 + 3.7, keys=True) == TimeToLive(1, 6, 10, (b"a", b"b"))
    # Expired, not revoked yet: etcd's int64(Remaining().Seconds()) truncates toward 0.
    assert le.time_to_live(1, T0 + 10.5).ttl == 0
    assert le.time_to_live(1, T0 + 12.5).ttl == -2


def test_time_to_live_is_served_by_the_leader_only() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    with pytest.raises(NotPrimary, match="not a primary lessor") as e:
        le.time_to_live(1, T0)
    assert e.value.code == "not_primary"


# -- leader-only time ------------------------------------------------------------------


def test_a_follower_never_expires_anything() -> None:
    le = Lessor()
    le.grant(1, 5, T0)
    assert le.expired(T0 + 1e9) == []
    le.promote(T0)
    le.demote()
    assert le.expiry(1) == FOREVER
    assert le.expired(T0 + 1e9) == []
    assert not le.is_primary


def test_promote_gives_every_lease_its_full_ttl_again() -> None:
    old = leader()
    old.grant(1, 10, T0)
    assert old.time_to_live(1, T0 + 9).ttl == 1  # 1 s from expiry on the old leader
    new = Lessor.from_snapshot(old.snapshot())
    new.promote(T0 + 9)
    assert new.expiry(1) == T0 + 19
    assert new.expired(T0 + 18.9) == []
    assert new.expired(T0 + 19) == [1]


def test_promote_after_demote_on_the_same_member_also_restarts_the_ttl() -> None:
    le = leader()
    le.grant(1, 10, T0)
    le.demote()
    le.promote(T0 + 9, extend=1.0)
    assert le.expiry(1) == T0 + 20  # etcd passes the election timeout as extend
    assert le.is_primary


def test_promote_spreads_piled_up_expiries_as_etcd_does() -> None:
    # revoke_rate 4: spreading starts at 4 leases; 3 (3/4 of the rate) per second.
    le = Lessor(min_ttl=1, revoke_rate=4)
    for lid in range(1, 6):
        le.grant(lid, 10, T0)
    le.promote(T0)
    got = [le.expiry(lid) - T0 for lid in range(1, 6)]
    assert got[:3] == [10.0, 10.0, 10.0]
    assert got[3] == pytest.approx(10 + 4 / 3)
    assert got[4] == pytest.approx(10 + 5 / 3)
    # Fewer leases than the revoke rate: plain refresh.
    small = Lessor(min_ttl=1, revoke_rate=4)
    for lid in range(1, 4):
        small.grant(lid, 10, T0)
    small.promote(T0)
    assert [small.expiry(lid) for lid in (1, 2, 3)] == [T0 + 10] * 3


def test_spreading_starts_a_new_window_past_a_gap() -> None:
    le = Lessor(min_ttl=1, revoke_rate=2)  # target: 1 expiry a second
    le.grant(1, 10, T0)
    le.grant(2, 10, T0)
    le.grant(3, 20, T0)
    le.promote(T0)
    assert le.expiry(1) == T0 + 10
    assert le.expiry(2) == pytest.approx(T0 + 12)  # 2 in the window: 2/1 s later
    assert le.expiry(3) == T0 + 20  # a window of its own


def test_renew_extends_the_lease() -> None:
    le = leader()
    le.grant(1, 10, T0)
    assert le.renew(1, T0 + 8) == 10
    assert le.expiry(1) == T0 + 18
    assert le.expired(T0 + 17) == []
    assert le.time_to_live(1, T0 + 17).ttl == 1


def test_renew_of_an_unknown_lease_fails() -> None:
    with pytest.raises(LeaseNotFound):
        leader().renew(1, T0)


def test_renew_of_an_expired_lease_fails_until_a_leader_change() -> None:
    le = leader()
    le.grant(1, 10, T0)
    with pytest.raises(LeaseExpired, match="requested lease not found") as e:
        le.renew(1, T0 + 10)
    assert e.value.code == "lease_expired"
    assert isinstance(e.value, LeaseNotFound)
    le.demote()
    le.promote(T0 + 11)
    assert le.renew(1, T0 + 12) == 10


def test_renew_is_served_by_the_leader_only() -> None:
    le = Lessor()
    le.grant(1, 10, T0)
    with pytest.raises(NotPrimary):
        le.renew(1, T0)


def test_expired_respects_limit_and_order() -> None:
    le = leader(min_ttl=1)
    le.grant(5, 3, T0)
    le.grant(2, 3, T0)
    le.grant(9, 1, T0)
    le.grant(1, 2, T0)
    le.grant(7, 30, T0)
    # earliest expiry first, then id
    assert le.expired(T0 + 10, limit=2) == [9, 1]
    assert le.expired(T0 + 10, limit=2) == [2, 5]
    assert le.expired(T0 + 10, limit=2) == []


def test_expired_default_limit_is_half_the_revoke_rate() -> None:
    le = leader(min_ttl=1, revoke_rate=4)
    for lid in range(1, 4):
        le.grant(lid, 1, T0)
    assert le.expired(T0 + 5) == [1, 2]
    assert le.expired(T0 + 5) == [3]


def test_an_expired_lease_is_reported_again_after_the_retry_interval() -> None:
    le = leader(expired_retry_interval=3.0)
    le.grant(1, 10, T0)
    assert le.expired(T0 + 10) == [1]
    assert le.expired(T0 + 12.9) == []
    assert le.expired(T0 + 13) == [1]
    le.revoke(1)
    assert le.expired(T0 + 100) == []


def test_a_zero_retry_interval_reports_expired_leases_every_time() -> None:
    le = leader(expired_retry_interval=0.0)
    le.grant(1, 10, T0)
    assert le.expired(T0 + 10) == [1]
    assert le.expired(T0 + 10) == [1]


def test_renew_and_revoke_drop_stale_expiry_entries() -> None:
    le = leader(min_ttl=1)
    le.grant(1, 1, T0)
    le.grant(2, 1, T0)
    for i in range(500):  # many renews: the expiry heap is compacted on the way
        le.renew(1, T0 + i * 0.001)
    le.revoke(2)
    assert le.expired(T0 + 1.4) == []
    assert le.expired(T0 + 1.5) == [1]


@pytest.mark.parametrize("limit", [0, -1, 1.5])
def test_expired_refuses_a_bad_limit(limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        leader().expired(T0, limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [float("nan"), float("inf"), "1"])
def test_time_must_be_a_finite_number(now: object) -> None:
    with pytest.raises(ValueError, match="now"):
        Lessor().promote(now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        {"min_ttl": 0},
        {"min_ttl": MAX_LEASE_TTL + 1},
        {"revoke_rate": 0},
        {"expired_retry_interval": -1.0},
        {"expired_retry_interval": float("inf")},
    ],
)
def test_bad_configuration_is_refused(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Lessor(**config)  # type: ignore[arg-type]


def test_promote_refuses_a_bad_extend() -> None:
    with pytest.raises(ValueError, match="extend"):
        Lessor().promote(T0, extend=-1.0)


def test_expiry_of_an_unknown_lease_fails() -> None:
    with pytest.raises(LeaseNotFound):
        Lessor().expiry(1)
    assert Lessor().lookup(1) is None


def test_a_renew_to_the_same_expiry_is_reported_once() -> None:
    # Found by the model test: two expiry entries with the same time and id.
    le = leader()
    le.grant(1, 10, T0)
    le.renew(1, T0)
    assert le.expired(T0 + 10, limit=5) == [1]
