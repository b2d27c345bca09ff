"""Carry out exactly the one action the planner returned, idempotently.

Every step may be a repeat: the operator can die after an effect and before it saw
the answer, or two passes can race. So answers that mean "already so" count as
success (a learner that is already a member, a removal of an absent member, a
promotion of a voter, a child or PVC that already exists or is already gone), and
answers that mean "not now" (no leader, a configuration change still being applied,
an indeterminate timeout) are a retry on the next pass, never a second guess.

Bookkeeping writes carry the resourceVersion the pass read, so a pass working from a
stale status can never overwrite a newer one (the planner's crash safety rests on it).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from raftkv.client import Indeterminate, NotFound, RaftKVError, Unavailable
from raftkv_operator import metrics
from raftkv_operator import naming as n
from raftkv_operator import objects as o
from raftkv_operator.kube import KubeWriter, StatusConflict
from raftkv_operator.members import MemberAdmin
from raftkv_operator.model import (
    Action,
    AddLearner,
    Bookkeeping,
    CreateChildren,
    DeletePod,
    DeletePVC,
    Done,
    GrowStatefulSet,
    PromoteLearner,
    Reason,
    RemoveMember,
    ReplaceMember,
    SetQuorumLost,
    ShrinkStatefulSet,
    TransferLeadership,
    UpdateRestart,
    UpdateStatefulSet,
    UpdateStatus,
    Wait,
)
from raftkv_operator.recovery_model import (
    ANNOTATION,
    ClearForceAnnotation,
    RefuseRecovery,
    SetForcePod,
    UpdateRecovery,
)
from raftkv_operator.recovery_status import recovery_to_status
from raftkv_operator.status import (
    AVAILABLE,
    PROGRESSING,
    bookkeeping_from_status,
    bookkeeping_to_status,
    bootstrap_state,
    condition,
    describe,
    restart_to_status,
)

log = logging.getLogger("raftkv.operator")

JSON = dict[str, Any]
#: (event type, reason, message): posted as a Kubernetes Event on the RaftKV.
EventSink = Callable[[str, str, str], None]
NORMAL, WARNING = "Normal", "Warning"


class Outcome(enum.StrEnum):
    DONE = "done"  # in sync, nothing to do
    WAIT = "wait"  # waiting for the world (a pod, a learner, a quorum)
    ACTED = "acted"  # one step carried out; plan again
    RETRY = "retry"  # the step was refused for now; the next pass re-plans
    CONFLICT = "conflict"  # status changed underneath; re-read before anything else


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str
    message: str = ""
    #: The RaftKV's resourceVersion after a status write, if this step made one.
    resource_version: str | None = None


@dataclass(frozen=True)
class Context:
    """What one pass knows about the RaftKV it acts on."""

    rkv: o.RaftKVObject
    #: The RaftKV object as read at the start of the pass (owner of the children).
    body: Mapping[str, Any]
    resource_version: str
    #: Status conditions as read, to post QuorumLost only when it starts.
    previous_status: Mapping[str, Any]
    addressing: n.Addressing
    default_image: str = o.DEFAULT_IMAGE


#: Member API answers that mean the step already took effect.
_ALREADY = {
    "add_learner": {"member_exists"},
    "promote": {"not_a_learner"},
    "remove": {"not_found"},
    "transfer_leadership": set(),
}


class Executor:
    """Turns an :data:`~raftkv_operator.model.Action` into API calls."""

    def __init__(self, kube: KubeWriter, admin: MemberAdmin, events: EventSink) -> None:
        self.kube = kube
        self.admin = admin
        self.events = events

    async def execute(self, action: Action, ctx: Context) -> Result:
        reason, message = describe(action)
        rkv = ctx.rkv
        match action:
            case Wait():
                return Result(Outcome.WAIT, reason, message)
            case Done():
                return Result(Outcome.DONE, reason, message)
            case SetQuorumLost():
                return self._quorum_lost(ctx, reason, message)
            case UpdateStatus(status=book):
                return await self._write_bookkeeping(ctx, book, reason, message)
            case ReplaceMember(status=book):
                return await self._write_bookkeeping(ctx, book, reason, message, WARNING)
            case CreateChildren(statefulset_replicas=replicas):
                return await self._create_children(ctx, replicas, reason)
            case UpdateRestart() | UpdateStatefulSet() | DeletePod():
                return await self._rolling_step(action, ctx, reason, message)
            case UpdateRecovery() | SetForcePod() | ClearForceAnnotation() | RefuseRecovery():
                return await self._recovery_step(action, ctx, reason, message)
            case GrowStatefulSet(replicas=replicas) | ShrinkStatefulSet(replicas=replicas):
                name = n.statefulset_name(rkv.name)
                await self.kube.scale_statefulset(rkv.namespace, name, replicas)
                self.events(NORMAL, reason, message)
                return Result(Outcome.ACTED, reason, message)
            case DeletePVC(ordinal=ordinal):
                await self.kube.delete_pvc(rkv.namespace, n.pvc_name(rkv.name, ordinal))
                self.events(NORMAL, "PVCDeleted", message)
                return Result(Outcome.ACTED, reason, message)
            case AddLearner():
                client_url = ctx.addressing.client_url(rkv.name, rkv.namespace, action.ordinal)
                return await self._member_change(
                    "add_learner",
                    lambda: self.admin.add_learner(
                        action.member_id, action.name, action.peer_url, client_url
                    ),
                    "LearnerAdded",
                    message,
                )
            case PromoteLearner(member_id=member_id):
                return await self._member_change(
                    "promote", lambda: self.admin.promote(member_id), "LearnerPromoted", message
                )
            case RemoveMember(member_id=member_id):
                return await self._member_change(
                    "remove", lambda: self.admin.remove(member_id), "MemberRemovedFromRaft", message
                )
            case TransferLeadership(to_id=to_id):
                return await self._member_change(
                    "transfer_leadership",
                    lambda: self.admin.transfer(to_id),
                    "LeadershipTransferred",
                    message,
                )
        raise AssertionError(f"unknown action {action!r}")

    # ------------------------------------------------------------------ steps

    def _quorum_lost(self, ctx: Context, reason: str, message: str) -> Result:
        before = condition(ctx.previous_status, AVAILABLE)
        if before is None or before.get("reason") != "QuorumLost":
            # Once per outage, not once per pass: the condition carries the rest.
            self.events(WARNING, reason, f"membership changes stop until quorum is back: {message}")
        return Result(Outcome.WAIT, reason, message)

    async def _write_bookkeeping(
        self,
        ctx: Context,
        book: Bookkeeping,
        reason: str,
        message: str,
        event_type: str = NORMAL,
    ) -> Result:
        return await self._write_status(
            ctx, bookkeeping_to_status(book), reason, message, event_type
        )

    async def _rolling_step(
        self,
        action: UpdateRestart | UpdateStatefulSet | DeletePod,
        ctx: Context,
        reason: str,
        message: str,
    ) -> Result:
        rkv = ctx.rkv
        match action:
            case UpdateRestart(restart=record):
                kind = WARNING if action.reason is Reason.ROLLOUT_STOPPED else NORMAL
                return await self._write_status(
                    ctx, restart_to_status(record), reason, message, kind
                )
            case UpdateStatefulSet(revision=revision):
                return await self._update_statefulset(ctx, revision, reason, message)
            case DeletePod(ordinal=ordinal, uid=uid):
                pod = n.pod_name(rkv.name, ordinal)
                if not await self.kube.delete_pod(rkv.namespace, pod, uid):
                    # Gone or already replaced: the next observation shows which.
                    return Result(Outcome.ACTED, reason, f"{message} (already gone)")
                self.events(NORMAL, "MemberPodDeleted", message)
                return Result(Outcome.ACTED, reason, message)

    async def _recovery_step(
        self,
        action: UpdateRecovery | SetForcePod | ClearForceAnnotation | RefuseRecovery,
        ctx: Context,
        reason: str,
        message: str,
    ) -> Result:
        """Quorum-loss recovery (``recovery.py``): its record, the template that forces
        one pod, the annotation, and refusals (a Warning once per distinct message)."""
        rkv = ctx.rkv
        match action:
            case UpdateRecovery(recovery=record, clear_changes=clear, warning=warning):
                patch: JSON = {"recovery": recovery_to_status(record)}
                if clear:
                    patch["inFlight"] = None
                    patch["restartInFlight"] = None
                kind = WARNING if warning else NORMAL
                return await self._write_status(ctx, patch, reason, message, kind)
            case SetForcePod(pod=pod, revision=revision):
                template = o.pod_template(rkv, ctx.default_image, force_pod=pod)
                rendered = template["metadata"]["labels"][o.REVISION_LABEL]
                if revision and rendered != revision:  # another spec since the plan
                    return Result(Outcome.RETRY, reason, f"revision {rendered} != {revision}")
                await self.kube.update_statefulset_template(
                    rkv.namespace, n.statefulset_name(rkv.name), template, {"type": "OnDelete"}
                )
                self.events(NORMAL, reason, message)
                return Result(Outcome.ACTED, reason, message)
            case ClearForceAnnotation():
                await self.kube.remove_raftkv_annotation(rkv.namespace, rkv.name, ANNOTATION)
                self.events(NORMAL, reason, message)
                return Result(Outcome.ACTED, reason, message)
            case RefuseRecovery(idle=idle, event=event):
                before = condition(ctx.previous_status, PROGRESSING) or {}
                repeated = before.get("reason") == reason and before.get("message") == message
                if event and not repeated:
                    self.events(WARNING, reason, message)
                return Result(Outcome.DONE if idle else Outcome.WAIT, reason, message)

    async def _update_statefulset(
        self, ctx: Context, revision: str, reason: str, message: str
    ) -> Result:
        rkv = ctx.rkv
        template = o.pod_template(rkv, ctx.default_image)
        rendered = template["metadata"]["labels"][o.REVISION_LABEL]
        if rendered != revision:  # the planner saw another spec: plan again
            return Result(Outcome.RETRY, reason, f"revision {rendered} != planned {revision}")
        await self.kube.update_statefulset_template(
            rkv.namespace, n.statefulset_name(rkv.name), template, {"type": "OnDelete"}
        )
        self.events(NORMAL, "StatefulSetUpdated", message)
        return Result(Outcome.ACTED, reason, message)

    async def _write_status(
        self,
        ctx: Context,
        patch: JSON,
        reason: str,
        message: str,
        event_type: str = NORMAL,
    ) -> Result:
        """Operator memory: written only if the RaftKV is unchanged since the pass read it."""
        rkv = ctx.rkv
        try:
            rv = await self.kube.patch_raftkv_status(
                rkv.namespace, rkv.name, patch, ctx.resource_version
            )
        except StatusConflict as exc:
            return Result(Outcome.CONFLICT, "StatusConflict", str(exc))
        self.events(event_type, reason, message)
        return Result(Outcome.ACTED, reason, message, resource_version=rv)

    async def _create_children(self, ctx: Context, replicas: int, reason: str) -> Result:
        rkv = ctx.rkv
        book = bookkeeping_from_status(ctx.previous_status)
        wanted = [
            o.peer_service(rkv),
            o.client_service(rkv),
            o.peer_secret(rkv),
            o.bootstrap_configmap(rkv, bootstrap_state(book)),
            o.pod_disruption_budget(rkv),
            o.statefulset(rkv, replicas, ctx.default_image),
        ]
        owner = kopf.Body(cast(kopf.RawBody, dict(ctx.body)))
        created = []
        for obj in wanted:
            kopf.adopt(obj, owner=owner)
            if await self.kube.create(obj):
                created.append(f"{obj['kind']}/{obj['metadata']['name']}")
        message = f"created {', '.join(created)}" if created else "all children exist"
        if created:
            self.events(NORMAL, "ChildrenCreated", message)
        return Result(Outcome.ACTED, reason, message)

    async def _member_change(
        self,
        kind: str,
        call: Callable[[], Any],
        done_reason: str,
        message: str,
    ) -> Result:
        try:
            await call()
        except RaftKVError as exc:
            if exc.code in _ALREADY[kind] or (kind == "remove" and isinstance(exc, NotFound)):
                log.info("%s: already done (%s)", kind, exc)
                return Result(Outcome.ACTED, done_reason, f"{message} (already done)")
            if isinstance(exc, Unavailable | Indeterminate) or exc.status in (409, 503):
                # Not now (no leader, a change still applying, a timeout whose fate
                # the next observation will show): re-plan from fresh state.
                return Result(Outcome.RETRY, "MemberAPIBusy", f"{message}: {exc}")
            self.events(WARNING, "MembershipChangeFailed", f"{message}: {exc}")
            return Result(Outcome.RETRY, "MembershipChangeFailed", f"{message}: {exc}")
        metrics.MEMBERSHIP_CHANGES.labels(kind).inc()
        self.events(NORMAL, done_reason, message)
        return Result(Outcome.ACTED, done_reason, message)
