"""Every body the client API takes or answers, as pydantic models: the one place that
describes the wire format, so `/docs` and `/openapi.json` show the real schema and a
client can parse answers with the same models.

The handlers do not build their answers through these models (the KV routes are hot,
and the rest keep their exact bytes); `tests/api` checks that the answers validate.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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


# --- keys ----------------------------------------------------------------------------


class WriteResult(BaseModel):
    revision: int = Field(description="the Raft index of the write")
    prev_revision: int = Field(description="the key's revision before; 0 if it was new")


class DeleteResult(WriteResult):
    deleted: bool = Field(description="whether the key existed")


class KeyValue(BaseModel):
    key: str
    value: str = Field(description="base64")
    revision: int


class KeyList(BaseModel):
    items: list[KeyValue]
    more: bool = Field(description="more keys match after the last item (page with start_after)")


# --- members and leadership -------------------------------------------------------------


class Member(BaseModel):
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    learner: bool


class MemberList(BaseModel):
    members: list[Member]


class MemberResult(BaseModel):
    member: Member


class RemovedMember(BaseModel):
    removed: int


class LeaderResult(BaseModel):
    leader: int


# --- status and probes ---------------------------------------------------------------


class Progress(BaseModel):
    match: int
    next: int
    state: str
    learner: bool
    recent_active: bool


class Status(BaseModel):
    id: int
    name: str
    cluster_id: str
    role: str
    leader: int = Field(description="0 when no leader is known")
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    removed: bool
    members: list[Member]
    progress: dict[str, Progress] = Field(description="the leader's view of each member")
    keys: int
    conf_change_pending: bool
    pending_conf_index: int
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
