"""Plain records of what the operator observes and what it may do next.

The planner (``planner.py``) is a pure function from :class:`Observed` to one
:data:`Action`. These records are its whole vocabulary, so the kopf handlers, the
member's HTTP client and the tests can all meet here without depending on each
other: the handlers translate Kubernetes objects and ``/v1/status`` answers into
these dataclasses and carry out the returned action.

Who owns which field matters for crash safety:

- :class:`Bookkeeping` is the operator's own memory, persisted in the RaftKV
  ``status``. It is read fresh at the start of every reconcile and written with a
  resourceVersion precondition, so the planner may trust it.
- Everything else (StatefulSet, pods, PVCs, the Raft view) is observed and may be
  a little stale; the planner only ever takes idempotent steps from it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from raftkv_operator.recovery_model import (
    ClearForceAnnotation,
    Recovery,
    RefuseRecovery,
    SetForcePod,
    UpdateRecovery,
)

#: Where a member's Raft peer endpoint lives, formatted with ``name``, ``namespace``
#: and ``ordinal``. In a cluster this is the stable DNS name behind the headless peer
#: Service; a test harness replaces it with loopback addresses.
DEFAULT_PEER_URL_TEMPLATE = "http://{name}-{ordinal}.{name}-peer.{namespace}.svc:2380"


def _frozen_map(items: Mapping[int, int] | None = None) -> Mapping[int, int]:
    return MappingProxyType(dict(items or {}))


# --------------------------------------------------------------------------- spec / status


@dataclass(frozen=True)
class RaftKVSpec:
    """The part of the RaftKV object the planner reads (metadata + spec)."""

    name: str
    namespace: str
    #: metadata.uid: unique forever, so it doubles as the Raft cluster id and a
    #: re-created RaftKV of the same name can never join the old cluster's members.
    uid: str
    replicas: int
    generation: int = 1
    peer_url_template: str = DEFAULT_PEER_URL_TEMPLATE
    #: The member revision this spec renders (``objects.member_revision``, a hash of the
    #: pod template): what every member's pod should run. Empty means unknown, and no
    #: rolling change is planned (plain tables and worlds that do not model revisions).
    member_revision: str = ""
    #: spec.upgrade.stabilizationSeconds: a restarted member stays Ready and caught up
    #: this long before the next one is touched.
    upgrade_stabilization_seconds: float = 10.0
    #: spec.upgrade.timeoutSeconds: a restarted member that is not back (Ready, caught
    #: up) this long after its pod was deleted stops the roll.
    upgrade_timeout_seconds: float = 300.0
    #: spec.restore.from: the backup ordinal 0 is bootstrapped from ("" = none).
    restore_from: str = ""

    @property
    def desired(self) -> int:
        """spec.replicas, never below one member (the CRD also says minimum 1)."""
        return max(1, self.replicas)

    def member_name(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"

    def peer_url(self, ordinal: int) -> str:
        return self.peer_url_template.format(
            name=self.name, namespace=self.namespace, ordinal=ordinal
        )


class ChangeKind(enum.StrEnum):
    """The one membership change the operator may have in flight."""

    BOOTSTRAP = "Bootstrap"  # ordinal 0 starts a single-member cluster
    ADD = "Add"  # learner added, StatefulSet grown, learner promoted
    REMOVE = "Remove"  # leadership moved, member removed, StatefulSet shrunk, PVC deleted
    REPLACE = "Replace"  # PVC lost: old id removed, then a fresh id added like ADD


@dataclass(frozen=True)
class Change:
    """A write-ahead record of the membership change in progress.

    It is persisted *before* the first Raft or Kubernetes step of the change, so an
    operator killed at any point finds it again and finishes the same change instead
    of starting another one (or re-using a member id the change already retired).
    """

    kind: ChangeKind
    ordinal: int
    #: The member being bootstrapped, added or removed; for REPLACE the *new* id.
    member_id: int
    #: REPLACE only: the id whose data was lost and must leave the configuration.
    old_member_id: int | None = None
    #: ADD/REPLACE: when the learner was first seen caught up and ready. Lives in
    #: status (not operator memory) so a restart neither resets nor skips the
    #: stabilization period.
    caught_up_since: float | None = None


@dataclass(frozen=True)
class Bookkeeping:
    """The operator's persisted memory (RaftKV status fields it owns)."""

    #: Set once, before ordinal 0 is ever started: its presence forbids a second bootstrap.
    cluster_id: str | None = None
    #: ordinal → member id. An ordinal is mapped from the moment its id is allocated
    #: until its PVC is gone.
    members: Mapping[int, int] = field(default_factory=_frozen_map)
    #: The next member id to hand out. Only ever grows, so ids are never reused.
    next_member_id: int = 1
    in_flight: Change | None = None

    def __post_init__(self) -> None:
        # Freeze the mapping so a Bookkeeping can be shared between plans safely.
        object.__setattr__(self, "members", _frozen_map(self.members))

    def with_members(self, members: Mapping[int, int]) -> Bookkeeping:
        return Bookkeeping(self.cluster_id, members, self.next_member_id, self.in_flight)


@dataclass(frozen=True)
class Restart:
    """Write-ahead record of the one member restart a rolling change has in progress.

    Persisted (``status.restartInFlight``, resourceVersion precondition) *before* the
    pod is deleted, so a restarted operator knows which member is down on purpose, since
    when (the deadline), and that no other pod may be touched until it is back. It
    stays after a deadline passed, with ``failed`` set: that is what keeps a stopped
    roll stopped until the spec asks for another revision.
    """

    ordinal: int
    member_id: int
    #: The member revision the pod is recreated at.
    revision: str
    #: When the record was written, right before the pod is deleted.
    started_at: float
    #: When the member was first seen back: Ready, caught up, at ``revision``.
    ready_since: float | None = None
    #: Why the roll stopped (the member did not come back in time); None while it runs.
    failed: str | None = None


# --------------------------------------------------------------------------- Kubernetes views


@dataclass(frozen=True)
class StatefulSetView:
    replicas: int
    ready_replicas: int = 0
    current_replicas: int = 0
    #: The member revision label of the pod template (None: written before revisions).
    revision: str | None = None
    #: ``updateStrategy: OnDelete``: only the operator replaces pods.
    on_delete: bool = False
    #: The pod the template starts with ``--force-new-cluster`` (quorum-loss recovery).
    force_pod: str | None = None


class PodPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class PodView:
    """One existing pod of the StatefulSet (a pod that does not exist is simply absent).

    ``member_id`` is what the member process on that pod says about itself on
    ``GET /v1/status``: the id persisted in its data dir. ``None`` while reachable
    means *fresh data dir, waiting to join*: a member with an empty data dir adopts
    an id only when the leader addresses it as a **learner** at its peer URL; if its
    peer URL belongs to a **voter** it must refuse (rejoining a voter without its log
    would break Raft's safety) and keep reporting ``None``. That refusal is how the
    operator sees a lost PVC.
    """

    ordinal: int
    phase: PodPhase = PodPhase.RUNNING
    ready: bool = True
    terminating: bool = False
    member_reachable: bool = True
    member_id: int | None = None
    #: The pod's member revision label: the template it was created from.
    revision: str | None = None
    #: metadata.uid: a deletion names it, so a repeated delete never hits the new pod.
    uid: str = ""
    #: Why the member container is not running (ImagePullBackOff, CrashLoopBackOff...).
    waiting_reason: str | None = None
    #: What the member says on ``/v1/status`` (0 when unreachable): how much data it
    #: holds, to pick the survivor of a quorum loss (``recovery.py``).
    term: int = 0
    last_index: int = 0
    applied_index: int = 0
    #: The member is a voter of its own configuration (only a voter can be forced).
    voter: bool = False
    #: This pod was made from a template that starts *it* with ``--force-new-cluster``.
    force_new_cluster: bool = False

    @property
    def waiting_to_join(self) -> bool:
        return self.member_reachable and self.member_id is None and not self.terminating


@dataclass(frozen=True)
class PVCView:
    ordinal: int
    bound: bool = True
    terminating: bool = False
    #: metadata.uid: tells the volume a recovery retires from the fresh one after it.
    uid: str = ""


# --------------------------------------------------------------------------- Raft view


@dataclass(frozen=True)
class RaftMember:
    id: int
    name: str
    peer_url: str
    learner: bool = False


@dataclass(frozen=True)
class RaftView:
    """The cluster as the members' HTTP API reports it (the leader's applied config)."""

    reachable: bool = False
    leader_id: int | None = None
    term: int = 0
    commit_index: int = 0
    members: tuple[RaftMember, ...] = ()
    #: Per-member match index as tracked by the leader.
    match_index: Mapping[int, int] = field(default_factory=_frozen_map)
    #: Members that answered ``/readyz`` (a member that knows a leader and is caught up).
    ready_ids: frozenset[int] = frozenset()
    #: The leader has a configuration change proposed but not yet applied. The
    #: planner waits for it: this is what "wait until the change is applied" reads.
    config_change_pending: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "match_index", _frozen_map(self.match_index))

    def member(self, member_id: int) -> RaftMember | None:
        for m in self.members:
            if m.id == member_id:
                return m
        return None

    @property
    def voter_ids(self) -> frozenset[int]:
        return frozenset(m.id for m in self.members if not m.learner)

    @property
    def learner_ids(self) -> frozenset[int]:
        return frozenset(m.id for m in self.members if m.learner)

    @property
    def member_ids(self) -> frozenset[int]:
        return frozenset(m.id for m in self.members)


# --------------------------------------------------------------------------- all together


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile looked at; the planner's only input."""

    spec: RaftKVSpec
    status: Bookkeeping
    #: Wall-clock seconds of this observation (an input, so the planner stays pure).
    now: float = 0.0
    #: The peer/client Services, the peer Secret and the PDB all exist.
    children_exist: bool = False
    statefulset: StatefulSetView | None = None
    pods: tuple[PodView, ...] = ()
    pvcs: tuple[PVCView, ...] = ()
    raft: RaftView = field(default_factory=RaftView)
    #: The member restart of a rolling change in progress (operator memory, like status).
    restart: Restart | None = None
    #: Why ordinal 0's restore init container failed (its termination message), if it did.
    restore_failure: str | None = None
    #: The ``raftkv.dev/force-new-cluster`` annotation (None when absent).
    force_annotation: str | None = None
    #: The quorum-loss recovery in progress or last done (operator memory, like status).
    recovery: Recovery | None = None
    #: Since when ``Available`` has said QuorumLost (its lastTransitionTime), if it does.
    quorum_lost_since: float | None = None
    #: spec.tls: why the certificates the pods mount are not there yet (cert-manager
    #: missing, not issued yet); None when they are, or TLS is off. No pod is created
    #: or touched while it is set.
    tls_blocker: str | None = None

    def pod(self, ordinal: int) -> PodView | None:
        for p in self.pods:
            if p.ordinal == ordinal:
                return p
        return None

    def pvc(self, ordinal: int) -> PVCView | None:
        for p in self.pvcs:
            if p.ordinal == ordinal:
                return p
        return None


@dataclass(frozen=True)
class PlannerConfig:
    """Tuning for when a learner counts as caught up and stable."""

    #: A learner within this many entries of the leader's commit index is caught up.
    #: Under steady writes a healthy learner trails by what is in flight (rate x RTT),
    #: so this must not be tiny, or a busy cluster never promotes; half of the member's
    #: own refusal threshold (Config.max_promote_lag, 1000) leaves room for the lag to
    #: grow between our look and the promotion.
    max_learner_lag: int = 500
    #: It must stay caught up and ready this long before promotion.
    stabilization_seconds: float = 10.0
    #: A force-new-cluster annotation is acted on only once quorum has been lost this
    #: long: an election in progress is not a lost majority.
    recovery_quorum_loss_seconds: float = 30.0


# --------------------------------------------------------------------------- actions


class Reason(enum.StrEnum):
    """CamelCase reasons, used for Events and condition reasons."""

    BOOTSTRAPPING = "Bootstrapping"
    BOOTSTRAPPED = "Bootstrapped"
    CREATING_CHILDREN = "CreatingChildren"
    SCALING_UP = "ScalingUp"
    SCALING_DOWN = "ScalingDown"
    SCALE_UP_ABORTED = "ScaleUpAborted"
    LEARNER_CAUGHT_UP = "LearnerCaughtUp"
    LEARNER_FELL_BEHIND = "LearnerFellBehind"
    MEMBER_ADDED = "MemberAdded"
    MEMBER_REMOVED = "MemberRemoved"
    MEMBER_REPLACED = "MemberReplaced"
    RESUMING_LEARNER = "ResumingLearner"
    QUORUM_LOST = "QuorumLost"
    IN_SYNC = "InSync"
    # Wait reasons
    WAITING_FOR_BOOTSTRAP = "WaitingForBootstrap"
    CONFIG_CHANGE_PENDING = "ConfigChangePending"
    LEARNER_CATCHING_UP = "LearnerCatchingUp"
    LEARNER_STABILIZING = "LearnerStabilizing"
    POD_NOT_READY = "PodNotReady"
    POD_TERMINATING = "PodTerminating"
    PVC_TERMINATING = "PVCTerminating"
    REMOVAL_WOULD_BREAK_QUORUM = "RemovalWouldBreakQuorum"
    NO_TRANSFER_TARGET = "NoTransferTarget"
    STATUS_STALE = "StatusStale"
    STATUS_LOST = "StatusLost"
    UNEXPECTED_MEMBER_IDENTITY = "UnexpectedMemberIdentity"
    MEMBER_MISSING_FROM_CONFIG = "MemberMissingFromConfig"
    # Rolling changes (the pod template changed: image, resources, Raft tuning...)
    RESTARTING_MEMBER = "RestartingMember"
    MEMBER_BACK = "MemberBack"
    MEMBER_UPDATED = "MemberUpdated"
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLOUT_STOPPED = "RolloutStopped"
    ROLLOUT_SUPERSEDED = "RolloutSuperseded"
    RESTART_ABANDONED = "RestartAbandoned"
    MEMBER_RESTARTING = "MemberRestarting"
    MEMBER_FELL_BACK = "MemberFellBack"
    MEMBER_STABILIZING = "MemberStabilizing"
    # Restore (spec.restore): ordinal 0 bootstraps from a backup
    RESTORING = "Restoring"
    RESTORE_FAILED = "RestoreFailed"
    RESTORED_MEMBER_ADOPTED = "RestoredMemberAdopted"
    # Quorum-loss recovery (raftkv.dev/force-new-cluster, recovery.py)
    FORCING_NEW_CLUSTER = "ForcingNewCluster"
    RETIRING_STALE_MEMBER = "RetiringStaleMember"
    # spec.tls: the Secrets the pods mount are not there yet
    CERTIFICATES_NOT_READY = "CertificatesNotReady"


@dataclass(frozen=True)
class CreateChildren:
    """Ensure the Services, Secret, PDB and StatefulSet exist.

    A missing StatefulSet is created with ``statefulset_replicas`` (1 at bootstrap);
    an existing one is left alone: only Grow/Shrink change its size.
    """

    statefulset_replicas: int
    reason: Reason = Reason.CREATING_CHILDREN


@dataclass(frozen=True)
class AddLearner:
    """POST /v1/members {id, name, peerURL, learner: true}; re-adding the same id is a no-op."""

    ordinal: int
    member_id: int
    name: str
    peer_url: str


@dataclass(frozen=True)
class GrowStatefulSet:
    replicas: int


@dataclass(frozen=True)
class PromoteLearner:
    member_id: int


@dataclass(frozen=True)
class TransferLeadership:
    from_id: int
    to_id: int


@dataclass(frozen=True)
class RemoveMember:
    """DELETE /v1/members/{id}; removing an id that is already gone is a no-op."""

    member_id: int


@dataclass(frozen=True)
class ShrinkStatefulSet:
    replicas: int


@dataclass(frozen=True)
class DeletePVC:
    ordinal: int


@dataclass(frozen=True)
class ReplaceMember:
    """Begin replacing a member whose data was lost: persist ``status`` (which maps the
    ordinal to ``new_id`` and records the change), then later plans remove ``old_id``
    and add ``new_id`` as a learner."""

    ordinal: int
    old_id: int
    new_id: int
    status: Bookkeeping


@dataclass(frozen=True)
class UpdateStatus:
    """Persist ``status`` (with a resourceVersion precondition) and nothing else."""

    status: Bookkeeping
    reason: Reason
    message: str = ""


@dataclass(frozen=True)
class SetQuorumLost:
    """Set Available=False/QuorumLost, emit an Event, change nothing else."""

    message: str
    reason: Reason = Reason.QUORUM_LOST


@dataclass(frozen=True)
class Wait:
    reason: Reason
    message: str = ""


@dataclass(frozen=True)
class Done:
    reason: Reason = Reason.IN_SYNC
    message: str = ""


@dataclass(frozen=True)
class UpdateStatefulSet:
    """Write the pod template of ``revision`` and ``updateStrategy: OnDelete`` (one
    request): no pod is touched, the ones made later use the new template."""

    revision: str


@dataclass(frozen=True)
class UpdateRestart:
    """Persist the restart record (None clears it), resourceVersion precondition."""

    restart: Restart | None
    reason: Reason
    message: str = ""


@dataclass(frozen=True)
class DeletePod:
    """Delete the pod of ``ordinal`` if it is still the one with ``uid``; the
    StatefulSet controller recreates it from the current template (OnDelete)."""

    ordinal: int
    uid: str
    member_id: int
    #: Why, for the Event, when it is not a rolling change's restart (a recovery's).
    why: str = ""


Action = (
    CreateChildren
    | UpdateStatefulSet
    | UpdateRestart
    | DeletePod
    | AddLearner
    | GrowStatefulSet
    | PromoteLearner
    | TransferLeadership
    | RemoveMember
    | ShrinkStatefulSet
    | DeletePVC
    | ReplaceMember
    | UpdateStatus
    | SetQuorumLost
    | Wait
    | Done
    | UpdateRecovery
    | SetForcePod
    | ClearForceAnnotation
    | RefuseRecovery
)

#: The actions that change the Raft configuration (one at a time, ever).
MEMBERSHIP_CHANGES = (AddLearner, PromoteLearner, RemoveMember)
