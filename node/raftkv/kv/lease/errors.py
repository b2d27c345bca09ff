"""The lessor's errors: one class per etcd error, each with a stable `code`.

Messages are etcd's (v3.5 `api/v3rpc/rpctypes`, which `v3rpc/util.go` maps the
lessor's errors to), so a client that matches on them keeps working; callers should
match on the class or `code` instead. Every error is raised before anything changes: a
failed call leaves the lessor as it was.

`LeaseNotFound` is also an `mvcc.LeaseNotFound` (a put with an unknown lease raises
that one), so one `except` catches an unknown lease from either.
"""

from __future__ import annotations

from typing import ClassVar

from ..mvcc import errors as mvcc_errors


class LeaseError(Exception):
    """Base class; `code` is stable (an API layer maps each to one status)."""

    code: ClassVar[str] = "lease_error"
    message: ClassVar[str] = "lease error"

    def __init__(self, detail: str | None = None) -> None:
        # Not super(): LeaseNotFound's next base is mvcc.LeaseNotFound, whose
        # __init__ takes a lease id.
        Exception.__init__(self, detail or self.message)


class LeaseNotFound(LeaseError, mvcc_errors.LeaseNotFound):
    """etcd's ErrLeaseNotFound: no lease with this id (never granted, or revoked)."""

    code = "lease_not_found"
    message = "etcdserver: requested lease not found"

    def __init__(self, lease: int) -> None:
        self.lease = lease
        LeaseError.__init__(self, f"{self.message} (lease {lease:x})")


class LeaseExpired(LeaseNotFound):
    """A keep-alive of a lease whose time is up but whose revoke has not been applied
    yet. etcd's Renew blocks until the revoke is applied and then answers
    ErrLeaseNotFound (the keep-alive stream reports TTL 0); a sans-I/O lessor cannot
    block, so it raises this subclass at once: an API layer may wait for the revoke
    (or a leader change) as etcd does, or answer TTL 0 right away."""

    code = "lease_expired"


class LeaseExists(LeaseError):
    code = "lease_exists"
    message = "etcdserver: lease already exists"

    def __init__(self, lease: int) -> None:
        self.lease = lease
        super().__init__(f"{self.message} (lease {lease:x})")


class LeaseTTLTooLarge(LeaseError):
    code = "lease_ttl_too_large"
    message = "etcdserver: too large lease TTL"

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        super().__init__(f"{self.message} ({ttl} s)")


class NotPrimary(LeaseError):
    """A leader-only call (renew, time_to_live) on a lessor that is not the primary.
    etcd's ErrNotPrimary, which its server never shows a client: it forwards the
    request to the leader instead, and so should the caller."""

    code = "not_primary"
    message = "not a primary lessor"


class SnapshotError(LeaseError, ValueError):
    """Snapshot bytes are corrupt, truncated or of an unknown format."""

    code = "bad_snapshot"
    message = "bad lease snapshot"
