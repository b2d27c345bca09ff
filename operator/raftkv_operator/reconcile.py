"""One reconcile pass: read fresh → observe → plan → execute one action → repeat.

Level-triggered: a pass starts from nothing but what it reads, so it is the same
whether a timer, a spec change or a restart after a crash started it. Each step
re-reads the RaftKV (its status is the planner's memory and must be fresh) and
re-observes the world before planning the next single action; a pass stops at the
first step that waits, is refused or conflicts, and after ``max_steps`` actions so
one RaftKV cannot monopolise the operator.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

import kopf

from raftkv_operator import backup as b
from raftkv_operator import metrics, tls
from raftkv_operator import naming as n
from raftkv_operator import tls_transition as TT
from raftkv_operator.executor import Context, EventSink, Executor, Outcome, Result
from raftkv_operator.kube import BackupKube, KubeReader, KubeWriter
from raftkv_operator.members import HttpAdmin, HttpProbe, MemberAdmin, MemberProbe
from raftkv_operator.model import Action, Bookkeeping, PlannerConfig
from raftkv_operator.objects import DEFAULT_IMAGE, RaftKVObject
from raftkv_operator.observe import Snapshot, gather
from raftkv_operator.planner import plan
from raftkv_operator.recovery_status import (
    force_annotation,
    quorum_lost_since,
    recovery_from_status,
)
from raftkv_operator.status import (
    bookkeeping_from_status,
    bootstrap_state,
    format_time,
    report,
    restart_from_status,
)
from raftkv_operator.tls import TLSState

log = logging.getLogger("raftkv.operator")

JSON = dict[str, Any]


@dataclass(frozen=True)
class OperatorConfig:
    """Everything a deployment (or a test harness) may tune."""

    addressing: n.Addressing = field(default_factory=n.Addressing)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    #: Seconds between timer-driven passes per RaftKV.
    interval: float = 3.0
    #: Actions per pass before yielding to the next timer tick.
    max_steps: int = 8
    default_image: str = DEFAULT_IMAGE


class KubeAccess(KubeReader, KubeWriter, BackupKube, tls.TLSKube, Protocol):
    """Every part of the Kubernetes adapter (``kube.Kube`` is one)."""


class Reconciler:
    """Runs passes for any number of RaftKVs, one pass at a time per RaftKV."""

    def __init__(
        self,
        kube: KubeAccess,
        config: OperatorConfig,
        events_for: Callable[[Mapping[str, Any]], EventSink],
        probe: MemberProbe | None = None,
        admin_for: Callable[[Sequence[str]], MemberAdmin] = HttpAdmin,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.config = config
        self.events_for = events_for
        self.probe = probe if probe is not None else HttpProbe()
        self.admin_for = admin_for
        self.clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        #: The certificate Warning last posted per RaftKV: several steps of one pass
        #: run before the report writes CertificatesReady, which is what else dedupes.
        self._warned: dict[tuple[str, str], str | None] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self._warned.pop((namespace, name), None)

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        """One pass; never raises (the next timer tick is the retry)."""
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        if lock.locked():
            return Outcome.WAIT  # a pass is running; it sees whatever triggered this one
        async with lock:
            try:
                return await self._pass(namespace, name)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                log.exception(
                    "reconcile of %s/%s failed; retrying on the next tick", namespace, name
                )
                return Outcome.RETRY

    async def _pass(self, namespace: str, name: str) -> Outcome:
        last: tuple[JSON, Snapshot, Action, Result] | None = None
        for _ in range(self.config.max_steps):
            body = await self.kube.read_raftkv(namespace, name)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                return Outcome.DONE
            step = await self._step(body)
            last = (body, *step)
            outcome = step[2].outcome
            metrics.RECONCILES.labels(outcome.value).inc()
            if outcome is not Outcome.ACTED:
                break
        assert last is not None
        body, snapshot, action, result = last
        if result.outcome is not Outcome.CONFLICT:
            try:
                backup = await self._backup(body)
            except Exception:
                # Backups never hold up the members' report: keep what status says
                # (and so the condition) until the next pass can look again.
                log.exception(
                    "backup step of %s/%s failed; retrying on the next tick", namespace, name
                )
                backup = (body.get("status") or {}).get("backup") or {}
                if b.spec_of(RaftKVObject.from_body(body)) is None:
                    backup = None
            await self._write_report(body, snapshot, action, backup)
        return result.outcome

    async def _tls(
        self, body: JSON, book: Bookkeeping, tr: TT.Transition | None, note: str | None
    ) -> tuple[RaftKVObject, TLSState | None]:
        """spec.tls (``tls.py``): the RaftKV as the members are rendered from this pass
        (the setting of the transition phase ``tr`` when one runs, ``tls_transition.py``)
        and the certificates made fresh for it."""
        rkv = RaftKVObject.from_body(body)
        desired = tls.spec_of(rkv.spec)
        base = desired if desired is not None else _ran_with(body)
        secured = TT.render(base, tr) if tr is not None else desired
        if secured is not None and not secured.enabled:
            secured = None  # the last phase of turning TLS off: no certificates at all
        spec = dict(rkv.spec)
        if secured is None:
            spec.pop("tls", None)
        else:
            spec["tls"] = tls.to_spec(secured)
        rkv = replace(rkv, spec=spec)
        record = tr.to_status() if tr is not None else None
        if secured is None:
            return rkv, None
        if desired is None:
            # TLS being turned off: the Secrets the members still mount are only read
            # (there is no mode or issuer to issue from any more, and cert-manager's
            # would not be recognised as the operator's CA's).
            state = await tls.read_only(self.kube, body, secured)
            return rkv, replace(state, transition=note, record=record)
        ordinals = max([rkv.replicas, *(k + 1 for k in book.members)])
        state = await tls.sync(self.kube, body, secured, ordinals, self.clock(), note)
        if tr is not None and state.condition[:2] == ("True", "CertificatesIssued"):
            what = (
                f"turning TLS from [{tr.source or 'nothing'}] to [{tr.target or 'nothing'}]: "
                f"phase {tr.phase} ({TT.PHASES.index(tr.phase) + 1}/3); {state.condition[2]}"
            )
            state = replace(state, condition=("True", "TLSTransition", what))
        return rkv, replace(state, record=record)

    async def _transition(self, body: JSON) -> tuple[TT.Transition | None, str | None]:
        """The TLS transition this pass starts from: the record in status, else the
        one the StatefulSet's template was rendered for, else a new one when the spec
        asks for another setting than the template runs (no progress looked at yet)."""
        rkv = RaftKVObject.from_body(body)
        sts = await self.kube.read("StatefulSet", rkv.namespace, n.statefulset_name(rkv.name))
        status_tls = (body.get("status") or {}).get("tls") or {}
        record = TT.from_status(status_tls.get("transition")) or TT.from_label(
            TT.template_label(sts)
        )
        desired = tls.spec_of(rkv.spec)
        decision = TT.decide(
            desired.label if desired is not None else "",
            tls.running_label(sts),
            record,
            TT.Progress(roll_complete=False),
        )
        return decision.transition, decision.note

    def _clients(
        self, state: TLSState | None
    ) -> tuple[MemberProbe, Callable[[Sequence[str]], MemberAdmin]]:
        """The member clients of one pass: over TLS with the RaftKV's CA when it has one
        (clients injected by a test harness are used as given)."""
        if state is None or state.ca_pem is None:
            return self.probe, self.admin_for
        ctx = tls.client_context(state.ca_pem, state.client_pair)
        probe = HttpProbe(verify=ctx) if isinstance(self.probe, HttpProbe) else self.probe
        admin_for = self.admin_for
        if admin_for is HttpAdmin:
            admin_for = functools.partial(HttpAdmin, verify=ctx)
        return probe, admin_for

    async def _step(self, body: JSON, advanced: bool = False) -> tuple[Snapshot, Action, Result]:
        status = body.get("status") or {}
        book = bookkeeping_from_status(status)
        tr, note = await self._transition(body)
        recorded = TT.from_status((status.get("tls") or {}).get("transition"))
        if tr != recorded:
            # Write-ahead, as a restart record: status knows the phase before anything
            # is rendered for it.
            body = await self._record_transition(body, recorded, tr)
            status = body.get("status") or {}
        rkv, tls_state = await self._tls(body, book, tr, note)
        secured = tls.spec_of(rkv.spec)
        addressing = tls.addressing(self.config.addressing, secured)
        probe, admin_for = self._clients(tls_state)
        snapshot = await gather(
            rkv,
            book,
            self.kube,
            probe,
            addressing,
            self.clock(),
            restart=restart_from_status(status),
            default_image=self.config.default_image,
        )
        if tls_state is not None:
            observed = replace(snapshot.observed, tls_blocker=tls_state.blocker)
            snapshot = replace(snapshot, observed=observed, tls=tls_state)
        # Quorum-loss recovery: the annotation, its record and how long quorum is lost.
        observed = replace(
            snapshot.observed,
            force_annotation=force_annotation(body),
            recovery=recovery_from_status(status),
            quorum_lost_since=quorum_lost_since(status),
        )
        snapshot = replace(snapshot, observed=observed)
        if tr is not None and not advanced:
            desired = tls.spec_of(RaftKVObject.from_body(body).spec)
            decision = TT.decide(
                desired.label if desired is not None else "",
                tr.source,
                tr,
                TT.progress_of(snapshot.observed, self.config.planner),
            )
            if decision.transition != tr:
                body = await self._record_transition(body, tr, decision.transition)
                return await self._step(body, advanced=True)
        await self._sync_bootstrap_state(rkv, snapshot, bootstrap_state(book))
        action = plan(snapshot.observed, self.config.planner)
        ctx = Context(
            rkv=rkv,
            body=body,
            resource_version=str(body["metadata"].get("resourceVersion", "")),
            previous_status=status,
            addressing=addressing,
            default_image=self.config.default_image,
        )
        executor = Executor(self.kube, admin_for(snapshot.endpoints), self.events_for(body))
        if tls_state is not None:
            key = (rkv.namespace, rkv.name)
            warned = _tls_events(self.events_for(body), tls_state, status, self._warned.get(key))
            self._warned[key] = warned
        result = await executor.execute(action, ctx)
        log.info(
            "%s/%s: %s → %s (%s) %s",
            rkv.namespace,
            rkv.name,
            type(action).__name__,
            result.outcome.value,
            result.reason,
            result.message,
        )
        return snapshot, action, result

    async def _record_transition(
        self, body: JSON, before: TT.Transition | None, after: TT.Transition | None
    ) -> JSON:
        """Persist the start, next phase or end of a TLS transition before anything is
        rendered for it, so an operator restarted now resumes from it; an Event says
        what starts. Returns ``body`` as it now reads."""
        meta = body["metadata"]
        record = after.to_status() if after is not None else None
        await self.kube.patch_raftkv_status(
            meta.get("namespace"), meta["name"], {"tls": {"transition": record}}, None
        )
        sink = self.events_for(body)
        if after is not None:
            what = (
                f"TLS [{after.source or 'nothing'}] -> [{after.target or 'nothing'}]: "
                f"rolling phase {after.phase}"
            )
            if before is None or before.phase == after.phase:
                sink("Normal", "TLSTransitionStarted", what)
            else:
                sink("Normal", "TLSTransitionPhase", f"{what} ({before.phase} rolled out)")
        elif before is not None and before.phase == TT.FINAL:
            sink("Normal", "TLSTransitionDone", f"TLS is on [{before.target or 'nothing'}]")
        elif before is not None:
            sink("Normal", "TLSTransitionReverted", f"TLS stays on [{before.source or 'nothing'}]")
        fresh = await self.kube.read_raftkv(meta.get("namespace"), meta["name"])
        return fresh if fresh is not None else body

    async def _sync_bootstrap_state(self, rkv: RaftKVObject, snap: Snapshot, want: str) -> None:
        """Flip the bootstrap ConfigMap to ``existing`` as soon as bootstrap is recorded
        done: level-triggered, so a crash between the status write and this patch is
        repaired by the next pass."""
        cm = snap.bootstrap_configmap
        if cm is None:
            return
        if (cm.get("data") or {}).get(n.BOOTSTRAP_KEY) != want:
            await self.kube.patch_configmap(
                rkv.namespace, n.bootstrap_configmap(rkv.name), {n.BOOTSTRAP_KEY: want}
            )

    async def _backup(self, body: JSON) -> JSON | None:
        """Scheduled backups, level-triggered: keep the CronJob as ``spec.backup``
        renders it (or delete it), and fold its Jobs into ``status.backup``, posting an
        Event for each newly finished Job. Returns the new ``status.backup`` (None when
        backups are off). Independent of the membership planner: a backup runs against
        the client Service whatever the members are doing, and it changes nothing the
        planner reads."""
        rkv = RaftKVObject.from_body(body)
        name = b.cronjob_name(rkv.name)
        wanted = b.cronjob(rkv, self.config.default_image, _reached_with(body))
        if wanted is None and "backup" not in (body.get("status") or {}):
            # Never had backups (status.backup is written with the CronJob): no API
            # call at all. The CronJob is owned by the RaftKV, so it goes with it
            # in any case.
            return None
        existing = await self.kube.read("CronJob", rkv.namespace, name)
        if wanted is None:
            if existing is not None:
                await self.kube.delete_cronjob(rkv.namespace, name)
                self.events_for(body)("Normal", "BackupsDisabled", f"deleted CronJob {name}")
            return None
        if existing is None:
            kopf.adopt(wanted, owner=kopf.Body(cast(kopf.RawBody, dict(body))))
            if await self.kube.create(wanted):
                self.events_for(body)("Normal", "BackupScheduled", f"created CronJob {name}")
        elif b.needs_update(existing, wanted):
            await self.kube.replace_cronjob(rkv.namespace, name, wanted)
            self.events_for(body)("Normal", "BackupScheduleUpdated", f"updated CronJob {name}")
        jobs, pods = await asyncio.gather(
            self.kube.list_backup_jobs(rkv.namespace, rkv.name),
            self.kube.list_backup_pods(rkv.namespace, rkv.name),
        )
        previous = (body.get("status") or {}).get("backup") or {}
        new = b.backup_status([b.job_view(j, pods) for j in jobs], previous)
        sink = self.events_for(body)
        for kind, reason, message in b.backup_events(previous, new):
            sink(kind, reason, message)
        return new

    async def _write_report(
        self, body: JSON, snapshot: Snapshot, action: Action, backup: JSON | None = None
    ) -> None:
        meta = body["metadata"]
        current = body.get("status") or {}
        new = report(
            snapshot.observed,
            action,
            int(meta.get("generation") or 1),
            current.get("conditions") or (),
            self.clock(),
        )
        if backup is not None:
            new["backup"] = backup
            new["conditions"].append(
                backup_condition(
                    backup, current.get("conditions") or (), new["conditions"], self.clock()
                )
            )
        if snapshot.tls is not None:
            new["tls"] = tls_status(snapshot.tls, body)
            new["conditions"].append(
                tls_condition(snapshot.tls, current.get("conditions") or (), new, self.clock())
            )
        if all(current.get(k) == v for k, v in new.items()):
            return  # unchanged: no write, no new resourceVersion, no watch event
        await self.kube.patch_raftkv_status(meta.get("namespace"), meta["name"], new, None)


def _tls_events(
    sink: EventSink, state: TLSState, status: Mapping[str, Any], warned: str | None
) -> str | None:
    """Post issuance Events every time; a Warning only when it is not the condition's
    reason already, nor the last one posted (once per problem, not once per pass).
    Returns the Warning reason now in effect."""
    before: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or () if c.get("type") == tls.CERTIFICATES_READY),
        {},
    )
    current = None
    for kind, reason, message in state.events:
        if kind == "Warning":
            current = reason
            if reason in (before.get("reason"), warned):
                continue
        sink(kind, reason, message)
    return current


def tls_status(state: TLSState, body: Mapping[str, Any]) -> JSON:
    """``status.tls``: the mode in use, the soonest expiry of the certificates, and the
    TLS transition in progress (written as null once when it ends: a merge patch)."""
    secured = tls.spec_of(body.get("spec") or {})
    before = ((body.get("status") or {}).get("tls") or {}).get("mode")
    out: JSON = {"mode": secured.mode if secured is not None else before}
    out["notAfter"] = format_time(state.not_after) if state.not_after is not None else None
    if state.record is not None:
        out["transition"] = state.record
    elif ((body.get("status") or {}).get("tls") or {}).get("transition"):
        out["transition"] = None
    return out


def _reached_with(body: Mapping[str, Any]) -> tls.TLSSpec | None:
    """The TLS setting clients reach the members with now: ``spec.tls``, or the phase
    of the TLS transition in status (``tls_transition.py``)."""
    desired = tls.spec_of(body.get("spec") or {})
    record = TT.from_status(((body.get("status") or {}).get("tls") or {}).get("transition"))
    if record is None:
        return desired
    rendered = TT.render(desired if desired is not None else _ran_with(body), record)
    return rendered if rendered.enabled else None


def _ran_with(body: Mapping[str, Any]) -> tls.TLSSpec | None:
    """The TLS spec a cluster whose ``spec.tls`` was removed ran with, as far as
    status knows (its mode); the rest are defaults (ports come from the transition)."""
    mode = ((body.get("status") or {}).get("tls") or {}).get("mode")
    return tls.TLSSpec(mode=str(mode)) if mode else None


def tls_condition(
    state: TLSState,
    previous: Sequence[Mapping[str, Any]],
    new: Mapping[str, Any],
    now: float,
) -> JSON:
    """``CertificatesReady``, its lastTransitionTime kept while the status does not flip."""
    status, why, text = state.condition
    before = next((c for c in previous if c.get("type") == tls.CERTIFICATES_READY), {})
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    cond: JSON = {
        "type": tls.CERTIFICATES_READY,
        "status": status,
        "reason": why,
        "message": text[:32768],
        "lastTransitionTime": since or format_time(now),
        "observedGeneration": new.get("observedGeneration"),
    }
    return cond


def backup_condition(
    backup: Mapping[str, Any],
    previous: Sequence[Mapping[str, Any]],
    report_conditions: Sequence[Mapping[str, Any]],
    now: float,
) -> JSON:
    """``BackupFailing`` from ``status.backup``, its lastTransitionTime kept while the
    status does not flip (as the report's own conditions do)."""
    state, why, text = b.failing_condition(backup)
    before = next((c for c in previous if c.get("type") == b.BACKUP_FAILING), {})
    since = before.get("lastTransitionTime") if before.get("status") == state else None
    generation = next((c.get("observedGeneration") for c in report_conditions), None)
    cond: JSON = {
        "type": b.BACKUP_FAILING,
        "status": state,
        "reason": why,
        "message": text[:32768],
        "lastTransitionTime": since or format_time(now),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond
