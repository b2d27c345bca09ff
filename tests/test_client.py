"""The HTTP client against a fake cluster that speaks the contract in the client's
module docstring: status codes, error bodies, failover across endpoints, request-id
based retries of writes, and key quoting (also checked against a real FastAPI route)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from raftkv.api import schema as S
from raftkv.client import (
    AsyncClient,
    BadRequest,
    BadResponse,
    Client,
    Forbidden,
    GetResult,
    Indeterminate,
    KeyValue,
    ListPage,
    Member,
    NotFound,
    PreconditionFailed,
    Progress,
    RaftKVError,
    StatusInfo,
    TooLarge,
    Unavailable,
    WriteResult,
)

EPS = ["http://m1:2379", "http://m2:2379", "http://m3:2379"]


def err(status: int, code: str, message: str = "", **extra: object) -> httpx.Response:
    headers = {"Retry-After": "1"} if status == 503 else {}
    return httpx.Response(
        status, json={"error": code, "message": message, **extra}, headers=headers
    )


@dataclass
class FakeCluster:
    """One shared store behind three members. `behaviour[host]` makes a member fail:
    "down" (connection refused), "no_leader" (503), "lost_reply" (applies the write,
    then the connection breaks), "slow_commit" (applies, answers 503 indeterminate)."""

    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    index: int = 10
    seen_ids: dict[str, dict[str, object]] = field(default_factory=dict)
    applied_writes: int = 0
    behaviour: dict[str, str] = field(default_factory=dict)
    log: list[httpx.Request] = field(default_factory=list)
    members_: list[dict[str, object]] = field(
        default_factory=lambda: [
            {
                "id": 1,
                "name": "m1",
                "peer_urls": ["http://m1:2380"],
                "client_urls": ["http://m1:2379"],
                "learner": False,
            }
        ]
    )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        mode = self.behaviour.get(request.url.host, "")
        if mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if mode == "no_leader":
            return err(503, "no_leader", "no leader")
        if mode == "removed":
            return err(410, "member_removed", "member 1 was removed from the cluster")
        resp = self.route(request)
        if mode == "lost_reply" and request.method != "GET":
            raise httpx.ReadTimeout("timed out", request=request)
        if mode == "slow_commit" and request.method != "GET":
            return err(503, "indeterminate", "proposed; may still commit")
        return resp

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]
        if path.startswith("/v1/kv/"):
            return self.kv(request, unquote(path[len("/v1/kv/") :]))
        if path == "/v1/kv":
            return self.list(request)
        if path == "/v1/members" and request.method == "GET":
            return httpx.Response(200, json={"members": self.members_})
        if path == "/v1/members" and request.method == "POST":
            body = json.loads(request.content)
            m = {
                "id": len(self.members_) + 1,
                "name": body["name"] or "",
                "peer_urls": body["peer_urls"],
                "client_urls": [],
                "learner": body["learner"],
            }
            self.members_.append(m)
            return httpx.Response(201, json={"member": m})
        if path.endswith("/promote"):
            mid = int(path.split("/")[3])
            for m in self.members_:
                if m["id"] == mid:
                    m["learner"] = False
                    return httpx.Response(200, json={"member": m})
            return err(404, "member_not_found")
        if path.startswith("/v1/members/") and request.method == "DELETE":
            return httpx.Response(200, json={})
        if path == "/v1/leader/transfer":
            to = json.loads(request.content)["to"]
            return httpx.Response(200, json={"leader": to or 2})
        if path == "/v1/status":
            return httpx.Response(200, json=STATUS)
        if path == "/v1/snapshot":
            body = SNAPSHOT_BODY
            digest = hashlib.sha256(body).hexdigest()
            if self.behaviour.get("snapshot") == "corrupt":
                body = body[:-1]
            return httpx.Response(
                200,
                content=body,
                headers={
                    "X-Raftkv-Applied-Index": str(self.index),
                    "X-Raftkv-Sha256": digest,
                    "Content-Type": "application/octet-stream",
                },
            )
        if path == "/healthz":
            return httpx.Response(200, text="ok")
        if path == "/readyz":
            return err(503, "not_ready")
        return httpx.Response(404, json={"detail": "Not Found"})

    def kv(self, request: httpx.Request, key: str) -> httpx.Response:
        if request.method == "GET":
            if key not in self.data:
                return err(404, "not_found", key)
            value, rev = self.data[key]
            return httpx.Response(200, content=value, headers={"ETag": f'"{rev}"'})
        rid = request.headers.get("X-Request-Id")
        if rid in self.seen_ids:  # the state machine's dedup, as seen through HTTP
            return httpx.Response(200, json=self.seen_ids[rid])
        if len(request.content) > 1024:
            return err(413, "too_large")
        cur = self.data.get(key)
        cur_rev = cur[1] if cur else 0
        if_match = request.headers.get("If-Match")
        if (if_match is not None and if_match != f'"{cur_rev}"') or (
            request.headers.get("If-None-Match") == "*" and cur
        ):
            return err(412, "precondition_failed", "revision mismatch", revision=cur_rev)
        self.index += 1
        self.applied_writes += 1
        if request.method == "PUT":
            self.data[key] = (request.content, self.index)
            body: dict[str, object] = {"revision": self.index, "prev_revision": cur_rev}
        else:
            self.data.pop(key, None)
            body = {"revision": self.index, "prev_revision": cur_rev, "deleted": cur is not None}
        if rid:
            self.seen_ids[rid] = body
        return httpx.Response(200, json=body)

    def list(self, request: httpx.Request) -> httpx.Response:
        prefix = request.url.params.get("prefix", "")
        limit = int(request.url.params["limit"])
        after = request.url.params.get("start_after")
        keys = sorted(k for k in self.data if k.startswith(prefix) and (after is None or k > after))
        items = [
            {
                "key": k,
                "value": base64.b64encode(self.data[k][0]).decode(),
                "revision": self.data[k][1],
            }
            for k in keys[:limit]
        ]
        return httpx.Response(200, json={"items": items, "more": len(keys) > limit})


SNAPSHOT_BODY = b"RKVS\x01" + bytes(range(256)) * 4

STATUS = {
    "id": 1,
    "name": "m1",
    "role": "leader",
    "leader": 1,
    "term": 3,
    "commit_index": 20,
    "applied_index": 20,
    "last_index": 21,
    "snapshot_index": 10,
    "members": [
        {
            "id": 1,
            "name": "m1",
            "peer_urls": ["http://m1:2380"],
            "client_urls": ["http://m1:2379"],
            "learner": False,
        },
        {
            "id": 2,
            "name": "m2",
            "peer_urls": ["http://m2:2380"],
            "client_urls": [],
            "learner": True,
        },
    ],
    "progress": {
        "2": {"match": 19, "next": 20, "state": "replicate", "learner": True, "recent_active": True}
    },
}


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


def client(fake: Callable[[httpx.Request], httpx.Response], **kw: object) -> Client:
    kw.setdefault("backoff", 0.0)
    return Client(EPS, transport=httpx.MockTransport(fake), **kw)  # type: ignore[arg-type]


# -- KV semantics ------------------------------------------------------------------


def test_put_get_delete(fake: FakeCluster) -> None:
    with client(fake) as c:
        w = c.put("a", b"\x00\xff")
        assert w == WriteResult(revision=11, prev_revision=0)
        assert c.get("a") == GetResult(b"\x00\xff", 11)
        assert c.delete("a") == WriteResult(12, 11, deleted=True)
        assert c.get("a") is None
        assert c.delete("a").deleted is False


def test_compare_and_swap_and_create_only(fake: FakeCluster) -> None:
    with client(fake) as c:
        rev = c.put("k", b"1", if_none_match=True).revision
        assert fake.log[-1].headers["If-None-Match"] == "*"
        with pytest.raises(PreconditionFailed) as exc:
            c.put("k", b"2", if_none_match=True)
        assert exc.value.current_revision == rev
        assert exc.value.status == 412
        with pytest.raises(PreconditionFailed) as exc:
            c.put("k", b"2", if_match=rev + 5)
        assert exc.value.current_revision == rev
        assert fake.log[-1].headers["If-Match"] == f'"{rev + 5}"'
        rev2 = c.put("k", b"2", if_match=rev).revision
        with pytest.raises(PreconditionFailed):
            c.delete("k", if_match=rev)
        c.delete("k", if_match=rev2)


def test_serializable_reads_say_so(fake: FakeCluster) -> None:
    with client(fake) as c:
        c.get("a", consistency="serializable")
        assert fake.log[-1].url.params["consistency"] == "serializable"
        c.get("a")
        assert "consistency" not in fake.log[-1].url.params
        with pytest.raises(ValueError):
            c.get("a", consistency="eventual")  # type: ignore[arg-type]


def test_list_with_prefix_limit_and_pages(fake: FakeCluster) -> None:
    with client(fake) as c:
        for k in ["app/1", "app/2", "app/3", "b"]:
            c.put(k, k.encode())
        items = c.list("app/", limit=2)
        assert [i.key for i in items] == ["app/1", "app/2"]
        assert items[0] == KeyValue("app/1", b"app/1", 11)
        page = c.list_page("app/", 2, start_after="app/2")
        assert [i.key for i in page.items] == ["app/3"]
        assert page.more is False
        assert c.list_page("app/", 2).more is True
        assert fake.log[-1].url.params["prefix"] == "app/"


WEIRD_KEYS = [
    "a/b",
    "/lead",
    "trail/",
    "sp ace",
    "ünïcødé/ключ",
    "%41",
    "q?x=1",
    "h#f",
    ".",
    "..",
    "a/../b",
    "+plus",
    "a//b",
]


@pytest.mark.parametrize("key", WEIRD_KEYS)
def test_keys_are_one_quoted_path_segment(fake: FakeCluster, key: str) -> None:
    with client(fake) as c:
        c.put(key, b"v")
        raw = fake.log[-1].url.raw_path.decode()
        assert raw.startswith("/v1/kv/")
        assert "/" not in raw[len("/v1/kv/") :]
        assert "?" not in raw
        assert "#" not in raw
        assert c.get(key) == GetResult(b"v", 11)
        assert list(fake.data) == [key]


def test_empty_key_is_refused_locally(fake: FakeCluster) -> None:
    with client(fake) as c, pytest.raises(ValueError):
        c.put("", b"v")
    assert fake.log == []


# -- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "exc_type"),
    [
        (err(400, "invalid_key"), BadRequest),
        (err(403, "forbidden"), Forbidden),
        (err(404, "member_not_found"), NotFound),
        (err(413, "too_large"), TooLarge),
        (err(500, "internal"), RaftKVError),
        (httpx.Response(500, text="<html>oops</html>"), RaftKVError),
    ],
)
def test_error_bodies_map_to_typed_exceptions(
    resp: httpx.Response, exc_type: type[RaftKVError]
) -> None:
    with client(lambda r: resp) as c, pytest.raises(exc_type) as exc:
        c.put("k", b"v")
    assert exc.value.status == resp.status_code


def test_error_carries_code_and_message() -> None:
    with (
        client(lambda r: err(400, "invalid_key", "too long")) as c,
        pytest.raises(BadRequest) as exc,
    ):
        c.get("k")
    assert (exc.value.code, exc.value.message, exc.value.status) == ("invalid_key", "too long", 400)


def test_not_our_404_is_not_an_absent_key() -> None:
    # e.g. the endpoint is the peer port or another service: do not read it as "absent".
    not_found = httpx.Response(404, json={"detail": "Not Found"})
    with client(lambda r: not_found) as c, pytest.raises(NotFound):
        c.get("k")


def test_precondition_revision_falls_back_to_etag() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        return httpx.Response(412, json={"error": "precondition_failed"}, headers={"ETag": '"42"'})

    with client(handler) as c, pytest.raises(PreconditionFailed) as exc:
        c.put("k", b"v", if_match=1)
    assert exc.value.current_revision == 42


def test_malformed_success_bodies_raise_bad_response() -> None:
    with client(lambda r: httpx.Response(200, json={"rev": 1})) as c, pytest.raises(BadResponse):
        c.put("k", b"v")
    with client(lambda r: httpx.Response(200, content=b"v")) as c, pytest.raises(BadResponse):
        c.get("k")  # no ETag


# -- failover and retries ----------------------------------------------------------


def test_reads_fail_over_on_connection_errors_and_503(fake: FakeCluster) -> None:
    fake.data["k"] = (b"v", 3)
    fake.behaviour = {"m1": "down", "m2": "no_leader"}
    with client(fake) as c:
        assert c.get("k") == GetResult(b"v", 3)
        assert [r.url.host for r in fake.log] == ["m1", "m2", "m3"]
        c.get("k")  # sticks to the member that answered
        assert fake.log[-1].url.host == "m3"


def test_all_down_is_unavailable_after_the_configured_rounds(fake: FakeCluster) -> None:
    fake.behaviour = dict.fromkeys(["m1", "m2", "m3"], "down")
    with client(fake, retries=1) as c, pytest.raises(Unavailable):
        c.put("k", b"v")
    assert len(fake.log) == 6
    assert fake.applied_writes == 0


def test_503_everywhere_reports_retry_after(fake: FakeCluster) -> None:
    fake.behaviour = dict.fromkeys(["m1", "m2", "m3"], "no_leader")
    with client(fake, retries=0) as c, pytest.raises(Unavailable) as exc:
        c.get("k")
    assert exc.value.retry_after == 1.0
    assert exc.value.status == 503


def test_write_retry_after_lost_reply_reuses_request_id_and_applies_once(
    fake: FakeCluster,
) -> None:
    fake.behaviour = {"m1": "lost_reply"}
    with client(fake) as c:
        w = c.put("k", b"v")
    ids = {r.headers["X-Request-Id"] for r in fake.log}
    assert len(fake.log) == 2
    assert len(ids) == 1
    assert len(ids.pop()) == 32
    assert fake.applied_writes == 1
    assert w.revision == fake.data["k"][1]


def test_write_retry_after_indeterminate_503_is_deduplicated(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "slow_commit"}
    with client(fake) as c:
        c.delete("k")
        c.put("k", b"1")
    assert fake.applied_writes == 2


def test_each_logical_write_gets_a_fresh_request_id(fake: FakeCluster) -> None:
    with client(fake) as c:
        c.put("k", b"1")
        c.put("k", b"1")
    assert fake.log[0].headers["X-Request-Id"] != fake.log[1].headers["X-Request-Id"]
    assert fake.applied_writes == 2


def test_write_whose_fate_is_unknown_raises_indeterminate(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "lost_reply", "m2": "down", "m3": "down"}
    with client(fake, retries=0) as c, pytest.raises(Indeterminate):
        c.put("k", b"v")
    assert fake.applied_writes == 1  # it did commit: Unavailable would have been a lie
    assert not isinstance(Indeterminate("x", "", 0), Unavailable)


def test_membership_changes_are_not_retried_once_sent(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "lost_reply"}
    with client(fake) as c, pytest.raises(Indeterminate):
        c.add_member("http://m4:2380")
    assert len(fake.log) == 1


def test_membership_changes_retry_when_surely_not_applied(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "down", "m2": "no_leader"}
    with client(fake) as c:
        m = c.add_member("http://m4:2380", name="m4", learner=True)
    assert m == Member(2, "m4", ["http://m4:2380"], [], True)
    assert len(fake.members_) == 2


@pytest.mark.parametrize("code", ["indeterminate", "timeout"])
def test_indeterminate_codes_are_not_reported_as_unavailable(code: str) -> None:
    with client(lambda r: err(503, code), retries=0) as c:
        with pytest.raises(Indeterminate) as exc:
            c.put("k", b"v")
        assert exc.value.retry_after == 1.0
        with pytest.raises(Unavailable):
            c.get("k")  # a read has no fate to be unsure about


def test_gateway_timeout_on_a_write_is_indeterminate() -> None:
    with client(lambda r: httpx.Response(504, text="gateway timeout"), retries=0) as c:
        with pytest.raises(Indeterminate):
            c.put("k", b"v")
        with pytest.raises(Unavailable):
            c.get("k")


def test_endpoint_list_forms() -> None:
    c = Client("m1:2379, http://m2:2379/")
    assert c.endpoints == ["http://m1:2379", "http://m2:2379"]
    c.close()
    with pytest.raises(ValueError):
        Client([])


# -- membership, status, probes -------------------------------------------------------


def test_membership_calls(fake: FakeCluster) -> None:
    with client(fake) as c:
        assert c.members()[0] == Member(1, "m1", ["http://m1:2380"], ["http://m1:2379"], False)
        m = c.add_member("http://m2:2380", learner=True)
        assert json.loads(fake.log[-1].content) == {
            "peer_urls": ["http://m2:2380"],
            "name": None,
            "learner": True,
        }
        assert c.promote_member(m.id).learner is False
        assert fake.log[-1].url.path == "/v1/members/2/promote"
        c.remove_member(2)
        assert fake.log[-1].method == "DELETE"
        assert fake.log[-1].url.path == "/v1/members/2"
        assert c.transfer_leader(3) == 3
        assert json.loads(fake.log[-1].content) == {"to": 3}
        assert c.transfer_leader() == 2
        with pytest.raises(NotFound):
            c.promote_member(99)
        with pytest.raises(ValueError):
            c.remove_member(0)


def test_status(fake: FakeCluster) -> None:
    with client(fake) as c:
        s = c.status()
        assert (s.id, s.role, s.leader, s.term, s.commit_index) == (1, "leader", 1, 3, 20)
        assert (s.applied_index, s.last_index, s.snapshot_index) == (20, 21, 10)
        assert s.members[1].learner
        assert s.progress[2].state == "replicate"
        c.status(endpoint="http://m2:2379")
        assert fake.log[-1].url.host == "m2"


def test_health_and_ready(fake: FakeCluster) -> None:
    with client(fake) as c:
        assert c.health() is True
        assert c.ready() is False
        fake.behaviour = {"m1": "down"}
        assert c.health() is False  # probes ask one member; no failover
        assert c.health("http://m2:2379") is True


# -- async twin -------------------------------------------------------------------------


def test_async_client_has_the_same_behaviour(fake: FakeCluster) -> None:
    async def scenario() -> None:
        fake.behaviour = {"m1": "lost_reply"}
        async with AsyncClient(EPS, transport=httpx.MockTransport(fake), backoff=0) as c:
            w = await c.put("a/b c", b"v")
            assert fake.applied_writes == 1
            fake.behaviour = {"m1": "down"}
            assert await c.get("a/b c") == GetResult(b"v", w.revision)
            assert await c.get("missing") is None
            assert [kv.key for kv in await c.list("a")] == ["a/b c"]
            assert (await c.delete("a/b c")).deleted
            with pytest.raises(PreconditionFailed):
                await c.put("x", b"", if_match=7)
            assert (await c.members())[0].id == 1
            assert (await c.status()).term == 3
            assert await c.health("http://m2:2379")
            assert not await c.ready("http://m2:2379")
            fake.behaviour = dict.fromkeys(["m1", "m2", "m3"], "no_leader")
            with pytest.raises(Unavailable):
                await c.put("k", b"v")

    asyncio.run(scenario())


# -- quoting against a real ASGI stack ----------------------------------------------------


def test_weird_keys_survive_a_real_fastapi_route() -> None:
    app = FastAPI()
    store: dict[str, bytes] = {}

    @app.put("/v1/kv/{key:path}")
    async def put(key: str, request: Request) -> dict[str, int]:
        store[key] = await request.body()
        return {"revision": len(store)}

    @app.get("/v1/kv/{key:path}")
    async def get(key: str) -> Response:
        if key not in store:
            return Response(b'{"error":"not_found"}', 404, media_type="application/json")
        return Response(store[key], headers={"ETag": '"1"'})

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", transport=transport) as c:
            for key in WEIRD_KEYS:
                await c.put(key, key.encode())
                got = await c.get(key)
                assert got is not None, key
                assert got.value == key.encode(), key
        assert sorted(store) == sorted(WEIRD_KEYS)

    asyncio.run(scenario())


def test_a_removed_member_is_skipped_for_reads_writes_and_admin(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "removed"}
    with client(fake) as c:
        assert c.put("k", b"v").revision > 0
        got = c.get("k")
        assert got is not None
        assert got.value == b"v"
        assert c.status().id == 1  # answered by m2
    assert fake.applied_writes == 1
    fake.behaviour = {"m1": "removed", "m2": "removed", "m3": "removed"}
    with client(fake) as c, pytest.raises(RaftKVError) as exc:
        c.get("k")
    assert exc.value.status == 410
    assert exc.value.code == "member_removed"


# -- snapshots (backup) ----------------------------------------------------------------


def test_snapshot_returns_the_checked_bytes(fake: FakeCluster) -> None:
    with client(fake) as c:
        assert c.snapshot() == SNAPSHOT_BODY
        assert "consistency" not in fake.log[-1].url.params
        assert c.snapshot(consistency="serializable") == SNAPSHOT_BODY
        assert fake.log[-1].url.params["consistency"] == "serializable"
        assert fake.log[-1].url.path == "/v1/snapshot"


def test_snapshot_with_a_wrong_checksum_is_refused(fake: FakeCluster) -> None:
    fake.behaviour["snapshot"] = "corrupt"
    with client(fake) as c, pytest.raises(BadResponse) as exc:
        c.snapshot()
    assert exc.value.code == "bad_checksum"


def test_snapshot_without_a_checksum_is_refused() -> None:
    def no_sum(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=SNAPSHOT_BODY)

    with client(no_sum) as c, pytest.raises(BadResponse):
        c.snapshot()


def test_snapshot_fails_over_like_a_read(fake: FakeCluster) -> None:
    fake.behaviour = {"m1": "no_leader", "m2": "down"}
    with client(fake) as c:
        assert c.snapshot() == SNAPSHOT_BODY
    assert fake.log[-1].url.host == "m3"


def test_async_snapshot(fake: FakeCluster) -> None:
    async def go() -> bytes:
        async with AsyncClient(EPS, transport=httpx.MockTransport(fake), backoff=0) as c:
            return await c.snapshot(consistency="serializable")

    assert asyncio.run(go()) == SNAPSHOT_BODY


# -- one request flow, two drivers ---------------------------------------------------------

# (method, args, kwargs, the scripted answers it consumes): a Response, or an exception
# class the transport raises (connection refused / reply lost / ...).
Answer = httpx.Response | type[httpx.TransportError]
SCRIPT: list[tuple[str, tuple[object, ...], dict[str, object], list[Answer]]] = [
    (
        "put",
        ("a/b", b"v"),
        {"if_match": 4},
        [httpx.ConnectError, err(503, "indeterminate"), httpx.Response(200, json={"revision": 5})],
    ),
    (
        "get",
        ("a/b",),
        {"consistency": "serializable"},
        [
            httpx.Response(502, text="bad gateway"),
            httpx.ReadTimeout,
            httpx.Response(200, content=b"v", headers={"ETag": '"5"'}),
        ],
    ),
    ("get", ("missing",), {}, [err(404, "not_found")]),
    ("get", ("x",), {}, [httpx.Response(404, json={"detail": "Not Found"})]),
    ("delete", ("k",), {}, [err(503, "no_leader")] * 6),
    ("delete", ("k",), {}, [httpx.ReadTimeout, err(503, "no_leader"), httpx.ConnectError] * 2),
    ("add_member", ("http://m4:2380",), {"name": "m4", "learner": True}, [httpx.ReadTimeout]),
    (
        "promote_member",
        (2,),
        {},
        [httpx.ConnectError, httpx.Response(200, json={"member": {"id": 2}})],
    ),
    ("remove_member", (3,), {}, [err(410, "member_removed"), httpx.Response(200, json={})]),
    ("transfer_leader", (), {}, [httpx.Response(200, json={"leader": 2})]),
    ("put", ("k", b"v"), {"if_none_match": True}, [err(412, "exists", revision=9)]),
    (
        "list_page",
        ("p",),
        {"limit": 1, "start_after": "o"},
        [
            httpx.Response(
                200, json={"items": [{"key": "p1", "value": "dg==", "revision": 2}], "more": True}
            )
        ],
    ),
    ("members", (), {}, [httpx.Response(200, json={"members": "nope"})]),
    ("status", (), {"endpoint": "http://m2:2379"}, [httpx.ConnectError]),
    ("status", (), {}, [httpx.Response(200, json=STATUS)]),
    ("health", ("http://m3:2379",), {}, [httpx.ConnectError]),
    ("ready", (), {}, [httpx.Response(200)]),
    ("snapshot", (), {}, [httpx.Response(200, content=b"x", headers={"X-Raftkv-Sha256": "00"})]),
]


def _outcome(value: object) -> object:
    if isinstance(value, RaftKVError):
        extra = getattr(value, "retry_after", getattr(value, "current_revision", None))
        return (type(value).__name__, value.code, value.status, extra)
    return value


def test_sync_and_async_clients_drive_the_same_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scripted server answers through `Client` and `AsyncClient`: the same
    requests (order, endpoints, headers, bodies, request-id reuse), the same sleeps
    between rounds, the same results and errors."""

    def run(driver: str) -> tuple[list[object], list[object], list[float]]:
        answers = [a for *_, script in SCRIPT for a in script]
        requests: list[object] = []
        ids: dict[str, int] = {}
        sleeps: list[float] = []

        def handler(request: httpx.Request) -> httpx.Response:
            headers = dict(request.headers)
            if "x-request-id" in headers:
                headers["x-request-id"] = str(ids.setdefault(headers["x-request-id"], len(ids)))
            requests.append((request.method, str(request.url), headers, request.content))
            answer = answers.pop(0)
            if isinstance(answer, httpx.Response):  # a fresh copy: a response is sent once
                return httpx.Response(
                    answer.status_code, headers=answer.headers, content=answer.content
                )
            raise answer("scripted", request=request)

        async def asleep(seconds: float) -> None:
            sleeps.append(seconds)

        monkeypatch.setattr("raftkv.client.time.sleep", sleeps.append)
        monkeypatch.setattr("raftkv.client.asyncio.sleep", asleep)
        outcomes: list[object] = []
        kw: dict[str, object] = {"retries": 1, "backoff": 0.01, "max_backoff": 0.5}
        transport = httpx.MockTransport(handler)
        if driver == "sync":
            with Client(EPS, transport=transport, **kw) as c:  # type: ignore[arg-type]
                for method, args, kwargs, _ in SCRIPT:
                    try:
                        outcomes.append(getattr(c, method)(*args, **kwargs))
                    except RaftKVError as exc:
                        outcomes.append(_outcome(exc))
        else:

            async def scenario() -> None:
                async with AsyncClient(EPS, transport=transport, **kw) as c:  # type: ignore[arg-type]
                    for method, args, kwargs, _ in SCRIPT:
                        try:
                            outcomes.append(await getattr(c, method)(*args, **kwargs))
                        except RaftKVError as exc:
                            outcomes.append(_outcome(exc))

            asyncio.run(scenario())
        monkeypatch.undo()
        assert not answers, "the script was not consumed exactly"
        return requests, outcomes, sleeps

    sync, async_ = run("sync"), run("async")
    assert sync[0] == async_[0]
    assert sync[1] == async_[1]
    assert sync[2] == async_[2]
    # and the script means what it says
    requests, outcomes, sleeps = sync
    assert outcomes[0] == WriteResult(5)
    assert outcomes[1] == GetResult(b"v", 5)
    assert outcomes[2] is None
    assert outcomes[3] == ("NotFound", "http_404", 404, None)
    assert outcomes[4] == ("Unavailable", "no_leader", 503, 1.0)
    assert outcomes[5][0] == "Indeterminate"  # type: ignore[index]
    assert outcomes[6][0] == "Indeterminate"  # type: ignore[index]
    assert outcomes[10] == ("PreconditionFailed", "exists", 412, 9)
    assert outcomes[12][0] == "BadResponse"  # type: ignore[index]
    assert outcomes[13] == ("Unavailable", "unavailable", 0, None)
    assert outcomes[15] is False
    assert outcomes[16] is True
    assert sleeps == [0.5, 0.5]  # Retry-After (1 s) beats the backoff, capped at 0.5 s
    put_ids = {r[2]["x-request-id"] for r in requests[:3]}  # type: ignore[index]
    assert put_ids == {"0"}  # one logical write, one id on every attempt


# -- answers are read with the wire models of raftkv.api.schema ----------------------------

# Answers byte for byte as members send them: captured from the in-process cluster of
# tests/api (a PUT, a DELETE, a page, the member list, an add, a transfer, the status of
# the leader just after adding learner 4 and of a follower), and the status of a joining
# member as `MemberStatus.joining` renders it.
MEMBERS_SENT = (
    b'{"members":[{"id":1,"name":"m1","peer_urls":["http://127.0.0.1:41001"],'
    b'"client_urls":["http://127.0.0.1:41000"],"learner":false},{"id":2,"name":"m2",'
    b'"peer_urls":["http://127.0.0.1:41011"],"client_urls":["http://127.0.0.1:41010"],'
    b'"learner":false},{"id":3,"name":"m3","peer_urls":["http://127.0.0.1:41021"],'
    b'"client_urls":["http://127.0.0.1:41020"],"learner":false}]}'
)
STATUS_SENT = (
    b'{"id":2,"name":"m2","cluster_id":"43a48fdf22dbf463","role":"leader","leader":2,'
    b'"term":2,"commit_index":14,"applied_index":14,"last_index":14,"snapshot_index":0,'
    b'"removed":false,"members":[{"id":1,"name":"m1","peer_urls":["http://127.0.0.1:41001"],'
    b'"client_urls":["http://127.0.0.1:41000"],"learner":false},{"id":2,"name":"m2",'
    b'"peer_urls":["http://127.0.0.1:41011"],"client_urls":["http://127.0.0.1:41010"],'
    b'"learner":false},{"id":3,"name":"m3","peer_urls":["http://127.0.0.1:41021"],'
    b'"client_urls":["http://127.0.0.1:41020"],"learner":false},{"id":4,"name":"member-4",'
    b'"peer_urls":["http://127.0.0.1:41901"],"client_urls":[],"learner":true}],'
    b'"progress":{"1":{"match":14,"next":15,"state":"replicate","learner":false,'
    b'"recent_active":true},"2":{"match":14,"next":15,"state":"replicate","learner":false,'
    b'"recent_active":true},"3":{"match":14,"next":15,"state":"replicate","learner":false,'
    b'"recent_active":true},"4":{"match":0,"next":14,"state":"probe","learner":true,'
    b'"recent_active":true}},"keys":2,"conf_change_pending":false,"pending_conf_index":14}'
)
FOLLOWER_STATUS_SENT = (
    b'{"id":1,"name":"m1","cluster_id":"43a48fdf22dbf463","role":"follower","leader":2,'
    b'"term":2,"commit_index":15,"applied_index":15,"last_index":15,"snapshot_index":0,'
    b'"removed":false,"members":[{"id":1,"name":"m1","peer_urls":["http://127.0.0.1:41001"],'
    b'"client_urls":["http://127.0.0.1:41000"],"learner":false},{"id":2,"name":"m2",'
    b'"peer_urls":["http://127.0.0.1:41011"],"client_urls":["http://127.0.0.1:41010"],'
    b'"learner":false},{"id":3,"name":"m3","peer_urls":["http://127.0.0.1:41021"],'
    b'"client_urls":["http://127.0.0.1:41020"],"learner":false}],"progress":{},"keys":2,'
    b'"conf_change_pending":false,"pending_conf_index":0}'
)
JOINING_STATUS_SENT = (
    b'{"id":0,"name":"m4","cluster_id":"43a48fdf22dbf463","role":"joining","leader":0,'
    b'"term":0,"commit_index":0,"applied_index":0,"last_index":0,"snapshot_index":0,'
    b'"removed":false,"members":[],"progress":{},"keys":0,"conf_change_pending":false,'
    b'"pending_conf_index":0,"peer_url":"http://127.0.0.1:41901"}'
)
SENT: list[tuple[type[BaseModel], bytes]] = [
    (S.WriteResult, b'{"revision":9,"prev_revision":8}'),
    (S.DeleteResult, b'{"revision":10,"prev_revision":9,"deleted":true}'),
    (S.DeleteResult, b'{"revision":11,"prev_revision":0,"deleted":false}'),
    (S.KeyList, b'{"items":[{"key":"app/1","value":"AP8=","revision":12}],"more":true}'),
    (S.MemberList, MEMBERS_SENT),
    (
        S.MemberResult,
        b'{"member":{"id":4,"name":"member-4","peer_urls":["http://127.0.0.1:41901"],'
        b'"client_urls":[],"learner":true}}',
    ),
    (S.LeaderResult, b'{"leader":1}'),
    (S.Status, STATUS_SENT),
    (S.Status, FOLLOWER_STATUS_SENT),
    (S.Status, JOINING_STATUS_SENT),
]


@pytest.mark.parametrize(("model", "sent"), SENT)
def test_wire_models_round_trip_what_members_send(model: type[BaseModel], sent: bytes) -> None:
    parsed = model.model_validate_json(sent)
    assert parsed.model_dump_json(exclude_unset=True).encode() == sent  # nothing lost or added
    assert model.model_validate(json.loads(sent), strict=True) == parsed  # as tests/api check


def _models_in(value: object) -> set[str]:
    if isinstance(value, BaseModel):
        return {type(value).__name__}.union(*map(_models_in, vars(value).values()))
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*map(_models_in, value))
    return set()


def test_every_model_the_client_reads_with_has_a_sample() -> None:
    import raftkv.client as client_module

    used = set(re.findall(r"\bschema\.([A-Z]\w*)", inspect.getsource(client_module)))
    sampled = set().union(*(_models_in(model.model_validate_json(sent)) for model, sent in SENT))
    assert {"Status", "Member", "Progress", "KeyValue"} <= sampled
    assert used <= sampled, used - sampled


def test_the_client_reads_what_members_send() -> None:
    def answer(body: bytes) -> Client:
        return client(lambda r: httpx.Response(200, content=body))

    with answer(b'{"revision":9,"prev_revision":8}') as c:
        assert c.put("k", b"v") == WriteResult(9, 8, False)
    with answer(b'{"revision":10,"prev_revision":9,"deleted":true}') as c:
        assert c.delete("k") == WriteResult(10, 9, True)
    with answer(SENT[3][1]) as c:
        page = c.list_page("app/", 1)
        assert page == ListPage([KeyValue("app/1", b"\x00\xff", 12)], more=True)
    with answer(MEMBERS_SENT) as c:
        assert c.members()[1] == Member(
            2, "m2", ["http://127.0.0.1:41011"], ["http://127.0.0.1:41010"], False
        )
    with answer(SENT[5][1]) as c:
        assert c.add_member("http://127.0.0.1:41901", learner=True) == Member(
            4, "member-4", ["http://127.0.0.1:41901"], [], True
        )
    with answer(b'{"leader":1}') as c:
        assert c.transfer_leader(1) == 1
    with answer(STATUS_SENT) as c:
        s = c.status()
    m4 = Member(4, "member-4", ["http://127.0.0.1:41901"], [], True)
    with answer(MEMBERS_SENT) as c:
        members = c.members()
    assert s == StatusInfo(
        id=2,
        name="m2",
        role="leader",
        leader=2,
        term=2,
        commit_index=14,
        applied_index=14,
        last_index=14,
        snapshot_index=0,
        members=[*members, m4],
        progress={
            1: Progress(14, 15, "replicate", False, True),
            2: Progress(14, 15, "replicate", False, True),
            3: Progress(14, 15, "replicate", False, True),
            4: Progress(0, 14, "probe", True, True),
        },
        conf_change_pending=False,
        pending_conf_index=14,
    )
    with answer(FOLLOWER_STATUS_SENT) as c:
        s = c.status()
    assert (s.role, s.leader, s.members, s.progress) == ("follower", 2, members, {})
    with answer(JOINING_STATUS_SENT) as c:
        assert (c.status().role, c.status().members, c.status().progress) == ("joining", [], {})


def _status_with(**changes: object) -> bytes:
    body: dict[str, object] = {**json.loads(STATUS_SENT), **changes}
    return json.dumps({k: v for k, v in body.items() if v is not DROP}).encode()


DROP = object()
PROGRESS = json.loads(STATUS_SENT)["progress"]
MEMBER_2 = json.loads(MEMBERS_SENT)["members"][1]

# (client method, its args, the answer, where the message points)
MALFORMED: list[tuple[str, tuple[object, ...], bytes, str]] = [
    # a required field is missing
    ("put", ("k", b"v"), b'{"prev_revision":0}', "revision: Field required"),
    ("status", (), _status_with(term=DROP), "term: Field required"),
    ("members", (), b'{"member":[]}', "members: Field required"),
    ("list_page", (), b'{"items":[{"key":"a","revision":1}]}', "items.0.value: Field required"),
    ("status", (), _status_with(progress={"2": {"match": 1, "next": 2}}), "progress.2.state"),
    # a wrong type
    ("status", (), _status_with(role=5), "role: Input should be a valid string"),
    ("members", (), b'{"members":"nope"}', "members: Input should be a valid array"),
    ("list_page", (), b'{"items":[{"key":"a","value":5,"revision":1}]}', "items.0.value"),
    ("status", (), _status_with(progress={"x": PROGRESS["2"]}), "progress.x"),
    ("put", ("k", b"v"), b'{"revision":"5"}', "revision: Input should be a valid integer"),
    ("put", ("k", b"v"), b'{"revision":5.0}', "revision: Input should be a valid integer"),
    ("delete", ("k",), b'{"revision":5,"deleted":1}', "deleted: Input should be a valid boolean"),
    ("add_member", ("http://m4:2380",), b'{"member":{"id":4,"peer_urls":"x"}}', "member.peer_urls"),
    # a bool where an int belongs
    ("put", ("k", b"v"), b'{"revision":true}', "revision: Input should be a valid integer"),
    ("status", (), _status_with(leader=False), "leader: Input should be a valid integer"),
    ("status", (), _status_with(members=[{**MEMBER_2, "id": True}]), "members.0.id"),
    ("status", (), _status_with(progress={"2": {**PROGRESS["2"], "match": True}}), "2.match"),
    ("transfer_leader", (), b'{"leader":true}', "leader: Input should be a valid integer"),
    # not an object, not JSON
    ("put", ("k", b"v"), b"[5]", "Input should be an object"),
    ("status", (), b'"ok"', "Input should be an object"),
    ("members", (), b"null", "Input should be an object"),
    ("promote_member", (2,), b"[]", "Input should be an object"),
    ("list_page", (), b'{"items":[5],"more":false}', "items.0: Input should be an object"),
    ("transfer_leader", (), b"7", "Input should be an object"),
    ("status", (), b'{"id": 1,', "Invalid JSON"),
    # not base64
    ("list_page", (), b'{"items":[{"key":"a","value":"*","revision":1}]}', "not base64"),
    ("list_page", (), b'{"items":[{"key":"a","value":"\xc3\xa9","revision":1}]}', "not base64"),
]


@pytest.mark.parametrize(("method", "args", "body", "where"), MALFORMED)
def test_answers_off_the_contract_are_bad_responses(
    method: str, args: tuple[object, ...], body: bytes, where: str
) -> None:
    with (
        client(lambda r: httpx.Response(200, content=body)) as c,
        pytest.raises(BadResponse) as exc,
    ):
        getattr(c, method)(*args)
    assert type(exc.value) is BadResponse  # never a pydantic error
    assert (exc.value.code, exc.value.status) == ("bad_response", 200)
    assert where in exc.value.message, exc.value.message
    assert "\n" not in exc.value.message


def test_answers_of_an_older_member_keep_their_defaults() -> None:
    """Fields the client has always done without may be absent (or null): an older
    member, or a proxy-less test double, need not send them. Unknown fields are
    ignored."""

    def answer(body: object) -> Client:
        return client(lambda r: httpx.Response(200, json=body))

    with answer({"revision": 5, "future_field": [1]}) as c:
        assert c.put("k", b"v") == WriteResult(5, 0, False)
        assert c.delete("k") == WriteResult(5, 0, False)
    with answer({"revision": 5, "prev_revision": None, "deleted": None}) as c:
        assert c.delete("k") == WriteResult(5, 0, False)
    with answer({"items": []}) as c:
        assert c.list_page() == ListPage([], False)
    with answer({"member": {"id": 2}}) as c:
        assert c.promote_member(2) == Member(2, "", [], [], False)
    with answer({"id": 3, "name": None, "learner": True}) as c:  # a bare member
        assert c.promote_member(3) == Member(3, "", [], [], True)
    with answer({"leader": 0}) as c:
        assert c.transfer_leader() is None
    with client(lambda r: httpx.Response(200)) as c:
        assert c.transfer_leader() is None  # no body at all
    required = (
        "id",
        "role",
        "term",
        "commit_index",
        "applied_index",
        "last_index",
        "snapshot_index",
    )
    minimal = {k: v for k, v in json.loads(STATUS_SENT).items() if k in required}
    minimal |= {
        "leader": None,
        "progress": {"2": {"match": 1, "next": 2, "state": "probe"}},
    }
    with answer(minimal) as c:
        s = c.status()
    assert s == StatusInfo(
        2, "", "leader", 0, 2, 14, 14, 14, 0, [], {2: Progress(1, 2, "probe", False, False)}
    )
    assert (s.conf_change_pending, s.pending_conf_index) == (False, 0)


def test_importing_the_wire_models_stays_light() -> None:
    code = (
        "import sys, raftkv.api.schema, raftkv.client\n"
        "heavy = {'fastapi', 'starlette', 'raftkv.server', 'raftkv.api.client_api'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
