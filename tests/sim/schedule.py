"""Random schedules: one seed picks the cluster, the fault levels and every action.

A schedule has two phases. The chaos phase runs a fixed number of events while a
seeded stream of actions hits the cluster: client proposals and reads at any member,
leader transfers, forced campaigns, partitions and heals, crashes (with automatic
restarts from durable storage), compactions and membership changes through the leader.
The liveness phase then removes the faults (heal, restart, stop dropping) and demands
that the cluster elects a leader and applies a fresh proposal on every member of the
committed configuration within a bounded time: a stuck cluster is a bug too.

Any failure is raised as `SimulationFailure`, whose message carries the seed and the one
command that replays the schedule with a full trace.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from raftkv.raft.types import ConfChange, ConfChangeType

from .cluster import TICK, Cluster, CoreKnobs, Stats, Timing
from .invariants import InvariantViolation
from .network import NetworkParams
from .trace import Trace, core_logs_into

DEFAULT_STEPS = 2500
"""Events in the chaos phase of a CI schedule (about 15-40 election timeouts)."""

STALL_TICKS = 200
"""After the faults stop, the cluster fails the liveness check if no member applies
anything new for this long (20 election timeouts: plenty for PreVote rounds, leader
changes and snapshot transfers), while some member of the configuration still lacks
the fresh proposal."""

LIVENESS_CAP_TICKS = 5000
"""Hard cap on the liveness phase, even while members creep forward (catching up a long
log one entry per round trip with max_inflight_msgs=1 and tiny messages is slow, not
stuck)."""

MAX_MEMBERS = 7


class SimulationFailure(AssertionError):
    """A schedule violated an invariant, failed to converge, or crashed the core."""

    def __init__(self, message: str, seed: int, replay: str) -> None:
        super().__init__(message)
        self.seed = seed
        self.replay = replay


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything about a schedule that is not an individual action, drawn from the seed
    so that `--seed N` alone replays a CI failure."""

    seed: int
    n_nodes: int
    membership: bool
    steps: int
    net: NetworkParams
    timing: Timing
    knobs: CoreKnobs
    action_interval: int
    """Mean time units between two schedule actions."""
    weights: dict[str, float]

    @classmethod
    def for_seed(
        cls,
        seed: int,
        *,
        n_nodes: int | None = None,
        membership: bool | None = None,
        steps: int | None = None,
    ) -> Profile:
        rng = random.Random(f"{seed}/profile")
        if n_nodes is None:
            n_nodes = 3 if seed % 2 == 0 else 5
        if membership is None:
            membership = seed % 4 >= 2
        net = NetworkParams(
            drop=rng.choice([0.0, 0.01, 0.05, 0.1, 0.2]),
            duplicate=rng.choice([0.0, 0.02, 0.1]),
            min_delay=1,
            max_delay=rng.choice([2, 5, 10, 20]),
            slow=rng.choice([0.0, 0.01, 0.05]),
            slow_delay=rng.choice([40, 100, 200]),
        )
        timing = Timing(
            defer_ready=rng.choice([0.0, 0.0, 0.2, 0.5]),
            async_ready=rng.choice([0.0, 0.0, 0.2, 0.5]),
            max_ready_delay=rng.choice([2, 6, 15]),
            tick_jitter=rng.choice([0, 1, 2]),
            report_unreachable=rng.choice([0.0, 0.3, 1.0]),
        )
        knobs = CoreKnobs(
            max_size_per_msg=rng.choice([1, 100, 1 << 20]),
            max_inflight_msgs=rng.choice([1, 2, 8, 256]),
            snapshot_catchup_entries=rng.choice([0, 0, 3, 20, 5000]),
            max_promote_lag=rng.choice([0, 5, 1000]),
        )
        weights = {
            "propose": 40.0,
            "read": rng.choice([0.0, 5.0, 15.0]),
            "transfer": rng.choice([0.0, 1.0, 4.0]),
            "campaign": rng.choice([0.0, 0.5, 2.0]),
            "partition": rng.choice([0.0, 1.0, 3.0]),
            "crash": rng.choice([0.0, 1.0, 3.0]),
            "crash_leader": rng.choice([0.0, 0.0, 1.0, 3.0]),
            "compact": rng.choice([0.0, 2.0, 8.0]),
            "add_learner": 3.0 if membership else 0.0,
            "add_voter": 0.5 if membership else 0.0,
            "promote": 4.0 if membership else 0.0,
            "remove": 2.0 if membership else 0.0,
        }
        return cls(
            seed=seed,
            n_nodes=n_nodes,
            membership=membership,
            steps=DEFAULT_STEPS if steps is None else steps,
            net=net,
            timing=timing,
            knobs=knobs,
            action_interval=rng.choice([4, 10, 25]),
            weights=weights,
        )

    def replay_command(self, trace: bool = True) -> str:
        cmd = f"python -m tests.sim --seed {self.seed}"
        default = Profile.for_seed(self.seed)
        if self.n_nodes != default.n_nodes:
            cmd += f" --nodes {self.n_nodes}"
        if self.membership != default.membership:
            cmd += " --membership" if self.membership else " --no-membership"
        if self.steps != default.steps:
            cmd += f" --steps {self.steps}"
        if trace:
            cmd += " --trace"
        return cmd

    def describe(self) -> str:
        n = self.net
        t = self.timing
        k = self.knobs
        active = ", ".join(f"{a}={w:g}" for a, w in self.weights.items() if w)
        return (
            f"{self.n_nodes} nodes, membership={'on' if self.membership else 'off'}, "
            f"{self.steps} steps; net drop={n.drop} dup={n.duplicate} delay=1..{n.max_delay} "
            f"slow={n.slow}@{n.slow_delay}; ready defer={t.defer_ready} async="
            f"{t.async_ready}; core inflight={k.max_inflight_msgs} "
            f"msg_size={k.max_size_per_msg} catchup={k.snapshot_catchup_entries} "
            f"promote_lag={k.max_promote_lag}; actions every ~{self.action_interval}: {active}"
        )


@dataclass(slots=True)
class SimResult:
    seed: int
    profile: Profile
    stats: Stats
    end_time: int
    converged_at: int
    """Time units the liveness phase needed."""
    leaders: int
    committed: int
    members_final: tuple[int, ...] = field(default_factory=tuple)


class Simulation:
    """One seeded schedule against a fresh cluster."""

    def __init__(
        self,
        seed: int,
        n_nodes: int | None = None,
        *,
        membership: bool | None = None,
        steps: int | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.seed = seed
        self.profile = Profile.for_seed(seed, n_nodes=n_nodes, membership=membership, steps=steps)
        p = self.profile
        self.trace = trace or Trace()
        self.rng = random.Random(f"{seed}/schedule")
        self.cluster: Cluster | None = None
        self._chaos = True
        self._next_id = p.n_nodes + 1
        self._values = 0

    # --- running -----------------------------------------------------------------

    def run(self) -> SimResult:
        with core_logs_into(self.trace, self._clock):
            return self._run()

    def _clock(self) -> int:
        return self.cluster.now if self.cluster is not None else 0

    def _run(self) -> SimResult:
        p = self.profile
        try:
            self.trace.note(0, f"seed {self.seed}: {p.describe()}")
            # Copy the mutable parameters: the liveness phase changes them.
            net = dataclasses.replace(p.net)
            timing = dataclasses.replace(p.timing)
            c = self.cluster = Cluster(
                self.seed, p.n_nodes, knobs=p.knobs, net=net, timing=timing, trace=self.trace
            )
            self._schedule_next_action()
            while c.stats.events < p.steps and c.step():
                pass
            start = c.now
            self._liveness()
            return SimResult(
                seed=self.seed,
                profile=p,
                stats=c.stats,
                end_time=c.now,
                converged_at=c.now - start,
                leaders=len(c.checker.leaders),
                committed=c.checker.max_committed,
                members_final=c.committed_conf().members(),
            )
        except SimulationFailure:
            raise
        except AssertionError as exc:
            raise self._failure(exc) from exc
        except Exception as exc:  # the core raised where it must not
            raise self._failure(exc, crashed=True) from exc

    def _failure(self, exc: BaseException, crashed: bool = False) -> SimulationFailure:
        c = self.cluster
        now = c.now if c is not None else 0
        what = (
            f"the core raised {type(exc).__name__}: {exc}"
            if crashed
            else f"{type(exc).__name__}: {exc}"
        )
        replay = self.profile.replay_command()
        lines = [
            f"simulation seed={self.seed} failed at t={now}"
            f" (event {c.stats.events if c else 0}): {what}",
            f"replay (from the repository root): {replay}",
            f"profile: {self.profile.describe()}",
        ]
        if c is not None:
            lines.append("members:")
            lines.extend(f"  {_describe_host(c, i)}" for i in sorted(c.hosts))
        lines.append("last events:")
        lines.append(self.trace.render_tail())
        lines.append(f"replay: {replay}")
        return SimulationFailure("\n".join(lines), self.seed, replay)

    # --- the chaos phase ---------------------------------------------------------

    def _schedule_next_action(self) -> None:
        c = self.cluster
        assert c is not None
        gap = max(1, int(self.rng.expovariate(1.0 / self.profile.action_interval)))
        c.call_at(c.now + gap, self._act)

    def _act(self) -> None:
        if not self._chaos:
            return
        self._schedule_next_action()
        w = self.profile.weights
        names = [k for k, v in w.items() if v > 0]
        action = self.rng.choices(names, weights=[w[k] for k in names])[0]
        getattr(self, f"_do_{action}")()

    def _pick_live(self) -> int | None:
        assert self.cluster is not None
        live = self.cluster.live()
        return self.rng.choice(live) if live else None

    def _value(self, prefix: str = "v") -> bytes:
        self._values += 1
        return f"{prefix}{self._values}".encode()

    def _do_propose(self) -> None:
        n = self._pick_live()
        if n is not None:
            assert self.cluster is not None
            self.cluster.propose(n, self._value())

    def _do_read(self) -> None:
        n = self._pick_live()
        if n is not None:
            assert self.cluster is not None
            self.cluster.read_index(n)

    def _do_campaign(self) -> None:
        n = self._pick_live()
        if n is not None:
            assert self.cluster is not None
            self.cluster.campaign(n)

    def _do_compact(self) -> None:
        n = self._pick_live()
        if n is not None:
            assert self.cluster is not None
            self.cluster.compact(n)

    def _do_transfer(self) -> None:
        c = self.cluster
        assert c is not None
        ld = c.leader()
        if ld is None:
            return
        others = [v for v in c.raw(ld).conf_state.voters if v != ld]
        if others:
            c.transfer_leader(ld, self.rng.choice(others))

    def _do_partition(self) -> None:
        c = self.cluster
        assert c is not None
        if c.network.partitioned:
            c.heal()
            return
        ids = sorted(i for i, h in c.hosts.items() if not h.stopped)
        mode = self.rng.random()
        ld = c.leader()
        if mode < 0.3 and ld is not None:
            lone = ld  # isolating the leader exercises CheckQuorum and PreVote
        elif mode < 0.6:
            lone = self.rng.choice(ids)
        else:
            self.rng.shuffle(ids)
            cut = self.rng.randint(1, len(ids) - 1) if len(ids) > 1 else 1
            c.partition([sorted(ids[:cut]), sorted(ids[cut:])])
            return
        c.partition([[lone], [i for i in ids if i != lone]])

    def _do_crash(self) -> None:
        c = self.cluster
        assert c is not None
        n = self._pick_live()
        if n is None:
            return
        c.crash(n, purge_outgoing=self.rng.random() < 0.5)
        delay = self.rng.randint(2, 60) * TICK
        c.call_at(c.now + delay, lambda: self._restart_if_down(n))

    def _do_crash_leader(self) -> None:
        """Leader churn right after proposals is what leaves entries of several terms on
        minorities, the setting of the paper's Figure 8."""
        c = self.cluster
        assert c is not None
        ld = c.leader()
        if ld is None:
            return
        c.crash(ld, purge_outgoing=self.rng.random() < 0.5)
        delay = self.rng.randint(1, 30) * TICK
        c.call_at(c.now + delay, lambda: self._restart_if_down(ld))

    def _restart_if_down(self, n: int) -> None:
        c = self.cluster
        assert c is not None
        h = c.host(n)
        if h.raw is None and not h.stopped:
            c.restart(n)

    def _leader_conf(self) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
        c = self.cluster
        assert c is not None
        ld = c.leader()
        if ld is None:
            return None
        cs = c.raw(ld).conf_state
        return ld, cs.voters, cs.learners

    def _do_add_learner(self, as_voter: bool = False) -> None:
        c = self.cluster
        assert c is not None
        lc = self._leader_conf()
        if lc is None:
            return
        ld, voters, learners = lc
        if len(voters) + len(learners) >= MAX_MEMBERS:
            return
        new = self._next_id
        self._next_id += 1
        c.add_member(new)
        kind = ConfChangeType.ADD_NODE if as_voter else ConfChangeType.ADD_LEARNER
        err = c.propose_conf_change(ld, ConfChange(kind, new, f"peer{new}".encode()))
        if err is not None:
            c.stop(new)  # never in any configuration: the operator deletes the pod

    def _do_add_voter(self) -> None:
        self._do_add_learner(as_voter=True)

    def _do_promote(self) -> None:
        c = self.cluster
        assert c is not None
        lc = self._leader_conf()
        if lc is None or not lc[2]:
            return
        ld, _, learners = lc
        c.propose_conf_change(ld, ConfChange(ConfChangeType.ADD_NODE, self.rng.choice(learners)))

    def _do_remove(self) -> None:
        c = self.cluster
        assert c is not None
        lc = self._leader_conf()
        if lc is None:
            return
        ld, voters, learners = lc
        candidates = list(learners) + (list(voters) if len(voters) > 1 else [])
        if candidates:
            c.propose_conf_change(
                ld, ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(candidates))
            )

    # --- the liveness phase ------------------------------------------------------

    def _liveness(self) -> None:
        c = self.cluster
        assert c is not None
        self._chaos = False
        c.trace.note(c.now, "LIVENESS: heal, restart everything, no more drops")
        c.heal()
        c.network.params.drop = 0.0
        for n in c.crashed():
            c.restart(n)
        start = c.now
        next_propose = c.now + 2 * TICK
        last_progress, progress = c.now, self._progress()
        while c.now - last_progress < STALL_TICKS * TICK:
            if c.now - start > LIVENESS_CAP_TICKS * TICK:
                raise InvariantViolation(
                    "liveness",
                    f"members of {c.committed_conf()} still lack a fresh proposal "
                    f"{LIVENESS_CAP_TICKS} ticks after the faults stopped",
                )
            if c.now >= next_propose:
                ld = c.leader()
                target = ld if ld is not None else self._pick_live()
                if target is not None:
                    data = self._value("final")
                    c.watched[data] = 0
                    c.propose(target, data)
                next_propose = c.now + 5 * TICK
            if c.run_until(self._converged, TICK):
                c.trace.note(c.now, "LIVENESS: converged")
                return
            now_progress = self._progress()
            if now_progress > progress:
                last_progress, progress = c.now, now_progress
        raise InvariantViolation(
            "liveness",
            f"stuck: after the faults stopped, no member applied anything for {STALL_TICKS} "
            f"ticks, yet no leader has applied a fresh proposal on every member of "
            f"{c.committed_conf()}",
        )

    def _progress(self) -> int:
        c = self.cluster
        assert c is not None
        return sum(h.sm.applied for h in c.hosts.values() if h.raw is not None)

    def _converged(self) -> bool:
        c = self.cluster
        assert c is not None
        ld = c.leader()
        if ld is None:
            return False
        done = [i for i in c.watched.values() if i]
        if not done:
            return False
        index = min(done)
        for m in c.committed_conf().members():
            h = c.hosts.get(m)
            if h is None or h.stopped:
                continue
            if h.raw is None or h.sm.applied < index:
                return False
        return True


def _describe_host(c: Cluster, i: int) -> str:
    h = c.hosts[i]
    st = h.store
    hs = st.hard_state
    disk = f"disk: hs(t{hs.term} v{hs.vote} c{hs.commit}) snap={st.snap_index} last={st.last_index}"
    if h.stopped:
        return f"{i}: stopped (removed); {disk}"
    r = h.raw
    if r is None:
        return f"{i}: DOWN; {disk}"
    cs = r.conf_state
    return (
        f"{i}: {r.role} term={r.term} leader={r.leader} commit={r.commit} applied={r.applied}"
        f" last={r.last_index} voters={list(cs.voters)} learners={list(cs.learners)}; {disk}"
        f"{'; partition group ' + str(c.network.group.get(i, 0)) if c.network.partitioned else ''}"
    )
