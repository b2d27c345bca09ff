"""The client API of a real three-member cluster: semantics through every member, and
bad input answered with a defined error while nothing is lost."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from raftkv.client import Client, PreconditionFailed

from .harness import LocalCluster


def test_put_and_get_key_value_through_every_member(cluster: LocalCluster) -> None:
    """raftexample's TestPutAndGetKeyValue, without its sleep: PUT returns after commit
    and apply, so a read on any member right after sees it."""
    for writer in cluster.members.values():
        with writer.http() as w:
            r = w.put(f"/v1/kv/from-{writer.name}", content=b"v-" + writer.name.encode())
            assert r.status_code == 200, r.text
            rev = r.json()["revision"]
        for reader in cluster.members.values():
            with reader.http() as rd:
                g = rd.get(f"/v1/kv/from-{writer.name}")
                assert g.status_code == 200
                assert g.content == b"v-" + writer.name.encode()
                assert g.headers["etag"] == f'"{rev}"'


def test_delete_then_get_is_404(cluster: LocalCluster) -> None:
    m1, m2, m3 = cluster.members.values()
    with m1.http() as a, m2.http() as b, m3.http() as c:
        assert a.put("/v1/kv/gone", content=b"x").status_code == 200
        d = b.delete("/v1/kv/gone")
        assert d.status_code == 200
        assert d.json()["deleted"] is True
        g = c.get("/v1/kv/gone")
        assert g.status_code == 404
        assert g.json()["error"] == "not_found"
        again = a.delete("/v1/kv/gone")
        assert again.status_code == 200
        assert again.json()["deleted"] is False


def test_compare_and_swap_with_if_match(cluster: LocalCluster) -> None:
    m1, m2, _ = cluster.members.values()
    with m1.http() as a, m2.http() as b:
        rev = a.put("/v1/kv/cas", content=b"1").json()["revision"]
        ok = b.put("/v1/kv/cas", content=b"2", headers={"If-Match": f'"{rev}"'})
        assert ok.status_code == 200
        stale = a.put("/v1/kv/cas", content=b"3", headers={"If-Match": f'"{rev}"'})
        assert stale.status_code == 412
        assert stale.json()["revision"] == ok.json()["revision"]
        assert b.get("/v1/kv/cas").content == b"2"
        bad_del = a.delete("/v1/kv/cas", headers={"If-Match": f'"{rev}"'})
        assert bad_del.status_code == 412
        good_del = a.delete("/v1/kv/cas", headers={"If-Match": f'"{ok.json()["revision"]}"'})
        assert good_del.status_code == 200


def test_if_none_match_creates_only(cluster: LocalCluster) -> None:
    m1, _, m3 = cluster.members.values()
    with m1.http() as a, m3.http() as c:
        assert a.put("/v1/kv/once", content=b"a", headers={"If-None-Match": "*"}).status_code == 200
        second = c.put("/v1/kv/once", content=b"b", headers={"If-None-Match": "*"})
        assert second.status_code == 412
        assert a.get("/v1/kv/once").content == b"a"


def test_prefix_listing_with_pagination(cluster: LocalCluster) -> None:
    with cluster.client() as cl:
        for i in range(25):
            cl.put(f"list/{i:03d}", f"{i}".encode())
        cl.put("listx", b"other")
        page = httpx.get(
            cluster.members["m2"].url + "/v1/kv", params={"prefix": "list/", "limit": 10}
        ).json()
        assert [it["key"] for it in page["items"]] == [f"list/{i:03d}" for i in range(10)]
        assert page["more"] is True
        everything = cl.list("list/", limit=1000)
        assert len(everything) == 25


def test_serializable_read_and_client_retries(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints()) as cl:
        w = cl.put("ser", b"v")
        got = cl.get("ser", consistency="serializable")
        assert got is not None
        assert got.value == b"v"
        assert got.revision == w.revision


def test_same_request_id_applies_once(cluster: LocalCluster) -> None:
    """A retried write (same X-Request-Id) is not applied twice, even through another
    member: the second answer replays the first result."""
    m1, m2, _ = cluster.members.values()
    with m1.http() as a, m2.http() as b:
        h = {"X-Request-Id": "retry-1"}
        r1 = a.put("/v1/kv/dedup", content=b"first", headers=h)
        a.put("/v1/kv/dedup", content=b"second")
        r2 = b.put("/v1/kv/dedup", content=b"first", headers=h)
        assert r1.json()["revision"] == r2.json()["revision"]
        assert b.get("/v1/kv/dedup").content == b"second"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("PUT", "/v1/kv/big", {"content": b"x" * (1 << 20 + 1)}, 413, "value_too_large"),
        ("PUT", "/v1/kv/" + "k" * 5000, {"content": b"x"}, 413, "key_too_large"),
        ("GET", "/v1/kv/" + "k" * 5000, {}, 413, "key_too_large"),
        ("PUT", "/v1/kv/%FF%FE", {"content": b"x"}, 400, "invalid_key"),
        ("PUT", "/v1/kv/ok", {"content": b"x", "headers": {"If-Match": "abc"}}, 400, "bad_request"),
        (
            "PUT",
            "/v1/kv/ok",
            {"content": b"x", "headers": {"If-None-Match": '"3"'}},
            400,
            "bad_request",
        ),
        ("GET", "/v1/kv/ok?consistency=eventual", {}, 400, "bad_request"),
        ("GET", "/v1/kv?limit=0", {}, 400, "bad_request"),
        ("POST", "/v1/members", {"content": b"{not json"}, 422, "invalid_request"),
        ("POST", "/v1/members", {"json": {"peer_urls": []}}, 422, "invalid_request"),
        ("POST", "/v1/members", {"json": {"peer_urls": ["ftp://x"]}}, 400, "invalid_url"),
        ("POST", "/v1/members", {"json": {"peer_urls": ["http://nohost"]}}, 400, "invalid_url"),
        ("DELETE", "/v1/members/424242", {}, 404, "not_found"),
        ("POST", "/v1/members/424242/promote", {}, 404, "not_found"),
        ("POST", "/v1/leader/transfer", {"json": {"to": 424242}}, 404, "not_found"),
        ("GET", "/nope", {}, 404, None),
    ],
)
def test_bad_input_gets_a_clear_error_and_loses_nothing(
    cluster: LocalCluster,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str | None,
) -> None:
    leader = cluster.leader()
    with leader.http() as h:
        before = h.put("/v1/kv/canary", content=b"alive").json()["revision"]
        r = h.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, r.text
        if code is not None:
            assert r.json()["error"] == code
        assert h.get("/v1/kv/canary").headers["etag"] == f'"{before}"'
    assert all(m.alive() for m in cluster.members.values())


def test_empty_key_is_rejected(cluster: LocalCluster) -> None:
    with cluster.members["m1"].http() as h:
        r = h.put("/v1/kv/", content=b"x")
        assert r.status_code in (400, 404, 405)
        if r.status_code == 400:
            assert r.json()["error"] == "invalid_key"


def test_peer_port_refuses_wrong_secret_and_survives_garbage(cluster: LocalCluster) -> None:
    m = cluster.members["m1"]
    # Garbage bytes straight onto the peer socket.
    for payload in (b"\x00\xff" * 512, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", m.peer_port), timeout=2) as s:
            s.sendall(payload)
            s.settimeout(2)
            with contextlib.suppress(OSError):
                s.recv(100)
    r = httpx.post(
        m.peer_url + "/raft/snapshot",
        content=b"junk",
        headers={"X-Raftkv-Cluster-Id": "nope", "X-Raftkv-Secret": "wrong"},
    )
    assert r.status_code in (403, 400, 404), r.text
    with m.http() as h:
        assert h.put("/v1/kv/after-garbage", content=b"ok").status_code == 200
    assert all(x.alive() for x in cluster.members.values())


def test_status_metrics_and_probes(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    st = leader.status()
    assert st["role"] == "leader"
    assert st["leader"] == st["id"]
    assert len(st["members"]) == 3  # type: ignore[arg-type]
    assert st["progress"]
    assert st["conf_change_pending"] is False
    assert st["pending_conf_index"] <= st["commit_index"]  # type: ignore[operator]
    for m in cluster.members.values():
        assert httpx.get(m.url + "/healthz").status_code == 200
        assert httpx.get(m.url + "/readyz").status_code == 200
    text = httpx.get(leader.url + "/metrics").text
    for name in (
        "raftkv_is_leader",
        "raftkv_has_leader",
        "raftkv_term",
        "raftkv_commit_index",
        "raftkv_applied_index",
        "raftkv_last_log_index",
        "raftkv_snapshot_index",
        "raftkv_members",
        "raftkv_leader_changes_total",
        "raftkv_proposals_committed_total",
        "raftkv_proposals_failed_total",
        "raftkv_proposals_pending",
        "raftkv_wal_fsync_duration_seconds",
        "raftkv_snapshot_save_duration_seconds",
        "raftkv_peer_rtt_seconds",
        "raftkv_http_request_duration_seconds",
        "raftkv_keys",
        "raftkv_store_revision",
        "raftkv_compact_revision",
        "raftkv_history_size",
        "raftkv_leases",
        "raftkv_watchers",
        "raftkv_watch_streams",
        "raftkv_watch_events_sent_total",
        "raftkv_slow_watchers_cancelled_total",
        "raftkv_compacted_watchers_cancelled_total",
    ):
        assert name in text, name
    assert "raftkv_is_leader 1.0" in text
    assert 'raftkv_members{role="voter"} 3.0' in text


def test_cas_conflict_precondition_failed_type(cluster: LocalCluster) -> None:
    with cluster.client() as cl:
        w = cl.put("cas2", b"a")
        cl.put("cas2", b"b")
        with pytest.raises(PreconditionFailed):
            cl.put("cas2", b"c", if_match=w.revision)


def test_concurrent_linearizable_reads_on_every_member_all_answer(cluster: LocalCluster) -> None:
    """Each member batches reads behind one ReadIndex context; contexts from different
    members must never collide at the leader (a collision left reads hanging)."""
    import asyncio

    async def reads(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as h:
            rs = await asyncio.gather(*(h.get("/v1/kv/canary-lin") for _ in range(40)))
            return [r.status_code for r in rs]

    async def main() -> list[int]:
        out: list[int] = []
        for res in await asyncio.gather(*(reads(m.url) for m in cluster.members.values())):
            out += res
        return out

    with cluster.client() as cl:
        cl.put("canary-lin", b"x")
    for _ in range(3):
        codes = asyncio.run(main())
        assert codes == [200] * len(codes)


def test_oversized_put_from_urllib_gets_the_413_not_a_reset(cluster: LocalCluster) -> None:
    """urllib sends the whole body at once (no `Expect: 100-continue`) with
    `Connection: close` and reads the answer only afterwards: the member answers 413 and
    reads the rest of the body before closing, so the client sees the answer, not
    ECONNRESET."""
    import json
    import urllib.error
    import urllib.request

    def put(url: str, data: bytes | Iterator[bytes]) -> tuple[int, dict[str, object]]:
        req = urllib.request.Request(url, data=data, method="PUT")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * (64 * 1024)

    for m in cluster.members.values():
        for body in (b"x" * (4 << 20), chunks()):
            status, err = put(m.url + "/v1/kv/big", body)
            assert status == 413, err
            assert err["error"] == "value_too_large"
            assert "message" in err
        assert put(m.url + "/v1/kv/after-big", b"ok")[0] == 200
    assert all(m.alive() for m in cluster.members.values())
