"""Status and probes: `/v1/status`, `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..server.node import Node
from . import schema as S
from .deps import NodeDep
from .responses import json_response

router = APIRouter(tags=["status"])


@router.get("/v1/status", response_model=S.Status)
async def status(node: NodeDep) -> Response:
    return json_response(node.status())


@router.get("/healthz", response_model=S.Health)
async def healthz() -> Response:
    return json_response({"ok": True})


@router.get("/readyz", response_model=S.Readiness, responses={503: {"model": S.Readiness}})
async def readyz(node: NodeDep) -> Response:
    if node.is_ready():
        return json_response({"ready": True})
    return json_response({"ready": False, "status": brief(node)}, 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(node: NodeDep) -> Response:
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def brief(node: Node) -> dict[str, object]:
    """Why a member is not ready."""
    raw = node.raw
    if raw is None:
        return {}
    return {
        "removed": node.removed,
        "leader": raw.leader,
        "member": node.member_id in raw.conf_state.members(),
        "applied": node.kv.applied_index,
        "commit": raw.commit,
    }
