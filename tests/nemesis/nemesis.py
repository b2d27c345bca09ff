"""The nemesis: real `raftkv serve` members, a concurrent register workload (reads,
writes, If-Match CAS, txn CAS and two-key txns, deletes), faults on a seeded schedule,
then a linearizability check of everything the clients saw, and a check of what the
watchers saw (`support.watch_check`: six watchers of the workload's prefix, moving
between members as faults break their streams, must each see every acknowledged
write once, in revision order, and end at the final state), and a lease kept alive by a
client through the faults (`support.lease_keeper`: while its keep-alives are answered
at least once a TTL, the lease and its key must survive).

Structure. The workload (`raftkv.verify.workload`) runs on an asyncio loop in the
calling thread (the HTTP watchers and the lease keeper in threads of their own, the
gRPC watchers on that loop); the nemesis runs in its own thread, because fault injection
is blocking work (signals, `proc.wait`, `ip`, status polls) that must not stall the
clients and distort their latencies. Both stamp events with `time.monotonic`, so ops
and fault windows share one clock in the history, the summary and the picture. What the
clients are is a `Clients`: `HttpClients` (the native API, the default) or
grpc_nemesis.py's `GrpcClients` (etcd's v3 gRPC API); the run, the faults and the checks
are the same for both.

Schedule. Faults are injected one at a time: inject, hold for a seeded duration, heal,
wait until the cluster has recovered (a single leader, every member ready and caught up
to the leader's commit index as of the heal), then a seeded quiet gap. Kinds are drawn as
shuffled rounds of all kinds, so a one-minute CI run meets each of them. Serializing the
faults is deliberate: Raft promises safety under any of these faults, but the torn WAL
tail is only a fair fault under a condition (below) that overlapping faults would break.

Faults:
- kill: SIGKILL a random member, restart it after the hold.
- kill-leader: the same, aimed at the current leader (forces an election).
- pause: SIGSTOP a member (the leader half of the time) for the hold, a long GC-like
  pause longer than the election timeout, then SIGCONT: a deposed leader wakes up still
  believing it leads.
- partition-minority: isolate one member (the leader half of the time) from the others.
- partition-bridge: with 3 members, cut the link between two members; the third sees
  both. With 5, Jepsen's bridge: two pairs that cannot see each other and one member in
  the middle that sees all.
- torn-wal: SIGKILL a *follower*, cut a few bytes off the end of its last WAL segment at
  a random point, restart it. This models losing the unsynced tail of the log in a crash.
  From outside we cannot know which bytes were fsync'ed (and acknowledged), so the cut may
  remove an entry or a hard state this follower acknowledged, which Raft's model does not
  allow in general. It is fair here because the leader is untouched and no other fault
  overlaps until the follower has caught up again: the leader still holds every
  committed entry, no election can run meanwhile, and the follower is repaired from it.

Everything is healed in a `finally`, every process is reaped by the cluster's close, and
all waits are bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx

from raftkv.client import Client
from raftkv.client import Consistency as ReadConsistency
from raftkv.storage.recovery import WAL_DIR
from raftkv.verify import Op, OpKind, OpStatus, check_history
from raftkv.verify.report import FaultWindow, RunArtifacts, write_run
from raftkv.verify.result import CheckResult
from raftkv.verify.workload import (
    HttpApi,
    Recorder,
    RegisterApi,
    WorkloadConfig,
    read_all,
    run_register_workload,
)
from support.lease_keeper import LeaseKeeper
from support.wait import wait_for
from support.watch_check import Watcher, check_watcher

from .netns import NetnsCluster

FAULT_KINDS = (
    "kill",
    "kill-leader",
    "pause",
    "partition-minority",
    "partition-bridge",
    "torn-wal",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NemesisConfig:
    seed: int = 1
    members: int = 3
    fault_time: float = 60.0
    """Seconds during which new faults are started."""
    hold: tuple[float, float] = (2.0, 4.5)
    """How long a fault lasts (seeded uniform)."""
    quiet: tuple[float, float] = (0.8, 2.0)
    """Gap between a recovery and the next fault."""
    warmup: float = 1.5
    cooldown: float = 2.0
    """Traffic after the last recovery, so the end of the picture shows a healthy cluster."""
    kinds: tuple[str, ...] = FAULT_KINDS
    clients: int = 6
    keys: int = 5
    rate: float | None = 60.0
    timeout: float = 1.5
    consistency: ReadConsistency = "linearizable"
    recovery_timeout: float = 30.0
    check_timeout: float = 120.0
    server_request_timeout: float = 1.0
    tick_ms: int = 50
    watchers: int = 6
    """Watchers of the workload's prefix, spread over the members (`support.watch_check`):
    each must see every acknowledged write once, in order, and end at the final state."""


@dataclass
class NemesisRun:
    ops: list[Op]
    result: CheckResult
    faults: list[FaultWindow]
    artifacts: RunArtifacts
    errors: list[str]
    """Nemesis failures (a cluster that did not recover, a fault that could not be
    injected); the history is still checked and written."""
    elapsed: float
    extra: dict[str, Any] = field(default_factory=dict)
    watchers: list[Watcher] = field(default_factory=list)


class Nemesis:
    """Fault primitives over a NetnsCluster, each recording a FaultWindow."""

    def __init__(self, cluster: NetnsCluster, cfg: NemesisConfig, stop: threading.Event) -> None:
        self.c = cluster
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.stop = stop
        self.faults: list[FaultWindow] = []
        self.errors: list[str] = []
        self.names = sorted(cluster.members)

    # -- helpers -----------------------------------------------------------------------

    def hold(self, seconds: float | None = None) -> None:
        lo, hi = self.cfg.hold
        self.stop.wait(seconds if seconds is not None else self.rng.uniform(lo, hi))

    def leader(self) -> str:
        return self.c.leader(timeout=self.cfg.recovery_timeout).name

    def _target(self, prefer_leader: float = 0.0) -> str:
        if prefer_leader and self.rng.random() < prefer_leader:
            return self.leader()
        return self.rng.choice(self.names)

    def heal_all(self) -> None:
        """Undo every fault that may be in force (idempotent)."""
        self.c.heal()
        for name, m in self.c.members.items():
            if m.proc is not None and m.proc.poll() is None:
                self.c.resume(name)
            elif m.proc is not None:
                self.c.start(name)

    def wait_recovered(self) -> float:
        """A single leader, every member ready and applied up to the leader's commit
        index as of now. Returns when that was observed."""
        t = self.cfg.recovery_timeout
        leader = self.c.leader(timeout=t)
        commit = int(leader.status()["commit_index"])  # type: ignore[call-overload]

        def caught_up() -> bool:
            for m in self.c.members.values():
                if not m.alive():
                    self.c._check_alive(m)
                if not m.ready():
                    return False
                if int(m.status()["applied_index"]) < commit:  # type: ignore[call-overload]
                    return False
            return True

        wait_for("every member ready and caught up", caught_up, t, ignore=Exception)
        self.c.leader(timeout=t)
        return time.monotonic()

    def _record(self, kind: str, target: str, start: float, end: float, detail: str = "") -> None:
        try:
            recovered: float | None = self.wait_recovered()
        except (TimeoutError, AssertionError) as exc:
            recovered = None
            self.errors.append(f"{kind} {target}: cluster did not recover: {exc}")
        self.faults.append(FaultWindow(kind, target, start, end, detail, recovered))

    # -- faults ------------------------------------------------------------------------

    def kill(self, target: str | None = None, kind: str = "kill") -> None:
        target = target or self._target()
        start = time.monotonic()
        self.c.kill(target)
        self.hold()
        self.c.start(target)
        self._record(kind, target, start, time.monotonic(), "SIGKILL, restart")

    def kill_leader(self) -> None:
        self.kill(self.leader(), kind="kill-leader")

    def pause(self, target: str | None = None) -> None:
        target = target or self._target(prefer_leader=0.5)
        start = time.monotonic()
        self.c.pause(target)
        self.hold()
        self.c.resume(target)
        self._record("pause", target, start, time.monotonic(), "SIGSTOP/SIGCONT")

    def partition_minority(self, target: str | None = None) -> None:
        target = target or self._target(prefer_leader=0.5)
        others = [n for n in self.names if n != target]
        start = time.monotonic()
        self.c.partition([target], others)
        self.hold()
        self.c.heal()
        self._record(
            "partition-minority", target, start, time.monotonic(), f"{{{target}}} | {others}"
        )

    def partition_bridge(self) -> None:
        names = self.names[:]
        self.rng.shuffle(names)
        bridge, rest = names[0], names[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        start = time.monotonic()
        self.c.partition(left, right)
        self.hold()
        self.c.heal()
        self._record(
            "partition-bridge",
            bridge,
            start,
            time.monotonic(),
            f"{left} x {right}, {bridge} sees both",
        )

    def torn_wal(self) -> None:
        leader = self.leader()
        target = self.rng.choice([n for n in self.names if n != leader])
        start = time.monotonic()
        self.c.kill(target)
        detail = self._tear(target)
        self.hold(self.rng.uniform(0.3, 1.0))
        self.c.start(target)
        self._record("torn-wal", target, start, time.monotonic(), detail)

    def _tear(self, name: str) -> str:
        wal = self.c.members[name].data_dir / WAL_DIR
        segs = sorted(p for p in wal.glob("*.wal"))
        if not segs:
            return "no WAL segment to tear"
        last = segs[-1]
        size = last.stat().st_size
        # Never into the segment's leading hard-state record (36 bytes; 64 leaves a
        # margin): a segment whose header is gone is corruption, not a torn tail.
        cut = self.rng.randint(1, max(1, min(48, size - 64)))
        if size - cut < 64:
            return f"{last.name} too small to tear ({size} bytes)"
        os.truncate(last, size - cut)
        return f"{last.name}: {size} -> {size - cut} bytes"

    def inject(self, kind: str) -> None:
        {
            "kill": self.kill,
            "kill-leader": self.kill_leader,
            "pause": self.pause,
            "partition-minority": self.partition_minority,
            "partition-bridge": self.partition_bridge,
            "torn-wal": self.torn_wal,
        }[kind]()

    # -- the schedule ------------------------------------------------------------------

    def random_schedule(self) -> None:
        cfg = self.cfg
        self.stop.wait(cfg.warmup)
        end = time.monotonic() + cfg.fault_time
        bag: list[str] = []
        while time.monotonic() < end and not self.stop.is_set() and not self.errors:
            if not bag:
                bag = list(cfg.kinds)
                self.rng.shuffle(bag)
            self.inject(bag.pop())
            self.stop.wait(self.rng.uniform(*cfg.quiet))


Plan = Callable[[Nemesis, Recorder], None]


def _default_plan(nem: Nemesis, rec: Recorder) -> None:
    nem.random_schedule()


WATCH_PREFIX = "nemesis/"


def rotated(endpoints: list[str], i: int) -> list[str]:
    """`endpoints` starting at the i-th (mod n): client i's own member first."""
    k = i % len(endpoints)
    return endpoints[k:] + endpoints[:k]


def acknowledged_writes(ops: list[Op]) -> list[tuple[str, str]]:
    """(key, value) of every write the workload saw take effect: what a watcher must see."""
    return [
        (op.key, str(op.value))
        for op in ops
        if op.status is OpStatus.OK
        and op.kind in (OpKind.WRITE, OpKind.CAS)
        and not op.cas_failed
        and op.value is not None
    ]


async def wait_caught_up(w: Watcher, revision: int, timeout: float) -> bool:
    """Until `w` has seen `revision` (or failed); False at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while w.seen_rev < revision and not w.error:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Clients(ABC):
    """The clients of one nemesis run, over one API: everything that differs between the
    HTTP run (`HttpClients`) and the gRPC run (grpc_nemesis.py). `run_nemesis` drives
    them the same way, from one asyncio loop in the calling thread: watchers before the
    faults, the register workload during them, final reads, then the watch check."""

    labels: ClassVar[dict[str, str]] = {}
    """Fields the run's summary carries to say which API it used."""
    cluster_type: ClassVar[type[NetnsCluster]] = NetnsCluster
    etcd: ClassVar[bool] = False
    """Whether the members serve etcd's gRPC API too."""

    def __init__(self) -> None:
        self.watchers: list[Watcher] = []

    def new_cluster(self, root: Path, cfg: NemesisConfig) -> NetnsCluster:
        return self.cluster_type(
            root,
            cfg.members,
            tick_ms=cfg.tick_ms,
            extra_args=["--request-timeout", str(cfg.server_request_timeout)],
            etcd=self.etcd,
        )

    @abstractmethod
    def endpoints(self, cluster: NetnsCluster) -> list[str]:
        """Every member's endpoint in this API's form (the workload's and watchers')."""

    @abstractmethod
    def api(self, timeout: float) -> RegisterApi[Any, Any]:
        """The register workload's per-op calls."""

    @abstractmethod
    async def listing(self, cluster: NetnsCluster) -> tuple[int, dict[str, str]]:
        """One linearizable listing of WATCH_PREFIX through any member that answers:
        (the store revision, key -> value)."""

    @abstractmethod
    def start_watchers(self, eps: list[str], start: int, n: int) -> None:
        """Start `n` watchers of WATCH_PREFIX from `start`, watcher i on member i first."""

    async def start(self, cluster: NetnsCluster, cfg: NemesisConfig) -> None:
        """Before the faults: the watchers, from the current revision + 1."""
        if cfg.watchers:
            revision, _ = await self.listing(cluster)
            self.start_watchers(self.endpoints(cluster), revision + 1, cfg.watchers)

    async def check(self, cluster: NetnsCluster, ops: list[Op]) -> list[str]:
        """After the final reads: the final state (one linearizable listing), then each
        watcher must reach its revision and pass `check_watcher`."""
        if not self.watchers:
            return []
        try:
            last, final = await self.listing(cluster)
        except Exception as exc:
            return [f"watch check: no final listing: {exc!r}"]
        acked = acknowledged_writes(ops)
        problems: list[str] = []
        for i, w in enumerate(self.watchers):
            if not await wait_caught_up(w, last, 30):
                problems.append(f"watcher {i}: not at revision {last} in 30 s (at {w.seen_rev})")
            await asyncio.to_thread(w.close)
            problems += [f"watcher {i}: {p}" for p in check_watcher(w, final, acked)]
        return problems

    async def close(self) -> None:
        """Stop whatever still runs (idempotent)."""
        for w in self.watchers:
            await asyncio.to_thread(w.close)

    def report(self) -> dict[str, Any]:
        """Summary fields of this API's own checks."""
        return {}


class HttpClients(Clients):
    """raftkv's native HTTP API: the workload through `raftkv.client`, watchers on
    `GET /v1/watch` (threads), and a lease kept alive through the faults
    (`support.lease_keeper`: while its keep-alives are answered at least once a TTL, the
    lease and its key must survive)."""

    def __init__(self) -> None:
        super().__init__()
        self.keeper: LeaseKeeper | None = None
        self.lease_report: dict[str, float] = {}

    def endpoints(self, cluster: NetnsCluster) -> list[str]:
        return cluster.endpoints(alive_only=False)

    def api(self, timeout: float) -> RegisterApi[Any, Any]:
        return HttpApi(timeout)

    async def listing(self, cluster: NetnsCluster) -> tuple[int, dict[str, str]]:
        body = await asyncio.to_thread(_http_listing, self.endpoints(cluster))
        final = {i["key"]: base64.b64decode(i["value"]).decode() for i in body["items"]}
        return int(body["revision"]), final

    def start_watchers(self, eps: list[str], start: int, n: int) -> None:
        self.watchers = [Watcher(rotated(eps, i), start, WATCH_PREFIX) for i in range(n)]
        for w in self.watchers:
            w.start_thread()

    async def start(self, cluster: NetnsCluster, cfg: NemesisConfig) -> None:
        await super().start(cluster, cfg)
        self.keeper = LeaseKeeper(self.endpoints(cluster), "nemesis-lease/held")
        await asyncio.to_thread(self.keeper.start)

    async def check(self, cluster: NetnsCluster, ops: list[Op]) -> list[str]:
        problems = await super().check(cluster, ops)
        if self.keeper is not None:
            keeper = self.keeper
            await asyncio.to_thread(keeper.close)
            problems += await asyncio.to_thread(keeper.problems, cluster.endpoints())
            self.lease_report = {
                "renewals": keeper.renewals,
                "longest_gap_s": round(keeper.longest_gap, 2),
                "ttl": keeper.ttl,
            }
        return problems

    async def close(self) -> None:
        await super().close()
        if self.keeper is not None:
            await asyncio.to_thread(self.keeper.close)

    def report(self) -> dict[str, Any]:
        return {"lease_keeper": self.lease_report}


def _http_listing(endpoints: list[str]) -> dict[str, Any]:
    def attempt() -> dict[str, Any] | None:
        for ep in endpoints:
            try:
                r = httpx.get(
                    f"{ep}/v1/kv", params={"prefix": WATCH_PREFIX, "limit": 10_000}, timeout=3
                )
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        return None

    return wait_for("a final listing", attempt, 30)


def run_nemesis(
    out_dir: Path,
    cfg: NemesisConfig = NemesisConfig(),
    plan: Plan = _default_plan,
    *,
    title: str = "raftkv nemesis",
    clients: Clients | None = None,
) -> NemesisRun:
    """Start a cluster, run the workload (and watchers) of `clients` (default: the HTTP
    API) while `plan` injects faults, heal, read every key, check the history and the
    watchers, and write history.jsonl / summary / latency.png into `out_dir`."""
    side = clients or HttpClients()
    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster = side.new_cluster(out_dir / "cluster", cfg)
    rec = Recorder()
    stop = threading.Event()
    keys = [f"{WATCH_PREFIX}k{i}" for i in range(cfg.keys)]
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

        eps = side.endpoints(cluster)
        wl = WorkloadConfig(
            endpoints=eps,
            keys=keys,
            clients=cfg.clients,
            # An upper bound only: the nemesis thread sets `stop` when it is done.
            duration=cfg.fault_time + 20 * cfg.recovery_timeout,
            rate=cfg.rate,
            timeout=cfg.timeout,
            consistency=cfg.consistency,
            seed=cfg.seed,
        )
        thread = threading.Thread(target=nemesis_main, name="nemesis", daemon=True)

        async def run_clients() -> list[str]:
            try:
                await side.start(cluster, cfg)
                thread.start()
                try:
                    await run_register_workload(side.api(cfg.timeout), wl, rec, stop)
                finally:
                    stop.set()
                    if thread.ident is not None:
                        await asyncio.to_thread(thread.join, cfg.recovery_timeout * 3 + 30)
                problems = []
                if thread.is_alive():
                    problems.append("the nemesis thread did not finish")
                finals = await read_all(side.api(2.0), eps, keys, rec)
                missing = [k for k in keys if k not in finals]
                if missing:
                    problems.append(f"final reads failed for {missing}")
                return problems + await side.check(cluster, rec.ops())
            finally:
                await side.close()

        nem.errors += asyncio.run(run_clients())
        faults, errors = nem.faults, nem.errors
    finally:
        stop.set()
        cluster.close()
    ops = rec.ops()
    result = check_history(ops, timeout_s=cfg.check_timeout)
    elapsed = time.monotonic() - t_start
    extra: dict[str, Any] = {
        "seed": cfg.seed,
        "members": cfg.members,
        **side.labels,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "elapsed_s": round(elapsed, 1),
    }
    if errors:
        extra["nemesis_error"] = errors
    extra.update(side.report())
    extra["watchers"] = [
        {"events": len(w.events), "reconnects": w.reconnects} for w in side.watchers
    ]
    arts = write_run(out_dir, ops, result, faults, title=f"{title} seed={cfg.seed}", extra=extra)
    return NemesisRun(ops, result, faults, arts, errors, elapsed, extra, list(side.watchers))


# -- proving the checker can fail -------------------------------------------------------


STALE_PROBE_KEY = "nemesis/probe"


class StaleProbe(Protocol):
    """The stale-read plan's two blocking clients (the nemesis thread is not async)."""

    def put(self, value: str) -> None:
        """Write STALE_PROBE_KEY through the leader; must succeed (the majority side
        has a leader)."""

    def read(self) -> str | None:
        """A serializable read of STALE_PROBE_KEY on the isolated member (None when
        absent); raises when it cannot answer."""


OpenProbe = Callable[[Nemesis, str, str], AbstractContextManager[StaleProbe]]
"""(nemesis, leader, isolated member) -> the probe clients over one API."""


def make_stale_read_plan(open_probe: OpenProbe) -> Plan:
    """Partition a follower away and, while it is cut off, write through the majority and
    read serializably from the isolated member. The isolated member cannot have applied
    a write that committed after it was cut off, so that read *must* return the old
    value, after the new one was acknowledged: a stale read by construction, on top of
    whatever the (serializable) workload itself observes."""

    def plan(nem: Nemesis, rec: Recorder) -> None:
        nem.stop.wait(nem.cfg.warmup)
        leader = nem.leader()
        isolated = next(n for n in nem.names if n != leader)
        # A key of its own: the workload's writers would race the wait below for the
        # probe value on one of theirs (the wait could then miss it under load).
        key = STALE_PROBE_KEY
        with open_probe(nem, leader, isolated) as probe:

            def put(value: str) -> None:
                call = time.monotonic()
                probe.put(value)
                rec.returned(-2, key, OpKind.WRITE, call, value=value)

            put("probe-before")
            # Wait (bounded) until the isolated member has applied it, so the stale value
            # it returns later is a definite, known one.
            wait_for(
                f"{isolated} applied the first probe write",
                lambda: probe.read() == "probe-before",
                10,
                ignore=Exception,
            )
            start = time.monotonic()
            nem.c.partition([isolated], [n for n in nem.names if n != isolated])
            nem.hold()
            put("probe-after")
            call = time.monotonic()
            try:
                value = probe.read()
            except Exception:
                value = None
            else:
                rec.returned(-3, key, OpKind.READ, call, value=value)
            if value != "probe-before":
                nem.errors.append(f"expected a stale read from {isolated}, got {value!r}")
            nem.hold(1.0)
        nem.c.heal()
        nem._record("partition-minority", isolated, start, time.monotonic(), "serializable probe")

    return plan


class _HttpProbe:
    def __init__(self, leader: Client, isolated: Client) -> None:
        self.leader = leader
        self.isolated = isolated

    def put(self, value: str) -> None:
        self.leader.put(STALE_PROBE_KEY, value.encode())

    def read(self) -> str | None:
        g = self.isolated.get(STALE_PROBE_KEY, consistency="serializable")
        return None if g is None else g.value.decode()


@contextmanager
def _http_probe(nem: Nemesis, leader: str, isolated: str) -> Iterator[StaleProbe]:
    with (
        Client([nem.c.members[leader].url], timeout=3.0, retries=0) as lc,
        Client([nem.c.members[isolated].url], timeout=2.0, retries=0) as ic,
    ):
        yield _HttpProbe(lc, ic)


stale_read_plan = make_stale_read_plan(_http_probe)
"""The stale-read plan over the HTTP API."""


def stale_read_config(seed: int = 7) -> NemesisConfig:
    return replace(
        NemesisConfig(seed=seed),
        consistency="serializable",
        hold=(3.0, 3.0),
        warmup=1.0,
        cooldown=1.0,
        fault_time=0.0,
    )
