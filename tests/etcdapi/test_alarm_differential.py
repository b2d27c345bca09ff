"""Alarms side by side with a real etcd 3.5: the same Alarm calls (ACTIVATE,
GET by type, DEACTIVATE of an active and an inactive alarm, ACTIVATE of NONE) and the
same writes under NOSPACE give the same answers and the same errors, and Status
lists the alarm in `errors` as etcd does. The alarm is raised by hand (etcd accepts an
ACTIVATE for any member id), so the comparison does not depend on either server's
size accounting, which differ (a bolt file against a snapshot size)."""

from __future__ import annotations

from typing import Any

from raftkv.etcdapi.proto import rpc_pb2 as pb

from .stubs import EtcdStub
from .test_differential import _outcome

MEMBER = 42
NOSPACE = pb.AlarmType.NOSPACE
A = pb.AlarmRequest


def _script(stub: EtcdStub) -> list[tuple[str, Any]]:
    put = pb.RequestOp(request_put=pb.PutRequest(key=b"b", value=b"2"))
    delete = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a"))
    steps: list[tuple[str, str, str, Any]] = [
        ("put a", "KV", "Put", pb.PutRequest(key=b"a", value=b"1")),
        ("grant", "Lease", "LeaseGrant", pb.LeaseGrantRequest(ID=100, TTL=60)),
        ("list empty", "Maintenance", "Alarm", A(action=A.GET)),
        ("activate", "Maintenance", "Alarm", A(action=A.ACTIVATE, memberID=MEMBER, alarm=NOSPACE)),
        ("again", "Maintenance", "Alarm", A(action=A.ACTIVATE, memberID=MEMBER, alarm=NOSPACE)),
        ("activate NONE", "Maintenance", "Alarm", A(action=A.ACTIVATE, memberID=7)),
        ("list all", "Maintenance", "Alarm", A(action=A.GET)),
        ("list NOSPACE", "Maintenance", "Alarm", A(action=A.GET, alarm=NOSPACE)),
        ("list CORRUPT", "Maintenance", "Alarm", A(action=A.GET, alarm=pb.AlarmType.CORRUPT)),
        ("put refused", "KV", "Put", pb.PutRequest(key=b"b", value=b"2")),
        ("txn put refused", "KV", "Txn", pb.TxnRequest(failure=[delete, put])),
        ("grant refused", "Lease", "LeaseGrant", pb.LeaseGrantRequest(ID=101, TTL=60)),
        ("txn delete", "KV", "Txn", pb.TxnRequest(success=[delete])),
        ("revoke", "Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=100)),
        ("range", "KV", "Range", pb.RangeRequest(key=b"a", range_end=b"c")),
        ("compact", "KV", "Compact", pb.CompactionRequest(revision=2)),
        (
            "deactivate other",
            "Maintenance",
            "Alarm",
            A(action=A.DEACTIVATE, memberID=7, alarm=NOSPACE),
        ),
        (
            "deactivate",
            "Maintenance",
            "Alarm",
            A(action=A.DEACTIVATE, memberID=MEMBER, alarm=NOSPACE),
        ),
        ("list cleared", "Maintenance", "Alarm", A(action=A.GET)),
        ("put again", "KV", "Put", pb.PutRequest(key=b"b", value=b"2")),
    ]
    out: list[tuple[str, Any]] = []
    for name, service, method, req in steps:
        out.append((name, _outcome(stub, service, method, req)))
        if name == "again":
            status = stub.call("Maintenance", "Status", pb.StatusRequest())
            out.append(("status errors", list(status.errors)))
    return out


def test_alarms_answer_as_etcd_does(side_by_side: tuple[EtcdStub, EtcdStub]) -> None:
    real, ours = side_by_side
    want, got = _script(real), _script(ours)
    assert [n for n, _ in got] == [n for n, _ in want]
    for (name, w), (_, g) in zip(want, got, strict=True):
        assert g == w, f"{name}:\netcd:   {w}\nraftkv: {g}"
