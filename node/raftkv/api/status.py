"""Status and probes: `/v1/status`, `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import schema as S
from .deps import NodeDep
from .responses import json_response

router = APIRouter(tags=["status"])


@router.get("/v1/status", response_model=S.Status)
async def status(node: NodeDep) -> Response:
    return json_response(node.status().to_json())


@router.get("/healthz", response_model=S.Health)
async def healthz() -> Response:
    return json_response({"ok": True})


@router.get("/readyz", response_model=S.Readiness, responses={503: {"model": S.Readiness}})
async def readyz(node: NodeDep) -> Response:
    if node.is_ready():
        return json_response({"ready": True})
    return json_response({"ready": False, "status": node.status().readiness()}, 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(node: NodeDep) -> Response:
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)
