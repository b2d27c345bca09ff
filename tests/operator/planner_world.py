"""A small executable model of Kubernetes + a Raft cluster, for testing the planner.

The world plays the parts the planner only observes: the StatefulSet controller
(creates and deletes pods, creates PVCs), the PVC protection finalizer, the member
processes (a fresh data dir adopts an id only as a learner at its own peer URL;
ordinal 0 bootstraps once), and a Raft leader that applies one configuration change
at a time, elects among live voters and advances the commit index.

It also plays the operator: observe (optionally stale), ``plan``, execute. Faults are
injected between steps. The world checks the safety properties *at the moment an
action takes effect*, against the true state rather than the operator's view:

- never a configuration change proposed while another is pending, never more than
  one member unsettled (learner or pending), and every Raft change targets the
  member recorded in ``status.in_flight`` (or an orphan when nothing is in flight);
- never a voter removed when the remaining voters would lack a healthy majority,
  never the last voter;
- never a member id added twice or after it was removed;
- rolling changes (when the world has a ``revision``): a pod is deleted on purpose
  only when every other voter is healthy, no membership change is under way, it is
  not the leader's (leadership moves first), and never after a roll stopped for the
  revision still asked for; leadership moves off a stale leader only onto an updated
  member once every other member is updated (the leader goes last).

Assumptions, which the real executor must honour: the RaftKV status is read fresh and
written with a resourceVersion precondition; the Raft view is read from the members
right before acting; the StatefulSet is read back after the operator's own writes.
Pods and PVCs may come from a cache that lags by a few steps.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field, replace

from raftkv_operator.model import (
    Action,
    AddLearner,
    Bookkeeping,
    Change,
    ChangeKind,
    CreateChildren,
    DeletePod,
    DeletePVC,
    Done,
    GrowStatefulSet,
    Observed,
    PlannerConfig,
    PodPhase,
    PodView,
    PromoteLearner,
    PVCView,
    RaftKVSpec,
    RaftMember,
    RaftView,
    RemoveMember,
    ReplaceMember,
    Restart,
    SetQuorumLost,
    ShrinkStatefulSet,
    StatefulSetView,
    TransferLeadership,
    UpdateRestart,
    UpdateStatefulSet,
    UpdateStatus,
    Wait,
)
from raftkv_operator.planner import majority, plan

NAME, NAMESPACE, UID = "kv", "default", "6b1f-uid"
SPEC = RaftKVSpec(name=NAME, namespace=NAMESPACE, uid=UID, replicas=1)
CONFIG = PlannerConfig(max_learner_lag=4, stabilization_seconds=10.0)


# ----------------------------------------------------------------- table fixtures

NOW = 5_000.0


def url(k: int) -> str:
    return SPEC.peer_url(k)


def cluster(
    n: int = 3,
    *,
    replicas: int | None = None,
    learners: dict[int, int] | None = None,
    leader: int | None = 1,
    in_flight: Change | None = None,
    next_id: int | None = None,
    sts: int | None = None,
    not_ready: frozenset[int] = frozenset(),
    pending: bool = False,
) -> Observed:
    """A healthy n-voter cluster; ``learners`` adds ordinal → id learners on top."""
    learners = learners or {}
    members = {k: k + 1 for k in range(n)} | learners
    ids = {**{k + 1: False for k in range(n)}, **{m: True for m in learners.values()}}
    ordinal_of = {m: k for k, m in members.items()}
    ready = frozenset(ids) - not_ready
    size = sts if sts is not None else n + len(learners)
    return Observed(
        spec=replace(SPEC, replicas=n if replicas is None else replicas),
        status=Bookkeeping(
            cluster_id=UID,
            members=members,
            next_member_id=next_id or max(ids) + 1,
            in_flight=in_flight,
        ),
        now=NOW,
        children_exist=True,
        statefulset=StatefulSetView(size, size, size),
        pods=tuple(
            PodView(ordinal=k, ready=members.get(k) in ready, member_id=members.get(k))
            for k in range(size)
        ),
        pvcs=tuple(PVCView(ordinal=k) for k in range(size)),
        raft=RaftView(
            reachable=True,
            leader_id=leader,
            term=7,
            commit_index=100,
            members=tuple(
                RaftMember(m, f"kv-{ordinal_of[m]}", url(ordinal_of[m]), learner)
                for m, learner in sorted(ids.items())
            ),
            match_index={m: 100 for m in ids},
            ready_ids=ready,
            config_change_pending=pending,
        ),
    )


class SafetyViolation(AssertionError):
    """The planner asked for something the properties forbid."""


class Fault(enum.Enum):
    NONE = "none"
    KILL_POD = "kill-pod"  # the pod is deleted; the StatefulSet brings it back with its PVC
    WIPE_PVC = "wipe-pvc"  # the member's data dir is lost; its pod restarts empty
    PARTITION = "partition"  # a member stops answering for a few steps
    STALL = "stall"  # the leader's log stops advancing for a few steps (slow disk, GC pause)
    CRASH_OPERATOR = "crash"  # the operator dies after planning, before acting
    SCALE = "scale"  # a user changes spec.replicas


@dataclass
class Pod:
    running: bool = False
    terminating: bool = False
    booting: int = 2  # ticks until the container runs
    revision: str | None = None  # the template it was made from
    uid: str = ""


@dataclass
class PVC:
    data: int | None = None  # the member id persisted in the data dir
    terminating: bool = False


@dataclass
class K8sSnapshot:
    pods: tuple[PodView, ...]
    pvcs: tuple[PVCView, ...]


@dataclass
class World:
    replicas: int = 1
    now: float = 1_000.0
    status: Bookkeeping = field(default_factory=Bookkeeping)
    children: bool = False
    sts: int | None = None
    pods: dict[int, Pod] = field(default_factory=dict)
    pvcs: dict[int, PVC] = field(default_factory=dict)
    # Raft, as the leader knows it
    formed: bool = False
    config: dict[int, bool] = field(default_factory=dict)  # id → learner
    ordinal_of: dict[int, int] = field(default_factory=dict)
    leader: int | None = None
    term: int = 0
    commit: int = 0
    match: dict[int, int] = field(default_factory=dict)
    pending: tuple[str, int, int] | None = None  # (kind, member id, ordinal)
    partitioned: dict[int, int] = field(default_factory=dict)  # id → steps left
    stalled: int = 0  # steps left without log progress
    # bookkeeping of the checker
    ever_added: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    snapshots: list[K8sSnapshot] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    # rolling changes ("" = the world does not model revisions)
    revision: str = ""  # what the spec renders
    sts_revision: str | None = None  # the StatefulSet's template
    on_delete: bool = False
    bad_revisions: set[str] = field(default_factory=set)  # images that never start
    restart: Restart | None = None  # the operator's restart record (status)
    stabilization: float = 10.0
    timeout: float = 60.0
    pod_serial: int = 0
    deleted_on_purpose: list[tuple[int, str | None]] = field(default_factory=list)
    # restore (spec.restore): the member id `raftkv snapshot restore` picks for ordinal 0
    # (None: no restore), and whether the backup is broken (the init container fails)
    restore_id: int | None = None
    restore_broken: bool = False

    # ------------------------------------------------------------------ member processes

    def member_on(self, ordinal: int) -> int | None:
        pod, pvc = self.pods.get(ordinal), self.pvcs.get(ordinal)
        if pod is None or not pod.running or pvc is None:
            return None
        return pvc.data

    def active(self) -> set[int]:
        """Members whose process runs with their own data and answers."""
        out = set()
        for member_id in self.config:
            ordinal = self.ordinal_of[member_id]
            pod = self.pods.get(ordinal)
            if (
                self.member_on(ordinal) == member_id
                and pod is not None
                and not pod.terminating
                and member_id not in self.partitioned
            ):
                out.add(member_id)
        return out

    def voters(self) -> set[int]:
        return {m for m, learner in self.config.items() if not learner}

    def ready(self) -> set[int]:
        if self.leader is None:
            return set()
        return {
            m
            for m in self.active()
            if self.match.get(m, 0) >= self.commit - CONFIG.max_learner_lag and m in self.match
        }

    # ------------------------------------------------------------------ observation

    def k8s_snapshot(self) -> K8sSnapshot:
        ready = self.ready()
        pods = []
        for ordinal, pod in sorted(self.pods.items()):
            member_id = self.member_on(ordinal)
            reachable = pod.running and (member_id is None or member_id not in self.partitioned)
            pods.append(
                PodView(
                    ordinal=ordinal,
                    phase=PodPhase.RUNNING if pod.running else PodPhase.PENDING,
                    ready=member_id is not None and member_id in ready,
                    terminating=pod.terminating,
                    member_reachable=reachable,
                    member_id=member_id if reachable else None,
                    revision=pod.revision,
                    uid=pod.uid,
                    waiting_reason=None if pod.running else "ContainerCreating",
                )
            )
        pvcs = tuple(
            PVCView(ordinal=o, terminating=p.terminating) for o, p in sorted(self.pvcs.items())
        )
        return K8sSnapshot(tuple(pods), pvcs)

    def raft_view(self) -> RaftView:
        active = self.active()
        if not active:
            return RaftView()
        return RaftView(
            reachable=True,
            leader_id=self.leader,
            term=self.term,
            commit_index=self.commit,
            members=tuple(
                RaftMember(
                    id=m,
                    name=SPEC.member_name(self.ordinal_of[m]),
                    peer_url=SPEC.peer_url(self.ordinal_of[m]),
                    learner=learner,
                )
                for m, learner in sorted(self.config.items())
            ),
            match_index={m: self.match[m] for m in self.config if m in self.match},
            ready_ids=frozenset(self.ready()),
            config_change_pending=self.pending is not None,
        )

    def observe(self, staleness: int = 0) -> Observed:
        current = self.k8s_snapshot()
        snap = current
        if staleness and self.snapshots:
            snap = self.snapshots[max(0, len(self.snapshots) - 1 - staleness)]
            if self.revision:
                snap = replace(snap, pods=self._probed(snap.pods, current.pods))
        sts = None
        if self.sts is not None:
            ready = sum(1 for p in current.pods if p.ready and p.ordinal < self.sts)
            sts = StatefulSetView(
                self.sts, ready, len(current.pods), self.sts_revision, self.on_delete
            )
        return Observed(
            spec=RaftKVSpec(
                name=NAME,
                namespace=NAMESPACE,
                uid=UID,
                replicas=self.replicas,
                member_revision=self.revision,
                upgrade_stabilization_seconds=self.stabilization,
                upgrade_timeout_seconds=self.timeout,
                restore_from="" if self.restore_id is None else "s3://backups/kv.snapshot",
            ),
            status=self.status,
            now=self.now,
            children_exist=self.children,
            statefulset=sts,
            pods=snap.pods,
            pvcs=snap.pvcs,
            raft=self.raft_view(),
            restart=self.restart,
            restore_failure=(
                "is corrupt: its SHA-256 is ..." if self.restore_broken and 0 in self.pods else None
            ),
        )

    @staticmethod
    def _probed(listed: tuple[PodView, ...], now: tuple[PodView, ...]) -> tuple[PodView, ...]:
        """A lagging pod list, but the members asked now (as ``observe.gather`` does:
        it probes every listed pod's member live). Only the rolling worlds model this;
        the older properties keep their (harsher) fully stale views."""
        live = {p.uid: p for p in now}
        out = []
        for p in listed:
            fresh = live.get(p.uid)
            reachable = fresh.member_reachable if fresh is not None else False
            member_id = fresh.member_id if fresh is not None else None
            out.append(replace(p, member_reachable=reachable, member_id=member_id))
        return tuple(out)

    # ------------------------------------------------------------------ acting (with checks)

    def _propose(self, kind: str, member_id: int, ordinal: int) -> None:
        if self.pending is not None:
            raise SafetyViolation(f"{kind} {member_id} proposed while {self.pending} is pending")
        if self.leader is None:
            raise SafetyViolation(f"{kind} {member_id} proposed without a leader")
        change = self.status.in_flight
        allowed: set[int] = set()
        if change is not None:
            allowed = {change.member_id}
            if change.old_member_id is not None:
                allowed.add(change.old_member_id)
        elif kind == "remove":
            allowed = set(self.config) - set(self.status.members.values())
        if member_id not in allowed:
            raise SafetyViolation(f"{kind} {member_id} does not belong to in-flight {change}")
        self.pending = (kind, member_id, ordinal)
        unsettled = {m for m, learner in self.config.items() if learner} | {member_id}
        if len(unsettled) > 1:
            raise SafetyViolation(f"two membership changes in flight: {sorted(unsettled)}")

    def execute(self, action: Action) -> None:
        self.actions.append(action)
        match action:
            case CreateChildren(statefulset_replicas=n):
                self.children = True
                if self.sts is None:
                    self.sts = n
                    self.sts_revision, self.on_delete = self.revision or None, True
            case UpdateStatefulSet(revision=rev):
                self.sts_revision, self.on_delete = rev, True
            case UpdateRestart(restart=record):
                self.restart = record
            case DeletePod(ordinal=k, uid=uid, member_id=m):
                pod = self.pods.get(k)
                if pod is None or pod.uid != uid or pod.terminating:
                    return  # the precondition fails: that pod is gone already
                self._check_restart(k, m)
                pod.terminating = True
                self.deleted_on_purpose.append((k, pod.revision))
            case GrowStatefulSet(replicas=n):
                self.sts = n
            case ShrinkStatefulSet(replicas=n):
                doomed = {m for m, k in self.ordinal_of.items() if k >= n and m in self.config}
                if doomed:
                    raise SafetyViolation(f"shrinking to {n} takes away members {sorted(doomed)}")
                self.sts = n
            case UpdateStatus(status=s) | ReplaceMember(status=s):
                if s.next_member_id < self.status.next_member_id:
                    raise SafetyViolation("member id counter went backwards")
                self.status = s
            case AddLearner(ordinal=k, member_id=m, peer_url=url):
                if url != SPEC.peer_url(k):
                    raise SafetyViolation(f"wrong peer URL {url} for ordinal {k}")
                if m in self.removed:
                    raise SafetyViolation(f"member id {m} re-added after removal")
                if m in self.config:
                    return  # idempotent at the member API
                if m in self.ever_added and self.pending != ("add", m, k):
                    raise SafetyViolation(f"member id {m} added twice")
                if self.pending == ("add", m, k):
                    return
                self._propose("add", m, k)
                self.ever_added.add(m)
            case PromoteLearner(member_id=m):
                if self.config.get(m) is not True:
                    return
                if self.pending == ("promote", m, self.ordinal_of[m]):
                    return
                self._propose("promote", m, self.ordinal_of[m])
            case RemoveMember(member_id=m):
                if m not in self.config or self.pending == ("remove", m, self.ordinal_of[m]):
                    return
                if not self.config[m]:
                    others = self.voters() - {m}
                    healthy = others & self.ready()
                    if not others or len(healthy) < majority(len(others)):
                        raise SafetyViolation(
                            f"removing voter {m} leaves {len(healthy)}/{len(others)} healthy"
                        )
                self._propose("remove", m, self.ordinal_of[m])
            case TransferLeadership(from_id=a, to_id=b):
                self._check_transfer(a, b)
                if self.leader == a and b in self.voters() & self.active():
                    self.leader = b
                    self.term += 1
            case DeletePVC(ordinal=k):
                if k in self.pvcs:
                    if k in self.pods:
                        self.pvcs[k].terminating = True  # kubernetes.io/pvc-protection
                    else:
                        del self.pvcs[k]
            case SetQuorumLost() | Wait() | Done():
                pass

    def revision_of(self, member_id: int) -> str | None:
        pod = self.pods.get(self.ordinal_of.get(member_id, -1))
        return pod.revision if pod is not None else None

    def _check_restart(self, k: int, member_id: int) -> None:
        """A pod deleted on purpose: the rules of a rolling change, on the true state."""
        record = self.restart
        change = self.status.in_flight
        if k == 0 and change is not None and change.kind is ChangeKind.BOOTSTRAP:
            return  # the only member, not confirmed leading: it restarts with its data
        if record is None or (record.ordinal, record.member_id) != (k, member_id):
            raise SafetyViolation(f"pod {k} deleted without its restart record ({record})")
        if record.failed is not None:
            raise SafetyViolation(f"pod {k} deleted after the roll stopped: {record.failed}")
        if not self.pods[k].running:
            return  # its member does not run: deleting the pod takes nothing away
        if self.status.in_flight is not None or self.pending is not None:
            raise SafetyViolation(f"pod {k} deleted during a membership change")
        unhealthy = (self.voters() - {member_id}) - self.ready()
        if unhealthy:
            raise SafetyViolation(f"pod {k} deleted while {sorted(unhealthy)} are unhealthy")
        if self.leader == member_id and len(self.voters()) > 1:
            raise SafetyViolation(f"pod {k} deleted while its member {member_id} leads")

    def _check_transfer(self, from_id: int, to_id: int) -> None:
        """Outside a membership change a transfer is the roll's: the leader goes last."""
        if not self.revision or self.status.in_flight is not None:
            return
        if from_id not in self.status.members.values():
            return  # an orphan leaving: not the roll's
        if self.revision_of(to_id) != self.revision:
            raise SafetyViolation(f"leadership moved to {to_id}, which is not updated")
        stale = [
            m
            for m in self.status.members.values()
            if m != from_id and self.revision_of(m) != self.revision
        ]
        if stale:
            raise SafetyViolation(f"leadership moved off {from_id} while {stale} are not updated")

    # ------------------------------------------------------------------ time passes

    def tick(self, dt: float) -> None:
        self.now += dt
        for m in list(self.partitioned):
            self.partitioned[m] -= 1
            if self.partitioned[m] <= 0:
                del self.partitioned[m]
        # Pods that were terminating are gone; PVC protection then lets go.
        for k in [k for k, p in self.pods.items() if p.terminating]:
            del self.pods[k]
        for k in [k for k, p in self.pvcs.items() if p.terminating and k not in self.pods]:
            del self.pvcs[k]
        # The StatefulSet controller.
        if self.sts is not None:
            for k in range(self.sts):
                if k not in self.pods:
                    self.pod_serial += 1
                    self.pods[k] = Pod(revision=self.sts_revision, uid=f"pod-{self.pod_serial}")
                    self.pvcs.setdefault(k, PVC())
            for k, pod in self.pods.items():
                if k >= self.sts:
                    pod.terminating = True
        for k, pod in self.pods.items():
            pvc = self.pvcs.get(k)
            if not pod.terminating and pvc is not None and not pvc.terminating:
                pod.booting -= 1
                starts = pod.revision not in self.bad_revisions  # a bad image never runs
                pod.running = pod.running or (pod.booting <= 0 and starts)
        self._raft_tick()
        self._members_tick()
        self.snapshots.append(self.k8s_snapshot())
        del self.snapshots[:-4]

    def _members_tick(self) -> None:
        for k, pod in self.pods.items():
            pvc = self.pvcs.get(k)
            if not pod.running or pod.terminating or pvc is None or pvc.data is not None:
                continue
            change = self.status.in_flight
            if not self.formed:
                # Ordinal 0 bootstraps, told so by the operator (in-flight BOOTSTRAP).
                if k == 0 and change is not None and change.kind is ChangeKind.BOOTSTRAP:
                    # A restore picks its own id (or fails and nothing starts).
                    if self.restore_broken:
                        continue
                    first = change.member_id if self.restore_id is None else self.restore_id
                    pvc.data = first
                    self.config = {first: False}
                    self.ordinal_of[first] = 0
                    self.ever_added.add(first)
                    self.leader, self.term, self.commit = first, 1, 1
                    self.match = {first: 1}
                    self.formed = True
                continue
            for m, learner in self.config.items():
                # An empty data dir may only become a learner; a voter's id is refused.
                if learner and self.ordinal_of[m] == k and m not in self.partitioned:
                    pvc.data = m

    def _raft_tick(self) -> None:
        if not self.formed:
            return
        active, voters = self.active(), self.voters()
        live_voters = active & voters
        if self.leader not in live_voters or len(live_voters) < majority(len(voters)):
            self.leader = None
        if self.leader is None and live_voters and len(live_voters) >= majority(len(voters)):
            self.leader = min(live_voters)
            self.term += 1
        if self.leader is None:
            return
        if self.stalled:
            self.stalled -= 1
            return
        if self.pending is not None:
            kind, m, k = self.pending
            self.pending = None
            if kind == "add":
                self.config[m] = True
                self.ordinal_of[m] = k
            elif kind == "promote":
                self.config[m] = False
            else:
                del self.config[m]
                self.match.pop(m, None)
                self.removed.add(m)
                if m == self.leader:
                    rest = (self.active() & self.voters()) - {m}
                    self.leader = min(rest) if rest else None
                    self.term += 1
            if self.leader is None:
                return
        self.commit += 1
        for m in self.active():
            self.match[m] = self.commit if m in self.match else 0

    # ------------------------------------------------------------------ faults

    def inject(self, fault: Fault, pick: int) -> None:
        match fault:
            case Fault.KILL_POD if self.pods:
                ordinal = sorted(self.pods)[pick % len(self.pods)]
                del self.pods[ordinal]
            case Fault.WIPE_PVC if self.pvcs and self.formed:
                ordinal = sorted(self.pvcs)[pick % len(self.pvcs)]
                victim = self.pvcs[ordinal].data
                # Only faults the cluster can survive: a majority keeps its data, in the
                # current voter set and in the one a pending promotion would make.
                configs = [self.voters()]
                if self.pending is not None and self.pending[0] == "promote":
                    configs.append(self.voters() | {self.pending[1]})
                if self.pending is not None and self.pending[0] == "remove":
                    configs.append(self.voters() - {self.pending[1]})
                for voters in configs:
                    intact = {v for v in voters if self._has_data(v)} - {victim}
                    if victim in voters and len(intact) < majority(len(voters)):
                        return
                self.pvcs[ordinal].data = None
                self.pods.pop(ordinal, None)
            case Fault.PARTITION if self.config:
                member_id = sorted(self.config)[pick % len(self.config)]
                self.partitioned[member_id] = 2 + pick % 5
            case Fault.STALL:
                self.stalled = 1 + pick % 4
            case Fault.SCALE:
                self.replicas = 1 + pick % 5
            case _:
                pass

    def _has_data(self, member_id: int) -> bool:
        pvc = self.pvcs.get(self.ordinal_of[member_id])
        return pvc is not None and pvc.data == member_id

    # ------------------------------------------------------------------ the loop

    def step(self, staleness: int = 0, crash: bool = False, dt: float = 3.0) -> Action:
        action = plan(self.observe(staleness), CONFIG)
        if not crash:
            self.execute(action)
        self.tick(dt)
        return action

    def converged(self) -> bool:
        n = self.replicas
        members = self.status.members
        return (
            self.status.in_flight is None
            and sorted(members) == list(range(n))
            and self.config == {members[k]: False for k in range(n)}
            and self.sts == n
            and sorted(self.pods) == list(range(n))
            and sorted(self.pvcs) == list(range(n))
            and all(self.member_on(k) == members[k] for k in range(n))
            and self.pending is None
            and self.restart is None
            and (not self.revision or all(p.revision == self.revision for p in self.pods.values()))
        )

    def clone(self) -> World:
        return copy.deepcopy(self)
