"""raftkv versus etcd 3.4 over etcd's v3 gRPC API: a local three-member cluster of each,
driven in alternation (each case on raftkv, then on etcd, in the same run) by the same
gRPC client (support.etcd_aio: grpc.aio and the generated messages of
raftkv.etcdapi.proto) in load-generator processes of their own.

Cases: Put (100-byte values) at 1, 16 and 64 clients; Range of one key, linearizable
and serializable, at 64 clients; Txn at 64 clients (compare the key's mod_revision,
then put; read it on a miss: etcd's compare-and-swap, as kv_bench's txn); and watch
fan-out (one writer at a fixed rate, N watchers of its prefix spread over the three
members; events delivered per second, and the delivery delay of each event = the
time a watcher read it minus the time the writer got the Put's answer for that
revision, so a negative delay is an event that came before the writer's ack).

Prints ops/s, p50 and p99 per case for both systems and the raftkv/etcd ratio, every
error counted by gRPC status code, and each member's peak RSS. etcd comes from Debian's
`etcd-server` package (`/usr/bin/etcd`); without it (or with --skip-etcd) the etcd
columns are empty. Figures only: nothing here passes or fails.

    PYTHONPATH=tests python bench/grpc_bench.py [--seconds 5] [--skip-etcd]
        [--cases put1,put16,put64,range-lin64,range-ser64,txn64,watch]
        [--watchers 100] [--watch-rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

# The clusters and the shared gRPC client come from bench/ and tests/support: run this
# with PYTHONPATH=tests, as `make bench-grpc` does.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clusters import Cluster, start_etcd, start_raftkv
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.etcd_aio import AioEtcd, prefix_end

#: name -> (operation, clients); "watch" uses --watchers and --watch-rate instead.
CASES: dict[str, tuple[str, int]] = {
    "put1": ("put", 1),
    "put16": ("put", 16),
    "put64": ("put", 64),
    "range-lin64": ("range-lin", 64),
    "range-ser64": ("range-ser", 64),
    "txn64": ("txn", 64),
    "watch": ("watch", 0),
}
LABELS = {
    "put": "Put",
    "range-lin": "Range linearizable",
    "range-ser": "Range serializable",
    "txn": "Txn (CAS)",
}
WATCH_PREFIX = b"fan/"
CALL_TIMEOUT = 10.0
"""Per call: a call that takes longer counts as an error (DEADLINE_EXCEEDED)."""
READY_TIMEOUT = 60.0
"""How long the load processes may take to start, connect and warm up."""


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def _code(exc: BaseException) -> str:
    """An error's name for the counts: the gRPC status code, else the exception type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return type(exc).__name__


# -- the load processes ------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What one load process runs: clients `first` .. `first + clients - 1` of the
    case, over `channels` channels (channel j on endpoint (first_channel + j) % n)."""

    op: str
    endpoints: list[str]
    first: int
    clients: int
    channels: int
    first_channel: int
    seconds: float
    value_size: int = 100
    keys: int = 1000


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def _channels(endpoints: list[str], count: int, first: int) -> list[AioEtcd]:
    return [AioEtcd(endpoints[(first + j) % len(endpoints)]) for j in range(count)]


async def _kv_client(i: int, kv: AioEtcd, spec: LoadSpec, deadline: float, out: LoadResult) -> None:
    """One closed-loop client: its next call as soon as the previous one answered."""
    value = os.urandom(spec.value_size // 2 + 1).hex().encode()[: spec.value_size]
    txn_key = f"bench/txn/{i}".encode()
    read_key = f"bench/{i}/0".encode()
    mod_rev = 0  # txn: the mod revision this client last gave its key
    n = 0
    while True:
        t0 = time.perf_counter()
        if time.monotonic() >= deadline:
            return
        try:
            if spec.op == "put":
                key = f"bench/{i}/{n % spec.keys}".encode()
                await kv.put(pb.PutRequest(key=key, value=value), CALL_TIMEOUT)
            elif spec.op in ("range-lin", "range-ser"):
                req = pb.RangeRequest(key=read_key, serializable=spec.op == "range-ser")
                await kv.range(req, CALL_TIMEOUT)
            else:
                resp = await kv.txn(_cas(txn_key, mod_rev, value), CALL_TIMEOUT)
                if resp.succeeded:
                    mod_rev = resp.header.revision
                else:  # someone else's write, or the first round: learn the revision
                    kvs = resp.responses[0].response_range.kvs
                    mod_rev = kvs[0].mod_revision if kvs else 0
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            out.errors[_code(exc)] += 1
            continue
        finally:
            n += 1
        out.latencies.append(time.perf_counter() - t0)


def _cas(key: bytes, mod_rev: int, value: bytes) -> pb.TxnRequest:
    """etcd's compare-and-swap, as kv_bench's txn: put if the key's mod revision is the
    one this client last saw, else read it."""
    return pb.TxnRequest(
        compare=[
            pb.Compare(
                key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=mod_rev
            )
        ],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
    )


async def _kv_load(spec: LoadSpec, ready: Any, go: Any, go_at: Any) -> LoadResult:
    out = LoadResult()
    chans = _channels(spec.endpoints, min(spec.channels, spec.clients), spec.first_channel)
    try:
        for c in chans:
            await c.ready(READY_TIMEOUT)
        if spec.op in ("range-lin", "range-ser"):  # every client reads a key that exists
            for j in range(spec.clients):
                i = spec.first + j
                req = pb.PutRequest(key=f"bench/{i}/0".encode(), value=b"v" * spec.value_size)
                await chans[j % len(chans)].put(req, CALL_TIMEOUT)
        ready.put("ready")
        await asyncio.to_thread(go.wait, READY_TIMEOUT)
        deadline = go_at.value + spec.seconds
        await asyncio.gather(
            *(
                _kv_client(spec.first + j, chans[j % len(chans)], spec, deadline, out)
                for j in range(spec.clients)
            )
        )
        out.seconds = time.monotonic() - go_at.value
    finally:
        for c in chans:
            await c.close()
    return out


def kv_proc(spec: LoadSpec, ready: Any, go: Any, go_at: Any, results: Any) -> None:
    try:
        results.put(asyncio.run(_kv_load(spec, ready, go, go_at)))
    except BaseException as exc:  # the parent must hear of it, not wait for nothing
        ready.put(f"failed: {exc!r}")
        results.put(LoadResult(errors=Counter({f"load process: {exc!r}": 1})))


# -- watch fan-out -----------------------------------------------------------------------


@dataclass(frozen=True)
class WatchSpec:
    endpoints: list[str]
    first: int
    watchers: int
    channels: int
    seconds: float
    sample_every: int = 10
    """Watcher i records (revision, arrival) of each event when i % sample_every == 0;
    the others only count, so the client spends its time reading, not bookkeeping."""
    grace: float = 1.0
    """Watchers read this long after the writer stops, for the delays of the tail;
    events/s counts only what arrived in the measured window."""


@dataclass
class WatchResult:
    events: int = 0
    arrivals: list[tuple[int, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    acks: dict[int, float] = field(default_factory=dict)
    """The writer's: revision -> when its Put was answered."""
    writes: int = 0


@dataclass
class _Window:
    """The measured window as the watchers of one process see it (set once `go` is)."""

    start: float | None = None
    seconds: float = 0.0
    grace: float = 0.0

    def measuring(self, now: float) -> bool:
        return self.start is not None and now <= self.start + self.seconds

    def over(self, now: float) -> bool:
        return self.start is not None and now >= self.start + self.seconds + self.grace


async def _watcher(
    i: int, ch: AioEtcd, spec: WatchSpec, created: asyncio.Event, win: _Window, out: WatchResult
) -> None:
    call = ch.watch()
    try:
        await call.write(
            pb.WatchRequest(
                create_request=pb.WatchCreateRequest(
                    key=WATCH_PREFIX, range_end=prefix_end(WATCH_PREFIX)
                )
            )
        )
        first = await call.read()
        if first is grpc.aio.EOF or not first.created:
            out.errors["watch not created"] += 1
            return
        created.set()
        sample = i % spec.sample_every == 0
        while not win.over(time.monotonic()):
            msg = await call.read()
            now = time.monotonic()
            if msg is grpc.aio.EOF:
                out.errors["stream ended"] += 1
                return
            if msg.canceled:
                out.errors["watch canceled"] += 1
                return
            if win.start is None:
                continue
            if win.measuring(now):
                out.events += len(msg.events)
            if sample:
                out.arrivals.extend((ev.kv.mod_revision, now) for ev in msg.events)
    except grpc.aio.AioRpcError as exc:
        out.errors[_code(exc)] += 1
    finally:
        created.set()  # a watcher that failed is counted, not waited for
        call.cancel()


async def _watch_load(spec: WatchSpec, ready: Any, go: Any, go_at: Any) -> WatchResult:
    out = WatchResult()
    chans = _channels(spec.endpoints, min(spec.channels, spec.watchers), spec.first)
    tasks: list[asyncio.Task[None]] = []
    try:
        for c in chans:
            await c.ready(READY_TIMEOUT)
        flags = [asyncio.Event() for _ in range(spec.watchers)]
        win = _Window(seconds=spec.seconds, grace=spec.grace)
        tasks = [
            asyncio.create_task(
                _watcher(spec.first + j, chans[j % len(chans)], spec, flags[j], win, out)
            )
            for j in range(spec.watchers)
        ]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), READY_TIMEOUT)
        ready.put("ready")
        await asyncio.to_thread(go.wait, READY_TIMEOUT)
        win.start = go_at.value
        # A watcher only returns after reading a message past its end: stop the quiet
        # ones at the end of the window.
        end = go_at.value + spec.seconds + spec.grace
        await asyncio.wait(tasks, timeout=max(0.0, end - time.monotonic()))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in chans:
            await c.close()
    return out


async def _writer(
    endpoint: str, rate: float, seconds: float, ready: Any, go: Any, go_at: Any
) -> WatchResult:
    """Puts at `rate`/s under the watched prefix, each sent without waiting for the
    previous one (a fixed rate, not a closed loop); records when each was answered."""
    out = WatchResult()
    ch = AioEtcd(endpoint)
    pending: set[asyncio.Task[None]] = set()
    value = b"x" * 100

    async def put(n: int) -> None:
        try:
            key = WATCH_PREFIX + str(n % 100).encode()
            resp = await ch.put(pb.PutRequest(key=key, value=value), CALL_TIMEOUT)
            out.acks[resp.header.revision] = time.monotonic()
            out.writes += 1
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            out.errors[f"writer {_code(exc)}"] += 1

    try:
        await ch.ready(READY_TIMEOUT)
        ready.put("ready")
        await asyncio.to_thread(go.wait, READY_TIMEOUT)
        start = go_at.value
        n = 0
        while True:
            at = start + n / rate
            if at >= start + seconds:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            t = asyncio.create_task(put(n))
            pending.add(t)
            t.add_done_callback(pending.discard)
            n += 1
        if pending:
            await asyncio.wait(pending, timeout=CALL_TIMEOUT + 1)
    finally:
        await ch.close()
    return out


def watch_proc(spec: WatchSpec, ready: Any, go: Any, go_at: Any, results: Any) -> None:
    try:
        results.put(asyncio.run(_watch_load(spec, ready, go, go_at)))
    except BaseException as exc:
        ready.put(f"failed: {exc!r}")
        results.put(WatchResult(errors=Counter({f"watch process: {exc!r}": 1})))


def writer_proc(
    endpoint: str, rate: float, seconds: float, ready: Any, go: Any, go_at: Any, results: Any
) -> None:
    try:
        results.put(asyncio.run(_writer(endpoint, rate, seconds, ready, go, go_at)))
    except BaseException as exc:
        ready.put(f"failed: {exc!r}")
        results.put(WatchResult(errors=Counter({f"writer process: {exc!r}": 1})))


# -- the driver --------------------------------------------------------------------------


def _run_procs(ctx: Any, targets: list[tuple[Any, tuple[Any, ...]]], timeout: float) -> list[Any]:
    """Start one process per target, wait until all are ready, start them together
    (`go_at` on the shared monotonic clock), collect one result from each, reap all."""
    ready, results = ctx.Queue(), ctx.Queue()
    go, go_at = ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=f, args=(*a, ready, go, go_at, results)) for f, a in targets]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=READY_TIMEOUT * 2)
        go_at.value = time.monotonic()
        go.set()
        # A process that failed to start still answers, with its failure as an error.
        return [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()


def run_kv_case(
    ctx: Any, endpoints: list[str], op: str, clients: int, args: argparse.Namespace
) -> dict[str, Any]:
    procs = max(1, min(args.procs, clients))
    targets = []
    first = 0
    for k in range(procs):
        n = clients // procs + (k < clients % procs)
        spec = LoadSpec(
            op=op,
            endpoints=endpoints,
            first=first,
            clients=n,
            channels=args.channels,
            first_channel=k * args.channels,
            seconds=args.seconds,
        )
        targets.append((kv_proc, (spec,)))
        first += n
    parts: list[LoadResult] = _run_procs(ctx, targets, args.seconds + CALL_TIMEOUT + 60)
    lat = sorted(x for p in parts for x in p.latencies)
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p.errors)
    return {
        "ops_per_s": len(lat) / args.seconds,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "errors": dict(errors),
    }


def run_watch_case(ctx: Any, endpoints: list[str], args: argparse.Namespace) -> dict[str, Any]:
    procs = max(1, min(args.procs, args.watchers))
    targets: list[tuple[Any, tuple[Any, ...]]] = []
    first = 0
    for k in range(procs):
        n = args.watchers // procs + (k < args.watchers % procs)
        spec = WatchSpec(
            endpoints=endpoints,
            first=first,
            watchers=n,
            channels=args.channels,
            seconds=args.seconds,
        )
        targets.append((watch_proc, (spec,)))
        first += n
    targets.append((writer_proc, (endpoints[0], args.watch_rate, args.seconds)))
    parts: list[WatchResult] = _run_procs(ctx, targets, args.seconds + CALL_TIMEOUT + 60)
    acks: dict[int, float] = {}
    errors: Counter[str] = Counter()
    for p in parts:
        acks.update(p.acks)
        errors.update(p.errors)
    delays = sorted(t - acks[rev] for p in parts for rev, t in p.arrivals if rev in acks)
    writes = sum(p.writes for p in parts)
    return {
        "ops_per_s": sum(p.events for p in parts) / args.seconds,
        "p50_ms": percentile(delays, 0.50) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "errors": dict(errors),
        "writes_per_s": writes / args.seconds,
        "delay_samples": len(delays),
    }


def _fmt(v: object, digits: int) -> str:
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per case and system")
    ap.add_argument("--skip-etcd", action="store_true")
    ap.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}"
    )
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--channels", type=int, default=4, help="gRPC channels per process")
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--watch-rate", type=float, default=200.0, help="writes/s in the watch case")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        ap.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    if args.seconds <= 0 or args.procs < 1 or args.channels < 1 or args.watch_rate <= 0:
        ap.error("--seconds, --procs, --channels and --watch-rate must be positive")
    ctx = mp.get_context("spawn")
    root = Path(tempfile.mkdtemp(prefix="raftkv-grpc-bench-"))
    clusters: dict[str, Cluster] = {}
    results: dict[tuple[str, str], dict[str, Any]] = {}
    rss: dict[str, list[float]] = {}
    try:
        clusters["raftkv"] = start_raftkv(root, etcd_api=True)
        if not args.skip_etcd:
            etcd = start_etcd(root)
            if etcd is None:
                print("etcd not installed (apt-get install etcd-server): skipping etcd")
            else:
                clusters["etcd"] = etcd
        for case in cases:
            op, clients = CASES[case]
            for system, cluster in clusters.items():
                if op == "watch":
                    results[(system, case)] = run_watch_case(ctx, cluster.grpc_endpoints, args)
                else:
                    results[(system, case)] = run_kv_case(
                        ctx, cluster.grpc_endpoints, op, clients, args
                    )
        rss = {s: c.peak_rss_mb() for s, c in clusters.items()}
    finally:
        for c in clusters.values():
            c.stop()
        shutil.rmtree(root, ignore_errors=True)
    _report(args, cases, results, rss)


def _report(
    args: argparse.Namespace,
    cases: list[str],
    results: dict[tuple[str, str], dict[str, Any]],
    rss: dict[str, list[float]],
) -> None:
    print(
        f"3-member clusters on 127.0.0.1, {os.cpu_count()} cores, {args.seconds:g} s per case, "
        f"100-byte values, etcd v3 gRPC on both, {args.procs} load processes x "
        f"{args.channels} channels, cases alternating raftkv then etcd"
    )
    print(
        f"{'case':<28} {'raftkv ops/s':>12} {'p50 ms':>8} {'p99 ms':>8}   "
        f"{'etcd ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}  ratio"
    )
    for case in cases:
        op, n = CASES[case]
        r = results.get(("raftkv", case), {})
        e = results.get(("etcd", case), {})
        ratio = ""
        if r and e and e["ops_per_s"] > 0:
            ratio = f"{r['ops_per_s'] / e['ops_per_s']:.2f}"
        if op == "watch":
            name = f"watch {args.watchers} x {args.watch_rate:g}/s"
        else:
            name = f"{LABELS[op]} x{n}"
        print(
            f"{name:<28} {_fmt(r.get('ops_per_s'), 0):>12} {_fmt(r.get('p50_ms'), 2):>8} "
            f"{_fmt(r.get('p99_ms'), 2):>8}   {_fmt(e.get('ops_per_s'), 0):>10} "
            f"{_fmt(e.get('p50_ms'), 2):>8} {_fmt(e.get('p99_ms'), 2):>8}  {ratio}"
        )
        if op == "watch":
            for system, res in (("raftkv", r), ("etcd", e)):
                if res:
                    print(
                        f"    {system}: events/s over all watchers, delay = event read - "
                        f"Put answered; writes acknowledged {res['writes_per_s']:,.0f}/s, "
                        f"{res['delay_samples']:,} delay samples"
                    )
        for system, res in (("raftkv", r), ("etcd", e)):
            if res.get("errors"):
                errs = ", ".join(f"{k} {v}" for k, v in sorted(res["errors"].items()))
                print(f"    errors ({system}): {errs}")
    for system, values in rss.items():
        print(f"{system} peak RSS per member (MB): " + ", ".join(f"{x:.0f}" for x in values))


if __name__ == "__main__":
    main()
