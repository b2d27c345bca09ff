"""Every body the client API takes or answers, as pydantic models: the one place that
describes the wire format, so `/docs` and `/openapi.json` show the real schema and a
client can parse answers with the same models.

The handlers do not build their answers through these models (the KV routes are hot,
and the rest keep their exact bytes); `tests/api` checks that the answers validate.
`raftkv.client` parses every answer it reads with them, so keep this module light
(pydantic only).

Answers (`_Answer`) are strict: JSON types exactly as the server writes them, so an
integer is never a bool, a float or a string. An `Opt` field (one with a default) is one
a client must do without (an older member may not send it); this server always sends
it, and the OpenAPI document, which describes what is sent, lists it as required. A
JSON `null` in such a field reads as absent.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticUseDefault

# --- requests ------------------------------------------------------------------------


class AddMember(BaseModel):
    peer_urls: list[str] = Field(min_length=1, max_length=8)
    name: str | None = Field(default=None, max_length=253)
    learner: bool = False
    id: int | None = Field(default=None, gt=0, lt=2**63)
    client_urls: list[str] = Field(default_factory=list, max_length=8)


class Transfer(BaseModel):
    to: int | None = Field(default=None, gt=0, lt=2**63)


# --- errors --------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error: a stable code (one HTTP status each) and a message. Some carry
    more fields, e.g. `revision` on a 412."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str


class ValidationErrorBody(ErrorBody):
    """422 `invalid_request`: a JSON body that does not fit its schema."""

    details: list[ValidationIssue]


# --- answers -------------------------------------------------------------------------


def _null_is_absent(value: object) -> object:
    if value is None:
        raise PydanticUseDefault
    return value


_T = TypeVar("_T")
Opt = Annotated[_T, BeforeValidator(_null_is_absent)]
"""A field a client can do without (give it a default): absent or `null` reads as the
default."""

MemberIdKey = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]
"""A member id as a JSON object key (decimal digits)."""


class _Answer(BaseModel):
    """An answer the client parses (see the module docstring)."""

    model_config = ConfigDict(strict=True, json_schema_serialization_defaults_required=True)


# --- keys ----------------------------------------------------------------------------


class Header(_Answer):
    """etcd's ResponseHeader: who answered, at which store revision and Raft term."""

    cluster_id: str
    member_id: int
    revision: int = Field(description="the store revision the answer is as of")
    raft_term: int


class WriteResult(_Answer):
    revision: int = Field(description="the store revision of the write (the key's mod_revision)")
    prev_revision: Opt[int] = Field(
        0, description="the key's mod_revision before; 0 if it was new (or on a replay)"
    )
    replayed: Opt[bool] = Field(
        False, description="a retry of an X-Request-Id already applied: nothing was done again"
    )


class DeleteResult(WriteResult):
    deleted: Opt[bool] = Field(False, description="whether the key existed")


class KeyValue(_Answer):
    key: str
    value: str = Field(description="base64")
    revision: int = Field(description="the key's mod_revision (kept for older clients)")
    create_revision: Opt[int] = 0
    mod_revision: Opt[int] = 0
    version: Opt[int] = 0
    lease: Opt[int] = 0


class KeyList(_Answer):
    items: list[KeyValue]
    more: Opt[bool] = Field(
        False, description="more keys match after the last item (page with start_after)"
    )
    revision: Opt[int] = Field(0, description="the store revision the listing is as of")


class RangeDeleteResult(_Answer):
    header: Header
    deleted: int
    replayed: Opt[bool] = False


# --- members and leadership -------------------------------------------------------------


class Member(_Answer):
    id: int
    name: Opt[str] = ""
    peer_urls: Opt[list[str]] = Field(default_factory=list)
    client_urls: Opt[list[str]] = Field(default_factory=list)
    learner: Opt[bool] = False


class MemberList(_Answer):
    members: list[Member]


class MemberResult(_Answer):
    member: Member


class RemovedMember(_Answer):
    removed: int


class LeaderResult(_Answer):
    leader: Opt[int] = Field(0, description="the new leader")


# --- status and probes ---------------------------------------------------------------


class Progress(_Answer):
    match: int
    next: int
    state: str
    learner: Opt[bool] = False
    recent_active: Opt[bool] = False


def _joining_only(schema: dict[str, Any]) -> None:
    # Sent only while joining: optional in the schema of what is sent, too.
    required = schema.get("required", [])
    if "peer_url" in required:
        required.remove("peer_url")


class Status(_Answer):
    model_config = ConfigDict(json_schema_extra=_joining_only)

    id: int
    name: Opt[str] = ""
    cluster_id: Opt[str] = ""
    role: str
    leader: Opt[int] = Field(0, description="0 when no leader is known")
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    removed: Opt[bool] = False
    members: Opt[list[Member]] = Field(default_factory=list)
    progress: Opt[dict[MemberIdKey, Progress]] = Field(
        default_factory=dict, description="the leader's view of each member; empty elsewhere"
    )
    keys: Opt[int] = 0
    conf_change_pending: Opt[bool] = False
    pending_conf_index: Opt[int] = 0
    peer_url: str | None = Field(default=None, description="only while joining")


class Health(BaseModel):
    ok: bool


class ReadyBrief(BaseModel):
    removed: bool | None = None
    leader: int | None = None
    member: bool | None = None
    applied: int | None = None
    commit: int | None = None


class Readiness(BaseModel):
    ready: bool
    status: ReadyBrief | None = Field(default=None, description="only when not ready")


ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 404, 409, 410, 412, 413, 503)
}
"""The error answers every route may give, for the OpenAPI document."""

INVALID: dict[int | str, dict[str, object]] = {422: {"model": ValidationErrorBody}}
"""The answer to a body or path parameter that does not fit its schema."""


# --- etcd-shaped answers: range, txn, compact, leases, watch lines ------------------------
#
# The JSON of `api.etcdjson` (etcd's gateway shapes: keys and values base64), as the
# client reads it. Added for the Python client's coordination calls (raftkv.client_ops,
# raftkv.client_watch).


class EtcdKeyValue(_Answer):
    key: str = Field(description="base64")
    create_revision: Opt[int] = 0
    mod_revision: Opt[int] = 0
    version: Opt[int] = 0
    value: Opt[str] = Field("", description="base64")
    lease: Opt[int] = 0


class RangeAnswer(_Answer):
    header: Header
    kvs: Opt[list[EtcdKeyValue]] = Field(default_factory=list)
    more: Opt[bool] = False
    count: Opt[int] = 0


class PutAnswer(_Answer):
    header: Header
    prev_kv: EtcdKeyValue | None = None


class DeleteRangeAnswer(_Answer):
    header: Header
    deleted: Opt[int] = 0
    prev_kvs: Opt[list[EtcdKeyValue]] = Field(default_factory=list)


class ResponseOp(_Answer):
    """One of the four, as etcd's gateway names them."""

    response_range: RangeAnswer | None = None
    response_put: PutAnswer | None = None
    response_delete_range: DeleteRangeAnswer | None = None
    response_txn: TxnAnswer | None = None


class TxnAnswer(_Answer):
    header: Header
    succeeded: Opt[bool] = False
    responses: Opt[list[ResponseOp]] = Field(default_factory=list)
    replayed: Opt[bool] = Field(
        False, description="a retry of an applied X-Request-Id: no responses, only the branch"
    )


class HeaderAnswer(_Answer):
    """`POST /v1/compact`."""

    header: Header


class LeaseGrantAnswer(_Answer):
    header: Header
    id: int
    ttl: int = Field(description="the granted TTL (at least the member's minimum)")


class LeaseRevokeAnswer(_Answer):
    header: Header
    deleted: Opt[int] = 0


class LeaseKeepAliveAnswer(_Answer):
    header: Header
    id: int
    ttl: int


class LeaseTimeToLiveAnswer(_Answer):
    header: Header
    id: int
    ttl: int = Field(description="seconds left; -1 when the lease does not exist")
    granted_ttl: Opt[int] = 0
    keys: Opt[list[str]] = Field(default_factory=list, description="base64, with ?keys=true")


class LeaseBrief(_Answer):
    id: int


class LeaseList(_Answer):
    header: Header
    leases: Opt[list[LeaseBrief]] = Field(default_factory=list)


class WatchEvent(_Answer):
    type: str = Field(description="PUT or DELETE")
    kv: EtcdKeyValue
    prev_kv: EtcdKeyValue | None = None


class WatchLine(_Answer):
    """One NDJSON line of `GET /v1/watch` (blank keep-alive lines aside)."""

    header: Header | None = None
    watch_id: Opt[int] = 0
    created: Opt[bool] = False
    canceled: Opt[bool] = False
    compact_revision: Opt[int] = 0
    cancel_reason: Opt[str] = ""
    progress_notify: Opt[bool] = False
    events: Opt[list[WatchEvent]] = Field(default_factory=list)


ResponseOp.model_rebuild()
