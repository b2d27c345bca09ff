"""The MVCC routes in-process against real members: revisions, reads of the past,
compaction, range delete, `/v1/range`, `/v1/txn`, leases, and their errors."""

from __future__ import annotations

import base64

import pytest

from raftkv.api import schema as S

from .harness import InProcessCluster, InProcessMember
from .test_routes import fits

pytestmark = pytest.mark.asyncio


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


async def test_revisions_are_the_stores_not_the_raft_index(single: InProcessMember) -> None:
    async with single.http() as h:
        r1 = (await h.put("/v1/kv/a", content=b"1")).json()
        r2 = (await h.put("/v1/kv/b", content=b"1")).json()
        assert r2["revision"] == r1["revision"] + 1
        fits(S.WriteResult, r2)
        miss = await h.delete("/v1/kv/nope")
        assert miss.json()["revision"] == r2["revision"]  # nothing deleted: no revision
        g = await h.get("/v1/kv/a")
        assert g.headers["etag"] == f'"{r1["revision"]}"'
        assert g.headers["x-raftkv-version"] == "1"
        assert g.headers["x-raftkv-store-revision"] == str(r2["revision"])
        put = await h.put("/v1/kv/c", content=b"1")
        for resp in (g, put):
            assert resp.headers["x-raftkv-cluster-id"] == single.node.cfg.cluster_id
            assert resp.headers["x-raftkv-member-id"] == str(single.node.member_id)
            assert int(resp.headers["x-raftkv-raft-term"]) >= 1
        assert put.headers["x-raftkv-store-revision"] == str(put.json()["revision"])


async def test_if_match_compares_the_mod_revision(single: InProcessMember) -> None:
    async with single.http() as h:
        rev = (await h.put("/v1/kv/k", content=b"1")).json()["revision"]
        bad = await h.put("/v1/kv/k", content=b"2", headers={"If-Match": f'"{rev + 5}"'})
        assert bad.status_code == 412
        assert bad.json()["revision"] == rev
        ok = await h.put("/v1/kv/k", content=b"2", headers={"If-Match": f'"{rev}"'})
        assert ok.status_code == 200
        assert ok.json()["prev_revision"] == rev
        again = await h.put("/v1/kv/k", content=b"3", headers={"If-None-Match": "*"})
        assert again.status_code == 412


async def test_reads_of_the_past_and_compaction(single: InProcessMember) -> None:
    async with single.http() as h:
        r1 = (await h.put("/v1/kv/p", content=b"old")).json()["revision"]
        await h.put("/v1/kv/p", content=b"new")
        assert (await h.get(f"/v1/kv/p?revision={r1}")).content == b"old"
        listing = (await h.get(f"/v1/kv?prefix=p&revision={r1}")).json()
        fits(S.KeyList, listing)
        assert [base64.b64decode(i["value"]) for i in listing["items"]] == [b"old"]
        future = await h.get("/v1/kv/p?revision=999999")
        assert future.status_code == 400
        assert future.json()["error"] == "future_revision"
        c = await h.post("/v1/compact", json={"revision": r1 + 1})
        assert c.status_code == 200, c.text
        gone = await h.get(f"/v1/kv/p?revision={r1}")
        assert gone.status_code == 410
        assert gone.json() == {
            "error": "compacted",
            "message": gone.json()["message"],
            "compact_revision": r1 + 1,
        }
        again = await h.post("/v1/compact", json={"revision": r1})
        assert again.status_code == 410
        bodies: list[object] = [{"revision": 0}, {"revision": "x"}, [], {"revision": True}]
        for body in bodies:
            assert (await h.post("/v1/compact", json=body)).status_code == 400


async def test_range_delete_deletes_at_one_revision(single: InProcessMember) -> None:
    async with single.http() as h:
        for k in ("dir/a", "dir/b", "dirt"):
            await h.put(f"/v1/kv/{k}", content=b"x")
        r = await h.delete("/v1/kv?prefix=dir/")
        assert r.status_code == 200
        fits(S.RangeDeleteResult, r.json())
        assert r.json()["deleted"] == 2
        assert (await h.get("/v1/kv/dirt")).status_code == 200
        assert (await h.delete("/v1/kv")).status_code == 422  # prefix is required


async def test_range_and_txn_speak_etcds_json(single: InProcessMember) -> None:
    async with single.http() as h:
        for k in (b"t/a", b"t/b", b"t/c"):
            await h.post(
                "/v1/txn", json={"success": [{"request_put": {"key": b64(k), "value": b64(k)}}]}
            )
        rng = (
            await h.post(
                "/v1/range",
                json={
                    "key": b64(b"t/"),
                    "range_end": b64(b"t0"),
                    "limit": 2,
                    "sort_order": "DESCEND",
                },
            )
        ).json()
        assert [base64.b64decode(kv["key"]) for kv in rng["kvs"]] == [b"t/c", b"t/b"]
        assert rng["more"] is True
        assert rng["count"] == 3
        mod = rng["kvs"][0]["mod_revision"]
        txn = {
            "compare": [{"key": b64(b"t/c"), "target": "MOD", "result": "=", "mod_revision": mod}],
            "success": [
                {"request_put": {"key": b64(b"t/c"), "value": b64(b"x"), "prev_kv": True}},
                {"request_delete_range": {"key": b64(b"t/a")}},
            ],
            "failure": [{"request_range": {"key": b64(b"t/c")}}],
        }
        won = (await h.post("/v1/txn", json=txn)).json()
        assert won["succeeded"] is True
        assert base64.b64decode(won["responses"][0]["response_put"]["prev_kv"]["value"]) == b"t/c"
        assert won["responses"][1]["response_delete_range"]["deleted"] == 1
        lost = (await h.post("/v1/txn", json=txn)).json()
        assert lost["succeeded"] is False
        assert lost["header"]["revision"] == won["header"]["revision"]
        kv = lost["responses"][0]["response_range"]["kvs"][0]
        assert base64.b64decode(kv["value"]) == b"x"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"success": [{"request_put": {"key": "!!"}}]}, 400, "invalid_request"),
        ({"success": [{"request_put": {}, "request_range": {}}]}, 400, "invalid_request"),
        ({"compare": [{"key": "YQ==", "target": "NOPE"}]}, 400, "invalid_request"),
        ({"compare": [{"key": "YQ=="}]}, 400, "invalid_request"),
        ({"success": [{"request_put": {"key": ""}}]}, 400, "empty_key"),
        (
            {"success": [{"request_put": {"key": "YQ=="}}, {"request_put": {"key": "YQ=="}}]},
            400,
            "duplicate_key",
        ),
        ({"success": [{"request_put": {"key": "YQ==", "lease": 77}}]}, 404, "lease_not_found"),
        (
            {"success": [{"request_range": {"key": "YQ==", "revision": 1 << 40}}]},
            400,
            "future_revision",
        ),
        (
            {"success": [{"request_put": {"key": "YQ==", "ignore_value": True}}]},
            404,
            "key_not_found",
        ),
        (
            {"success": [{"request_put": {"key": "YQ==", "value": "eA==", "ignore_value": True}}]},
            400,
            "value_provided",
        ),
        ({"success": [{"request_put": {"key": "YQ=="}}] * 129}, 400, None),
        ("not an object", 400, "invalid_request"),
    ],
)
async def test_bad_txns_get_a_clear_error_and_change_nothing(
    single: InProcessMember, body: object, status: int, code: str | None
) -> None:
    async with single.http() as h:
        before = (await h.get("/v1/kv?prefix=")).json()["revision"]
        r = await h.post("/v1/txn", json=body)
        assert r.status_code == status, r.text
        if code is not None:
            assert r.json()["error"] == code
        assert (await h.get("/v1/kv?prefix=")).json()["revision"] == before


async def test_an_oversize_txn_is_refused_before_it_is_proposed(single: InProcessMember) -> None:
    async with single.http() as h:
        big = b64(b"x" * ((1 << 20) + 1))
        r = await h.post(
            "/v1/txn", json={"success": [{"request_put": {"key": "YQ==", "value": big}}]}
        )
        assert r.status_code == 413
        assert r.json()["error"] == "value_too_large"
        r = await h.post("/v1/txn", content=b"{" * 10, headers={"content-type": "application/json"})
        assert r.status_code == 400


async def test_leases_grant_attach_keepalive_and_revoke(cluster3: InProcessCluster) -> None:
    follower = await cluster3.follower()
    async with follower.http() as h:
        g = await h.post("/v1/leases", json={"ttl": 60})
        assert g.status_code == 201, g.text
        lid = g.json()["id"]
        assert g.json()["ttl"] == 60
        assert (await h.post("/v1/leases", json={"ttl": 5, "id": lid})).status_code == 409
        assert (await h.put(f"/v1/kv/owned?lease={lid}", content=b"v")).status_code == 200
        assert (await h.put("/v1/kv/x?lease=12345", content=b"v")).json()[
            "error"
        ] == "lease_not_found"
        ka = await h.post(f"/v1/leases/{lid}/keepalive")  # forwarded to the leader
        assert ka.status_code == 200, ka.text
        assert ka.json()["ttl"] == 60
        ttl = (await h.get(f"/v1/leases/{lid}?keys=true")).json()
        assert ttl["granted_ttl"] == 60
        assert 0 < ttl["ttl"] <= 60
        assert ttl["keys"] == [b64(b"owned")]
        assert {"id": lid} in (await h.get("/v1/leases")).json()["leases"]
        rv = await h.delete(f"/v1/leases/{lid}")
        assert rv.status_code == 200
        assert rv.json()["deleted"] == 1
        assert (await h.get("/v1/kv/owned")).status_code == 404
        assert (await h.post(f"/v1/leases/{lid}/keepalive")).status_code == 404
        assert (await h.get(f"/v1/leases/{lid}")).json()["ttl"] == -1
        assert (await h.delete(f"/v1/leases/{lid}")).status_code == 404
        for bad in ({"ttl": 0}, {"ttl": "x"}, {"ttl": 5, "id": -1}, {"ttl": 10**12}):
            assert (await h.post("/v1/leases", json=bad)).status_code == 400, bad
        assert (await h.delete("/v1/leases/abc")).status_code == 400


async def test_a_retried_txn_is_replayed(single: InProcessMember) -> None:
    async with single.http() as h:
        body = {"success": [{"request_put": {"key": b64(b"once"), "value": b64(b"1")}}]}
        hdr = {"X-Request-Id": "txn-1"}
        first = (await h.post("/v1/txn", json=body, headers=hdr)).json()
        again = (await h.post("/v1/txn", json=body, headers=hdr)).json()
        assert again["replayed"] is True
        assert again["header"]["revision"] == first["header"]["revision"]
        other = await h.post("/v1/txn", json={"success": []}, headers=hdr)
        assert other.status_code == 409
