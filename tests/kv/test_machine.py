"""The replicated state machine (MVCC store + leases + request ids) and the codec of
what Raft entries carry: unit cases, and a hypothesis model that drives random puts,
deletes, txns, compactions, lease grants and revokes, and reads at random revisions
against plain dicts, restoring from a snapshot at random points."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftkv.kv.command import Command, CommandDecodeError, Op
from raftkv.kv.lease.lessor import Granted
from raftkv.kv.machine import (
    REQUEST_ID_CONFLICT,
    ApplyOrderError,
    LeaseRevoked,
    SnapshotError,
    StateMachine,
)
from raftkv.kv.mvcc.errors import Compacted
from raftkv.kv.mvcc.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from raftkv.kv.proposal import (
    CompactRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    NoopRequest,
    Proposal,
)
from raftkv.kv.store import KVStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def machine(clock: Clock | None = None) -> StateMachine:
    return StateMachine(clock=clock or Clock(), min_lease_ttl=1)


@dataclass
class Applier:
    sm: StateMachine = field(default_factory=machine)
    index: int = 0

    def __call__(self, body: object, rid: bytes = b""):  # type: ignore[no-untyped-def]
        self.index += 1
        return self.sm.apply(self.index, Proposal(body, rid))  # type: ignore[arg-type]


# -- codec -------------------------------------------------------------------------

keys = st.binary(min_size=1, max_size=4)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)

puts = st.builds(
    PutRequest, keys, st.binary(max_size=8), i64, st.booleans(), st.booleans(), st.booleans()
)
deletes = st.builds(DeleteRangeRequest, keys, st.binary(max_size=4), st.booleans())
ranges = st.builds(
    RangeRequest,
    keys,
    st.binary(max_size=4),
    i64,
    i64,
    st.booleans(),
    st.booleans(),
    st.sampled_from(SortOrder),
    st.sampled_from(SortTarget),
    i64,
    i64,
    i64,
    i64,
)
compares = st.one_of(
    st.builds(
        Compare,
        keys,
        st.sampled_from([t for t in CompareTarget if t != CompareTarget.VALUE]),
        st.sampled_from(CompareResult),
        i64,
        st.binary(max_size=3),
    ),
    st.builds(
        Compare,
        keys,
        st.just(CompareTarget.VALUE),
        st.sampled_from(CompareResult),
        st.binary(max_size=4),
        st.binary(max_size=3),
    ),
)
txns = st.recursive(
    st.builds(TxnRequest, st.tuples(compares), st.tuples(puts, ranges), st.tuples(deletes)),
    lambda inner: st.builds(
        TxnRequest,
        st.lists(compares, max_size=2).map(tuple),
        st.lists(st.one_of(puts, deletes, ranges, inner), max_size=3).map(tuple),
        st.lists(st.one_of(puts, deletes, ranges, inner), max_size=3).map(tuple),
    ),
    max_leaves=6,
)
bodies = st.one_of(
    puts,
    deletes,
    txns,
    st.builds(CompactRequest, i64),
    st.builds(LeaseGrantRequest, i64, i64),
    st.builds(LeaseRevokeRequest, i64),
    st.just(NoopRequest()),
)


@given(bodies, st.binary(max_size=64))
def test_every_request_survives_the_codec(body: object, rid: bytes) -> None:
    p = Proposal(body, rid)  # type: ignore[arg-type]
    assert Proposal.decode(p.encode()) == p


@given(st.binary(max_size=64))
def test_decoding_garbage_raises_only_the_decode_error(data: bytes) -> None:
    with contextlib.suppress(CommandDecodeError):
        Proposal.decode(data)


@given(bodies)
def test_decoding_a_truncated_request_raises_only_the_decode_error(body: object) -> None:
    data = Proposal(body).encode()  # type: ignore[arg-type]
    for n in range(len(data)):
        with pytest.raises(CommandDecodeError):
            Proposal.decode(data[:n])


def test_format_1_commands_decode_to_what_they_meant() -> None:
    put = Proposal.decode(Command(Op.PUT, "k", b"v", b"r1").encode())
    assert put == Proposal(PutRequest(b"k", b"v", prev_kv=True), b"r1")
    cas = Proposal.decode(Command(Op.DELETE, "k", b"", b"r2", if_match=7).encode()).body
    assert isinstance(cas, TxnRequest)
    assert cas.compare == (Compare(b"k", CompareTarget.MOD, CompareResult.EQUAL, 7),)
    assert cas.success == (DeleteRangeRequest(b"k", prev_kv=True),)
    create = Proposal.decode(Command(Op.PUT, "k", b"v", if_none_match=True).encode()).body
    assert isinstance(create, TxnRequest)
    assert create.compare == (Compare(b"k", CompareTarget.CREATE, CompareResult.EQUAL, 0),)
    assert Proposal.decode(Command(Op.NOOP, "").encode()).body == NoopRequest()


def test_unknown_formats_and_kinds_are_refused() -> None:
    import msgpack

    for obj in ([3, b"", 1], [2, b"", 99], [2, "rid", 0], [2, b"x" * 65, 0], [2, b""], []):
        with pytest.raises(CommandDecodeError):
            Proposal.decode(msgpack.packb(obj))


# -- the machine -------------------------------------------------------------------


def test_revisions_move_once_per_changing_request() -> None:
    a = Applier()
    assert a.sm.revision == 1
    assert a(PutRequest(b"a", b"1")).revision == 2
    assert a(DeleteRangeRequest(b"zz")).revision == 2  # deleted nothing
    txn = TxnRequest((), (PutRequest(b"a", b"2"), PutRequest(b"b", b"1")))
    out = a(txn)
    assert out.revision == 3
    assert out.succeeded
    assert [e.kv.key for e in out.events] == [b"a", b"b"]
    failed = a(
        TxnRequest(
            (Compare(b"a", CompareTarget.VERSION, CompareResult.EQUAL, 9),),
            (PutRequest(b"a", b"x"),),
        )
    )
    assert not failed.succeeded
    assert failed.revision == 3
    kv = a.sm.get(b"a")
    assert kv is not None
    assert (kv.create_revision, kv.mod_revision, kv.version) == (2, 3, 2)


def test_a_retried_request_id_is_replayed_not_applied_again() -> None:
    a = Applier()
    first = a(PutRequest(b"a", b"1"), b"r1")
    again = a(PutRequest(b"a", b"1"), b"r1")
    assert again.replayed
    assert again.revision == first.revision == 2
    assert a.sm.revision == 2
    other = a(PutRequest(b"a", b"2"), b"r1")
    assert other.failure is not None
    assert other.failure.code == REQUEST_ID_CONFLICT
    assert a.sm.get(b"a").value == b"1"  # type: ignore[union-attr]


def test_a_retry_gets_the_first_answers_facts_back() -> None:
    a = Applier()
    g1 = a(LeaseGrantRequest(10), b"g")
    g2 = a(LeaseGrantRequest(10), b"g")
    assert g2.replayed
    assert g2.response == g1.response
    assert isinstance(g1.response, Granted)
    lid = g1.response.id
    a(PutRequest(b"k", b"v", lease=lid))
    r1 = a(LeaseRevokeRequest(lid), b"r")
    r2 = a(LeaseRevokeRequest(lid), b"r")
    assert r2.response == r1.response == LeaseRevoked(r1.revision, 1)
    a(PutRequest(b"x", b"v"))
    d1 = a(DeleteRangeRequest(b"x"), b"d")
    d2 = a(DeleteRangeRequest(b"x"), b"d")
    assert d2.response is not None
    assert d2.response == DeleteRangeResponse(d1.revision, 1)
    a(CompactRequest(3))
    c1 = a(CompactRequest(2), b"c")
    c2 = a(CompactRequest(2), b"c")
    assert c2.replayed
    assert c1.failure == c2.failure
    assert c2.failure is not None
    assert dict(c2.failure.extra)["compact_revision"] == 3
    restored = StateMachine.from_snapshot(a.sm.snapshot())
    c3 = restored.apply(a.index + 1, Proposal(CompactRequest(2), b"c"))
    assert c3.failure == c1.failure
    g3 = restored.apply(a.index + 2, Proposal(LeaseGrantRequest(10), b"g"))
    assert g3.response == g1.response


def test_ephemeral_request_ids_are_not_remembered() -> None:
    a = Applier()
    a(PutRequest(b"a", b"1"), b"\x00abc")
    assert a.sm.dedup_size == 0


def test_refusals_change_nothing_and_say_why() -> None:
    a = Applier()
    a(PutRequest(b"a", b"1"))
    out = a(PutRequest(b"b", b"1", lease=42))
    assert out.failure is not None
    assert out.failure.code == "lease_not_found"
    dup = a(TxnRequest((), (PutRequest(b"x", b"1"), PutRequest(b"x", b"2"))))
    assert dup.failure is not None
    assert dup.failure.code == "duplicate_key"
    a(CompactRequest(2))
    again = a(CompactRequest(1))
    assert again.failure is not None
    assert again.failure.code == "compacted"
    assert dict(again.failure.extra)["compact_revision"] == 2
    assert a.sm.revision == 2
    assert len(a.sm) == 1


def test_a_lease_revoke_deletes_every_attached_key_at_one_revision() -> None:
    a = Applier()
    g = a(LeaseGrantRequest(10)).response
    assert isinstance(g, Granted)
    lid = g.id
    a(PutRequest(b"k1", b"v", lease=lid))
    a(PutRequest(b"k2", b"v", lease=lid))
    a(PutRequest(b"k3", b"v"))
    out = a(LeaseRevokeRequest(lid))
    assert out.response == LeaseRevoked(5, 2)
    assert {e.kv.mod_revision for e in out.events} == {5}
    assert a.sm.get(b"k1") is None
    assert a.sm.get(b"k3") is not None
    gone = a(LeaseRevokeRequest(lid))
    assert gone.failure is not None
    assert gone.failure.code == "lease_not_found"


def test_only_a_promoted_machine_expires_leases_and_never_early() -> None:
    clock = Clock()
    a = Applier(machine(clock))
    a(LeaseGrantRequest(5, 7))
    clock.now += 100
    assert a.sm.expired_leases() == []  # not the leader: no time counts
    a.sm.promote(extend=1.0)
    clock.now += 5.9
    assert a.sm.expired_leases() == []
    clock.now += 0.2
    assert a.sm.expired_leases() == [7]
    a.sm.demote()
    clock.now += 100
    assert a.sm.expired_leases() == []


def test_entries_must_come_in_order() -> None:
    a = Applier()
    a(NoopRequest())
    with pytest.raises(ApplyOrderError):
        a.sm.apply(1, Proposal(NoopRequest()))
    with pytest.raises(ApplyOrderError):
        a.sm.advance(1)


def test_snapshots_round_trip_to_equal_bytes_and_refuse_garbage() -> None:
    a = Applier()
    a(LeaseGrantRequest(10, 3))
    a(PutRequest(b"a", b"1", lease=3), b"r1")
    a(PutRequest(b"a", b"2"))
    data = a.sm.snapshot()
    b = StateMachine.from_snapshot(data)
    assert b.snapshot() == data
    assert b.applied_index == 3
    assert b.revision == 3
    assert b.get(b"a", 2).value == b"1"  # type: ignore[union-attr]
    assert b.lessor.leases() == [3]
    before = b.snapshot()
    for bad in (b"", b"RKSM", data[:-1], data[:9] + b"\x00" + data[10:], b"junk" * 10):
        with pytest.raises(SnapshotError):
            b.restore(bad)
    assert b.snapshot() == before


def test_a_snapshot_from_before_mvcc_is_converted() -> None:
    old = KVStore()
    old.apply(5, Command(Op.PUT, "b", b"2"))
    old.apply(9, Command(Op.PUT, "a", b"1"))
    sm = StateMachine.from_snapshot(old.snapshot())
    assert sm.applied_index == 9
    assert sm.get(b"a") is not None
    assert sm.get(b"b") is not None
    assert [kv.value for kv in sm.mvcc.range(b"a", b"c").kvs] == [b"1", b"2"]
    assert sm.revision == 3
    with pytest.raises(SnapshotError):
        StateMachine.from_snapshot(old.snapshot()[:-3])


# -- the model ---------------------------------------------------------------------

KEYS = [b"a", b"b", b"c", b"d"]


@dataclass
class ModelKV:
    value: bytes
    create: int
    mod: int
    version: int
    lease: int


class MachineModel(RuleBasedStateMachine):
    """Plain dicts: the key space at every revision, leases as sets of keys."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Applier()
        self.rev = 1
        self.compacted = 0
        self.states: dict[int, dict[bytes, ModelKV]] = {1: {}}
        self.leases: dict[int, set[bytes]] = {}
        self.next_lease = 1

    def _now(self) -> dict[bytes, ModelKV]:
        return self.states[self.rev]

    def _commit(self, new: dict[bytes, ModelKV]) -> None:
        self.rev += 1
        self.states[self.rev] = new

    def _put(self, new: dict[bytes, ModelKV], key: bytes, value: bytes, lease: int) -> None:
        old = new.get(key)
        if old is not None and old.lease and old.lease in self.leases:
            self.leases[old.lease].discard(key)
        if old is None:
            new[key] = ModelKV(value, self.rev + 1, self.rev + 1, 1, lease)
        else:
            new[key] = ModelKV(value, old.create, self.rev + 1, old.version + 1, lease)
        if lease:
            self.leases[lease].add(key)

    def _delete(self, new: dict[bytes, ModelKV], key: bytes) -> None:
        old = new.pop(key, None)
        if old is not None and old.lease and old.lease in self.leases:
            self.leases[old.lease].discard(key)

    @rule(key=st.sampled_from(KEYS), value=st.binary(max_size=3), use_lease=st.booleans())
    def put(self, key: bytes, value: bytes, use_lease: bool) -> None:
        lease = min(self.leases) if use_lease and self.leases else 0
        out = self.a(PutRequest(key, value, lease))
        assert out.ok
        new = dict(self._now())
        self._put(new, key, value, lease)
        self._commit(new)
        assert out.revision == self.rev

    @rule(key=st.sampled_from(KEYS), prefix=st.booleans())
    def delete(self, key: bytes, prefix: bool) -> None:
        end = b"\x00" if prefix else b""
        out = self.a(DeleteRangeRequest(key, end))
        doomed = [k for k in self._now() if (k >= key if prefix else k == key)]
        if doomed:
            new = dict(self._now())
            for k in doomed:
                self._delete(new, k)
            self._commit(new)
        assert out.revision == self.rev

    @rule(key=st.sampled_from(KEYS), guess=st.integers(0, 6), value=st.binary(max_size=2))
    def cas(self, key: bytes, guess: int, value: bytes) -> None:
        cur = self._now().get(key)
        holds = (cur.mod if cur else 0) == guess
        txn = TxnRequest(
            (Compare(key, CompareTarget.MOD, CompareResult.EQUAL, guess),),
            (PutRequest(key, value), PutRequest(key + b"!", value)),
            (RangeRequest(key),),
        )
        out = self.a(txn)
        assert out.succeeded == holds
        if holds:
            new = dict(self._now())
            self._put(new, key, value, 0)
            self._put(new, key + b"!", value, 0)
            self._commit(new)
        else:
            assert isinstance(out.response, TxnResponse)
            rng = out.response.responses[0]
            assert isinstance(rng, RangeResponse)
            assert [kv.value for kv in rng.kvs] == ([cur.value] if cur else [])
        assert out.revision == self.rev

    @rule(ttl=st.integers(1, 30))
    def grant(self, ttl: int) -> None:
        out = self.a(LeaseGrantRequest(ttl))
        assert out.ok
        assert out.response.id == self.next_lease
        self.leases[self.next_lease] = set()
        self.next_lease += 1

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        lid = data.draw(st.sampled_from(sorted(self.leases)))
        out = self.a(LeaseRevokeRequest(lid))
        doomed = self.leases.pop(lid)
        if doomed:
            new = dict(self._now())
            for k in doomed:
                new.pop(k, None)
            self._commit(new)
        assert out.ok
        assert out.revision == self.rev

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        rev = data.draw(st.integers(1, self.rev))
        out = self.a(CompactRequest(rev))
        if rev <= self.compacted:
            assert out.failure is not None
            assert out.failure.code == "compacted"
        else:
            assert out.ok
            self.compacted = rev

    @rule(data=st.data())
    def read_the_past(self, data: st.DataObject) -> None:
        rev = data.draw(st.integers(1, self.rev))
        if rev < self.compacted:
            with pytest.raises(Compacted):
                self.a.sm.mvcc.range(b"\x00", b"\x00", revision=rev)
            return
        got = self.a.sm.mvcc.range(b"\x00", b"\x00", revision=rev).kvs
        want = self.states[rev]
        assert [kv.key for kv in got] == sorted(want)
        for kv in got:
            m = want[kv.key]
            assert (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
                m.value,
                m.create,
                m.mod,
                m.version,
                m.lease,
            )

    @rule()
    def restart_from_a_snapshot(self) -> None:
        data = self.a.sm.snapshot()
        self.a.sm = StateMachine.from_snapshot(data, clock=Clock())
        assert self.a.sm.snapshot() == data

    @invariant()
    def same_revision_and_leases(self) -> None:
        assert self.a.sm.revision == self.rev
        assert len(self.a.sm) == len(self._now())
        for key in (*KEYS, *(k + b"!" for k in KEYS)):
            kv, want = self.a.sm.get(key), self._now().get(key)
            if want is None:
                assert kv is None
            else:
                assert kv is not None
                assert (kv.value, kv.mod_revision) == (want.value, want.mod)
        assert self.a.sm.lessor.leases() == sorted(self.leases)
        for lid, ks in self.leases.items():
            info = self.a.sm.lessor.lookup(lid)
            assert info is not None
            assert set(info.keys) == ks


TestMachineModel = MachineModel.TestCase
TestMachineModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_txn_answers_are_what_the_branch_did() -> None:
    a = Applier()
    a(PutRequest(b"k", b"v"))
    out = a(TxnRequest((), (RangeRequest(b"k"), PutRequest(b"k", b"w", prev_kv=True))))
    resp = out.response
    assert isinstance(resp, TxnResponse)
    r0, r1 = resp.responses
    assert isinstance(r0, RangeResponse)
    assert r0.kvs[0].value == b"v"
    assert r1.prev_kv.value == b"v"  # type: ignore[union-attr]
