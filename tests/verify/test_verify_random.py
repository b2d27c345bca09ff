"""Randomized: histories from a sequential model must pass, one injected anomaly must
fail, and on tiny histories the checker must agree with brute force."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verify_histgen import (
    SimConfig,
    brute_force_linearizable,
    inject_stale_read,
    simulate,
)

from raftkv.verify import Op, OpKind, OpStatus, Verdict, check_history, check_key
from raftkv.verify.model import Code, compile_key, relevant, step
from raftkv.verify.search import Outcome, search

SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_histories_of_a_sequential_register_are_linearizable(seed: int) -> None:
    rng = random.Random(seed)
    cfg = SimConfig(clients=rng.choice([3, 10, 20]), keys=rng.choice([1, 3, 8]), ops=600)
    result = check_history(simulate(rng, cfg))
    assert result.verdict is Verdict.OK, [r.explanation for r in result.per_key.values()]


@pytest.mark.parametrize("seed", SEEDS)
def test_one_definitely_stale_read_is_a_violation(seed: int) -> None:
    rng = random.Random(seed)
    cfg = SimConfig(clients=rng.choice([3, 10]), keys=rng.choice([1, 3, 8]), ops=600)
    ops, bad = inject_stale_read(rng, simulate(rng, cfg))
    result = check_history(ops)
    assert result.verdict is Verdict.VIOLATION
    (kr,) = result.violations()
    assert kr.key == bad.key
    assert 1 <= len(kr.window) <= 8
    # the window is itself a non-linearizable history, by brute force
    assert not brute_force_linearizable(kr.window)


def test_large_history_across_many_keys_is_linearizable() -> None:
    rng = random.Random(2024)
    ops = simulate(rng, SimConfig(clients=10, keys=50, ops=20_000))
    result = check_history(ops, timeout_s=60)
    assert result.verdict is Verdict.OK
    assert len(result.per_key) == 50


def test_large_history_with_one_stale_read_is_a_violation() -> None:
    rng = random.Random(2025)
    ops, bad = inject_stale_read(rng, simulate(rng, SimConfig(clients=10, keys=50, ops=20_000)))
    result = check_history(ops, timeout_s=60)
    assert result.verdict is Verdict.VIOLATION
    assert [r.key for r in result.violations()] == [bad.key]


# --- agreement with brute force on tiny histories ----------------------------------------

VALUES = st.sampled_from([None, "a", "b"])  # deliberately not unique


@st.composite
def tiny_ops(draw: st.DrawFn) -> list[Op]:
    n = draw(st.integers(min_value=1, max_value=6))
    ops = []
    for i in range(n):
        kind = draw(st.sampled_from(list(OpKind)))
        status = draw(st.sampled_from([OpStatus.OK, OpStatus.OK, OpStatus.INFO, OpStatus.FAIL]))
        call = draw(st.integers(min_value=0, max_value=8))
        ret = call + draw(st.integers(min_value=0, max_value=4))
        cas_failed = kind is OpKind.CAS and status is OpStatus.OK and draw(st.booleans())
        ops.append(
            Op(
                id=i + 1,
                client=i,
                key="k",
                kind=kind,
                call=float(call),
                ret=None if status is OpStatus.INFO and draw(st.booleans()) else float(ret),
                status=status,
                value=draw(VALUES),
                expected=draw(VALUES),
                cas_failed=cas_failed,
            )
        )
    return ops


def _replay_is_valid(ops: list[Op], order: tuple[int, ...]) -> bool:
    """An order returned by the search respects real time and the register model."""
    h = compile_key([o for o in ops if relevant(o)])
    placed = set(order)
    if any(not h.pending[i] and i not in placed for i in range(len(h))):
        return False
    for x, i in enumerate(order):
        for j in order[x + 1 :]:
            if h.ret[j] < h.call[i]:
                return False
    state = 0
    for i in order:
        ok, state = step(h.code[i], h.a[i], h.b[i], state)
        if not ok:
            return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_ops())
def test_checker_agrees_with_brute_force(ops: list[Op]) -> None:
    expected = brute_force_linearizable(ops)
    kr = check_key("k", ops)
    assert kr.verdict is (Verdict.OK if expected else Verdict.VIOLATION)
    if kr.verdict is Verdict.VIOLATION:
        # the window is a subset that is itself not linearizable
        ids = {o.id for o in ops}
        assert kr.window
        assert {o.id for o in kr.window} <= ids
        assert not brute_force_linearizable(kr.window)


@settings(max_examples=300, deadline=None)
@given(tiny_ops())
def test_search_returns_a_valid_linearization_when_it_succeeds(ops: list[Op]) -> None:
    h = compile_key([o for o in ops if relevant(o)])
    r = search(h, max_states=10_000)
    if r.outcome is Outcome.LINEARIZABLE:
        assert r.order is not None
        assert _replay_is_valid(ops, r.order)


def test_step_semantics_of_each_code() -> None:
    assert step(Code.READ, 1, 0, 1) == (True, 1)
    assert step(Code.READ, 1, 0, 2) == (False, 2)
    assert step(Code.WRITE, 3, 0, 2) == (True, 3)
    assert step(Code.CAS, 2, 5, 2) == (True, 5)
    assert step(Code.CAS, 2, 5, 1)[0] is False
    assert step(Code.CAS_FAILED, 2, 5, 1) == (True, 1)
    assert step(Code.CAS_FAILED, 2, 5, 2)[0] is False
    assert step(Code.CAS_PENDING, 2, 5, 2) == (True, 5)
    assert step(Code.CAS_PENDING, 2, 5, 1) == (True, 1)
