"""Answers built by hand: orjson bytes in a plain `Response`, no pydantic on the way."""

from __future__ import annotations

import orjson
from fastapi.responses import Response

from ..server import errors as E


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(err: E.ApiError) -> Response:
    return json_response(err.body(), err.status, err.headers)
