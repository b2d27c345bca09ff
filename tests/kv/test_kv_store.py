"""Semantics of the state machine: revisions, conditional writes, deletes, ranges,
and at-most-once application of a request id."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.kv import ApplyError, ApplyOrderError, ApplyResult, Command, KVStore, Op
from raftkv.kv.store import EPHEMERAL_ID_PREFIX


def put(key: str, value: bytes = b"v", **kw: object) -> Command:
    return Command(Op.PUT, key, value, **kw)  # type: ignore[arg-type]


def delete(key: str, **kw: object) -> Command:
    return Command(Op.DELETE, key, **kw)  # type: ignore[arg-type]


def test_revision_is_the_raft_index_of_the_last_write() -> None:
    s = KVStore()
    assert s.apply(3, put("a", b"1")) == ApplyResult(True, 3, None, 0)
    assert s.get("a") == (b"1", 3)
    assert s.apply(7, put("a", b"2")) == ApplyResult(True, 7, None, 3)
    assert s.get("a") == (b"2", 7)
    assert s.applied_index == 7
    assert len(s) == 1


def test_delete_returns_deleted_flag_and_absent_delete_succeeds() -> None:
    s = KVStore()
    s.apply(1, put("a"))
    assert s.apply(2, delete("a")) == ApplyResult(True, 2, None, 1, deleted=True)
    assert s.get("a") is None
    # etcd-like: deleting a missing key is not an error, it just deleted nothing.
    assert s.apply(3, delete("a")) == ApplyResult(True, 3, None, 0, deleted=False)
    assert len(s) == 0
    assert s.approx_bytes == 0


def test_if_match_is_compare_and_swap() -> None:
    s = KVStore()
    s.apply(1, put("a", b"1"))
    failed = s.apply(2, put("a", b"2", if_match=5))
    assert failed == ApplyResult(False, 1, ApplyError.PRECONDITION_FAILED, 1)
    assert s.get("a") == (b"1", 1)
    assert s.apply(3, put("a", b"3", if_match=1)).ok
    assert s.get("a") == (b"3", 3)
    assert not s.apply(4, delete("a", if_match=1)).ok
    assert s.apply(5, delete("a", if_match=3)).deleted


def test_if_match_on_absent_key_reports_revision_zero() -> None:
    s = KVStore()
    assert s.apply(1, put("a", if_match=4)) == ApplyResult(
        False, 0, ApplyError.PRECONDITION_FAILED, 0
    )
    # Revision 0 is "absent", so if_match=0 is create-only.
    assert s.apply(2, put("a", if_match=0)).ok
    assert not s.apply(3, put("a", if_match=0)).ok


def test_if_none_match_creates_only() -> None:
    s = KVStore()
    assert s.apply(1, put("a", b"1", if_none_match=True)).ok
    r = s.apply(2, put("a", b"2", if_none_match=True))
    assert r.error == ApplyError.PRECONDITION_FAILED
    assert r.revision == 1
    assert s.get("a") == (b"1", 1)


def test_noop_changes_nothing_but_is_applied() -> None:
    s = KVStore()
    assert s.apply(4, Command(Op.NOOP, "")) == ApplyResult(True, 4, None, 0)
    assert len(s) == 0
    assert s.applied_index == 4


def test_apply_out_of_order_is_refused() -> None:
    s = KVStore()
    s.apply(5, put("a"))
    with pytest.raises(ApplyOrderError):
        s.apply(5, put("b"))
    with pytest.raises(ApplyOrderError):
        s.advance(4)
    s.advance(6)  # conf change / empty entry
    assert s.applied_index == 6


def test_same_request_id_is_applied_once_with_the_same_result() -> None:
    s = KVStore()
    rid = b"r" + os.urandom(15)  # a leading NUL would make it ephemeral (not remembered)
    first = s.apply(1, put("a", b"1", request_id=rid))
    s.apply(2, put("a", b"other"))
    again = s.apply(3, put("a", b"1", request_id=rid))
    assert again.replayed
    assert not first.replayed
    assert again == ApplyResult(True, 1, None, 0, replayed=True)
    assert s.get("a") == (b"other", 2)  # the retry did not overwrite the later write
    assert s.applied_index == 3


def test_failed_precondition_is_remembered_too() -> None:
    s = KVStore()
    rid = b"r" + os.urandom(15)  # a leading NUL would make it ephemeral (not remembered)
    s.apply(1, put("a"))
    first = s.apply(2, put("a", if_none_match=True, request_id=rid))
    s.apply(3, delete("a"))
    # Re-evaluating would now succeed; the retry must report the decided outcome.
    again = s.apply(4, put("a", if_none_match=True, request_id=rid))
    assert not again.ok
    assert again.revision == first.revision == 1
    assert s.get("a") is None


def test_non_idempotent_delete_retry_is_not_applied_twice() -> None:
    s = KVStore()
    rid = b"r" + os.urandom(15)  # a leading NUL would make it ephemeral (not remembered)
    s.apply(1, put("a"))
    assert s.apply(2, delete("a", request_id=rid)).deleted
    s.apply(3, put("a", b"new"))
    assert s.apply(4, delete("a", request_id=rid)).deleted  # replay, not a second delete
    assert s.get("a") == (b"new", 3)


def test_request_id_reused_for_another_key_is_a_conflict() -> None:
    s = KVStore()
    rid = b"r" + os.urandom(15)  # a leading NUL would make it ephemeral (not remembered)
    s.apply(1, put("a", request_id=rid))
    r = s.apply(2, put("b", request_id=rid))
    assert r.error == ApplyError.REQUEST_ID_CONFLICT
    assert not r.ok
    assert s.get("b") is None


def test_dedup_table_is_bounded_fifo() -> None:
    s = KVStore(dedup_capacity=2)
    ids = [bytes([i]) * 16 for i in range(1, 4)]
    for i, rid in enumerate(ids, start=1):
        s.apply(i, put(f"k{i}", request_id=rid))
    assert s.dedup_size == 2
    assert not s.apply(4, put("k1", request_id=ids[0])).replayed  # evicted: applied again
    assert s.apply(5, put("k3", request_id=ids[2])).replayed
    # The order survives a snapshot: the next eviction takes its oldest id (ids[2]).
    t = KVStore.from_snapshot(s.snapshot(), dedup_capacity=2)
    assert t.dedup_size == 2
    t.apply(6, put("k6", request_id=b"\x07" * 16))
    assert not t.apply(7, put("k3", request_id=ids[2])).replayed
    assert t.apply(8, put("k6", request_id=b"\x07" * 16)).replayed


def test_member_made_ids_are_not_remembered() -> None:
    """A member invents an id (NUL-prefixed) for a client that sent none, only to match
    the applied entry to the waiting request; nobody can retry it, so no dedup slot."""
    s = KVStore()
    rid = EPHEMERAL_ID_PREFIX + os.urandom(15)
    assert s.apply(1, put("k", request_id=rid)).ok
    assert s.dedup_size == 0
    assert not s.apply(2, put("k", request_id=rid)).replayed


def test_range_prefix_limit_and_pagination() -> None:
    s = KVStore()
    keys = ["a", "app/1", "app/10", "app/2", "apple", "b", "app/ü", "app/ z"]
    for i, k in enumerate(keys, start=1):
        s.apply(i, put(k, k.encode()))
    assert [k for k, _, _ in s.range("app/", 10)] == sorted(k for k in keys if k.startswith("app/"))
    assert s.range("app/1", 10) == [("app/1", b"app/1", 2), ("app/10", b"app/10", 3)]
    page1 = s.range("app/", 2)
    page2 = s.range("app/", 2, start_after=page1[-1][0])
    page3 = s.range("app/", 2, start_after=page2[-1][0])
    got = [k for k, _, _ in page1 + page2 + page3]
    assert got == ["app/ z", "app/1", "app/10", "app/2", "app/ü"]
    assert s.range("", 100) == sorted(s.range("", 100))
    assert len(s.range("", 100)) == len(keys)
    assert s.range("zzz", 5) == []
    assert s.range("a", 0) == []
    assert s.range("app/", 5, start_after="a") == s.range("app/", 5)  # before the prefix
    assert s.range("app/", 5, start_after="b") == []  # past the prefix


def test_values_may_be_any_bytes() -> None:
    s = KVStore()
    blob = bytes(range(256)) * 4
    s.apply(1, put("\x00weird key\n", blob))
    assert s.get("\x00weird key\n") == (blob, 1)


keys = st.text("ab/", max_size=3)
ops = st.lists(
    st.tuples(
        st.sampled_from([Op.PUT, Op.DELETE]),
        keys,
        st.binary(max_size=3),
        st.one_of(st.none(), st.integers(0, 6)),
        st.booleans(),
    ),
    max_size=60,
)


@given(ops, st.text("ab/", max_size=2))
def test_matches_a_dict_model(steps: list[tuple[Op, str, bytes, int | None, bool]], p: str) -> None:
    s = KVStore()
    model: dict[str, tuple[bytes, int]] = {}
    for index, (op, key, value, if_match, inm) in enumerate(steps, start=1):
        cur = model.get(key)
        cur_rev = cur[1] if cur else 0
        allowed = not (inm and cur) and (if_match is None or if_match == cur_rev)
        r = s.apply(index, Command(op, key, value, b"", if_match, inm))
        assert r.ok == allowed
        if allowed and op == Op.PUT:
            model[key] = (value, index)
        elif allowed:
            model.pop(key, None)
        assert s.get(key) == model.get(key)
    expected = sorted((k, v, r) for k, (v, r) in model.items() if k.startswith(p))
    assert s.range(p, 1000) == expected
    assert len(s) == len(model)
