"""Maintenance.Downgrade side by side with a real etcd 3.5: raftkv answers as a
cluster that cannot downgrade, with etcd's own refusals (a target it cannot go to, a
malformed version, no downgrade job to cancel, an unknown action); the one target
etcd 3.5 accepts (3.4) is refused by raftkv, which has no earlier version."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from raftkv.etcdapi.proto import rpc_pb2 as pb

from .stubs import EtcdStub

D = pb.DowngradeRequest
REFUSED: list[tuple[int, str]] = [
    (D.VALIDATE, "3.3"),
    (D.VALIDATE, "bad"),
    (D.VALIDATE, ""),
    (D.CANCEL, ""),
    (D.ENABLE, "3.6"),
    (D.ENABLE, "x.y"),
    (9, "3.4"),
]


def _answers(stub: EtcdStub, cases: Sequence[tuple[int, str]]) -> list[tuple[str, str]]:
    out = []
    for action, version in cases:
        try:
            stub.call("Maintenance", "Downgrade", D(action=action, version=version))  # type: ignore[arg-type]
            out.append(("OK", ""))
        except grpc.RpcError as exc:
            out.append((exc.code().name, str(exc.details())))
    return out


def test_downgrade_answers_as_etcd_refuses(side_by_side: tuple[EtcdStub, EtcdStub]) -> None:
    real, ours = side_by_side
    assert _answers(ours, REFUSED) == _answers(real, REFUSED)
    # the difference: etcd 3.5 can go to 3.4, raftkv cannot
    assert _answers(real, [(D.VALIDATE, "3.4")]) == [("OK", "")]
    assert (
        _answers(ours, [(D.VALIDATE, "3.4"), (D.ENABLE, "3.4.0")])
        == [("INVALID_ARGUMENT", "etcdserver: invalid downgrade target version")] * 2
    )
