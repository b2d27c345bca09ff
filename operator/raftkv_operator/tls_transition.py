"""Turning TLS on or off (or changing which ports use it) for a running cluster.

A member restarted with another TLS setting than its peers could neither reach them
nor be reached, so the switch is three ordinary rolls (docs/tls.md, "Turning TLS on in
a running cluster"), each a change of the pod template that ``rolling.py`` rolls like
any other, one member at a time:

1. ``AcceptBoth``: the certificates of every port that uses TLS before *or* after are
   mounted, each port whose setting changes also takes the other kind of connection
   (``RAFTKV_CLIENT_ACCEPT_PLAIN`` / ``RAFTKV_PEER_ACCEPT_PLAIN``), and every URL keeps
   the old scheme. Any mix of old and new members talks.
2. ``Advertise``: the URLs (advertised peer and client URL, discovery, probes, the
   operator's own client) switch to the new scheme; plain is still accepted, so a
   member dialled the old way by a peer that has not learnt the new URL still answers.
   A restarted member publishes its new peer URL through Raft itself.
3. ``Final``: the target setting, without accept-plain (and, turning TLS off, without
   the certificates). Started only when every member's peer URL in the Raft registry
   has the new scheme, so nobody dials a port that stopped taking the old kind.

The record ``status.tls.transition`` (``from``, ``to``, ``phase``) is the operator's
memory: a phase starts only once the roll of the previous one is complete, and an
operator restarted mid-way resumes from it. The pod template also carries the record
as a label (:data:`TRANSITION_LABEL`), so a lost status write is recovered from the
StatefulSet. Everything here is pure; ``reconcile.py`` reads and writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from raftkv_operator import tls
from raftkv_operator.model import Observed, PlannerConfig
from raftkv_operator.rolling import member_healthy

JSON = dict[str, Any]

ACCEPT_BOTH, ADVERTISE, FINAL = "AcceptBoth", "Advertise", "Final"
PHASES = (ACCEPT_BOTH, ADVERTISE, FINAL)

#: Pod template label holding the transition a template was rendered for
#: (``<from>.<to>.<phase>``, ``none`` for no TLS).
TRANSITION_LABEL = "raftkv.dev/tls-transition"


@dataclass(frozen=True)
class Transition:
    """One transition in progress: TLS labels (``tls.TLSSpec.label``; "" = none)."""

    source: str
    target: str
    phase: str

    def to_status(self) -> JSON:
        return {"from": self.source, "to": self.target, "phase": self.phase}

    def to_label(self) -> str:
        return ".".join((self.source or "none", self.target or "none", self.phase))


def from_status(raw: Mapping[str, Any] | None) -> Transition | None:
    """``status.tls.transition`` (None when absent or unreadable)."""
    if not raw or raw.get("phase") not in PHASES:
        return None
    return Transition(str(raw.get("from") or ""), str(raw.get("to") or ""), str(raw["phase"]))


def from_label(value: str | None) -> Transition | None:
    """The :data:`TRANSITION_LABEL` value of a template (None when absent or unreadable)."""
    parts = (value or "").split(".")
    if len(parts) != 3 or parts[2] not in PHASES:
        return None
    source, target = ("" if p == "none" else p for p in parts[:2])
    return Transition(source, target, parts[2])


def template_label(statefulset: Mapping[str, Any] | None) -> str | None:
    template = ((statefulset or {}).get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    value = labels.get(TRANSITION_LABEL)
    return str(value) if value else None


def _ports(label: str) -> set[str]:
    return set(filter(None, label.split("-")))


def render(base: tls.TLSSpec | None, tr: Transition) -> tls.TLSSpec:
    """The TLS setting the members run in ``tr``'s phase (module doc): ``base`` gives
    the mode, issuer, lifetime and clientCertAuth (the desired spec, or the one the
    members ran when TLS is being turned off)."""
    source, target = _ports(tr.source), _ports(tr.target)
    start = base if base is not None else tls.TLSSpec()
    if tr.phase == FINAL:
        mounted, advertised, accept = target, target, set[str]()
    else:
        mounted = source | target
        advertised = source if tr.phase == ACCEPT_BOTH else target
        accept = source ^ target
    return replace(
        start,
        client="client" in mounted,
        peer="peer" in mounted,
        client_cert_auth=start.client_cert_auth and "client" in mounted,
        client_https="client" in advertised,
        peer_https="peer" in advertised,
        client_accept_plain="client" in accept,
        peer_accept_plain="peer" in accept,
        # Final renders exactly the target setting (same revision as a cluster made
        # with it), so finishing the transition rolls nothing more.
        transition_label="" if tr.phase == FINAL else tr.to_label(),
    )


@dataclass(frozen=True)
class Progress:
    """What a pass knows about the roll of the current phase (from the observation)."""

    #: Every member runs the template rendered for the current phase, no restart is
    #: in flight or stopped, the StatefulSet is at that template, quorum is healthy.
    roll_complete: bool
    #: The peer URLs the Raft registry records for the members.
    peer_urls: Sequence[str] = ()


@dataclass(frozen=True)
class Decision:
    """The transition for this pass (None: none runs) and a note on why it waits."""

    transition: Transition | None
    note: str | None = None


def _registry_ok(target: str, urls: Sequence[str]) -> bool:
    want = "https://" if "peer" in _ports(target) else "http://"
    return bool(urls) and all(u.startswith(want) for u in urls)


def decide(
    desired: str, running: str | None, record: Transition | None, progress: Progress
) -> Decision:
    """The transition to render this pass from (pure, level-triggered).

    ``desired`` is the TLS label the spec asks for, ``running`` the label of the
    StatefulSet's template (None: no StatefulSet yet; a new cluster starts directly
    at the desired setting), ``record`` the transition in status (or the template's
    label). A phase moves on only when ``progress.roll_complete``; the last one also
    needs every registered peer URL in the new scheme. A spec that changes its mind
    during ``AcceptBoth`` back to where it came from ends the transition (nothing
    advertises the new scheme yet); any other change waits for the transition to
    finish and then starts the next one from there."""
    if record is None:
        if running is None or running == desired:
            return Decision(None)
        return Decision(Transition(running, desired, ACCEPT_BOTH))
    if record.phase == ACCEPT_BOTH and desired == record.source:
        return Decision(None)
    note = None
    if desired != record.target:
        note = (
            f"spec.tls asks for TLS on [{desired or 'nothing'}]; the transition to "
            f"[{record.target or 'nothing'}] finishes first"
        )
    if not progress.roll_complete:
        return Decision(record, note)
    if record.phase == ACCEPT_BOTH:
        return Decision(replace(record, phase=ADVERTISE), note)
    if record.phase == ADVERTISE:
        if not _registry_ok(record.target, progress.peer_urls):
            why = "waiting for every member's registered peer URL to use the new scheme"
            return Decision(record, note or why)
        return Decision(replace(record, phase=FINAL), note)
    # Final rolled out: done; a changed spec starts its own transition next pass.
    return Decision(None, note)


def roll_complete(observed: Observed, config: PlannerConfig) -> bool:
    """The roll onto the template the spec renders now is done: StatefulSet at that
    revision, no restart in flight (or stopped), no membership change, ``replicas``
    members, each in a pod at that revision and healthy (Ready and caught up)."""
    spec = observed.spec
    sts = observed.statefulset
    if sts is None or not spec.member_revision or sts.revision != spec.member_revision:
        return False
    if observed.restart is not None or observed.status.in_flight is not None:
        return False
    if not observed.raft.reachable or len(observed.status.members) != spec.desired:
        return False
    for k, member_id in observed.status.members.items():
        pod = observed.pod(k)
        if pod is None or pod.revision != spec.member_revision:
            return False
        if not member_healthy(observed, k, member_id, config):
            return False
    return True


def progress_of(observed: Observed, config: PlannerConfig) -> Progress:
    return Progress(
        roll_complete(observed, config), tuple(m.peer_url for m in observed.raft.members)
    )
