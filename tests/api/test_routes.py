"""The client app in-process (`httpx.ASGITransport`) against real members on a fake
peer transport: every route, the error table, forwarding to the leader, and answers
that fit the models of `raftkv.api.schema` (which `/openapi.json` lists)."""

from __future__ import annotations

import base64

import pytest
from pydantic import BaseModel

from raftkv.api import schema as S

from .harness import InProcessCluster, InProcessMember

pytestmark = pytest.mark.asyncio


def fits(model: type[BaseModel], body: object) -> None:
    """The body is exactly what the model describes: it validates, and dumping it
    gives the body back, so a field the server stopped sending is caught even where
    the model has a default for it (the client accepts older members that omit some)."""
    parsed = model.model_validate(body, strict=True)
    # None is how the server leaves an optional field out (peer_url), so compare
    # without the Nones on either side.
    assert parsed.model_dump(mode="json", exclude_none=True) == _without_none(body)


def _without_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("PUT", "/v1/kv/big", {"content": b"x" * ((1 << 20) + 1)}, 413, "value_too_large"),
        ("PUT", "/v1/kv/" + "k" * 5000, {"content": b"x"}, 413, "key_too_large"),
        ("GET", "/v1/kv/" + "k" * 5000, {}, 413, "key_too_large"),
        ("DELETE", "/v1/kv/" + "k" * 5000, {}, 413, "key_too_large"),
        ("PUT", "/v1/kv/%FF%FE", {"content": b"x"}, 400, "invalid_key"),
        ("PUT", "/v1/kv/", {"content": b"x"}, 400, "invalid_key"),
        ("PUT", "/v1/kv/ok", {"content": b"x", "headers": {"If-Match": "abc"}}, 400, "bad_request"),
        (
            "PUT",
            "/v1/kv/ok",
            {"content": b"x", "headers": {"If-None-Match": '"3"'}},
            400,
            "bad_request",
        ),
        ("PUT", "/v1/kv/ok", {"content": b"x", "headers": {"X-Request-Id": "x" * 65}}, 400, None),
        ("GET", "/v1/kv/absent", {}, 404, "not_found"),
        ("GET", "/v1/kv/ok?consistency=eventual", {}, 400, "bad_request"),
        ("GET", "/v1/kv?limit=0", {}, 400, "bad_request"),
        ("GET", "/v1/kv?limit=x", {}, 400, "bad_request"),
        ("GET", "/v1/kv?consistency=eventual", {}, 400, "bad_request"),
        ("GET", "/v1/snapshot?consistency=eventual", {}, 400, "bad_request"),
        ("POST", "/v1/members", {"content": b"{not json"}, 422, "invalid_request"),
        ("POST", "/v1/members", {"json": {"peer_urls": []}}, 422, "invalid_request"),
        ("POST", "/v1/members", {"json": {"peer_urls": ["ftp://x"]}}, 400, "invalid_url"),
        ("POST", "/v1/members", {"json": {"peer_urls": ["http://nohost"]}}, 400, "invalid_url"),
        (
            "POST",
            "/v1/members",
            {"json": {"peer_urls": ["http://127.0.0.1:41001"]}},
            409,
            "member_exists",
        ),
        (
            "POST",
            "/v1/members",
            {"json": {"peer_urls": ["http://127.0.0.1:9"], "id": 1}},
            409,
            "member_exists",
        ),
        ("DELETE", "/v1/members/424242", {}, 404, "not_found"),
        ("DELETE", "/v1/members/x", {}, 422, "invalid_request"),
        ("POST", "/v1/members/424242/promote", {}, 404, "not_found"),
        ("POST", "/v1/members/1/promote", {}, 409, "not_a_learner"),
        ("POST", "/v1/leader/transfer", {"json": {"to": 424242}}, 404, "not_found"),
        ("POST", "/v1/leader/transfer", {"json": {"to": -1}}, 400, "invalid_request"),
        ("POST", "/v1/leader/transfer", {"content": b"[1"}, 400, "invalid_request"),
        ("GET", "/nope", {}, 404, None),
        ("POST", "/v1/kv/ok", {}, 405, None),
    ],
)
async def test_error_table(
    single: InProcessMember,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str | None,
) -> None:
    async with single.http() as h:
        r = await h.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, r.text
        if code is not None:
            assert r.json()["error"] == code
        if status != 422 and code is not None:
            fits(S.ErrorBody, r.json())
        elif status == 422:
            fits(S.ValidationErrorBody, r.json())


async def test_keys_round_trip(single: InProcessMember) -> None:
    async with single.http() as h:
        w = await h.put("/v1/kv/k%C3%A9", content=b"v1")
        assert w.status_code == 200
        assert w.headers["etag"] == f'"{w.json()["revision"]}"'
        fits(S.WriteResult, w.json())
        g = await h.get("/v1/kv/k%C3%A9", params={"consistency": "serializable"})
        assert g.content == b"v1"
        assert g.headers["x-raftkv-revision"] == str(w.json()["revision"])
        stale = await h.put("/v1/kv/k%C3%A9", content=b"v2", headers={"If-Match": '"1"'})
        assert stale.status_code == 412
        assert stale.json()["revision"] == w.json()["revision"]
        rid = {"X-Request-Id": "once"}
        assert (await h.put("/v1/kv/r", content=b"a", headers=rid)).status_code == 200
        again = await h.put("/v1/kv/other", content=b"b", headers=rid)
        assert again.status_code == 409
        assert again.json()["error"] == "request_id_conflict"
        page = await h.get("/v1/kv", params={"prefix": "k", "limit": 10})
        fits(S.KeyList, page.json())
        assert page.json()["items"][0]["key"] == "ké"
        assert base64.b64decode(page.json()["items"][0]["value"]) == b"v1"
        d = await h.delete("/v1/kv/k%C3%A9")
        fits(S.DeleteResult, d.json())
        assert d.json()["deleted"] is True


async def test_status_probes_metrics_snapshot(single: InProcessMember) -> None:
    async with single.http() as h:
        assert (await h.put("/v1/kv/m", content=b"x")).status_code == 200
        fits(S.Status, (await h.get("/v1/status")).json())
        fits(S.Health, (await h.get("/healthz")).json())
        ready = await h.get("/readyz")
        assert ready.status_code == 200
        fits(S.Readiness, ready.json())
        metrics = await h.get("/metrics")
        assert "raftkv_http_request_duration_seconds" in metrics.text
        assert '"/v1/kv/{key:path}"' in metrics.text
        assert '"/healthz"' in metrics.text
        snap = await h.get("/v1/snapshot")
        assert snap.status_code == 200
        assert int(snap.headers["content-length"]) == len(snap.content)


async def test_readyz_answers_503_with_the_reason(single: InProcessMember) -> None:
    single.node.removed = True
    try:
        async with single.http() as h:
            r = await h.get("/readyz")
            assert r.status_code == 503
            fits(S.Readiness, r.json())
            assert r.json()["status"]["removed"] is True
            ser = await h.get("/v1/kv/x", params={"consistency": "serializable"})
            assert ser.status_code == 410
            assert ser.json()["error"] == "member_removed"
    finally:
        single.node.removed = False


async def test_membership_through_a_follower_is_forwarded(cluster3: InProcessCluster) -> None:
    follower = await cluster3.follower()
    async with follower.http() as h:
        members = await h.get("/v1/members")
        fits(S.MemberList, members.json())
        added = await h.post(
            "/v1/members", json={"peer_urls": ["http://127.0.0.1:41901"], "learner": True}
        )
        assert added.status_code == 201, added.text
        fits(S.MemberResult, added.json())
        new = added.json()["member"]
        assert new["id"] == 4
        assert new["learner"] is True
        assert new["name"] == "member-4"
        promoted = await h.post(f"/v1/members/{new['id']}/promote")
        # The learner never runs here, so it never catches up: the leader refuses.
        assert promoted.status_code == 409, promoted.text
        removed = await h.delete(f"/v1/members/{new['id']}")
        assert removed.status_code == 200, removed.text
        fits(S.RemovedMember, removed.json())
        reused = await h.post(
            "/v1/members", json={"peer_urls": ["http://127.0.0.1:41902"], "id": new["id"]}
        )
        assert reused.status_code == 409
        assert reused.json()["error"] == "id_removed"


async def test_leader_transfer_through_a_follower(cluster3: InProcessCluster) -> None:
    leader = await cluster3.leader()
    follower = await cluster3.follower()
    async with follower.http() as h:
        r = await h.post("/v1/leader/transfer", json={"to": follower.node.member_id})
        assert r.status_code == 200, r.text
        fits(S.LeaderResult, r.json())
        assert r.json() == {"leader": follower.node.member_id}
    async with leader.http() as h:
        r = await h.post("/v1/leader/transfer")  # no body: the best voter
        assert r.status_code == 200, r.text
        assert r.json()["leader"] != follower.node.member_id


async def test_forwarding_refuses_a_request_that_was_forwarded_already(
    cluster3: InProcessCluster,
) -> None:
    follower = await cluster3.follower()
    async with follower.http() as h:
        r = await h.delete("/v1/members/3", headers={"X-Raftkv-Forwarded": "1"})
        assert r.status_code == 503
        assert r.json()["error"] == "not_leader"
        assert r.headers["retry-after"] == "1"


async def test_forwarding_without_a_reachable_leader(cluster3: InProcessCluster) -> None:
    follower = await cluster3.follower()
    follower.app.state.forwarder.transport.apps.clear()
    async with follower.http() as h:
        r = await h.post("/v1/leader/transfer", json={})
        assert r.status_code == 503
        assert r.json()["error"] == "no_leader"


async def test_openapi_lists_the_response_models(single: InProcessMember) -> None:
    async with single.http() as h:
        doc = (await h.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for name in (
        "WriteResult",
        "DeleteResult",
        "KeyList",
        "MemberList",
        "MemberResult",
        "RemovedMember",
        "LeaderResult",
        "Status",
        "Health",
        "Readiness",
        "ErrorBody",
        "ValidationErrorBody",
        "AddMember",
    ):
        assert name in schemas, name

    def ref(path: str, method: str, status: str) -> str:
        content = doc["paths"][path][method]["responses"][status]["content"]
        return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert ref("/v1/kv/{key}", "put", "200") == "WriteResult"
    assert ref("/v1/kv/{key}", "put", "413") == "ErrorBody"
    assert ref("/v1/kv/{key}", "delete", "200") == "DeleteResult"
    assert ref("/v1/kv", "get", "200") == "KeyList"
    assert ref("/v1/members", "get", "200") == "MemberList"
    assert ref("/v1/members", "post", "201") == "MemberResult"
    assert ref("/v1/members", "post", "422") == "ValidationErrorBody"
    assert ref("/v1/members/{member_id}", "delete", "200") == "RemovedMember"
    assert ref("/v1/leader/transfer", "post", "200") == "LeaderResult"
    assert ref("/v1/status", "get", "200") == "Status"
    assert ref("/readyz", "get", "503") == "Readiness"
    body = doc["paths"]["/v1/leader/transfer"]["post"]["requestBody"]
    assert "to" in body["content"]["application/json"]["schema"]["properties"]
