"""The nemesis of `nemesis.py`, with the clients on etcd's v3 gRPC API.

Same cluster (members in network namespaces, each with its etcd port on), same faults
on the same seeded schedule (`Nemesis`), same history format and linearizability
checker, same watch checker; only the clients differ: the register workload goes
through KV.Range / Put / DeleteRange / Txn on the members' etcd ports
(`support.grpc_workload`), and the watchers are gRPC Watch streams that move to another
member and resume from their last complete revision when a fault breaks them
(`support.grpc_watch`). What this adds to the HTTP run: the etcd adapter's answers,
error mapping, and Watch resume semantics hold under kill -9, pauses and partitions.

Everything the clients do runs on one asyncio loop in the calling thread (grpc.aio
wants one loop): the workload, the watchers, the final reads and the watch check. The
nemesis runs in its own thread, as in `nemesis.py`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from cluster.harness import Member
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.verify import Op, OpKind, OpStatus, check_history
from raftkv.verify.report import write_run
from raftkv.verify.workload import Recorder
from support.grpc_watch import GrpcWatcher, run_watchers, wait_caught_up
from support.grpc_workload import (
    GrpcWorkloadConfig,
    final_listing,
    grpc_final_reads,
    run_grpc_workload,
)
from support.members import free_port
from support.wait import wait_for
from support.watch_check import check_watcher

from .nemesis import (
    STALE_PROBE_KEY,
    WATCH_PREFIX,
    Nemesis,
    NemesisConfig,
    NemesisRun,
    Plan,
    _default_plan,
)
from .netns import NetnsCluster, NsMember

__all__ = ["EtcdNetnsCluster", "grpc_stale_read_plan", "run_grpc_nemesis"]

M = TypeVar("M", bound=Message)


class EtcdNetnsCluster(NetnsCluster):
    """A NetnsCluster whose members also serve etcd's gRPC API, on their namespace's IP
    (NetnsCluster rewrites `127.0.0.1:` in the member's flags to that IP)."""

    def _new_member(self, name: str) -> Member:
        m = super()._new_member(name)
        m.etcd_port = free_port()  # any port: each namespace has its own port space
        return m

    def etcd_endpoints(self) -> list[str]:
        out = []
        for m in self.members.values():
            assert isinstance(m, NsMember)
            out.append(f"{m.host}:{m.etcd_port}")
        return out


def run_grpc_nemesis(
    out_dir: Path,
    cfg: NemesisConfig,
    plan: Plan = _default_plan,
    *,
    title: str = "raftkv nemesis over etcd gRPC",
) -> NemesisRun:
    """Start a cluster, run the gRPC workload and watchers while `plan` injects faults,
    heal, read every key, check the history and the watchers, and write
    history.jsonl / summary / latency.png into `out_dir`."""
    out = out_dir
    t_start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    cluster = EtcdNetnsCluster(
        out / "cluster",
        cfg.members,
        tick_ms=cfg.tick_ms,
        extra_args=["--request-timeout", str(cfg.server_request_timeout)],
        etcd=True,
    )
    rec = Recorder()
    stop = threading.Event()
    keys = [f"{WATCH_PREFIX}k{i}" for i in range(cfg.keys)]
    watchers: list[GrpcWatcher] = []
    try:
        cluster.start_all(timeout=cfg.recovery_timeout)
        cluster.leader(timeout=cfg.recovery_timeout)
        nem = Nemesis(cluster, cfg, stop)

        def nemesis_main() -> None:
            try:
                plan(nem, rec)
            except Exception:
                nem.errors.append("nemesis crashed:\n" + traceback.format_exc())
            finally:
                try:
                    nem.heal_all()
                    nem.wait_recovered()
                    stop.wait(cfg.cooldown)
                except Exception as exc:
                    nem.errors.append(f"final heal/recovery failed: {exc!r}")
                stop.set()

        eps = cluster.etcd_endpoints()
        wl = GrpcWorkloadConfig(
            endpoints=eps,
            keys=keys,
            clients=cfg.clients,
            duration=cfg.fault_time + 20 * cfg.recovery_timeout,
            rate=cfg.rate,
            timeout=cfg.timeout,
            serializable=cfg.consistency == "serializable",
            seed=cfg.seed,
        )
        thread = threading.Thread(target=nemesis_main, name="nemesis", daemon=True)

        async def clients() -> list[str]:
            start, _ = await final_listing(eps, WATCH_PREFIX)
            watchers.extend(
                GrpcWatcher(eps[i % len(eps) :] + eps[: i % len(eps)], start + 1, WATCH_PREFIX)
                for i in range(cfg.watchers)
            )
            tasks = run_watchers(watchers)
            thread.start()
            try:
                try:
                    await run_grpc_workload(wl, rec, stop)
                finally:
                    stop.set()
                    await asyncio.to_thread(thread.join, cfg.recovery_timeout * 3 + 30)
                problems = []
                finals = await grpc_final_reads(eps, keys, rec, timeout=2.0)
                missing = [k for k in keys if k not in finals]
                if missing:
                    problems.append(f"final reads failed for {missing}")
                problems += await _check_watchers(eps, watchers, rec.ops())
                return problems
            finally:
                for w in watchers:
                    w.close()
                if tasks:
                    await asyncio.wait(tasks, timeout=15)
                for t in tasks:
                    t.cancel()

        problems = asyncio.run(clients())
        if thread.is_alive():
            nem.errors.append("the nemesis thread did not finish")
        nem.errors += problems
        faults, errors = nem.faults, nem.errors
    finally:
        stop.set()
        cluster.close()
    ops = rec.ops()
    result = check_history(ops, timeout_s=cfg.check_timeout)
    elapsed = time.monotonic() - t_start
    extra = {
        "seed": cfg.seed,
        "members": cfg.members,
        "api": "etcd v3 gRPC",
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "elapsed_s": round(elapsed, 1),
    }
    if errors:
        extra["nemesis_error"] = errors
    extra["watchers"] = [{"events": len(w.events), "reconnects": w.reconnects} for w in watchers]
    arts = write_run(out, ops, result, faults, title=f"{title} seed={cfg.seed}", extra=extra)
    return NemesisRun(ops, result, faults, arts, errors, elapsed, extra, list(watchers))


async def _check_watchers(eps: list[str], watchers: list[GrpcWatcher], ops: list[Op]) -> list[str]:
    """After the final reads: the final state (one linearizable Range of the prefix),
    then each watcher must reach its revision and pass `check_watcher`."""
    if not watchers:
        return []
    try:
        last, final = await final_listing(eps, WATCH_PREFIX)
    except Exception as exc:
        return [f"watch check: no final listing: {exc!r}"]
    acked = [
        (op.key, str(op.value))
        for op in ops
        if op.status is OpStatus.OK
        and op.kind in (OpKind.WRITE, OpKind.CAS)
        and not op.cas_failed
        and op.value is not None
    ]
    problems: list[str] = []
    for i, w in enumerate(watchers):
        if not await wait_caught_up(w, last, 30):
            problems.append(f"watcher {i}: not at revision {last} in 30 s (at {w.seen_rev})")
        problems += [f"watcher {i}: {p}" for p in check_watcher(w, final, acked)]
    return problems


# -- proving the checker can fail through gRPC ------------------------------------------


def _etcd_endpoint(nem: Nemesis, name: str) -> str:
    m = nem.c.members[name]
    assert isinstance(m, NsMember)
    return f"{m.host}:{m.etcd_port}"


def _call(channel: grpc.Channel, method: str, req: Message, resp: type[M]) -> M:
    """One blocking unary call of etcd's KV service (the nemesis thread is not async)."""
    fn: Callable[..., Any] = channel.unary_unary(
        f"/etcdserverpb.KV/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=resp.FromString,
    )
    out: M = fn(req, timeout=3.0)
    return out


def grpc_stale_read_plan(nem: Nemesis, rec: Recorder) -> None:
    """`nemesis.stale_read_plan` through etcd's API: partition a follower away, Put a
    new value through the leader's etcd port, then a *serializable* Range on the
    isolated member's etcd port must return the old value after the new one was
    acknowledged: a stale read by construction, which the checker must flag."""
    nem.stop.wait(nem.cfg.warmup)
    leader = nem.leader()
    isolated = next(n for n in nem.names if n != leader)
    key = STALE_PROBE_KEY.encode()
    with (
        grpc.insecure_channel(_etcd_endpoint(nem, leader)) as lc,
        grpc.insecure_channel(_etcd_endpoint(nem, isolated)) as ic,
    ):

        def put(value: str) -> None:
            call = time.monotonic()
            _call(lc, "Put", pb.PutRequest(key=key, value=value.encode()), pb.PutResponse)
            rec.add(
                client=-2,
                key=STALE_PROBE_KEY,
                kind=OpKind.WRITE,
                call=call,
                ret=time.monotonic(),
                status=OpStatus.OK,
                value=value,
            )

        def read_isolated() -> str | None:
            r = _call(ic, "Range", pb.RangeRequest(key=key, serializable=True), pb.RangeResponse)
            return r.kvs[0].value.decode() if r.kvs else None

        put("probe-before")
        wait_for(
            f"{isolated} applied the first probe write",
            lambda: read_isolated() == "probe-before",
            10,
            ignore=grpc.RpcError,
        )
        start = time.monotonic()
        nem.c.partition([isolated], [n for n in nem.names if n != isolated])
        nem.hold()
        put("probe-after")
        call = time.monotonic()
        value = read_isolated()
        rec.add(
            client=-3,
            key=STALE_PROBE_KEY,
            kind=OpKind.READ,
            call=call,
            ret=time.monotonic(),
            status=OpStatus.OK,
            value=value,
        )
        if value != "probe-before":
            nem.errors.append(f"expected a stale read from {isolated}, got {value!r}")
        nem.hold(1.0)
    nem.c.heal()
    nem._record("partition-minority", isolated, start, time.monotonic(), "serializable probe")
