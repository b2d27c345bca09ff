"""Members and leadership: `/v1/members...` and `/v1/leader/transfer`. Changes run on
the leader (any other member forwards them); what is allowed is decided by the rules
in `server.membership`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..raft import ConfChange, ConfChangeType
from ..server import errors as E
from ..server import membership as M
from ..server.node import Node
from . import schema as S
from .deps import ForwarderDep, JoinedRaw, NodeDep, leader_raw
from .responses import json_response

router = APIRouter(tags=["members"], responses={**S.ERRORS, **S.INVALID})


def _view(node: Node, member_id: int) -> dict[str, object]:
    return M.member_view(node.registry, leader_raw(node).conf_state, member_id)


@router.get("/v1/members", response_model=S.MemberList)
async def list_members(node: NodeDep, raw: JoinedRaw) -> Response:
    return json_response({"members": node.registry.view(raw.conf_state)})


@router.post("/v1/members", status_code=201, response_model=S.MemberResult)
async def add_member(
    request: Request, body: S.AddMember, node: NodeDep, fwd: ForwarderDep
) -> Response:
    if not node.is_leader():
        return await fwd.forward(node, request, body.model_dump_json().encode())
    info = M.plan_new_member(
        node.registry,
        leader_raw(node).conf_state.members(),
        peer_urls=body.peer_urls,
        client_urls=body.client_urls,
        name=body.name,
        member_id=body.id,
    )
    kind = ConfChangeType.ADD_LEARNER if body.learner else ConfChangeType.ADD_NODE
    await node.change_membership(ConfChange(kind, info.id, info.encode()))
    return json_response({"member": _view(node, info.id)}, 201)


@router.post("/v1/members/{member_id}/promote", response_model=S.MemberResult)
async def promote_member(
    request: Request, member_id: int, node: NodeDep, fwd: ForwarderDep
) -> Response:
    if not node.is_leader():
        return await fwd.forward(node, request, b"")
    M.check_promotable(leader_raw(node).conf_state, member_id)
    await node.change_membership(ConfChange(ConfChangeType.ADD_NODE, member_id))
    return json_response({"member": _view(node, member_id)})


@router.delete("/v1/members/{member_id}", response_model=S.RemovedMember)
async def remove_member(
    request: Request, member_id: int, node: NodeDep, fwd: ForwarderDep
) -> Response:
    if not node.is_leader():
        return await fwd.forward(node, request, b"")
    M.check_member(leader_raw(node).conf_state.members(), member_id)
    await node.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, member_id))
    return json_response({"removed": member_id})


async def transfer_body(request: Request) -> tuple[S.Transfer, bytes]:
    """The body is checked here rather than by FastAPI, so a bad one is a 400 (as
    before the models existed), not a 422; an empty body means `{}`."""
    raw_body = await request.body()
    try:
        return S.Transfer.model_validate_json(raw_body or b"{}"), raw_body
    except ValueError as exc:  # pydantic.ValidationError is one
        raise E.BadRequest(f"invalid body: {exc}", code="invalid_request") from None


_TRANSFER_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": S.Transfer.model_json_schema()}},
    }
}


@router.post(
    "/v1/leader/transfer",
    response_model=S.LeaderResult,
    tags=["leader"],
    openapi_extra=_TRANSFER_BODY,
)
async def transfer(
    request: Request,
    body: Annotated[tuple[S.Transfer, bytes], Depends(transfer_body)],
    node: NodeDep,
    fwd: ForwarderDep,
) -> Response:
    """Move leadership to `to`, or to the most up-to-date voter."""
    parsed, raw_body = body
    if not node.is_leader():
        return await fwd.forward(node, request, raw_body)
    raw = leader_raw(node)
    to = M.transfer_target(
        node.member_id, raw.conf_state.members(), raw.status().progress, parsed.to
    )
    return json_response({"leader": await node.transfer_leader(to)})
