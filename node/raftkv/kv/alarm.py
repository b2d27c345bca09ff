"""etcd's alarms, as replicated state: which member raised which alarm, and what the
state machine refuses while one is active.

etcd raises NOSPACE when a write would take its database over
`--quota-backend-bytes`. It does so by proposing an `AlarmRequest` through Raft, so
every member learns of it at the same log index, refuses the same writes from then on
(etcd's "capped" applier: puts, txns that put, lease grants; deletes, reads,
compaction and lease revokes still work, which is how an operator makes room), and
keeps it across restarts and snapshots. raftkv does the same: the alarms are part of
the `StateMachine` (and of its snapshot), changed only by an `AlarmRequest` entry,
and the refusal is a deterministic `Failure` like every other.

Whether a write would exceed the quota is decided by the member that receives it
(`server.node`), from a running estimate of the state machine's size (`kv.quota`):
the member's own quota, as in etcd, where the check is `quotaKVServer`'s, before
proposing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

NO_SPACE = "no_space"
"""The `Failure.code` of a write refused while NOSPACE is active (or over quota)."""
NO_SPACE_MESSAGE = "etcdserver: mvcc: database space exceeded"
"""etcd's `ErrNoSpace` text, which clients match on."""


class AlarmType(IntEnum):
    """etcd's `etcdserverpb.AlarmType`."""

    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


class AlarmAction(IntEnum):
    """etcd's `AlarmRequest.AlarmAction`."""

    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


@dataclass(frozen=True, slots=True, order=True)
class AlarmMember:
    member_id: int
    alarm: AlarmType

    def text(self) -> str:
        """etcd's `AlarmMember.String()` (gogoproto's compact text), which its
        Status lists in `errors`: `memberID:1 alarm:NOSPACE `."""
        return f"memberID:{self.member_id} alarm:{self.alarm.name} "


@dataclass(frozen=True, slots=True)
class AlarmRequest:
    """A change of the alarm set, through Raft (GET is answered from the applied
    state and never proposed)."""

    action: AlarmAction
    member_id: int
    alarm: AlarmType


@dataclass(frozen=True, slots=True)
class AlarmResponse:
    """The alarms an ACTIVATE or DEACTIVATE touched (etcd's `AlarmResponse.alarms`):
    the member's alarm for ACTIVATE (also when it was already active), the one cleared
    for DEACTIVATE, none when there was nothing to clear."""

    alarms: tuple[AlarmMember, ...]


class Alarms:
    """The active alarms: a set of (member, alarm type), as etcd's alarmStore."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: set[AlarmMember] = set()

    def __len__(self) -> int:
        return len(self.active)

    def __bool__(self) -> bool:
        return bool(self.active)

    @property
    def nospace(self) -> bool:
        return any(a.alarm == AlarmType.NOSPACE for a in self.active)

    def get(self, alarm: AlarmType = AlarmType.NONE) -> list[AlarmMember]:
        """The active alarms of one type (NONE: all), in a stable order."""
        return sorted(a for a in self.active if alarm == AlarmType.NONE or a.alarm == alarm)

    def apply(self, req: AlarmRequest) -> AlarmResponse:
        """etcd's `applierV3backend.Alarm`: ACTIVATE of NONE does nothing, an active
        alarm is not added twice, DEACTIVATE of an inactive one does nothing."""
        m = AlarmMember(req.member_id, req.alarm)
        if req.action == AlarmAction.ACTIVATE:
            if req.alarm == AlarmType.NONE:
                return AlarmResponse(())
            self.active.add(m)
            return AlarmResponse((m,))
        if req.action == AlarmAction.DEACTIVATE:
            if m not in self.active:
                return AlarmResponse(())
            self.active.discard(m)
            return AlarmResponse((m,))
        return AlarmResponse(tuple(self.get(req.alarm)))

    # -- snapshot part ---------------------------------------------------------------

    def encode(self) -> list[list[int]]:
        return [[a.member_id, int(a.alarm)] for a in self.get()]

    @staticmethod
    def decode(obj: Any) -> Alarms:
        """From `encode`'s shape; ValueError for anything else (untrusted bytes)."""
        out = Alarms()
        if type(obj) is not list:
            raise ValueError("alarms must be an array")
        for row in obj:
            if (
                type(row) is not list
                or len(row) != 2
                or type(row[0]) is not int
                or type(row[1]) is not int
                or row[0] < 0
                or row[1] not in (AlarmType.NOSPACE, AlarmType.CORRUPT)
            ):
                raise ValueError("bad alarm row")
            out.active.add(AlarmMember(row[0], AlarmType(row[1])))
        return out
