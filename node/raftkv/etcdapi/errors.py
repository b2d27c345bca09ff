"""etcd's error table (`api/v3rpc/rpctypes/error.go` and `v3rpc/util.go`): every
refusal the adapter can give, as the gRPC status code and the exact `etcdserver: ...`
message clients match on (clientv3 turns these strings back into its typed errors,
and etcdctl prints them).

One place maps raftkv's errors onto it: the state machine's deterministic refusals
(`Failure` codes, which are the MVCC and lessor errors' `code`s) and the member's
`ApiError`s (no leader, timeouts, removed, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from ..kv.lease.errors import LeaseError
from ..kv.machine import Failure
from ..kv.mvcc.errors import MVCCError
from ..server import errors as E

Code = grpc.StatusCode


@dataclass(frozen=True, slots=True)
class EtcdError(Exception):
    """An RPC's failure as etcd reports it."""

    code: grpc.StatusCode
    message: str

    def __str__(self) -> str:
        return self.message


EMPTY_KEY = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
INVALID_SORT = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: invalid sort option")
COMPACTED = EtcdError(Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = EtcdError(
    Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
)
LEASE_NOT_FOUND = EtcdError(Code.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = EtcdError(Code.OUT_OF_RANGE, "etcdserver: too large lease TTL")
REQUEST_TOO_LARGE = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: request is too large")
NO_LEADER = EtcdError(Code.UNAVAILABLE, "etcdserver: no leader")
NOT_LEADER = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: not leader")
LEADER_CHANGED = EtcdError(Code.UNAVAILABLE, "etcdserver: leader changed")
NOT_CAPABLE = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: not capable")
STOPPED = EtcdError(Code.UNAVAILABLE, "etcdserver: server stopped")
TIMEOUT = EtcdError(Code.UNAVAILABLE, "etcdserver: request timed out")
MEMBER_NOT_FOUND = EtcdError(Code.NOT_FOUND, "etcdserver: member not found")
MEMBER_NOT_LEARNER = EtcdError(
    Code.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"
)
LEARNER_NOT_READY = EtcdError(
    Code.FAILED_PRECONDITION,
    "etcdserver: can only promote a learner member which is in sync with leader",
)
PEER_URL_EXIST = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
MEMBER_BAD_URLS = EtcdError(Code.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
BAD_LEADER_TRANSFEREE = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
NO_SPACE = EtcdError(Code.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
CORRUPT = EtcdError(Code.DATA_LOSS, "etcdserver: corrupt cluster")
AUTH_NOT_ENABLED = EtcdError(Code.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")

_BY_FAILURE: dict[str, EtcdError] = {
    "empty_key": EMPTY_KEY,
    "key_not_found": KEY_NOT_FOUND,
    "value_provided": VALUE_PROVIDED,
    "lease_provided": LEASE_PROVIDED,
    "too_many_ops": TOO_MANY_OPS,
    "duplicate_key": DUPLICATE_KEY,
    "compacted": COMPACTED,
    "future_revision": FUTURE_REV,
    "lease_not_found": LEASE_NOT_FOUND,
    "lease_expired": LEASE_NOT_FOUND,
    "lease_exists": LEASE_EXIST,
    "lease_ttl_too_large": LEASE_TTL_TOO_LARGE,
    "no_space": NO_SPACE,
    "corrupt": CORRUPT,
}
"""State-machine refusals (`Failure.code`, = the MVCC/lessor error's `code`)."""

_BY_API_CODE: dict[str, EtcdError] = {
    "no_leader": NO_LEADER,
    "not_leader": NO_LEADER,
    "leader_transfer_in_progress": LEADER_CHANGED,
    "proposal_dropped": LEADER_CHANGED,
    "timeout": TIMEOUT,
    "shutting_down": STOPPED,
    "member_removed": STOPPED,
    "joining": NOT_CAPABLE,
    "not_a_member": NOT_CAPABLE,
    "not_found": MEMBER_NOT_FOUND,
    "member_not_found": MEMBER_NOT_FOUND,
    "not_a_learner": MEMBER_NOT_LEARNER,
    "learner_not_ready": LEARNER_NOT_READY,
    "peer_url_exists": PEER_URL_EXIST,
    "invalid_url": MEMBER_BAD_URLS,
}
"""The member's `ApiError` codes (`server.errors`, `server.membership`)."""

INDETERMINATE = EtcdError(
    Code.UNAVAILABLE,
    "etcdserver: request timed out (raftkv: the request may still be committed; "
    "read before retrying a write that is not idempotent)",
)
"""etcd's ErrTimeout, with what etcd leaves unsaid: the proposal may still commit."""


def from_failure(f: Failure) -> EtcdError:
    return _BY_FAILURE.get(f.code) or EtcdError(Code.INVALID_ARGUMENT, f.message)


def from_store_error(exc: MVCCError | LeaseError) -> EtcdError:
    return from_failure(Failure.of(exc))


def from_api_error(exc: E.ApiError) -> EtcdError:
    if exc.code == "indeterminate":
        return INDETERMINATE
    known = _BY_API_CODE.get(exc.code)
    if known is not None:
        return known
    if exc.status == 503:
        return EtcdError(Code.UNAVAILABLE, f"etcdserver: {exc}")
    if exc.status in (404, 410):
        return EtcdError(Code.NOT_FOUND, f"etcdserver: {exc}")
    if exc.status in (409, 412):
        return EtcdError(Code.FAILED_PRECONDITION, f"etcdserver: {exc}")
    if exc.status in (400, 413):
        return EtcdError(Code.INVALID_ARGUMENT, f"etcdserver: {exc}")
    return EtcdError(Code.INTERNAL, f"etcdserver: {exc}")
