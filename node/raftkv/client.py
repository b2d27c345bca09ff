"""HTTP client for the raftkv client API (DESIGN.md), sync (`Client`) and async
(`AsyncClient`) with the same methods; used by the CLI, the operator and the tests.

Endpoints and retries
    The client holds a list of member base URLs and sticks to the last one that
    answered. Reads (GET) move on to the next endpoint on a connection error or a
    502/503/504; every call moves on from a member that answers 410 (removed from the
    cluster). KV writes (PUT/DELETE) carry an `X-Request-Id` header: a fresh random
    id (32 hex chars) per logical write, reused verbatim on every retry of that write.
    The server turns it into the command's request id and the state machine applies
    each id at most once, replaying the original result for repeats; that is what makes
    it safe to retry a write whose first attempt may have committed (a lost response, a
    timeout, a 503 "indeterminate"). Membership and leader-transfer requests also send
    an id, but are only retried when the request certainly did not take effect: the
    connection failed before the request was sent, or a 503 other than "indeterminate".
    When every attempt failed, a write whose effect is unknown raises `Indeterminate`;
    otherwise `Unavailable`. Attempts: `retries + 1` rounds over all endpoints, sleeping
    `backoff` (doubling, capped by `max_backoff`, or the server's Retry-After if larger
    and still under the cap) between rounds.

Wire shapes (the contract the server implements; "rev" is a Raft index, an integer)
    PUT /v1/kv/{key}      body = raw value; headers If-Match: "<rev>" | If-None-Match: *
                          200 {"revision": rev, "prev_revision": rev|0}
    GET /v1/kv/{key}      [?consistency=serializable]; 200 raw value bytes,
                          ETag: "<rev>"; 404 {"error": "not_found"} when absent
    DELETE /v1/kv/{key}   headers If-Match: "<rev>"; 200 {"revision": rev,
                          "prev_revision": rev|0, "deleted": bool} (deleting an absent key
                          succeeds with deleted=false, like etcd)
    GET /v1/kv?prefix=p&limit=n[&start_after=k][&consistency=serializable]
                          200 {"items": [{"key": str, "value": base64 str,
                          "revision": rev}], "more": bool}; keys ascending, strictly after
                          start_after; "more" says whether keys beyond the page exist
    GET /v1/members       200 {"members": [member]}, member = {"id": int, "name": str,
                          "peer_urls": [str], "client_urls": [str], "learner": bool}
    POST /v1/members      {"peer_urls": [str], "name": str|null, "learner": bool,
                          "id": int (optional), "client_urls": [str] (optional)}
                          200/201 {"member": member}
    POST /v1/members/{id}/promote   200 {"member": member}
    DELETE /v1/members/{id}         200 {} (any JSON object)
    POST /v1/leader/transfer        {"to": int|null (null: leader picks)}
                                    200 {"leader": int} (the new leader if known)
    GET /v1/status        200 {"id", "name", "role": "leader"|"follower"|"candidate"|
                          "pre_candidate", "leader": int (0 = none), "term",
                          "commit_index", "applied_index", "last_index",
                          "snapshot_index", "members": [member], "progress":
                          {"<id>": {"match", "next", "state": "probe"|"replicate"|
                          "snapshot", "learner", "recent_active"}} (leader only, else {})}
    GET /v1/snapshot      [?consistency=serializable]; 200 application/octet-stream,
                          the state machine in KVStore snapshot format (own CRC32),
                          X-Raftkv-Applied-Index: int, X-Raftkv-Sha256: hex of the body
    GET /healthz, GET /readyz   2xx = healthy / ready
    errors                {"error": code, "message": str, ...}; 412 adds
                          "revision": the key's current revision (0 = absent) and may
                          set ETag; 503 sets Retry-After (seconds) and uses the code
                          "indeterminate" when a write was proposed but not known to be
                          applied in time (it may still commit), any other code when it
                          was certainly not applied (e.g. "no_leader").

Every JSON answer is read with its model in `raftkv.api.schema` (strict JSON types; a
field with a default may be absent or null) and converted to the result types below; an
answer that does not fit raises `BadResponse` (code "bad_response").

Coordination calls (etcd v3's range, txn, compaction, leases and watch; docs/api.md,
"Python client"): their wire shapes, the `Txn` builder and the result types are in
`raftkv.client_ops`, the watch in `raftkv.client_watch`, Lease / Lock / Election in
`raftkv.concurrency`. A 410 `compacted` raises `Compacted` at once (unlike a 410 from a
removed member, every member would answer the same); 404 `lease_not_found` raises
`LeaseNotFound`.

Keys are percent-encoded as one path segment (`/` becomes %2F, and "." / ".." are
fully encoded so no URL normaliser treats them as dot-segments); the server route must
therefore accept a slash-containing key (Starlette: `/v1/kv/{key:path}`), since ASGI
servers decode %2F before routing.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import os
import secrets
import ssl
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError

from . import client_ops as ops
from .api import schema

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .client_watch import AsyncWatch, Watch
    from .concurrency import AsyncLease, Lease

Consistency = Literal["linearizable", "serializable"]

REQUEST_ID_HEADER = "X-Request-Id"
SNAPSHOT_INDEX_HEADER = "X-Raftkv-Applied-Index"
SNAPSHOT_SHA256_HEADER = "X-Raftkv-Sha256"

# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteResult:
    revision: int
    """The Raft index of the write (for a delete of an absent key, the index at which
    that no-op delete was applied)."""
    prev_revision: int = 0
    deleted: bool = False
    """DELETE only: whether the key existed."""


@dataclass(frozen=True, slots=True)
class GetResult:
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[KeyValue]
    more: bool
    """More keys match the prefix after the last item; fetch with `start_after`."""


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    learner: bool


@dataclass(frozen=True, slots=True)
class Progress:
    match: int
    next: int
    state: str
    learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class StatusInfo:
    id: int
    name: str
    role: str
    leader: int
    """0 when the member knows no leader."""
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    members: list[Member]
    progress: dict[int, Progress] = field(default_factory=dict)
    conf_change_pending: bool = False
    """On the leader: a membership change is proposed but not yet committed."""
    pending_conf_index: int = 0


# -- errors ----------------------------------------------------------------------------


class RaftKVError(Exception):
    """An error answer from the API (or no usable answer). `status` is the HTTP status,
    0 when no response was received."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status


class BadRequest(RaftKVError):
    pass


class Forbidden(RaftKVError):
    pass


class NotFound(RaftKVError):
    pass


class PreconditionFailed(RaftKVError):
    def __init__(self, code: str, message: str, status: int, current_revision: int) -> None:
        super().__init__(code, message, status)
        self.current_revision = current_revision
        """The key's revision when the condition was evaluated (0 = absent)."""


class TooLarge(RaftKVError):
    pass


class NoSpace(RaftKVError):
    """507 `no_space`: the cluster's space quota is used up (etcd's NOSPACE alarm).
    Puts, txns with puts and lease grants are refused, certainly not applied, until
    the alarm is disarmed; reads, deletes and compaction still work."""


class Unavailable(RaftKVError):
    """No member could serve the request, and it certainly did not take effect."""

    def __init__(self, code: str, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class Indeterminate(RaftKVError):
    """A write may or may not have been applied (it timed out, or the connection broke
    after the request was sent). Read the key, or retry with the same request id, to
    find out. Deliberately not an `Unavailable`: code that retries "unavailable" writes
    blindly must not treat this one as "did not happen"."""

    def __init__(
        self, code: str, message: str, status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class BadResponse(RaftKVError):
    """The server answered with something that does not match the contract."""


class Compacted(RaftKVError):
    """The revision asked for (a read's, or where a watch would resume) is below the
    store's compact revision: that history is gone. `compact_revision` is the oldest
    revision still readable."""

    def __init__(self, code: str, message: str, status: int, compact_revision: int) -> None:
        super().__init__(code, message, status)
        self.compact_revision = compact_revision


class LeaseNotFound(NotFound):
    """404 `lease_not_found`: the lease expired or was revoked (or never existed)."""


INDETERMINATE_CODE = "indeterminate"
INDETERMINATE_CODES = frozenset({INDETERMINATE_CODE, "timeout"})
"""Error codes meaning "proposed, fate unknown"; "timeout" is accepted as an alias so a
server that names it that way is never misread as "certainly not applied"."""
COMPACTED_CODE = "compacted"
LEASE_NOT_FOUND_CODE = "lease_not_found"
KEY_NOT_FOUND_CODES = frozenset({"not_found", "key_not_found"})
"""404 codes that mean "no such key". Any other 404 (e.g. a framework's default for an
unknown route, because the endpoint is not a raftkv client port) raises `NotFound`
rather than quietly reading as an absent key."""

# -- the request plan and retry policy (shared by both clients, no I/O) ------------------


class _Retry(Enum):
    READ = "read"
    """Safe to repeat anywhere."""
    DEDUP_WRITE = "dedup_write"
    """Safe to repeat because the server deduplicates by X-Request-Id."""
    ONCE = "once"
    """Repeat only when it certainly did not take effect."""


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    retry: _Retry
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    content: bytes | None = None
    json: Any = None


# Failures that happen before the request leaves the client: nothing reached a server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_RETRY_STATUS = frozenset({502, 503, 504})


class _Attempts:
    """Decides, attempt by attempt, where to send a call and whether to go on. Pure
    policy, so the sync and async clients share it and tests can reason about it."""

    def __init__(self, call: _Call, n_endpoints: int, start: int, rounds: int) -> None:
        self.call = call
        self._order = [(start + i) % n_endpoints for i in range(n_endpoints)]
        self._rounds = rounds
        self._round = 0
        self._pos = 0
        self.maybe_applied = False
        self.last_error: RaftKVError | None = None
        self.retry_after: float | None = None

    def next_endpoint(self) -> int | None:
        """The endpoint index for the next attempt, or None when out of attempts."""
        if self._pos == len(self._order):
            self._round += 1
            self._pos = 0
        if self._round >= self._rounds:
            return None
        ep = self._order[self._pos]
        self._pos += 1
        return ep

    @property
    def round_done(self) -> bool:
        return self._pos == len(self._order) and self._round + 1 < self._rounds

    def transport_failed(self, exc: httpx.TransportError, endpoint: str) -> bool:
        """Record a failed attempt; True to try again."""
        sent = not isinstance(exc, _NOT_SENT)
        err = f"{endpoint}: {type(exc).__name__}: {exc}"
        if sent and self.call.retry is not _Retry.READ:
            self.maybe_applied = True
            self.last_error = Indeterminate(
                INDETERMINATE_CODE, f"request sent, no answer ({err})", 0
            )
            return self.call.retry is _Retry.DEDUP_WRITE
        self.last_error = Unavailable("unavailable", err, 0, None)
        return True

    def response_failed(self, resp: httpx.Response, err: RaftKVError) -> bool:
        """Record an error answer; True to try again elsewhere."""
        if resp.status_code == 410 and not isinstance(err, Compacted):
            # That member was removed from the cluster (it refuses before proposing, so
            # nothing was applied); the others may still serve the call.
            self.last_error = err
            return True
        if resp.status_code not in _RETRY_STATUS:
            return False
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            self.retry_after = retry_after
        if isinstance(err, Indeterminate):
            self.maybe_applied = True
            self.last_error = err
            return self.call.retry is _Retry.DEDUP_WRITE
        self.last_error = err
        return True

    def final_error(self) -> RaftKVError:
        err = self.last_error or Unavailable("unavailable", "no endpoint answered", 0, None)
        if self.maybe_applied and not isinstance(err, Indeterminate):
            # An earlier attempt may have committed even though the last one surely
            # did not; the write's fate is unknown, and saying otherwise would lie.
            return Indeterminate(
                INDETERMINATE_CODE,
                f"an earlier attempt may have been applied; last error: {err}",
                err.status,
                getattr(err, "retry_after", None),
            )
        return err

    def sleep_time(self, backoff: float, max_backoff: float) -> float:
        delay = min(backoff * (1 << self._round), max_backoff)
        if self.retry_after is not None:
            delay = max(delay, min(self.retry_after, max_backoff))
        return delay


def _error_from_response(resp: httpx.Response, call: _Call) -> RaftKVError:
    status = resp.status_code
    code = f"http_{status}"
    message = ""
    body: dict[str, Any] = {}
    try:
        parsed = resp.json()
        if isinstance(parsed, dict):
            body = parsed
            code = str(body.get("error", code))
            message = str(body.get("message", ""))
    except ValueError:
        message = resp.text[:200]
    retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
    if status == 400:
        return BadRequest(code, message, status)
    if status in (401, 403):
        return Forbidden(code, message, status)
    if status == 404:
        if code == LEASE_NOT_FOUND_CODE:
            return LeaseNotFound(code, message, status)
        return NotFound(code, message, status)
    if status == 410 and code == COMPACTED_CODE:
        rev = body.get("compact_revision")
        return Compacted(code, message, status, rev if isinstance(rev, int) else 0)
    if status == 412:
        current = body.get("revision")
        if not _is_int(current):
            current = _parse_etag(resp.headers.get("ETag"))
        return PreconditionFailed(code, message, status, current if current is not None else 0)
    if status == 413:
        return TooLarge(code, message, status)
    if status == 507:
        return NoSpace(code, message, status)
    # A gateway error without a raftkv error body means a proxy gave up on a request it
    # may have forwarded: for a write, that is an unknown outcome, not a refusal.
    if call.retry is not _Retry.READ and (
        code in INDETERMINATE_CODES or (status in (502, 504) and not body)
    ):
        return Indeterminate(code, message, status, retry_after)
    if status in (502, 503, 504):
        return Unavailable(code, message, status, retry_after)
    return RaftKVError(code, message, status)


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        secs = float(value)
    except ValueError:
        return None  # the HTTP-date form; the server sends seconds
    return secs if secs >= 0 else None


def _parse_etag(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    return int(v) if v.isdigit() else None


def _is_int(x: object) -> bool:
    return type(x) is int


def _key_path(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("a key must be a non-empty string")
    quoted = quote(key, safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return "/v1/kv/" + quoted


def _etag(revision: int) -> str:
    if not _is_int(revision) or revision < 0:
        raise ValueError("a revision is a non-negative integer")
    return f'"{revision}"'


def _new_request_id() -> str:
    return secrets.token_hex(16)


# -- response parsing: with the wire models of `raftkv.api.schema` ----------------------

_A = TypeVar("_A")


def _parse(validate: Callable[[bytes], _A], resp: httpx.Response, *, tagged: bool = False) -> _A:
    """`resp`'s body through a model's `validate_json`; anything that is not the
    contract (not JSON, not an object, a missing field, a wrong type) is a
    `BadResponse`. `tagged`: `validate` is a tagged union (drop the tag from paths)."""
    try:
        return validate(resp.content)
    except ValidationError as exc:
        raise BadResponse("bad_response", _describe(exc, tagged), resp.status_code) from exc


def _describe(exc: ValidationError, tagged: bool = False, shown: int = 3) -> str:
    """What is wrong, one item per problem (at most `shown`), e.g. "malformed Status
    answer: members.0.id: Input should be a valid integer (got True)"."""
    problems = []
    for e in exc.errors(include_url=False, include_context=False)[:shown]:
        where = ".".join(str(part) for part in e["loc"][1 if tagged else 0 :])
        got = "" if e["type"] in ("missing", "json_invalid") else f" (got {e['input']!r:.40})"
        problems.append(f"{where + ': ' if where else ''}{e['msg']}{got}")
    if exc.error_count() > shown:
        problems.append(f"and {exc.error_count() - shown} more")
    return f"malformed {exc.title} answer: " + "; ".join(problems)


def _member(m: schema.Member) -> Member:
    return Member(m.id, m.name, m.peer_urls, m.client_urls, m.learner)


def _member_answer(value: Any) -> str:
    # {"member": member}, or (as the client always took it) a bare member
    return "wrapped" if isinstance(value, dict) and "member" in value else "bare"


_MEMBER_ANSWER: TypeAdapter[schema.MemberResult | schema.Member] = TypeAdapter(
    Annotated[
        Annotated[schema.MemberResult, Tag("wrapped")] | Annotated[schema.Member, Tag("bare")],
        Discriminator(_member_answer),
    ],
    config=ConfigDict(title="MemberResult"),
)


def _parse_member_response(resp: httpx.Response) -> Member:
    answer = _parse(_MEMBER_ANSWER.validate_json, resp, tagged=True)
    return _member(answer.member if isinstance(answer, schema.MemberResult) else answer)


def _parse_members(resp: httpx.Response) -> list[Member]:
    return [_member(m) for m in _parse(schema.MemberList.model_validate_json, resp).members]


def _parse_write(resp: httpx.Response) -> WriteResult:
    # PUT answers lack "deleted", which defaults to False.
    w = _parse(schema.DeleteResult.model_validate_json, resp)
    return WriteResult(w.revision, w.prev_revision, w.deleted)


def _parse_get(resp: httpx.Response) -> GetResult:
    revision = _parse_etag(resp.headers.get("ETag"))
    if revision is None:
        raise BadResponse("bad_response", "GET answer without a revision ETag", resp.status_code)
    return GetResult(resp.content, revision)


def _parse_list(resp: httpx.Response) -> ListPage:
    page = _parse(schema.KeyList.model_validate_json, resp)
    items: list[KeyValue] = []
    for i, item in enumerate(page.items):
        try:
            value = base64.b64decode(item.value, validate=True)
        except ValueError as exc:  # binascii.Error, or a non-ASCII string
            raise BadResponse(
                "bad_response", f"items.{i}.value is not base64: {exc}", resp.status_code
            ) from exc
        items.append(KeyValue(item.key, value, item.revision))
    return ListPage(items, page.more)


def _parse_status(resp: httpx.Response) -> StatusInfo:
    s = _parse(schema.Status.model_validate_json, resp)
    return StatusInfo(
        id=s.id,
        name=s.name,
        role=s.role,
        leader=s.leader,
        term=s.term,
        commit_index=s.commit_index,
        applied_index=s.applied_index,
        last_index=s.last_index,
        snapshot_index=s.snapshot_index,
        members=[_member(m) for m in s.members],
        progress={
            int(peer): Progress(p.match, p.next, p.state, p.learner, p.recent_active)
            for peer, p in s.progress.items()
        },
        conf_change_pending=s.conf_change_pending,
        pending_conf_index=s.pending_conf_index,
    )


def _parse_transfer(resp: httpx.Response) -> int | None:
    if not resp.content:
        return None
    return _parse(schema.LeaderResult.model_validate_json, resp).leader or None


def _parse_snapshot(resp: httpx.Response) -> bytes:
    """The body, once its SHA-256 matches the header (a truncated or altered download
    never reaches the caller)."""
    digest = resp.headers.get(SNAPSHOT_SHA256_HEADER)
    if not digest:
        raise BadResponse("bad_response", "snapshot answer without a checksum", resp.status_code)
    data = resp.content
    if hashlib.sha256(data).hexdigest() != digest.strip().lower():
        raise BadResponse(
            "bad_checksum",
            f"snapshot SHA-256 mismatch ({len(data)} bytes received)",
            resp.status_code,
        )
    return data


# -- call builders (the API surface, shared) -------------------------------------------


def _put_call(
    key: str, value: bytes, if_match: int | None, if_none_match: bool, lease: int = 0
) -> _Call:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("value must be bytes")
    headers = {REQUEST_ID_HEADER: _new_request_id(), "Content-Type": "application/octet-stream"}
    if if_match is not None:
        headers["If-Match"] = _etag(if_match)
    if if_none_match:
        headers["If-None-Match"] = "*"
    params = {"lease": str(ops.lease_id(lease))} if lease else None
    return _Call(
        "PUT",
        _key_path(key),
        _Retry.DEDUP_WRITE,
        params=params,
        headers=headers,
        content=bytes(value),
    )


def _get_call(key: str, consistency: Consistency) -> _Call:
    return _Call("GET", _key_path(key), _Retry.READ, params=_consistency_params(consistency))


def _delete_call(key: str, if_match: int | None) -> _Call:
    headers = {REQUEST_ID_HEADER: _new_request_id()}
    if if_match is not None:
        headers["If-Match"] = _etag(if_match)
    return _Call("DELETE", _key_path(key), _Retry.DEDUP_WRITE, headers=headers)


def _list_call(prefix: str, limit: int, start_after: str | None, consistency: Consistency) -> _Call:
    if limit <= 0:
        raise ValueError("limit must be positive")
    params = {"prefix": prefix, "limit": str(limit), **_consistency_params(consistency)}
    if start_after is not None:
        params["start_after"] = start_after
    return _Call("GET", "/v1/kv", _Retry.READ, params=params)


def _snapshot_call(consistency: Consistency) -> _Call:
    return _Call("GET", "/v1/snapshot", _Retry.READ, params=_consistency_params(consistency))


def _consistency_params(consistency: Consistency) -> dict[str, str]:
    if consistency == "linearizable":
        return {}
    if consistency == "serializable":
        return {"consistency": "serializable"}
    raise ValueError(f"unknown consistency {consistency!r}")


def _member_id(member_id: int) -> str:
    if not _is_int(member_id) or member_id <= 0:
        raise ValueError("a member id is a positive integer")
    return str(member_id)


def _add_member_call(
    peer_url: str,
    name: str | None,
    learner: bool,
    member_id: int | None = None,
    client_urls: Sequence[str] = (),
) -> _Call:
    body: dict[str, Any] = {"peer_urls": [peer_url], "name": name, "learner": learner}
    if member_id is not None:
        # The operator allocates ids itself so that an id is never reused, even across
        # a lost member list; the server refuses an id that is in use or was removed.
        body["id"] = int(_member_id(member_id))
    if client_urls:
        body["client_urls"] = list(client_urls)
    return _Call(
        "POST",
        "/v1/members",
        _Retry.ONCE,
        headers={REQUEST_ID_HEADER: _new_request_id()},
        json=body,
    )


def _promote_call(member_id: int) -> _Call:
    return _Call(
        "POST",
        f"/v1/members/{_member_id(member_id)}/promote",
        _Retry.ONCE,
        headers={REQUEST_ID_HEADER: _new_request_id()},
    )


def _remove_call(member_id: int) -> _Call:
    return _Call(
        "DELETE",
        f"/v1/members/{_member_id(member_id)}",
        _Retry.ONCE,
        headers={REQUEST_ID_HEADER: _new_request_id()},
    )


def _transfer_call(to: int | None) -> _Call:
    target = None if to is None else int(_member_id(to))
    return _Call(
        "POST",
        "/v1/leader/transfer",
        _Retry.ONCE,
        headers={REQUEST_ID_HEADER: _new_request_id()},
        json={"to": target},
    )


_MEMBERS = _Call("GET", "/v1/members", _Retry.READ)
_STATUS = _Call("GET", "/v1/status", _Retry.READ)


def _verify(
    verify: ssl.SSLContext | bool,
    cacert: str | os.PathLike[str] | None,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
) -> ssl.SSLContext | bool:
    """httpx's `verify=`: an explicit context wins; else one made from the CA, client
    certificate and key files (etcdctl's --cacert/--cert/--key), checked now so that a
    bad file fails here, naming the file, and not at the first request."""
    if isinstance(verify, ssl.SSLContext) or (cacert is None and cert is None and key is None):
        return verify
    from .tls import client_ssl_context  # lazily: plain-HTTP users never load cryptography

    return client_ssl_context(cacert, cert, key)


def _normalize_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    out = []
    for ep in eps:
        for part in ep.split(","):
            part = part.strip().rstrip("/")
            if part:
                out.append(part if "://" in part else "http://" + part)
    if not out:
        raise ValueError("at least one endpoint is required")
    return out


# -- the request flows (sans-I/O, shared by both clients) ---------------------------------
#
# Every public method is written once, as a generator that yields what I/O it needs
# (`_Send` a request, `_Sleep` between rounds) and receives the outcome of each `_Send`
# (the response, or the transport error it raised). `Client._run` and
# `AsyncClient._run` are the only places that do I/O; they drive the same flows.


@dataclass(frozen=True, slots=True)
class _Send:
    """Send `call` to `url` (endpoint + path) and resume the flow with the response,
    or with the `httpx.TransportError` the request raised."""

    url: str
    call: _Call


@dataclass(frozen=True, slots=True)
class _Sleep:
    """Pause for `seconds`, then resume the flow with None."""

    seconds: float


_T = TypeVar("_T")
_Step = _Send | _Sleep
_Outcome = httpx.Response | httpx.TransportError | None
_Flow = Generator[_Step, _Outcome, _T]


class _Base:
    """The endpoint list, the retry settings and every request flow; no I/O."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float | httpx.Timeout,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.endpoints = _normalize_endpoints(endpoints)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._rounds = retries + 1
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._current = 0

    def _attempts(self, call: _Call) -> _Attempts:
        return _Attempts(call, len(self.endpoints), self._current, self._rounds)

    def _url(self, endpoint: str | None, path: str) -> str:
        return (endpoint or self.endpoints[0]).rstrip("/") + path

    # the retry loop: failover across endpoints, rounds, backoff

    def _request(self, call: _Call) -> _Flow[httpx.Response]:
        attempts = self._attempts(call)
        while (ep := attempts.next_endpoint()) is not None:
            endpoint = self.endpoints[ep]
            outcome = yield _Send(endpoint + call.path, call)
            if isinstance(outcome, httpx.TransportError):
                if not attempts.transport_failed(outcome, endpoint):
                    raise attempts.final_error() from outcome
            else:
                resp = _response(outcome)
                if resp.is_success:
                    self._current = ep
                    return resp
                err = _error_from_response(resp, call)
                if not attempts.response_failed(resp, err):
                    self._current = ep
                    raise err
            if attempts.round_done:
                yield _Sleep(attempts.sleep_time(self._backoff, self._max_backoff))
        raise attempts.final_error()

    def _single(self, path: str, endpoint: str) -> _Flow[httpx.Response]:
        """One GET to one member, no failover."""
        outcome = yield _Send(self._url(endpoint, path), _STATUS)
        if isinstance(outcome, httpx.TransportError):
            raise Unavailable("unavailable", f"{endpoint}: {outcome}", 0, None) from outcome
        resp = _response(outcome)
        if not resp.is_success:
            raise _error_from_response(resp, _STATUS)
        return resp

    def _probe(self, path: str, endpoint: str | None) -> _Flow[bool]:
        outcome = yield _Send(self._url(endpoint, path), _STATUS)
        return not isinstance(outcome, httpx.TransportError) and _response(outcome).is_success

    # the API surface, once

    def _put(
        self, key: str, value: bytes, if_match: int | None, if_none_match: bool, lease: int = 0
    ) -> _Flow[WriteResult]:
        return _parse_write(
            (yield from self._request(_put_call(key, value, if_match, if_none_match, lease)))
        )

    def _get(self, key: str, consistency: Consistency) -> _Flow[GetResult | None]:
        try:
            resp = yield from self._request(_get_call(key, consistency))
        except NotFound as exc:
            if exc.code in KEY_NOT_FOUND_CODES:
                return None
            raise
        return _parse_get(resp)

    def _delete(self, key: str, if_match: int | None) -> _Flow[WriteResult]:
        return _parse_write((yield from self._request(_delete_call(key, if_match))))

    def _list_page(
        self, prefix: str, limit: int, start_after: str | None, consistency: Consistency
    ) -> _Flow[ListPage]:
        call = _list_call(prefix, limit, start_after, consistency)
        return _parse_list((yield from self._request(call)))

    def _list(
        self, prefix: str, limit: int, start_after: str | None, consistency: Consistency
    ) -> _Flow[builtins.list[KeyValue]]:
        return (yield from self._list_page(prefix, limit, start_after, consistency)).items

    def _snapshot(self, consistency: Consistency) -> _Flow[bytes]:
        return _parse_snapshot((yield from self._request(_snapshot_call(consistency))))

    def _members(self) -> _Flow[builtins.list[Member]]:
        return _parse_members((yield from self._request(_MEMBERS)))

    def _add_member(
        self,
        peer_url: str,
        name: str | None,
        learner: bool,
        member_id: int | None,
        client_urls: Sequence[str],
    ) -> _Flow[Member]:
        call = _add_member_call(peer_url, name, learner, member_id, client_urls)
        return _parse_member_response((yield from self._request(call)))

    def _promote_member(self, member_id: int) -> _Flow[Member]:
        return _parse_member_response((yield from self._request(_promote_call(member_id))))

    def _remove_member(self, member_id: int) -> _Flow[None]:
        yield from self._request(_remove_call(member_id))

    def _transfer_leader(self, to: int | None) -> _Flow[int | None]:
        return _parse_transfer((yield from self._request(_transfer_call(to))))

    def _status(self, endpoint: str | None) -> _Flow[StatusInfo]:
        if endpoint is None:
            return _parse_status((yield from self._request(_STATUS)))
        return _parse_status((yield from self._single("/v1/status", endpoint)))

    # coordination: etcd v3's range, txn, compaction and leases (raftkv.client_ops)

    def _get_kv(self, key: str, revision: int, consistency: Consistency) -> _Flow[ops.KV | None]:
        try:
            resp = yield from self._request(_get_kv_call(key, revision, consistency))
        except NotFound as exc:
            if exc.code in KEY_NOT_FOUND_CODES:
                return None
            raise
        return _parse_with(lambda b: ops.kv_from_headers(key.encode(), b, resp.headers), resp)

    def _range(self, op: ops.RangeOp, serializable: bool) -> _Flow[ops.RangeResult]:
        body = {**op.to_json(), **({"serializable": True} if serializable else {})}
        resp = yield from self._request(_Call("POST", "/v1/range", _Retry.READ, json=body))
        return _parse_with(ops.parse_range, resp)

    def _txn(self, txn: ops.TxnOp) -> _Flow[ops.TxnResult]:
        resp = yield from self._request(_write_call("POST", "/v1/txn", txn.to_json()))
        return _parse_with(ops.parse_txn, resp)

    def _delete_prefix(self, prefix: str) -> _Flow[int]:
        call = _Call(
            "DELETE",
            "/v1/kv",
            _Retry.DEDUP_WRITE,
            params={"prefix": prefix},
            headers={REQUEST_ID_HEADER: _new_request_id()},
        )
        return _parse_with(ops.parse_range_delete, (yield from self._request(call)))

    def _compact(self, revision: int) -> _Flow[ops.Header]:
        if not _is_int(revision) or revision <= 0:
            raise ValueError("a compact revision is an integer > 0")
        resp = yield from self._request(_write_call("POST", "/v1/compact", {"revision": revision}))
        return _parse_with(ops.parse_header, resp)

    def _lease_grant(self, ttl: int, lease_id: int) -> _Flow[ops.LeaseGrant]:
        if not _is_int(ttl) or ttl <= 0:
            raise ValueError("a lease TTL is an integer number of seconds > 0")
        # The client picks the id unless given one: then a grant whose answer was lost
        # can be retried (same X-Request-Id) and still name its lease.
        chosen = ops.lease_id(lease_id) or secrets.randbelow((1 << 63) - 1) + 1
        call = _write_call("POST", "/v1/leases", {"ttl": ttl, "id": chosen})
        try:
            resp = yield from self._request(call)
        except RaftKVError as exc:
            if exc.code != "request_id_conflict":
                raise
            # A retry of a grant that was applied: the lease is this one.
            got = yield from self._lease_time_to_live(chosen, False)
            if got.ttl < 0:
                raise LeaseNotFound(
                    LEASE_NOT_FOUND_CODE, f"lease {chosen} was granted but is gone", 404
                ) from exc
            return ops.LeaseGrant(chosen, got.granted_ttl)
        return _parse_with(ops.parse_lease_grant, resp)

    def _lease_revoke(self, lease_id: int) -> _Flow[int]:
        call = _write_call("DELETE", f"/v1/leases/{_positive_lease(lease_id)}", None)
        return _parse_with(ops.parse_lease_revoke, (yield from self._request(call)))

    def _lease_keepalive(self, lease_id: int) -> _Flow[int]:
        # A renewal is safe to repeat: it only moves the expiry to a TTL from now.
        call = _Call("POST", f"/v1/leases/{_positive_lease(lease_id)}/keepalive", _Retry.READ)
        return _parse_with(ops.parse_keepalive, (yield from self._request(call)))

    def _lease_time_to_live(self, lease_id: int, keys: bool) -> _Flow[ops.LeaseTTL]:
        params = {"keys": "true"} if keys else None
        call = _Call("GET", f"/v1/leases/{_positive_lease(lease_id)}", _Retry.READ, params=params)
        return _parse_with(ops.parse_time_to_live, (yield from self._request(call)))

    def _leases(self) -> _Flow[builtins.list[int]]:
        call = _Call("GET", "/v1/leases", _Retry.READ)
        return _parse_with(ops.parse_leases, (yield from self._request(call)))


def _parse_with(convert: Callable[[bytes], _A], resp: httpx.Response) -> _A:
    """Like `_parse`, for converters that also check what a model cannot (base64,
    headers): a `ValueError` is a `BadResponse` too."""
    try:
        return convert(resp.content)
    except ValidationError as exc:
        raise BadResponse("bad_response", _describe(exc), resp.status_code) from exc
    except ValueError as exc:
        raise BadResponse("bad_response", str(exc), resp.status_code) from exc


def _get_kv_call(key: str, revision: int, consistency: Consistency) -> _Call:
    params = _consistency_params(consistency)
    if revision:
        if not _is_int(revision) or revision < 0:
            raise ValueError("a revision is an integer >= 0")
        params["revision"] = str(revision)
    return _Call("GET", _key_path(key), _Retry.READ, params=params)


def _write_call(method: str, path: str, body: Any) -> _Call:
    """A write the member deduplicates by request id (txn, compact, lease calls)."""
    return _Call(
        method, path, _Retry.DEDUP_WRITE, headers={REQUEST_ID_HEADER: _new_request_id()}, json=body
    )


def _positive_lease(lease_id: int) -> int:
    if not _is_int(lease_id) or not 0 < lease_id < 1 << 63:
        raise ValueError("a lease id is a positive 64-bit integer")
    return lease_id


def _only_delete(res: ops.TxnResult) -> ops.DeleteRangeResult:
    if res.replayed:  # a retried delete applied before: the count is not known again
        return ops.DeleteRangeResult(res.header, 0)
    got = res.responses[0] if len(res.responses) == 1 else None
    if not isinstance(got, ops.DeleteRangeResult):
        raise BadResponse("bad_response", "a txn of one delete answered otherwise", 200)
    return got


def _response(outcome: _Outcome) -> httpx.Response:
    if not isinstance(outcome, httpx.Response):  # a driver bug, not a server answer
        raise TypeError(f"a _Send must be answered with a response, got {outcome!r}")
    return outcome


def _send_kwargs(call: _Call) -> dict[str, Any]:
    return {
        "params": call.params,
        "headers": call.headers,
        "content": call.content,
        "json": call.json,
    }


# -- the clients: I/O drivers of the flows above ----------------------------------------


class Client(_Base):
    """Blocking client. Thread-safe as far as httpx.Client is; use as a context manager
    or call `close()`. `transport` is for tests (httpx.MockTransport). For https
    endpoints: `cacert` (the CA to trust), `cert` and `key` (a client certificate, for
    members run with --client-cert-auth), or a ready `verify` context (docs/tls.md)."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        cacert: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(
            endpoints, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self._http = httpx.Client(
            timeout=self._timeout,
            transport=transport,
            headers=headers,
            follow_redirects=False,
            verify=_verify(verify, cacert, cert, key),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: _Flow[_T]) -> _T:
        """Drive `flow` to its result, doing its I/O with blocking calls."""
        outcome: _Outcome = None
        try:
            while True:
                try:
                    step = flow.send(outcome)
                except StopIteration as done:
                    result: _T = done.value
                    return result
                outcome = None
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                    continue
                try:
                    outcome = self._http.request(
                        step.call.method, step.url, **_send_kwargs(step.call)
                    )
                except httpx.TransportError as exc:
                    outcome = exc
        finally:
            flow.close()

    # KV

    def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: int | None = None,
        if_none_match: bool = False,
        lease: int = 0,
    ) -> WriteResult:
        """`lease`: attach the key to that lease (deleted when it ends)."""
        return self._run(self._put(key, value, if_match, if_none_match, lease))

    def get(self, key: str, *, consistency: Consistency = "linearizable") -> GetResult | None:
        return self._run(self._get(key, consistency))

    def delete(self, key: str, *, if_match: int | None = None) -> WriteResult:
        return self._run(self._delete(key, if_match))

    def list_page(
        self,
        prefix: str = "",
        limit: int = 100,
        *,
        start_after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> ListPage:
        return self._run(self._list_page(prefix, limit, start_after, consistency))

    def list(
        self,
        prefix: str = "",
        limit: int = 100,
        *,
        start_after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> builtins.list[KeyValue]:
        return self._run(self._list(prefix, limit, start_after, consistency))

    # membership

    def snapshot(self, *, consistency: Consistency = "linearizable") -> bytes:
        """A point-in-time copy of the state machine (`raftkv snapshot save`), checked
        against the server's SHA-256."""
        return self._run(self._snapshot(consistency))

    def members(self) -> builtins.list[Member]:
        return self._run(self._members())

    def add_member(
        self,
        peer_url: str,
        *,
        name: str | None = None,
        learner: bool = False,
        id: int | None = None,
        client_urls: Sequence[str] = (),
    ) -> Member:
        return self._run(self._add_member(peer_url, name, learner, id, client_urls))

    def promote_member(self, member_id: int) -> Member:
        return self._run(self._promote_member(member_id))

    def remove_member(self, member_id: int) -> None:
        self._run(self._remove_member(member_id))

    def transfer_leader(self, to: int | None = None) -> int | None:
        return self._run(self._transfer_leader(to))

    # observation: status() fails over unless pinned; health/ready ask one member

    def status(self, *, endpoint: str | None = None) -> StatusInfo:
        return self._run(self._status(endpoint))

    def health(self, endpoint: str | None = None) -> bool:
        return self._run(self._probe("/healthz", endpoint))

    def ready(self, endpoint: str | None = None) -> bool:
        return self._run(self._probe("/readyz", endpoint))

    # coordination: etcd v3's KV calls, leases, watch (types in raftkv.client_ops)

    def get_kv(
        self, key: str, *, revision: int = 0, consistency: Consistency = "linearizable"
    ) -> ops.KV | None:
        """The key with its metadata (create/mod revision, version, lease), now or as
        of `revision`; None if absent. `Compacted` below the compact revision."""
        return self._run(self._get_kv(key, revision, consistency))

    def range(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        serializable: bool = False,
        **options: Unpack[ops.RangeOptions],
    ) -> ops.RangeResult:
        """etcd's Range: one key, [key, range_end), or every key with the prefix."""
        return self._run(
            self._range(ops.Op.get(key, range_end, prefix=prefix, **options), serializable)
        )

    def delete_range(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> ops.DeleteRangeResult:
        """Delete one key, [key, range_end) or a prefix, at one revision."""
        op = ops.Op.delete(key, range_end, prefix=prefix, prev_kv=prev_kv)
        res = self._run(self._txn(ops.Op.txn(success=[op])))
        return _only_delete(res)

    def delete_prefix(self, prefix: str) -> int:
        """`DELETE /v1/kv?prefix=`: every key starting with `prefix` ("" = all); how many."""
        return self._run(self._delete_prefix(prefix))

    def txn(self) -> ops.Txn[ops.TxnResult]:
        """`client.txn().if_(Compare.mod("k") == 5).then(Op.put("k", b"v")).else_(
        Op.get("k")).commit()`; applied once even when retried."""
        return ops.Txn(lambda t: self._run(self._txn(t)))

    def compact(self, revision: int) -> ops.Header:
        return self._run(self._compact(revision))

    def lease_grant(self, ttl: int, *, id: int = 0) -> ops.LeaseGrant:
        return self._run(self._lease_grant(ttl, id))

    def lease_revoke(self, lease_id: int) -> int:
        """Ends the lease and deletes its keys; how many keys."""
        return self._run(self._lease_revoke(lease_id))

    def lease_keepalive_once(self, lease_id: int) -> int:
        """Renews the lease for its TTL; the TTL. `LeaseNotFound` once it is gone."""
        return self._run(self._lease_keepalive(lease_id))

    def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> ops.LeaseTTL:
        return self._run(self._lease_time_to_live(lease_id, keys))

    def leases(self) -> builtins.list[int]:
        return self._run(self._leases())

    def lease(self, ttl: int, *, keepalive: bool = True) -> Lease:
        """A granted `Lease` kept alive in a thread (raftkv.concurrency.Lease)."""
        from .concurrency import Lease

        return Lease(self, ttl, keepalive=keepalive)

    def watch(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        heartbeat: float = 2.0,
        retry_timeout: float | None = None,
    ) -> Watch:
        """An iterator of `WatchEvent`s that survives member loss
        (raftkv.client_watch.Watch); connected when this returns."""
        from .client_watch import Watch, WatchSpec

        spec = WatchSpec.of(key, range_end, prefix, start_revision, prev_kv, no_put, no_delete)
        return Watch(self, spec, heartbeat=heartbeat, retry_timeout=retry_timeout)


class AsyncClient(_Base):
    """The asyncio twin of `Client`; same methods, awaited; same TLS arguments."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        cacert: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(
            endpoints, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self._http = httpx.AsyncClient(
            timeout=self._timeout,
            transport=transport,
            headers=headers,
            follow_redirects=False,
            verify=_verify(verify, cacert, cert, key),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, flow: _Flow[_T]) -> _T:
        """Drive `flow` to its result, doing its I/O with awaited calls."""
        outcome: _Outcome = None
        try:
            while True:
                try:
                    step = flow.send(outcome)
                except StopIteration as done:
                    result: _T = done.value
                    return result
                outcome = None
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                    continue
                try:
                    outcome = await self._http.request(
                        step.call.method, step.url, **_send_kwargs(step.call)
                    )
                except httpx.TransportError as exc:
                    outcome = exc
        finally:
            flow.close()

    # KV

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: int | None = None,
        if_none_match: bool = False,
        lease: int = 0,
    ) -> WriteResult:
        return await self._run(self._put(key, value, if_match, if_none_match, lease))

    async def get(self, key: str, *, consistency: Consistency = "linearizable") -> GetResult | None:
        return await self._run(self._get(key, consistency))

    async def delete(self, key: str, *, if_match: int | None = None) -> WriteResult:
        return await self._run(self._delete(key, if_match))

    async def list_page(
        self,
        prefix: str = "",
        limit: int = 100,
        *,
        start_after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> ListPage:
        return await self._run(self._list_page(prefix, limit, start_after, consistency))

    async def list(
        self,
        prefix: str = "",
        limit: int = 100,
        *,
        start_after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> builtins.list[KeyValue]:
        return await self._run(self._list(prefix, limit, start_after, consistency))

    # membership

    async def snapshot(self, *, consistency: Consistency = "linearizable") -> bytes:
        return await self._run(self._snapshot(consistency))

    async def members(self) -> builtins.list[Member]:
        return await self._run(self._members())

    async def add_member(
        self,
        peer_url: str,
        *,
        name: str | None = None,
        learner: bool = False,
        id: int | None = None,
        client_urls: Sequence[str] = (),
    ) -> Member:
        return await self._run(self._add_member(peer_url, name, learner, id, client_urls))

    async def promote_member(self, member_id: int) -> Member:
        return await self._run(self._promote_member(member_id))

    async def remove_member(self, member_id: int) -> None:
        await self._run(self._remove_member(member_id))

    async def transfer_leader(self, to: int | None = None) -> int | None:
        return await self._run(self._transfer_leader(to))

    # observation

    async def status(self, *, endpoint: str | None = None) -> StatusInfo:
        return await self._run(self._status(endpoint))

    async def health(self, endpoint: str | None = None) -> bool:
        return await self._run(self._probe("/healthz", endpoint))

    async def ready(self, endpoint: str | None = None) -> bool:
        return await self._run(self._probe("/readyz", endpoint))

    # coordination: etcd v3's KV calls, leases, watch (types in raftkv.client_ops)

    async def get_kv(
        self, key: str, *, revision: int = 0, consistency: Consistency = "linearizable"
    ) -> ops.KV | None:
        return await self._run(self._get_kv(key, revision, consistency))

    async def range(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        serializable: bool = False,
        **options: Unpack[ops.RangeOptions],
    ) -> ops.RangeResult:
        op = ops.Op.get(key, range_end, prefix=prefix, **options)
        return await self._run(self._range(op, serializable))

    async def delete_range(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> ops.DeleteRangeResult:
        op = ops.Op.delete(key, range_end, prefix=prefix, prev_kv=prev_kv)
        return _only_delete(await self._run(self._txn(ops.Op.txn(success=[op]))))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run(self._delete_prefix(prefix))

    def txn(self) -> ops.Txn[Awaitable[ops.TxnResult]]:
        """As `Client.txn`; `await ....commit()`."""
        return ops.Txn(lambda t: self._run(self._txn(t)))

    async def compact(self, revision: int) -> ops.Header:
        return await self._run(self._compact(revision))

    async def lease_grant(self, ttl: int, *, id: int = 0) -> ops.LeaseGrant:
        return await self._run(self._lease_grant(ttl, id))

    async def lease_revoke(self, lease_id: int) -> int:
        return await self._run(self._lease_revoke(lease_id))

    async def lease_keepalive_once(self, lease_id: int) -> int:
        return await self._run(self._lease_keepalive(lease_id))

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> ops.LeaseTTL:
        return await self._run(self._lease_time_to_live(lease_id, keys))

    async def leases(self) -> builtins.list[int]:
        return await self._run(self._leases())

    def lease(self, ttl: int, *, keepalive: bool = True) -> AsyncLease:
        """`async with client.lease(ttl) as lease:` granted on entry, kept alive by a
        task (raftkv.concurrency.AsyncLease)."""
        from .concurrency import AsyncLease

        return AsyncLease(self, ttl, keepalive=keepalive)

    def watch(
        self,
        key: ops.Key,
        range_end: ops.Key | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        heartbeat: float = 2.0,
        retry_timeout: float | None = None,
    ) -> AsyncWatch:
        """`async with client.watch(...) as w: async for ev in w:` (connected on entry)."""
        from .client_watch import AsyncWatch, WatchSpec

        spec = WatchSpec.of(key, range_end, prefix, start_revision, prev_kv, no_put, no_delete)
        return AsyncWatch(self, spec, heartbeat=heartbeat, retry_timeout=retry_timeout)


__all__ = [
    "AsyncClient",
    "BadRequest",
    "BadResponse",
    "Client",
    "Compacted",
    "Consistency",
    "Forbidden",
    "GetResult",
    "Indeterminate",
    "KeyValue",
    "LeaseNotFound",
    "ListPage",
    "Member",
    "NoSpace",
    "NotFound",
    "PreconditionFailed",
    "Progress",
    "RaftKVError",
    "StatusInfo",
    "TooLarge",
    "Unavailable",
    "WriteResult",
]
