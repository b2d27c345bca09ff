"""The nemesis of `nemesis.py`, with the clients on etcd's v3 gRPC API.

Same cluster (members in network namespaces, each with its etcd port on), same faults
on the same seeded schedule (`Nemesis`), same run (`run_nemesis`), same history format
and linearizability checker, same watch checker; only the clients differ (`GrpcClients`):
the register workload goes through KV.Range / Put / DeleteRange / Txn on the members'
etcd ports (`support.grpc_workload.GrpcApi`), and the watchers are gRPC Watch streams
that move to another member and resume from their last complete revision when a fault
breaks them (`support.grpc_watch`). What this adds to the HTTP run: the etcd adapter's
answers, error mapping, and Watch resume semantics hold under kill -9, pauses and
partitions.

Everything the clients do runs on one asyncio loop in the calling thread (grpc.aio
wants one loop): the workload, the watchers, the final reads and the watch check. The
nemesis runs in its own thread, as in `nemesis.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from cluster.harness import Member
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.verify.workload import RegisterApi
from support.grpc_watch import GrpcWatcher, run_watchers
from support.grpc_workload import GrpcApi, final_listing
from support.members import free_port

from .nemesis import (
    STALE_PROBE_KEY,
    WATCH_PREFIX,
    Clients,
    Nemesis,
    NemesisConfig,
    NemesisRun,
    Plan,
    StaleProbe,
    _default_plan,
    make_stale_read_plan,
    rotated,
    run_nemesis,
)
from .netns import NetnsCluster, NsMember

__all__ = ["EtcdNetnsCluster", "GrpcClients", "grpc_stale_read_plan", "run_grpc_nemesis"]

M = TypeVar("M", bound=Message)


class EtcdNetnsCluster(NetnsCluster):
    """A NetnsCluster whose members also serve etcd's gRPC API, on their namespace's IP
    (NetnsCluster rewrites `127.0.0.1:` in the member's flags to that IP)."""

    def _new_member(self, name: str) -> Member:
        m = super()._new_member(name)
        m.etcd_port = free_port()  # any port: each namespace has its own port space
        return m

    def etcd_endpoints(self) -> list[str]:
        return [etcd_endpoint(self, name) for name in self.members]


def etcd_endpoint(cluster: NetnsCluster, name: str) -> str:
    m = cluster.members[name]
    assert isinstance(m, NsMember)
    return f"{m.host}:{m.etcd_port}"


class GrpcClients(Clients):
    """The workload through etcd's KV service and the watchers on gRPC Watch streams,
    every one on the run's event loop."""

    labels = {"api": "etcd v3 gRPC"}
    cluster_type = EtcdNetnsCluster
    etcd = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[None]] = []

    def endpoints(self, cluster: NetnsCluster) -> list[str]:
        return [etcd_endpoint(cluster, name) for name in cluster.members]

    def api(self, timeout: float) -> RegisterApi[Any, Any]:
        return GrpcApi(timeout)

    async def listing(self, cluster: NetnsCluster) -> tuple[int, dict[str, str]]:
        return await final_listing(self.endpoints(cluster), WATCH_PREFIX)

    def start_watchers(self, eps: list[str], start: int, n: int) -> None:
        watchers = [GrpcWatcher(rotated(eps, i), start, WATCH_PREFIX) for i in range(n)]
        self.watchers = list(watchers)
        self.tasks = run_watchers(watchers)

    async def close(self) -> None:
        await super().close()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=15)
        for t in self.tasks:
            t.cancel()


def run_grpc_nemesis(
    out_dir: Path,
    cfg: NemesisConfig,
    plan: Plan = _default_plan,
    *,
    title: str = "raftkv nemesis over etcd gRPC",
) -> NemesisRun:
    """`run_nemesis` with `GrpcClients`."""
    return run_nemesis(out_dir, cfg, plan, title=title, clients=GrpcClients())


# -- proving the checker can fail through gRPC ------------------------------------------


def _call(channel: grpc.Channel, method: str, req: Message, resp: type[M]) -> M:
    """One blocking unary call of etcd's KV service (the nemesis thread is not async)."""
    fn: Callable[..., Any] = channel.unary_unary(
        f"/etcdserverpb.KV/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=resp.FromString,
    )
    out: M = fn(req, timeout=3.0)
    return out


class _GrpcProbe:
    """Put through the leader's etcd port, serializable Range on the isolated member's."""

    def __init__(self, leader: grpc.Channel, isolated: grpc.Channel) -> None:
        self.leader = leader
        self.isolated = isolated

    def put(self, value: str) -> None:
        req = pb.PutRequest(key=STALE_PROBE_KEY.encode(), value=value.encode())
        _call(self.leader, "Put", req, pb.PutResponse)

    def read(self) -> str | None:
        req = pb.RangeRequest(key=STALE_PROBE_KEY.encode(), serializable=True)
        r = _call(self.isolated, "Range", req, pb.RangeResponse)
        return r.kvs[0].value.decode() if r.kvs else None


@contextmanager
def _grpc_probe(nem: Nemesis, leader: str, isolated: str) -> Iterator[StaleProbe]:
    with (
        grpc.insecure_channel(etcd_endpoint(nem.c, leader)) as lc,
        grpc.insecure_channel(etcd_endpoint(nem.c, isolated)) as ic,
    ):
        yield _GrpcProbe(lc, ic)


grpc_stale_read_plan = make_stale_read_plan(_grpc_probe)
"""`nemesis.stale_read_plan` through etcd's API: the checker must flag a serializable
Range on a partitioned member's etcd port that returns the old value after the new
one was acknowledged."""
