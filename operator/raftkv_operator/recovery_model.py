"""Records and actions of the quorum-loss recovery (``raftkv.dev/force-new-cluster``).

Kept apart from ``model.py`` so the recovery's vocabulary reads in one place; ``model``
re-exports the actions into its :data:`~raftkv_operator.model.Action` union. The rules
that use them are in ``recovery.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The annotation that asks for a recovery: an ordinal, or ``auto``.
ANNOTATION = "raftkv.dev/force-new-cluster"
AUTO = "auto"
#: Template variable naming the one pod whose member starts with --force-new-cluster.
FORCE_POD_ENV = "RAFTKV_FORCE_NEW_CLUSTER_POD"


class RecoveryPhase(enum.StrEnum):
    """``status.recovery.phase``."""

    #: The record is written; the chosen member is being restarted with the flag.
    FORCING = "Forcing"
    #: The chosen member leads alone; the others come back one at a time, empty.
    GROWING_BACK = "GrowingBack"
    #: Every mapped member is a voter again; the record stays as history.
    COMPLETE = "Complete"
    #: Quorum came back before the chosen member was forced: nothing was forced.
    ABORTED = "Aborted"


class RecoveryReason(enum.StrEnum):
    """CamelCase reasons for Events and conditions."""

    REFUSED = "RecoveryRefused"
    INVALID = "RecoveryInvalid"
    WAITING = "RecoveryWaitingForQuorumLoss"
    STARTED = "RecoveryStarted"
    ANNOTATION_REMOVED = "RecoveryAnnotationRemoved"
    FORCING = "ForcingNewCluster"
    FORCED = "ForcedNewCluster"
    RETIRING = "RetiringStaleMember"
    GROWING_BACK = "RecoveryGrowingBack"
    COMPLETE = "RecoveryComplete"
    ABORTED = "RecoveryAborted"
    ARMED = "RecoveryArmed"


@dataclass(frozen=True)
class Retiring:
    """The one stale member whose pod and volume are being deleted (write-ahead: written
    before the first delete, so a restarted operator deletes those objects and no newer
    ones: the uids tell the old pod and volume from the fresh ones that replace them)."""

    ordinal: int
    member_id: int
    pod_uid: str = ""
    pvc_uid: str = ""


@dataclass(frozen=True)
class Recovery:
    """``status.recovery``: what the operator forced, and how far it got.

    Written (resourceVersion precondition) before anything is touched, and it names
    the chosen member: that is what makes a second forced member impossible, also
    across an operator restart.
    """

    ordinal: int
    member_id: int
    #: What the chosen member reported when it was chosen.
    term: int
    last_index: int
    applied_index: int
    #: The annotation's value ("auto" or the ordinal).
    requested: str
    started_at: float
    phase: RecoveryPhase = RecoveryPhase.FORCING
    #: The annotation was seen removed after this record was written (removed once).
    annotation_removed: bool = False
    #: Set before the template may start the chosen pod with the flag: from then on a
    #: member may have been forced, so the recovery is never given up.
    armed: bool = False
    #: When the chosen member was first seen leading alone.
    forced_at: float | None = None
    completed_at: float | None = None
    retiring: Retiring | None = None

    @property
    def active(self) -> bool:
        return self.phase not in (RecoveryPhase.COMPLETE, RecoveryPhase.ABORTED)


@dataclass(frozen=True)
class UpdateRecovery:
    """Persist ``status.recovery`` (resourceVersion precondition). ``clear_changes``
    also clears ``inFlight`` and ``restartInFlight`` in the same write: a membership
    change or restart begun under the old configuration cannot finish under the new one."""

    recovery: Recovery
    reason: RecoveryReason
    message: str = ""
    clear_changes: bool = False
    warning: bool = False


@dataclass(frozen=True)
class SetForcePod:
    """Write the pod template that starts ``pod`` (None: no pod) with
    --force-new-cluster. The member revision label is unchanged, so no roll follows."""

    pod: str | None
    revision: str


@dataclass(frozen=True)
class ClearForceAnnotation:
    """Remove the ``raftkv.dev/force-new-cluster`` annotation (the request is recorded)."""

    message: str = ""


@dataclass(frozen=True)
class RefuseRecovery:
    """The annotation is not acted on: a Warning Event (once per distinct message) and
    the condition reason; nothing is touched. It replaces only a plan that touched
    nothing either (a wait, or nothing to do: ``idle``)."""

    reason: RecoveryReason
    message: str
    idle: bool = False
    #: False while merely waiting for the loss to last: the condition says it, no Event.
    event: bool = True
