"""From what the state machine answered to what the client API answers: the response
header every JSON answer carries, and one error (status and code) per refusal."""

from __future__ import annotations

from typing import Any

from ..kv.alarm import NO_SPACE
from ..kv.lease.errors import LeaseError
from ..kv.machine import REQUEST_ID_CONFLICT, Failure, Outcome
from ..kv.mvcc.errors import MVCCError
from ..server import errors as E
from ..server.node import Node

_NOT_FOUND = frozenset({"lease_not_found", "lease_expired", "key_not_found"})
_CONFLICT = frozenset({REQUEST_ID_CONFLICT, "lease_exists"})


class Compacted(E.ApiError):
    status = 410
    code = "compacted"


def header(node: Node, revision: int | None = None) -> dict[str, Any]:
    """etcd's ResponseHeader: which cluster and member answered, at which store
    revision (the current one unless given) and Raft term."""
    raw = node.raw
    return {
        "cluster_id": node.cfg.cluster_id,
        "member_id": node.member_id,
        "revision": node.kv.revision if revision is None else revision,
        "raft_term": raw.term if raw is not None else 0,
    }


def header_fields(node: Node, revision: int) -> dict[str, str]:
    """The response header as HTTP headers, for answers that are not JSON objects of
    ours (a raw value) or whose body predates it (single-key writes)."""
    raw = node.raw
    return {
        "X-Raftkv-Cluster-Id": node.cfg.cluster_id,
        "X-Raftkv-Member-Id": str(node.member_id),
        "X-Raftkv-Store-Revision": str(revision),
        "X-Raftkv-Raft-Term": str(raw.term if raw is not None else 0),
    }


def failure_error(f: Failure) -> E.ApiError:
    extra: dict[str, object] = dict(f.extra)
    if f.code == "compacted":
        return Compacted(f.message, extra=extra)
    if f.code in _NOT_FOUND:
        return E.NotFound(f.message, code=f.code, extra=extra)
    if f.code in _CONFLICT:
        return E.Conflict(f.message, code=f.code, extra=extra)
    if f.code == NO_SPACE:
        return E.InsufficientStorage(f.message, extra=extra)
    if f.code == "corrupt":  # a CORRUPT alarm raised by hand (docs/etcd.md)
        return E.ApiError(f.message, code=f.code, extra=extra)
    return E.BadRequest(f.message, code=f.code, extra=extra)


def store_error(exc: MVCCError | LeaseError) -> E.ApiError:
    """The same mapping for a refusal raised by a read (a range at a compacted or
    future revision)."""
    return failure_error(Failure.of(exc))


def check(out: Outcome) -> Outcome:
    if out.failure is not None:
        raise failure_error(out.failure)
    return out
