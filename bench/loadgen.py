"""A closed-loop HTTP load generator, run as its own process by kv_bench.py.

N concurrent clients on keep-alive connections (aiohttp) spread over the endpoints;
each sends its next request as soon as the previous answer arrives. Prints one JSON
line: ops, errors, seconds, ops/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time

import aiohttp


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


async def client(
    i: int,
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    deadline: float,
    lat: list[float],
    errors: list[int],
) -> None:
    endpoints = args.endpoints.split(",")
    base = endpoints[i % len(endpoints)]
    value = os.urandom(args.value_size // 2).hex().encode()[: args.value_size]
    b64value = base64.b64encode(value).decode()
    mod_rev = 0  # txn: the mod revision this client last gave its key
    n = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            return
        key = f"bench/{i}/{n % args.keys}"
        n += 1
        try:
            if args.op == "txn":
                req = session.post(f"{base}{_TXN[args.system]}", json=_txn(i, mod_rev, b64value))
                async with req as r:
                    answer = await r.json(content_type=None)
                    if r.status >= 300:
                        errors.append(r.status)
                        continue
                    rev = int(answer["header"]["revision"])
                    if answer.get("succeeded"):
                        mod_rev = rev
                    else:  # someone else's write, or the first round: learn the revision
                        kvs = answer["responses"][0]["response_range"].get("kvs") or []
                        mod_rev = int(kvs[0]["mod_revision"]) if kvs else 0
                lat.append(time.perf_counter() - now)
                continue
            if args.op == "range1k":
                req = session.post(f"{base}{_RANGE[args.system]}", json=_RANGE_BODY)
            elif args.system == "raftkv":
                if args.op == "put":
                    req = session.put(f"{base}/v1/kv/{key}", data=value)
                else:
                    q = "?consistency=serializable" if args.op == "get-ser" else ""
                    req = session.get(f"{base}/v1/kv/bench/{i}/0{q}")
            else:
                body: dict[str, object]
                if args.op == "put":
                    body = {
                        "key": base64.b64encode(key.encode()).decode(),
                        "value": base64.b64encode(value).decode(),
                    }
                    req = session.post(f"{base}/v3/kv/put", json=body)
                else:
                    body = {"key": base64.b64encode(f"bench/{i}/0".encode()).decode()}
                    if args.op == "get-ser":
                        body["serializable"] = True
                    req = session.post(f"{base}/v3/kv/range", json=body)
            async with req as r:
                await r.read()
                if r.status >= 300 and not (r.status == 404 and args.op != "put"):
                    errors.append(r.status)
                    continue
        except aiohttp.ClientError:
            errors.append(0)
            continue
        lat.append(time.perf_counter() - now)


_TXN = {"raftkv": "/v1/txn", "etcd": "/v3/kv/txn"}
_RANGE = {"raftkv": "/v1/range", "etcd": "/v3/kv/range"}
_RANGE_KEYS = 1000
_RANGE_BODY = {
    "key": base64.b64encode(b"bench/range/").decode(),
    "range_end": base64.b64encode(b"bench/range0").decode(),
}


def _txn(i: int, mod_rev: int, b64value: str) -> dict[str, object]:
    """etcd's compare-and-swap: put the client's key if its mod revision is the one
    this client last saw, else read it (both systems take etcd's JSON shape)."""
    key = base64.b64encode(f"bench/txn/{i}".encode()).decode()
    return {
        "compare": [{"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": mod_rev}],
        "success": [{"request_put": {"key": key, "value": b64value}}],
        "failure": [{"request_range": {"key": key}}],
    }


async def _fill_range(args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
    base = args.endpoints.split(",")[0]
    value = base64.b64encode(b"v" * args.value_size).decode()
    for j in range(_RANGE_KEYS):
        key = base64.b64encode(f"bench/range/{j:04d}".encode()).decode()
        body = {"success": [{"request_put": {"key": key, "value": value}}]}
        async with session.post(f"{base}{_TXN[args.system]}", json=body) as r:
            await r.read()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        if args.op == "range1k":
            await _fill_range(args, session)
        # Warm-up: every client writes its read key once.
        if args.op in ("get-lin", "get-ser"):
            value = b"v" * args.value_size
            for i in range(args.clients):
                base = args.endpoints.split(",")[i % len(args.endpoints.split(","))]
                if args.system == "raftkv":
                    async with session.put(f"{base}/v1/kv/bench/{i}/0", data=value) as r:
                        await r.read()
                else:
                    body = {
                        "key": base64.b64encode(f"bench/{i}/0".encode()).decode(),
                        "value": base64.b64encode(value).decode(),
                    }
                    async with session.post(f"{base}/v3/kv/put", json=body) as r:
                        await r.read()
        lat: list[float] = []
        errors: list[int] = []
        start = time.perf_counter()
        deadline = start + args.seconds
        await asyncio.gather(
            *(client(i, args, session, deadline, lat, errors) for i in range(args.clients))
        )
        elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "system": args.system,
        "op": args.op,
        "clients": args.clients,
        "ops": len(lat),
        "errors": len(errors),
        "error_statuses": {str(k): errors.count(k) for k in sorted(set(errors))},
        "seconds": round(elapsed, 2),
        "ops_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=("raftkv", "etcd"), required=True)
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--op", choices=("put", "get-lin", "get-ser", "txn", "range1k"), default="put")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--keys", type=int, default=1000)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
