"""Model-based test of the lessor: random grants, renews, attaches, detaches, puts,
deletes, revokes, promotes, demotes and steps of time, checked against a model
written from etcd's rules.

Properties:
(a) no lease is ever reported expired before its last renew/promote/grant + TTL;
(b) while leader and not renewed, a lease is reported at the first `expired` call at
    or after its expiry (one step of time), then again every retry interval, within
    the limit, earliest first (the model predicts each answer exactly);
(c) a lessor restored from a snapshot answers every replicated question as the
    original does, then and after every later replicated change (a follower fed the
    same changes), and never reports anything expired.

The second machine turns on etcd's spreading of piled-up expiries at promote, where
expiries may only move later: the model then takes the lessor's expiries after a
promote, and (a) is checked against the unspread bound.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftkv.kv.lease import (
    MAX_LEASE_TTL,
    NO_LEASE,
    Granted,
    LeaseExists,
    LeaseExpired,
    LeaseInfo,
    LeaseNotFound,
    LeaseTTLTooLarge,
    Lessor,
    NotPrimary,
    TimeToLive,
)

MIN_TTL = 2
RETRY = 1.5
IDS = [0, 0, 1, 2, 3, 5, -1]
LIVE_IDS = [1, 2, 3, 4, 5, -1]
TTLS = [-1, 0, 1, 2, 3, 5, 8, MAX_LEASE_TTL + 1]
KEYS = [b"a", b"b", b"c", b"d"]
STEPS = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]
LIMITS = [1, 2, 100]

Outcome = tuple[str, object]


def outcome(fn: Callable[[], object]) -> Outcome:
    try:
        return ("ok", fn())
    except (LeaseNotFound, LeaseExists, LeaseTTLTooLarge) as exc:
        return (type(exc).__name__, None)


class LessorMachine(RuleBasedStateMachine):
    REVOKE_RATE = 10**6  # no spreading

    def __init__(self) -> None:
        super().__init__()
        self.le = self._new()
        self.shadow: Lessor | None = None
        self.now = 0.0
        self.leader = False
        # replicated model
        self.ttl: dict[int, int] = {}
        self.keys: dict[int, set[bytes]] = {}
        self.owner: dict[bytes, int] = {}
        self.cursor = 1
        # leader model
        self.lower: dict[int, float] = {}
        """last renew/promote/grant + TTL: nothing is reported before it (a)."""
        self.notify: dict[int, float] = {}
        """when the lease is to be reported next."""

    def _new(self) -> Lessor:
        return Lessor(min_ttl=MIN_TTL, revoke_rate=self.REVOKE_RATE, expired_retry_interval=RETRY)

    def _replicated(self, fn: Callable[[Lessor], object]) -> Outcome:
        got = outcome(lambda: fn(self.le))
        if self.shadow is not None:
            shadow = self.shadow
            assert outcome(lambda: fn(shadow)) == got
        return got

    # -- replicated changes ----------------------------------------------------------

    @rule(lease_id=st.sampled_from(IDS), ttl=st.sampled_from(TTLS))
    def grant(self, lease_id: int, ttl: int) -> None:
        got = self._replicated(lambda le: le.grant(lease_id, ttl, self.now))
        if ttl > MAX_LEASE_TTL:
            assert got == ("LeaseTTLTooLarge", None)
            return
        if lease_id != NO_LEASE and lease_id in self.ttl:
            assert got == ("LeaseExists", None)
            return
        if lease_id == NO_LEASE:
            while self.cursor in self.ttl:
                self.cursor += 1
            lease_id = self.cursor
            self.cursor += 1
        granted = max(ttl, MIN_TTL)
        assert got == ("ok", Granted(lease_id, granted))
        self.ttl[lease_id] = granted
        self.keys[lease_id] = set()
        if self.leader:
            self.lower[lease_id] = self.notify[lease_id] = self.now + granted

    @rule(lease_id=st.sampled_from(LIVE_IDS))
    def revoke(self, lease_id: int) -> None:
        got = self._replicated(lambda le: le.revoke(lease_id))
        if lease_id not in self.ttl:
            assert got == ("LeaseNotFound", None)
            return
        assert got == ("ok", sorted(self.keys[lease_id]))
        for k in self.keys.pop(lease_id):
            del self.owner[k]
        del self.ttl[lease_id]
        self.lower.pop(lease_id, None)
        self.notify.pop(lease_id, None)

    def _attach(self, lease_id: int, key: bytes) -> None:
        old = self.owner.get(key, NO_LEASE)
        if old != NO_LEASE:
            self.keys[old].discard(key)
        self.keys[lease_id].add(key)
        self.owner[key] = lease_id

    def _detach(self, key: bytes) -> None:
        old = self.owner.pop(key, NO_LEASE)
        if old != NO_LEASE:
            self.keys[old].discard(key)

    @rule(lease_id=st.sampled_from(LIVE_IDS), key=st.sampled_from(KEYS))
    def attach(self, lease_id: int, key: bytes) -> None:
        got = self._replicated(lambda le: le.attach(lease_id, key))
        if lease_id not in self.ttl:
            assert got == ("LeaseNotFound", None)
            return
        assert got == ("ok", None)
        self._attach(lease_id, key)

    @rule(lease_id=st.sampled_from(LIVE_IDS), key=st.sampled_from(KEYS))
    def detach(self, lease_id: int, key: bytes) -> None:
        got = self._replicated(lambda le: le.detach(lease_id, key))
        if lease_id not in self.ttl:
            assert got == ("LeaseNotFound", None)
            return
        assert got == ("ok", None)
        if self.owner.get(key) == lease_id:
            self._detach(key)

    @rule(lease_id=st.sampled_from([NO_LEASE, *LIVE_IDS]), key=st.sampled_from(KEYS))
    def put(self, lease_id: int, key: bytes) -> None:
        got = self._replicated(lambda le: le.on_put(key, lease_id))
        if lease_id != NO_LEASE and lease_id not in self.ttl:
            assert got == ("LeaseNotFound", None)
            return
        assert got == ("ok", None)
        self._detach(key)
        if lease_id != NO_LEASE:
            self._attach(lease_id, key)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: bytes) -> None:
        assert self._replicated(lambda le: le.on_delete(key)) == ("ok", None)
        self._detach(key)

    @rule()
    def snapshot(self) -> None:
        data = self.le.snapshot()
        self.shadow = Lessor.from_snapshot(
            data, min_ttl=MIN_TTL, revoke_rate=self.REVOKE_RATE, expired_retry_interval=RETRY
        )
        assert self.shadow.snapshot() == data

    # -- leader-only time ------------------------------------------------------------

    @rule(extend=st.sampled_from([0.0, 0.0, 0.5]))
    def promote(self, extend: float) -> None:
        self.le.promote(self.now, extend=extend)
        self.leader = True
        for lid, ttl in self.ttl.items():
            self.lower[lid] = self.now + extend + ttl
            actual = self.le.expiry(lid)
            assert actual >= self.lower[lid]  # (a): a promote never shortens a lease
            if len(self.ttl) < self.REVOKE_RATE:
                assert actual == self.lower[lid]
            self.notify[lid] = actual

    @rule()
    def demote(self) -> None:
        self.le.demote()
        self.leader = False
        self.lower.clear()
        self.notify.clear()

    @rule(lease_id=st.sampled_from(LIVE_IDS))
    def renew(self, lease_id: int) -> None:
        try:
            got: object = self.le.renew(lease_id, self.now)
        except (NotPrimary, LeaseNotFound) as exc:
            got = type(exc)
        if not self.leader:
            assert got is NotPrimary
        elif lease_id not in self.ttl:
            assert got is LeaseNotFound
        elif self.now >= self.le.expiry(lease_id):
            assert got is LeaseExpired
            assert self.now >= self.lower[lease_id]
        else:
            assert got == self.ttl[lease_id]
            self.lower[lease_id] = self.notify[lease_id] = self.now + self.ttl[lease_id]

    @rule(lease_id=st.sampled_from(LIVE_IDS), keys=st.booleans())
    def time_to_live(self, lease_id: int, keys: bool) -> None:
        if not self.leader:
            try:
                self.le.time_to_live(lease_id, self.now)
            except NotPrimary:
                return
            raise AssertionError("time_to_live off the leader")
        got = self.le.time_to_live(lease_id, self.now, keys=keys)
        if lease_id not in self.ttl:
            assert got == TimeToLive(lease_id, -1, 0)
            return
        assert got.granted_ttl == self.ttl[lease_id]
        assert got.ttl == int(self.le.expiry(lease_id) - self.now)
        assert got.ttl >= int(self.lower[lease_id] - self.now)
        assert got.keys == (tuple(sorted(self.keys[lease_id])) if keys else ())

    @rule(dt=st.sampled_from(STEPS), limit=st.sampled_from(LIMITS))
    def advance(self, dt: float, limit: int) -> None:
        self.now += dt
        got = self.le.expired(self.now, limit)
        if not self.leader:
            assert got == []
            return
        due = sorted((at, lid) for lid, at in self.notify.items() if at <= self.now)
        assert got == [lid for _, lid in due[:limit]]  # (b), exactly
        for lid in got:
            assert self.now >= self.lower[lid]  # (a)
            self.notify[lid] = self.now + RETRY
        if limit >= len(self.ttl):
            # (b): every lease past its expiry is reported by now or was recently
            for lid in self.ttl:
                if self.le.expiry(lid) <= self.now:
                    assert self.notify[lid] > self.now

    # -- replicated answers ----------------------------------------------------------

    def _answers(self, le: Lessor) -> list[object]:
        out: list[object] = [le.leases(), len(le)]
        out += [le.lookup(lid) for lid in LIVE_IDS]
        out += [le.exists(lid) for lid in LIVE_IDS]
        out += [le.lease_of(k) for k in KEYS]
        return out

    @invariant()
    def replicated_answers_agree(self) -> None:
        assert self.le.leases() == sorted(self.ttl)
        for lid in LIVE_IDS:
            want = (
                LeaseInfo(lid, self.ttl[lid], tuple(sorted(self.keys[lid])))
                if lid in self.ttl
                else None
            )
            assert self.le.lookup(lid) == want
        for k in KEYS:
            assert self.le.lease_of(k) == self.owner.get(k, NO_LEASE)
        assert self.le.is_primary == self.leader
        if self.shadow is not None:
            assert self._answers(self.shadow) == self._answers(self.le)
            assert self.shadow.snapshot() == self.le.snapshot()
            assert self.shadow.expired(self.now + 1e9) == []  # a follower never expires


class SpreadingLessorMachine(LessorMachine):
    REVOKE_RATE = 3  # spread at >= 3 leases, 2 expiries a second


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LessorMachine.TestCase.settings = _SETTINGS
SpreadingLessorMachine.TestCase.settings = _SETTINGS
TestLessorAgainstModel = LessorMachine.TestCase
TestSpreadingLessorAgainstModel = SpreadingLessorMachine.TestCase
