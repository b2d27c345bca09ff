"""The MVCC store's errors: one class per etcd error, each with a stable `code`.

Messages are etcd's (v3.5, `mvcc` and `rpctypes`), so a client that matches on them
keeps working; callers should match on the class or `code` instead. Every error is
raised before anything changes: a failed call leaves the store as it was.
"""

from __future__ import annotations

from typing import ClassVar


class MVCCError(Exception):
    """Base class; `code` is stable (an API layer maps each to one status)."""

    code: ClassVar[str] = "mvcc_error"
    message: ClassVar[str] = "mvcc error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.message)


class Compacted(MVCCError):
    """The requested revision is below the compact revision (a read), or at or
    below it (a compaction). `compact_revision` is the store's compact revision."""

    code = "compacted"
    message = "mvcc: required revision has been compacted"

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"{self.message} (compact revision {compact_revision})")


class FutureRevision(MVCCError):
    code = "future_revision"
    message = "mvcc: required revision is a future revision"

    def __init__(self, revision: int, current_revision: int) -> None:
        self.revision = revision
        self.current_revision = current_revision
        super().__init__(
            f"{self.message} (revision {revision}, current revision {current_revision})"
        )


class DuplicateKey(MVCCError):
    """A txn writes one key twice: two puts, or a put inside a deleted range (on
    either branch of a nested txn, since both are checked before the compares run)."""

    code = "duplicate_key"
    message = "etcdserver: duplicate key given in txn request"


class TooManyOps(MVCCError):
    code = "too_many_ops"
    message = "etcdserver: too many operations in txn request"


class EmptyKey(MVCCError):
    code = "empty_key"
    message = "etcdserver: key is not provided"


class KeyNotFound(MVCCError):
    """A put with ignore_value or ignore_lease of a key that does not exist."""

    code = "key_not_found"
    message = "etcdserver: key not found"


class ValueProvided(MVCCError):
    """A put with ignore_value that also carries a value."""

    code = "value_provided"
    message = "etcdserver: value is provided"


class LeaseProvided(MVCCError):
    """A put with ignore_lease that also carries a lease."""

    code = "lease_provided"
    message = "etcdserver: lease is provided"


class LeaseNotFound(MVCCError):
    code = "lease_not_found"
    message = "etcdserver: requested lease not found"

    def __init__(self, lease: int) -> None:
        self.lease = lease
        super().__init__(f"{self.message} (lease {lease:x})")


class InvalidCompare(MVCCError):
    """A compare whose operand does not fit its target (bytes for VALUE, an int
    otherwise)."""

    code = "invalid_compare"
    message = "invalid compare: operand type does not match the target"


class SnapshotError(MVCCError, ValueError):
    """Snapshot bytes are corrupt, truncated or of an unknown format."""

    code = "bad_snapshot"
    message = "bad mvcc snapshot"
