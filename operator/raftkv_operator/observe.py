"""Gather one :class:`~raftkv_operator.model.Observed` for the planner.

The I/O (:func:`gather`) only fetches; turning Kubernetes objects and member answers
into the planner's records is done by plain functions (:func:`pod_view`,
:func:`pvc_view`, :func:`raft_view`) that tests call with plain data.

The Raft view comes from the members themselves, asked one by one at the URL
:class:`~raftkv_operator.naming.Addressing` gives for each existing pod: the leader's
answer is the configuration as applied on the leader, with per-member progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raftkv.client import StatusInfo
from raftkv_operator import naming as n
from raftkv_operator import objects as o
from raftkv_operator import restore
from raftkv_operator.kube import KubeReader
from raftkv_operator.members import MemberProbe
from raftkv_operator.model import (
    Bookkeeping,
    Observed,
    PodPhase,
    PodView,
    PVCView,
    RaftKVSpec,
    RaftMember,
    RaftView,
    Restart,
    StatefulSetView,
)
from raftkv_operator.objects import DEFAULT_IMAGE, RaftKVObject
from raftkv_operator.recovery_model import FORCE_POD_ENV
from raftkv_operator.tls import TLSState

JSON = dict[str, Any]


def children(name: str) -> list[tuple[str, str]]:
    """(kind, name) of every owned object except the StatefulSet."""
    return [
        ("Service", n.peer_service(name)),
        ("Service", n.client_service(name)),
        ("Secret", n.secret_name(name)),
        ("ConfigMap", n.bootstrap_configmap(name)),
        ("PodDisruptionBudget", n.pdb_name(name)),
    ]


@dataclass(frozen=True)
class Snapshot:
    """Everything one pass read, raw, plus the planner's view of it."""

    observed: Observed
    #: Client URLs of members that answered, the leader first (for MemberAdmin).
    endpoints: tuple[str, ...] = ()
    bootstrap_configmap: JSON | None = None
    missing_children: tuple[tuple[str, str], ...] = ()
    statefulset: JSON | None = None
    #: spec.tls: the certificates as this pass found (and refreshed) them; None = no TLS.
    tls: TLSState | None = None


# --------------------------------------------------------------------------- pure parts


def pod_view(pod: Mapping[str, Any], ordinal: int, answer: StatusInfo | None) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    try:
        phase = PodPhase(status.get("phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodView(
        ordinal=ordinal,
        phase=phase,
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        member_reachable=answer is not None,
        # id 0: a fresh data dir still waiting to be added (or refusing a voter's id).
        member_id=(answer.id or None) if answer is not None else None,
        revision=(meta.get("labels") or {}).get(o.REVISION_LABEL),
        uid=str(meta.get("uid") or ""),
        waiting_reason=_waiting_reason(status),
        term=answer.term if answer is not None else 0,
        last_index=answer.last_index if answer is not None else 0,
        applied_index=answer.applied_index if answer is not None else 0,
        voter=answer is not None
        and any(m.id == answer.id and not m.learner for m in answer.members),
        force_new_cluster=_force_pod(pod.get("spec") or {}) == meta.get("name"),
    )


def _force_pod(pod_spec: Mapping[str, Any]) -> str | None:
    """The pod a pod spec (or template spec) starts with --force-new-cluster, if any."""
    for container in pod_spec.get("containers") or []:
        for entry in container.get("env") or []:
            if entry.get("name") == FORCE_POD_ENV and entry.get("value"):
                return str(entry["value"])
    return None


def _waiting_reason(status: Mapping[str, Any]) -> str | None:
    """Why the first container that is not running waits (ImagePullBackOff...), if the
    kubelet said; shown in the reason a roll stopped."""
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return None


def pvc_view(pvc: Mapping[str, Any], ordinal: int) -> PVCView:
    return PVCView(
        ordinal=ordinal,
        bound=(pvc.get("status") or {}).get("phase") == "Bound",
        terminating=bool((pvc.get("metadata") or {}).get("deletionTimestamp")),
        uid=str((pvc.get("metadata") or {}).get("uid") or ""),
    )


def statefulset_view(sts: Mapping[str, Any] | None) -> StatefulSetView | None:
    if sts is None:
        return None
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    template = spec.get("template") or {}
    return StatefulSetView(
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        current_replicas=int(status.get("currentReplicas") or 0),
        revision=((template.get("metadata") or {}).get("labels") or {}).get(o.REVISION_LABEL),
        on_delete=(spec.get("updateStrategy") or {}).get("type") == "OnDelete",
        force_pod=_force_pod(template.get("spec") or {}),
    )


def raft_view(answers: Sequence[StatusInfo], ready_ids: frozenset[int]) -> RaftView:
    """The cluster as its leader reports it; without a leader, what the most recent
    term's members say (enough for the planner to see that quorum is lost)."""
    joined = [a for a in answers if a.id]
    if not joined:
        return RaftView(reachable=False)
    leaders = [a for a in joined if a.role == "leader"]
    if leaders:
        # Two self-declared leaders: only the higher term is real (the other is stale).
        source = max(leaders, key=lambda a: a.term)
        leader_id: int | None = source.id
    else:
        source = max(joined, key=lambda a: (a.term, a.commit_index))
        leader_id = None
    members = tuple(
        RaftMember(
            id=m.id,
            name=m.name,
            peer_url=m.peer_urls[0] if m.peer_urls else "",
            learner=m.learner,
        )
        for m in source.members
    )
    match = {mid: p.match for mid, p in source.progress.items()}
    if leader_id is not None:
        match.setdefault(leader_id, source.last_index)
    return RaftView(
        reachable=True,
        leader_id=leader_id,
        term=source.term,
        commit_index=source.commit_index,
        members=members,
        match_index=match,
        ready_ids=ready_ids & frozenset(m.id for m in members),
        config_change_pending=leader_id is not None and source.conf_change_pending,
    )


def by_ordinal(objects: Sequence[Mapping[str, Any]], prefix: str) -> dict[int, Mapping[str, Any]]:
    out: dict[int, Mapping[str, Any]] = {}
    for obj in objects:
        ordinal = n.ordinal_of(str((obj.get("metadata") or {}).get("name", "")), prefix)
        if ordinal is not None:
            out[ordinal] = obj
    return out


# --------------------------------------------------------------------------- I/O


async def gather(
    rkv: RaftKVObject,
    book: Bookkeeping,
    kube: KubeReader,
    probe: MemberProbe,
    addressing: n.Addressing,
    now: float,
    restart: Restart | None = None,
    default_image: str = DEFAULT_IMAGE,
) -> Snapshot:
    """Read the owned objects, the pods, the PVCs and every existing pod's member."""
    name, namespace = rkv.name, rkv.namespace
    kids = children(name)
    found = await asyncio.gather(*(kube.read(kind, namespace, child) for kind, child in kids))
    missing = tuple(k for k, obj in zip(kids, found, strict=True) if obj is None)
    configmap = found[kids.index(("ConfigMap", n.bootstrap_configmap(name)))]
    sts, pods, pvcs = await asyncio.gather(
        kube.read("StatefulSet", namespace, n.statefulset_name(name)),
        kube.list_pods(namespace, name),
        kube.list_pvcs(namespace, name),
    )
    pods_by = by_ordinal(pods, n.statefulset_name(name))
    pvcs_by = by_ordinal(pvcs, f"{n.DATA_VOLUME}-{n.statefulset_name(name)}")
    urls = {k: addressing.client_url(name, namespace, k) for k in pods_by}
    ordinals = sorted(urls)
    answers = await asyncio.gather(*(probe.status(urls[k]) for k in ordinals))
    readiness = await asyncio.gather(*(probe.ready(urls[k]) for k in ordinals))
    by_k = dict(zip(ordinals, answers, strict=True))
    ready_ids = frozenset(
        a.id for a, ok in zip(answers, readiness, strict=True) if a is not None and ok and a.id
    )
    raft = raft_view([a for a in answers if a is not None], ready_ids)
    joined = {k: a.id for k, a in by_k.items() if a is not None and a.id}
    endpoints = sorted(joined, key=lambda k: (joined[k] != raft.leader_id, k))
    spec = RaftKVSpec(
        name=name,
        namespace=namespace,
        uid=rkv.uid,
        replicas=rkv.replicas,
        generation=rkv.generation,
        peer_url_template=addressing.peer_url_template,
        member_revision=o.member_revision(rkv, default_image),
        upgrade_stabilization_seconds=rkv.upgrade("stabilizationSeconds", 10.0),
        upgrade_timeout_seconds=rkv.upgrade("timeoutSeconds", 300.0),
        restore_from=str((restore.spec_of(rkv.spec) or {}).get("from") or ""),
    )
    observed = Observed(
        spec=spec,
        status=book,
        now=now,
        children_exist=not missing,
        statefulset=statefulset_view(sts),
        pods=tuple(pod_view(pods_by[k], k, by_k[k]) for k in ordinals),
        pvcs=tuple(pvc_view(p, k) for k, p in sorted(pvcs_by.items())),
        raft=raft,
        restart=restart,
        restore_failure=restore.failure(pods_by.get(0)) if spec.restore_from else None,
    )
    return Snapshot(
        observed=observed,
        endpoints=tuple(urls[k] for k in endpoints),
        bootstrap_configmap=configmap,
        missing_children=missing,
        statefulset=sts,
    )
