"""`Lessor`: etcd v3.5's lessor (server/lease/lessor.go), pure and deterministic.

Two kinds of state:

* Replicated: lease ids, granted TTLs, attached keys and the cursor of id allocation.
  They change only through calls made while applying committed commands (`grant`,
  `revoke`, `attach`, `detach`, `on_put`, `on_delete`, `apply_events`, `restore`), so
  every member that applies the same log holds the same state and the same
  `snapshot()` bytes.
* Leader-local time: expiry times. Only the primary (the Raft leader) counts time:
  `promote(now)` gives every lease its full TTL again from `now`, `demote()` sets every
  expiry to forever, `renew` (a keep-alive) and `time_to_live` are served by the
  primary only, and `expired(now)` lists leases whose time is up so that the leader
  can propose their revokes. Time is the caller's `now` (seconds, from a monotonic
  clock); there are no clocks, threads or I/O here.

Lease checkpointing (etcd >= 3.4, `--experimental-enable-lease-checkpoint`, off by
default) is not implemented: raftkv follows etcd's default, so a new leader gives every
lease its full TTL again (plus `extend`), never less.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..mvcc.kv import Event, EventType
from . import snapshot
from .errors import LeaseExists, LeaseExpired, LeaseNotFound, LeaseTTLTooLarge, NotPrimary
from .snapshot import MAX_LEASE_ID, MAX_LEASE_TTL, MIN_LEASE_ID

NO_LEASE = 0
DEFAULT_MIN_TTL = 5
DEFAULT_REVOKE_RATE = 1000
"""etcd's leaseRevokeRate: leases revoked per second at most."""
DEFAULT_EXPIRED_RETRY_INTERVAL = 3.0
"""etcd's defaultExpiredleaseRetryInterval: a lease `expired` reported is not reported
again for this long, unless it is renewed or the leader changes."""
FOREVER = math.inf


def min_ttl_for(election_ticks: int, tick_ms: int) -> int:
    """etcd's minimum lease TTL for a Raft config (etcdserver/server.go):
    ceil(((3 * election_ticks) // 2) * tick_ms / 1000) seconds, i.e. 1.5 election
    timeouts (2 s with etcd's defaults, 10 ticks of 100 ms); at least 1."""
    ms = (3 * election_ticks) // 2 * tick_ms
    return max(1, -(-ms // 1000))


@dataclass(frozen=True, slots=True)
class Granted:
    """The answer to a grant: the lease id (allocated when 0 was asked for) and the
    granted TTL (raised to the minimum TTL)."""

    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The replicated facts of one lease, the same on every member."""

    id: int
    ttl: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TimeToLive:
    """etcd's LeaseTimeToLiveResponse: `ttl` is the remaining TTL in whole seconds
    (truncated toward zero, as etcd's int64(Remaining().Seconds())); -1 with
    granted_ttl 0 and no keys for a lease that does not exist. `keys` only when asked
    for, sorted."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...] = ()


@dataclass(slots=True)
class _Lease:
    id: int
    ttl: int
    keys: set[bytes] = field(default_factory=set)
    expiry: float = FOREVER


def _check_id(lease_id: int) -> None:
    if type(lease_id) is not int or not MIN_LEASE_ID <= lease_id <= MAX_LEASE_ID:
        raise ValueError(f"a lease id is an int64, not {lease_id!r}")


def _check_key(key: bytes) -> None:
    if type(key) is not bytes:
        raise ValueError(f"a key is bytes, not {type(key).__name__}")


def _check_now(now: float) -> None:
    if type(now) not in (int, float) or not math.isfinite(now):
        raise ValueError(f"now is a finite number of seconds, not {now!r}")


class Lessor:
    __slots__ = (
        "_heap",
        "_items",
        "_leases",
        "_min_ttl",
        "_next_id",
        "_notify_at",
        "_primary",
        "_retry",
        "_revoke_rate",
    )

    def __init__(
        self,
        *,
        min_ttl: int = DEFAULT_MIN_TTL,
        revoke_rate: int = DEFAULT_REVOKE_RATE,
        expired_retry_interval: float = DEFAULT_EXPIRED_RETRY_INTERVAL,
    ) -> None:
        """`min_ttl`: granted TTLs below it are raised to it (etcd: `min_ttl_for` of
        the Raft config). `revoke_rate`: etcd's leaseRevokeRate; `promote` spreads
        expiries when at least this many leases exist, and `expired`'s default limit
        is half of it (etcd revokes that many every 500 ms). Configuration, not
        state: every member must use the same `min_ttl`."""
        if type(min_ttl) is not int or not 1 <= min_ttl <= MAX_LEASE_TTL:
            raise ValueError(f"min_ttl must be an int in [1, {MAX_LEASE_TTL}]")
        if type(revoke_rate) is not int or revoke_rate < 1:
            raise ValueError("revoke_rate must be a positive int")
        if not 0 <= expired_retry_interval < FOREVER:
            raise ValueError("expired_retry_interval must be a finite number >= 0")
        self._min_ttl = min_ttl
        self._revoke_rate = revoke_rate
        self._retry = float(expired_retry_interval)
        self._leases: dict[int, _Lease] = {}
        self._items: dict[bytes, int] = {}
        """etcd's itemMap: key -> the lease it is attached to."""
        self._next_id = 1
        """Where the search for a free id starts when a grant asks for id 0."""
        self._primary = False
        self._notify_at: dict[int, float] = {}
        """etcd's leaseExpiredNotifier: lease -> when `expired` should look at it next
        (its expiry, or a retry time after it was reported). Primary only."""
        self._heap: list[tuple[float, int]] = []
        """(notify time, id), with stale entries skipped lazily."""

    # -- configuration and state -----------------------------------------------------

    @property
    def min_ttl(self) -> int:
        return self._min_ttl

    @property
    def is_primary(self) -> bool:
        return self._primary

    def __len__(self) -> int:
        return len(self._leases)

    def exists(self, lease_id: int) -> bool:
        """Whether the lease exists: pass as MVCCStore's `lease_exists`."""
        return lease_id in self._leases

    def leases(self) -> list[int]:
        """Every lease id, in order."""
        return sorted(self._leases)

    def lookup(self, lease_id: int) -> LeaseInfo | None:
        """The replicated facts of a lease (any member), or None."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease.id, lease.ttl, tuple(sorted(lease.keys)))

    def lease_of(self, key: bytes) -> int:
        """The lease `key` is attached to, or NO_LEASE (etcd's GetLease)."""
        return self._items.get(key, NO_LEASE)

    def expiry(self, lease_id: int) -> float:
        """When the lease expires on this member: FOREVER unless it is the primary.
        Raises LeaseNotFound."""
        return self._get(lease_id).expiry

    def _get(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        return lease

    # -- replicated changes ----------------------------------------------------------

    def grant(self, lease_id: int, ttl: int, now: float) -> Granted:
        """etcd's Grant. `lease_id` 0 allocates the first free id from the allocation
        cursor on (positive ids only, wrapping around), so every member picks the same.
        A TTL above MAX_LEASE_TTL raises LeaseTTLTooLarge, a taken id LeaseExists
        (checked in that order, as etcd does); a TTL below the minimum, zero and
        negative ones too, is raised to it. On the primary the lease expires at
        now + TTL; elsewhere never."""
        _check_id(lease_id)
        if type(ttl) is not int:
            raise ValueError(f"a TTL is an int, not {ttl!r}")
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLarge(ttl)
        if lease_id != NO_LEASE and lease_id in self._leases:
            raise LeaseExists(lease_id)
        if self._primary:
            _check_now(now)
        if lease_id == NO_LEASE:
            lease_id = self._allocate()
        lease = _Lease(lease_id, max(ttl, self._min_ttl))
        self._leases[lease_id] = lease
        if self._primary:
            self._refresh(lease, now)
        return Granted(lease_id, lease.ttl)

    def _allocate(self) -> int:
        if len(self._leases) >= MAX_LEASE_ID:  # pragma: no cover - 2**63 leases
            raise LeaseExists(self._next_id)
        lid = self._next_id
        while lid in self._leases:
            lid = lid + 1 if lid < MAX_LEASE_ID else 1
        self._next_id = lid + 1 if lid < MAX_LEASE_ID else 1
        return lid

    def revoke(self, lease_id: int) -> list[bytes]:
        """etcd's Revoke: forget the lease and return its keys, sorted (etcd deletes
        them in that order so that every member's backend is the same). The caller
        deletes them in the same MVCC transaction; their delete events, passed to
        `on_delete` or `apply_events` afterwards, change nothing here. Raises
        LeaseNotFound."""
        lease = self._get(lease_id)
        del self._leases[lease_id]
        self._notify_at.pop(lease_id, None)
        for key in lease.keys:
            del self._items[key]
        return sorted(lease.keys)

    def attach(self, lease_id: int, key: bytes) -> None:
        """etcd's Attach. A key belongs to one lease at most: attaching it moves it
        from the lease it was on (etcd's MVCC always detaches first, to the same
        effect). Raises LeaseNotFound."""
        _check_key(key)
        lease = self._get(lease_id)
        old = self._items.get(key, NO_LEASE)
        if old != NO_LEASE and old != lease_id:
            self._leases[old].keys.discard(key)
        lease.keys.add(key)
        self._items[key] = lease_id

    def detach(self, lease_id: int, key: bytes) -> None:
        """etcd's Detach; a key that is not on this lease is left alone. Raises
        LeaseNotFound."""
        _check_key(key)
        lease = self._get(lease_id)
        if key in lease.keys:
            lease.keys.discard(key)
            del self._items[key]

    def on_put(self, key: bytes, lease_id: int) -> None:
        """What etcd's MVCC put does to the lessor: detach `key` from the lease it is
        on, if that is another one, and attach it to `lease_id` (none for NO_LEASE).
        Raises LeaseNotFound, before any change, when `lease_id` does not exist."""
        _check_key(key)
        if lease_id != NO_LEASE:
            self._get(lease_id)
        old = self._items.get(key, NO_LEASE)
        if old != NO_LEASE and old != lease_id:
            self.detach(old, key)
        if lease_id != NO_LEASE:
            self.attach(lease_id, key)

    def on_delete(self, key: bytes) -> None:
        """What etcd's MVCC delete does to the lessor: detach the key from its lease."""
        _check_key(key)
        old = self._items.get(key, NO_LEASE)
        if old != NO_LEASE:
            self.detach(old, key)

    def apply_events(self, events: Iterable[Event]) -> None:
        """`on_put`/`on_delete` for the events of one MVCC write, in order. Raises
        LeaseNotFound, before any change, when a put names a lease that does not
        exist (MVCCStore with `lease_exists=lessor.exists` refuses those first)."""
        evs = list(events)
        if not self._items and all(ev.kv.lease == NO_LEASE for ev in evs):
            return  # no key is on a lease and none is put on one: nothing changes
        for ev in evs:
            if ev.type is EventType.PUT and ev.kv.lease != NO_LEASE:
                self._get(ev.kv.lease)
        for ev in evs:
            if ev.type is EventType.PUT:
                self.on_put(ev.kv.key, ev.kv.lease)
            else:
                self.on_delete(ev.kv.key)

    # -- leader-only time ------------------------------------------------------------

    def promote(self, now: float, *, extend: float = 0.0) -> None:
        """This member became leader (etcd calls it once the new term's empty entry is
        applied, with extend = the election timeout). Every lease expires at
        now + extend + its full TTL, never earlier: a leader change must not expire a
        lease early. Then, as etcd does when at least `revoke_rate` leases exist,
        expiries that pile up are spread so that no more than 3/4 of the revoke rate
        fall in any one second: a lease is only ever pushed later."""
        _check_now(now)
        if not 0 <= extend < FOREVER:
            raise ValueError("extend must be a finite number >= 0")
        self._primary = True
        self._notify_at.clear()
        self._heap.clear()
        for lease in self._leases.values():
            self._refresh(lease, now, extend)
        if len(self._leases) < self._revoke_rate:
            return
        self._spread(now, extend)

    def _spread(self, now: float, extend: float) -> None:
        """etcd's Promote, second half: walk leases by expiry (then id, so that the
        result is deterministic) in windows of one second; past the target count in a
        window, each lease is delayed by its rank's share of a second."""
        leases = sorted(self._leases.values(), key=lambda lease: (lease.expiry, lease.id))
        base = leases[0].expiry - now
        next_window = base + 1.0
        expires = 0
        target = max(1, (3 * self._revoke_rate) // 4)
        for lease in leases:
            remaining = lease.expiry - now
            if remaining > next_window:
                base = remaining
                next_window = base + 1.0
                expires = 1
                continue
            expires += 1
            if expires <= target:
                continue
            delay = expires / target - (remaining - base)
            next_window = base + delay
            self._refresh(lease, now, delay + extend)

    def demote(self) -> None:
        """This member stopped leading: no lease expires here any more."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = FOREVER
        self._notify_at.clear()
        self._heap.clear()

    def renew(self, lease_id: int, now: float) -> int:
        """etcd's Renew (a keep-alive): the lease expires at now + TTL again; returns
        the granted TTL. Raises NotPrimary off the leader, LeaseNotFound for an
        unknown lease and LeaseExpired (a LeaseNotFound) for one whose time is up but
        whose revoke has not been applied yet."""
        if not self._primary:
            raise NotPrimary()
        _check_now(now)
        lease = self._get(lease_id)
        if now >= lease.expiry:
            raise LeaseExpired(lease_id)
        self._refresh(lease, now)
        return lease.ttl

    def time_to_live(self, lease_id: int, now: float, *, keys: bool = False) -> TimeToLive:
        """etcd's LeaseTimeToLive, served by the leader (etcd forwards it there, so
        NotPrimary elsewhere). A lease that does not exist answers ttl -1 (etcd's
        v3rpc turns ErrLeaseNotFound into that). The remaining TTL is truncated toward
        zero, so it is 0, then negative, for a lease that has expired but is not
        revoked yet, as in etcd."""
        if not self._primary:
            raise NotPrimary()
        _check_now(now)
        lease = self._leases.get(lease_id)
        if lease is None:
            return TimeToLive(lease_id, -1, 0)
        return TimeToLive(
            lease_id,
            int(lease.expiry - now),
            lease.ttl,
            tuple(sorted(lease.keys)) if keys else (),
        )

    def expired(self, now: float, limit: int | None = None) -> list[int]:
        """Leases whose time is up, for the leader to propose their revokes: at most
        `limit` (default: half the revoke rate, etcd's batch per 500 ms), earliest
        expiry first, then by id. A lease reported is not reported again for
        `expired_retry_interval` seconds (etcd's retry of a revoke that got lost),
        unless renewed or a leader change refreshes it. Empty unless primary."""
        if limit is None:
            limit = max(1, self._revoke_rate // 2)
        if type(limit) is not int or limit < 1:
            raise ValueError("limit must be a positive int")
        _check_now(now)
        if not self._primary:
            return []
        heap, notify_at = self._heap, self._notify_at
        out: list[int] = []
        while heap and len(out) < limit:
            at, lid = heap[0]
            if notify_at.get(lid) != at:  # renewed, revoked or reported since
                heapq.heappop(heap)
                continue
            if now < at:
                break
            heapq.heappop(heap)
            # notify_at >= expiry always (it is the expiry, or a retry after it).
            # Dropped until re-added below, so that a duplicate entry (a renew to the
            # same expiry) is stale.
            del notify_at[lid]
            out.append(lid)
        for lid in out:
            self._notify(lid, now + self._retry)
        return out

    def _refresh(self, lease: _Lease, now: float, extend: float = 0.0) -> None:
        lease.expiry = now + extend + lease.ttl
        self._notify(lease.id, lease.expiry)

    def _notify(self, lease_id: int, at: float) -> None:
        self._notify_at[lease_id] = at
        heap = self._heap
        heapq.heappush(heap, (at, lease_id))
        if len(heap) > 2 * len(self._notify_at) + 64:  # drop the stale entries
            self._heap = [(t, lid) for lid, t in self._notify_at.items()]
            heapq.heapify(self._heap)

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Deterministic bytes of the replicated state: equal lessors give equal
        bytes. Expiry times are not included."""
        return snapshot.encode(
            self._next_id,
            [
                (lid, self._leases[lid].ttl, sorted(self._leases[lid].keys))
                for lid in sorted(self._leases)
            ],
        )

    def restore(self, data: bytes) -> None:
        """Replace the replicated state with a snapshot's; the lessor is then demoted
        (call `promote` if this member leads). On SnapshotError nothing changes.
        Configuration (min_ttl, revoke_rate, retry interval) is kept."""
        state = snapshot.decode(data)
        self.demote()
        self._next_id = state.next_id
        self._leases = {lid: _Lease(lid, ttl, keys) for lid, (ttl, keys) in state.leases.items()}
        self._items = {key: lid for lid, (_, keys) in state.leases.items() for key in keys}

    @classmethod
    def from_snapshot(
        cls,
        data: bytes,
        *,
        min_ttl: int = DEFAULT_MIN_TTL,
        revoke_rate: int = DEFAULT_REVOKE_RATE,
        expired_retry_interval: float = DEFAULT_EXPIRED_RETRY_INTERVAL,
    ) -> Lessor:
        lessor = cls(
            min_ttl=min_ttl,
            revoke_rate=revoke_rate,
            expired_retry_interval=expired_retry_interval,
        )
        lessor.restore(data)
        return lessor
