"""etcd v3's leases: a lessor with etcd v3.5's semantics (server/lease/lessor.go).

Pure and deterministic (sans-I/O: no clocks, threads or asyncio; the caller passes
`now`, in seconds from a monotonic clock), so that every Raft member that applies the
same commands holds the same replicated state; not wired into the member yet.

    lessor = Lessor(min_ttl=5)
    store = MVCCStore(lease_exists=lessor.exists)
    lessor.grant(0, 10, now)            # -> Granted(id=1, ttl=10)        (applied)
    resp = store.put(b"k", b"v", lease=1)
    lessor.apply_events(resp.events)    # attaches b"k" to lease 1         (applied)
    lessor.promote(now)                 # this member became leader
    lessor.renew(1, now)                # a keep-alive -> 10               (leader)
    lessor.expired(now)                 # -> ids to propose revokes for    (leader)
    keys = lessor.revoke(1)             # -> [b"k"]: delete them in one txn (applied)

Choices, where etcd leaves room:

* Id 0 allocates the first free positive id from a replicated cursor (etcd picks a
  random id on the proposing member instead; here apply picks, identically everywhere).
* `promote` refreshes every lease to its full TTL (+ `extend`) and spreads piled-up
  expiries as etcd does when at least `revoke_rate` leases exist.
* No lease checkpointing (off by default in etcd >= 3.4): a new leader gives every
  lease its full TTL again.
* A keep-alive of an expired, not yet revoked lease raises `LeaseExpired` (a
  `LeaseNotFound`) at once, where etcd blocks until the revoke is applied.
"""

from .errors import (
    LeaseError,
    LeaseExists,
    LeaseExpired,
    LeaseNotFound,
    LeaseTTLTooLarge,
    NotPrimary,
    SnapshotError,
)
from .lessor import (
    DEFAULT_EXPIRED_RETRY_INTERVAL,
    DEFAULT_MIN_TTL,
    DEFAULT_REVOKE_RATE,
    FOREVER,
    NO_LEASE,
    Granted,
    LeaseInfo,
    Lessor,
    TimeToLive,
    min_ttl_for,
)
from .snapshot import MAX_LEASE_ID, MAX_LEASE_TTL, MIN_LEASE_ID

__all__ = [
    "DEFAULT_EXPIRED_RETRY_INTERVAL",
    "DEFAULT_MIN_TTL",
    "DEFAULT_REVOKE_RATE",
    "FOREVER",
    "MAX_LEASE_ID",
    "MAX_LEASE_TTL",
    "MIN_LEASE_ID",
    "NO_LEASE",
    "Granted",
    "LeaseError",
    "LeaseExists",
    "LeaseExpired",
    "LeaseInfo",
    "LeaseNotFound",
    "LeaseTTLTooLarge",
    "Lessor",
    "NotPrimary",
    "SnapshotError",
    "TimeToLive",
    "min_ttl_for",
]
