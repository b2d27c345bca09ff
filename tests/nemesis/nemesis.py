"""The nemesis: real `raftkv serve` members, a concurrent register workload (reads,
writes, If-Match CAS, txn CAS and two-key txns, deletes), faults on a seeded schedule,
then a linearizability check of everything the clients saw, and a check of what the
watchers saw (`support.watch_check`: six watchers of the workload's prefix, moving
between members as faults break their streams, must each see every acknowledged
write once, in revision order, and end at the final state), and a lease kept alive by a
client through the faults (`support.lease_keeper`: while its keep-alives are answered
at least once a TTL, the lease and its key must survive).

Structure. The workload (`raftkv.verify.workload`) runs on an asyncio loop in the calling
thread; the nemesis runs in its own thread, because fault injection is blocking work
(signals, `proc.wait`, `ip`, status polls) that must not stall the clients and distort
their latencies. Both stamp events with `time.monotonic`, so ops and fault windows share
one clock in the history, the summary and the picture.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from raftkv.client import Client, RaftKVError
from raftkv.client import Consistency as ReadConsistency
from raftkv.storage.recovery import WAL_DIR
from raftkv.verify import Op, OpKind, OpStatus, check_history
from raftkv.verify.report import FaultWindow, RunArtifacts, write_run
from raftkv.verify.result import CheckResult
from raftkv.verify.workload import Recorder, WorkloadConfig, final_reads, run_workload
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


def run_nemesis(
    out_dir: Path,
    cfg: NemesisConfig = NemesisConfig(),
    plan: Plan = _default_plan,
    *,
    title: str = "raftkv nemesis",
) -> NemesisRun:
    """Start a cluster, run the workload while `plan` injects faults, heal, read every
    key, check, and write history.jsonl / summary / latency.png into `out_dir`."""
    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster = NetnsCluster(
        out_dir / "cluster",
        cfg.members,
        tick_ms=cfg.tick_ms,
        extra_args=["--request-timeout", str(cfg.server_request_timeout)],
    )
    rec = Recorder()
    stop = threading.Event()
    keys = [f"nemesis/k{i}" for i in range(cfg.keys)]
    watchers: list[Watcher] = []
    lease_report: dict[str, float] = {}
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

        wl = WorkloadConfig(
            endpoints=cluster.endpoints(alive_only=False),
            keys=keys,
            clients=cfg.clients,
            # An upper bound only: the nemesis thread sets `stop` when it is done.
            duration=cfg.fault_time + 20 * cfg.recovery_timeout,
            rate=cfg.rate,
            timeout=cfg.timeout,
            consistency=cfg.consistency,
            seed=cfg.seed,
        )
        watchers = _start_watchers(cluster.endpoints(alive_only=False), cfg.watchers)
        keeper = LeaseKeeper(cluster.endpoints(alive_only=False), "nemesis-lease/held")
        keeper.start()
        thread = threading.Thread(target=nemesis_main, name="nemesis", daemon=True)
        thread.start()
        try:
            asyncio.run(run_workload(wl, rec, stop))
        finally:
            stop.set()
            thread.join(timeout=cfg.recovery_timeout * 3 + 30)
        if thread.is_alive():
            nem.errors.append("the nemesis thread did not finish")
        finals = asyncio.run(final_reads(wl.endpoints, keys, rec, timeout=2.0))
        missing = [k for k in keys if k not in finals]
        if missing:
            nem.errors.append(f"final reads failed for {missing}")
        nem.errors += _check_watchers(cluster.endpoints(), watchers, rec.ops())
        keeper.close()
        nem.errors += keeper.problems(cluster.endpoints())
        lease_report = {
            "renewals": keeper.renewals,
            "longest_gap_s": round(keeper.longest_gap, 2),
            "ttl": keeper.ttl,
        }
        faults, errors = nem.faults, nem.errors
    finally:
        cluster.close()
    ops = rec.ops()
    result = check_history(ops, timeout_s=cfg.check_timeout)
    elapsed = time.monotonic() - t_start
    extra = {
        "seed": cfg.seed,
        "members": cfg.members,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "elapsed_s": round(elapsed, 1),
    }
    if errors:
        extra["nemesis_error"] = errors
    extra["lease_keeper"] = lease_report
    extra["watchers"] = [{"events": len(w.events), "reconnects": w.reconnects} for w in watchers]
    arts = write_run(out_dir, ops, result, faults, title=f"{title} seed={cfg.seed}", extra=extra)
    return NemesisRun(ops, result, faults, arts, errors, elapsed, extra, watchers)


WATCH_PREFIX = "nemesis/"


def _start_watchers(endpoints: list[str], n: int) -> list[Watcher]:
    """`n` watchers from the current revision + 1, each starting on its own member."""
    if n == 0:
        return []
    listing = httpx.get(f"{endpoints[0]}/v1/kv", params={"prefix": WATCH_PREFIX, "limit": 1})
    start = int(listing.json()["revision"]) + 1
    watchers = [
        Watcher(
            endpoints[i % len(endpoints) :] + endpoints[: i % len(endpoints)], start, WATCH_PREFIX
        )
        for i in range(n)
    ]
    for w in watchers:
        w.start_thread()
    return watchers


def _check_watchers(endpoints: list[str], watchers: list[Watcher], ops: list[Op]) -> list[str]:
    """After the final reads: the final state (one linearizable listing), then each
    watcher must reach its revision and pass `check_watcher`."""
    if not watchers:
        return []
    try:
        listing = _final_listing(endpoints)
    except Exception as exc:
        for w in watchers:
            w.close()
        return [f"watch check: no final listing: {exc!r}"]
    last = int(listing["revision"])
    final = {i["key"]: base64.b64decode(i["value"]).decode() for i in listing["items"]}
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

        def caught_up(w: Watcher = w) -> bool:
            return w.seen_rev >= last or bool(w.error)

        try:
            wait_for(f"watcher {i} at revision {last}", caught_up, 30)
        except Exception as exc:
            problems.append(f"watcher {i}: {exc}")
        w.close()
        problems += [f"watcher {i}: {p}" for p in check_watcher(w, final, acked)]
    return problems


def _final_listing(endpoints: list[str]) -> dict[str, Any]:
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


# -- proving the checker can fail -------------------------------------------------------


STALE_PROBE_KEY = "nemesis/probe"


def stale_read_plan(nem: Nemesis, rec: Recorder) -> None:
    """Partition a follower away and, while it is cut off, write through the majority and
    read serializably from the isolated member. The isolated member cannot have applied
    a write that committed after it was cut off, so that read *must* return the old
    value, after the new one was acknowledged: a stale read by construction, on top of
    whatever the (serializable) workload itself observes."""
    nem.stop.wait(nem.cfg.warmup)
    leader = nem.leader()
    isolated = next(n for n in nem.names if n != leader)
    # A key of its own: the workload's writers would race the wait below for the probe
    # value on one of theirs (the wait could then miss it under load).
    key = STALE_PROBE_KEY
    iso = nem.c.members[isolated]
    with Client([nem.c.members[leader].url], timeout=3.0, retries=0) as lc:
        _probe_write(rec, lc, key, "probe-before")
        # Wait (bounded) until the isolated member has applied it, so the stale value it
        # returns later is a definite, known one.
        with Client([iso.url], timeout=2.0, retries=0) as ic:
            wait_for(
                f"{isolated} applied the first probe write",
                lambda: (
                    (g := ic.get(key, consistency="serializable")) is not None
                    and g.value == b"probe-before"
                ),
                10,
                ignore=Exception,
            )
            start = time.monotonic()
            nem.c.partition([isolated], [n for n in nem.names if n != isolated])
            nem.hold()
            _probe_write(rec, lc, key, "probe-after")
            value = _probe_read(rec, ic, key)
            if value != "probe-before":
                nem.errors.append(f"expected a stale read from {isolated}, got {value!r}")
            nem.hold(1.0)
    nem.c.heal()
    nem._record("partition-minority", isolated, start, time.monotonic(), "serializable probe")


def _probe_write(rec: Recorder, c: Client, key: str, value: str) -> None:
    call = time.monotonic()
    c.put(key, value.encode())  # must succeed: the majority side has a leader
    rec.add(
        client=-2,
        key=key,
        kind=OpKind.WRITE,
        call=call,
        ret=time.monotonic(),
        status=OpStatus.OK,
        value=value,
    )


def _probe_read(rec: Recorder, c: Client, key: str) -> str | None:
    call = time.monotonic()
    try:
        g = c.get(key, consistency="serializable")
    except RaftKVError:
        return None
    value = None if g is None else g.value.decode()
    rec.add(
        client=-3,
        key=key,
        kind=OpKind.READ,
        call=call,
        ret=time.monotonic(),
        status=OpStatus.OK,
        value=value,
    )
    return value


def stale_read_config(seed: int = 7) -> NemesisConfig:
    return replace(
        NemesisConfig(seed=seed),
        consistency="serializable",
        hold=(3.0, 3.0),
        warmup=1.0,
        cooldown=1.0,
        fault_time=0.0,
    )
