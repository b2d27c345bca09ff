"""etcd's alarms as replicated state (`kv.alarm`): what the state machine refuses
under NOSPACE and CORRUPT, what it still does, how the alarm entry is encoded, and
that the alarm set survives a snapshot (and that a machine without alarms still
writes the snapshot format that members before alarms read)."""

from __future__ import annotations

import pytest

from raftkv.kv.alarm import (
    NO_SPACE,
    NO_SPACE_MESSAGE,
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmResponse,
    Alarms,
    AlarmType,
)
from raftkv.kv.command import CommandDecodeError
from raftkv.kv.machine import Outcome, SnapshotError, StateMachine
from raftkv.kv.mvcc.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from raftkv.kv.proposal import (
    Body,
    CompactRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    NoopRequest,
    Proposal,
)
from raftkv.kv.quota import EVENT_OVERHEAD, SpaceEstimate, consumes_space, cost

ACTIVATE = AlarmRequest(AlarmAction.ACTIVATE, 1, AlarmType.NOSPACE)
DEACTIVATE = AlarmRequest(AlarmAction.DEACTIVATE, 1, AlarmType.NOSPACE)


class Applier:
    """A machine and its next log index."""

    def __init__(self) -> None:
        self.sm = StateMachine(clock=lambda: 0.0)
        self.index = 0

    def __call__(self, body: Body, rid: bytes = b"") -> Outcome:
        self.index += 1
        return self.sm.apply(self.index, Proposal(body, rid))


def test_nospace_refuses_what_takes_space_and_lets_room_be_made() -> None:
    a = Applier()
    a(PutRequest(b"a", b"1"))
    a(PutRequest(b"b", b"2"))
    lease = a(LeaseGrantRequest(60, 7))
    out = a(ACTIVATE)
    assert out.ok
    assert out.response == AlarmResponse((AlarmMember(1, AlarmType.NOSPACE),))
    rev = a.sm.revision

    for body in (
        PutRequest(b"c", b"3"),
        LeaseGrantRequest(60),
        TxnRequest((), (PutRequest(b"c", b"3"),), ()),
        TxnRequest((), (), (DeleteRangeRequest(b"a"), PutRequest(b"c", b"3"))),
        TxnRequest((), (TxnRequest((), (PutRequest(b"c", b"3"),), ()),), ()),
    ):
        out = a(body)
        assert out.failure is not None, body
        assert out.failure.code == NO_SPACE
        assert out.failure.message == NO_SPACE_MESSAGE
        assert a.sm.revision == rev
    assert a.sm.get(b"c") is None

    # what makes room still works: deletes, txns without puts, compaction, revokes
    cmp = Compare(b"a", CompareTarget.VERSION, CompareResult.EQUAL, 1)
    assert a(TxnRequest((cmp,), (DeleteRangeRequest(b"a"),), (RangeRequest(b"a"),))).ok
    assert a.sm.get(b"a") is None
    assert a(CompactRequest(a.sm.revision)).ok
    assert a(LeaseRevokeRequest(7)).ok
    assert lease.ok
    assert a(NoopRequest()).ok

    # disarmed: writes again
    out = a(DEACTIVATE)
    assert out.response == AlarmResponse((AlarmMember(1, AlarmType.NOSPACE),))
    assert a(PutRequest(b"c", b"3")).ok
    assert a.sm.get(b"c") is not None


def test_alarm_actions_follow_etcds_alarm_store() -> None:
    a = Applier()
    # ACTIVATE of NONE does nothing; DEACTIVATE of an inactive alarm touches nothing
    assert a(AlarmRequest(AlarmAction.ACTIVATE, 1, AlarmType.NONE)).response == AlarmResponse(())
    assert a(DEACTIVATE).response == AlarmResponse(())
    # activating twice keeps one alarm, and answers it both times
    assert a(ACTIVATE).response == a(ACTIVATE).response
    a(AlarmRequest(AlarmAction.ACTIVATE, 2, AlarmType.NOSPACE))
    assert a.sm.alarms.get() == [
        AlarmMember(1, AlarmType.NOSPACE),
        AlarmMember(2, AlarmType.NOSPACE),
    ]
    assert a.sm.alarms.get(AlarmType.CORRUPT) == []
    # one member's alarm cleared: the other keeps the cluster capped
    a(DEACTIVATE)
    assert a(PutRequest(b"k", b"v")).failure is not None
    a(AlarmRequest(AlarmAction.DEACTIVATE, 2, AlarmType.NOSPACE))
    assert a(PutRequest(b"k", b"v")).ok
    assert AlarmMember(5, AlarmType.NOSPACE).text() == "memberID:5 alarm:NOSPACE "


def test_corrupt_refuses_every_change() -> None:
    a = Applier()
    a(PutRequest(b"k", b"v"))
    a(AlarmRequest(AlarmAction.ACTIVATE, 3, AlarmType.CORRUPT))
    for body in (DeleteRangeRequest(b"k"), CompactRequest(1), PutRequest(b"x", b"y")):
        out = a(body)
        assert out.failure is not None
        assert out.failure.code == "corrupt"
    a(AlarmRequest(AlarmAction.DEACTIVATE, 3, AlarmType.CORRUPT))
    assert a(DeleteRangeRequest(b"k")).ok


def test_snapshot_keeps_the_alarms_and_stays_version_1_without_them() -> None:
    a = Applier()
    a(PutRequest(b"k", b"v"))
    plain = a.sm.snapshot()
    assert plain[:5] == b"RKSM\x01"  # members before alarms read it
    a(ACTIVATE)
    snap = a.sm.snapshot()
    assert snap[:5] == b"RKSM\x02"
    restored = StateMachine.from_snapshot(snap)
    assert restored.alarms.get() == [AlarmMember(1, AlarmType.NOSPACE)]
    assert restored.snapshot() == snap
    assert restored.apply(a.index + 1, Proposal(PutRequest(b"x", b"y"))).failure is not None
    assert StateMachine.from_snapshot(plain).alarms.get() == []
    # disarmed: back to version 1, equal to a machine that never had the alarm
    a(DEACTIVATE)
    assert a.sm.snapshot()[:5] == b"RKSM\x01"


@pytest.mark.parametrize("rows", [[[1, 9]], [[-1, 1]], [[1]], "x", [[1, 0]]])
def test_a_bad_alarm_part_is_a_snapshot_error(rows: object) -> None:
    from raftkv.kv import frame

    a = Applier()
    snap = a.sm.snapshot()
    obj = frame.unseal(snap, b"RKSM", 1, "s", SnapshotError)
    bad = frame.seal(b"RKSM", 2, [*obj, rows])
    with pytest.raises(SnapshotError):
        StateMachine.from_snapshot(bad)
    with pytest.raises(SnapshotError):  # version 2 needs the fifth part
        StateMachine.from_snapshot(frame.seal(b"RKSM", 2, obj))


def test_alarm_entries_round_trip_and_bad_ones_do_not_decode() -> None:
    import msgpack

    for req in (ACTIVATE, DEACTIVATE, AlarmRequest(AlarmAction.GET, (1 << 64) - 1, AlarmType.NONE)):
        assert Proposal.decode(Proposal(req, b"r").encode()) == Proposal(req, b"r")
    for fields in ([9, 1, 1], [1, 1, 9], [1, -1, 1], [1, 1], ["1", 1, 1]):
        with pytest.raises(CommandDecodeError):
            Proposal.decode(msgpack.packb([2, b"", 7, *fields]))


def test_what_counts_as_taking_space() -> None:
    put = PutRequest(b"key", b"value")
    assert consumes_space(put)
    assert cost(put) == 8 + EVENT_OVERHEAD
    assert consumes_space(LeaseGrantRequest(5))
    assert not consumes_space(DeleteRangeRequest(b"k"))
    assert not consumes_space(TxnRequest((), (RangeRequest(b"k"),), (DeleteRangeRequest(b"k"),)))
    assert cost(DeleteRangeRequest(b"k")) == 0 == cost(ACTIVATE)
    txn = TxnRequest((), (put,), (put, put))
    assert cost(txn) == 2 * cost(put)


def test_the_running_estimate_errs_high_and_rebases_on_a_measure() -> None:
    a = Applier()
    start = len(a.sm.snapshot())
    for i in range(300):
        a(PutRequest(b"key-%d" % (i % 50), b"v" * 40))
    a(DeleteRangeRequest(b"key-1"))
    exact = len(a.sm.snapshot())
    est = a.sm.space
    assert est.bytes >= exact - start  # the machine started at base 0
    est.rebase(exact, est.growth)
    assert est.bytes == exact
    a(PutRequest(b"k", b"v"))
    assert est.bytes == exact + 2 + EVENT_OVERHEAD
    # a restored machine starts from its snapshot's size
    assert StateMachine.from_snapshot(a.sm.snapshot()).space.bytes == len(a.sm.snapshot())
    assert SpaceEstimate(10).bytes == 10


def test_alarms_decode_of_encode() -> None:
    al = Alarms()
    al.apply(ACTIVATE)
    al.apply(AlarmRequest(AlarmAction.ACTIVATE, 2, AlarmType.CORRUPT))
    assert Alarms.decode(al.encode()).get() == al.get()
    assert al.nospace
    assert len(al) == 2
