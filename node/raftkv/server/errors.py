"""Every error a client can see, each with a stable code and exactly one HTTP status.

This is the one place where failures become statuses; handlers raise these and never
pick a status themselves.
"""

from __future__ import annotations

from ..raft import errors as raft_errors
from ..raft.core import UnsafeConfChange


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Gone(ApiError):
    status = 410
    code = "member_removed"


class PreconditionFailed(ApiError):
    status = 412
    code = "precondition_failed"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class InsufficientStorage(ApiError):
    """The space quota is exhausted: etcd's NOSPACE alarm is active (docs/etcd.md).
    Deletes, reads and compaction still work; writes again after the alarm is
    disarmed."""

    status = 507
    code = "no_space"


class Unavailable(ApiError):
    """Retry later. `code` says whether the write may have happened: `timeout` means
    it may still commit; every other code means it definitely did not."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


def overwritten() -> ApiError:
    """A write (or membership change) whose log index holds another entry: a new
    leader overwrote it, so it definitely did not happen."""
    return Unavailable(
        "leadership changed and the write was not committed; it is safe to retry",
        code="proposal_dropped",
    )


def indeterminate() -> ApiError:
    """A write that timed out or whose outcome a snapshot hid: it may have happened."""
    return Unavailable(
        "the write timed out: it may or may not have been committed; "
        "retry with the same X-Request-Id to find out",
        code="indeterminate",
    )


def shutting_down() -> ApiError:
    return Unavailable("member is shutting down", code="shutting_down")


def from_raft_error(exc: raft_errors.RaftError) -> ApiError:
    if isinstance(exc, raft_errors.NoLeader):
        return Unavailable(str(exc), code="no_leader")
    if isinstance(exc, raft_errors.TransferInProgress):
        return Unavailable(str(exc), code="leader_transfer_in_progress")
    if isinstance(exc, raft_errors.NotAMember):
        return Unavailable(str(exc), code="not_a_member")
    if isinstance(exc, raft_errors.ConfChangeInProgress):
        return Conflict(str(exc), code="conf_change_in_progress")
    if isinstance(exc, UnsafeConfChange):
        return Conflict(str(exc), code="unsafe_conf_change")
    if isinstance(exc, raft_errors.InvalidConfChange):
        return BadRequest(str(exc), code="invalid_conf_change")
    if isinstance(exc, raft_errors.NotLeader):
        return Unavailable(str(exc), code="not_leader")
    if isinstance(exc, raft_errors.ProposalDropped):
        return Unavailable(str(exc), code="proposal_dropped")
    return ApiError(str(exc), code=exc.code)
