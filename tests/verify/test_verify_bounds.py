"""Search bounds: running out of states or time is inconclusive, never OK."""

from __future__ import annotations

import random

from verify_histgen import SimConfig, inject_stale_read, simulate

from raftkv.verify import Op, Verdict, check_history, format_result


def _hard_history() -> list[Op]:
    # Many concurrent clients on one key with timeouts. It is linearizable, and proving
    # that takes at least one state per op, so a budget of 10 cannot reach OK.
    rng = random.Random(5)
    cfg = SimConfig(clients=20, keys=1, ops=800, mean_latency=0.02, p_info=0.08)
    return simulate(rng, cfg)


def test_hard_history_is_linearizable_with_enough_budget() -> None:
    assert check_history(_hard_history()).verdict is Verdict.OK


def test_tiny_state_budget_is_inconclusive_never_ok() -> None:
    result = check_history(_hard_history(), max_states=10)
    assert result.verdict is Verdict.UNKNOWN
    (kr,) = result.per_key.values()
    assert kr.verdict is Verdict.UNKNOWN
    assert kr.explanation is not None
    assert "max_states=10" in kr.explanation
    assert "inconclusive" in format_result(result)


def test_exhausted_time_budget_is_inconclusive_never_ok() -> None:
    rng = random.Random(6)
    ops = simulate(rng, SimConfig(clients=10, keys=4, ops=400))
    result = check_history(ops, timeout_s=0.0)
    assert result.verdict is Verdict.UNKNOWN
    assert all(r.verdict is Verdict.UNKNOWN for r in result.per_key.values())


def test_unknown_key_does_not_hide_a_violation_elsewhere() -> None:
    rng = random.Random(9)
    ops, bad = inject_stale_read(rng, simulate(rng, SimConfig(clients=5, keys=3, ops=300)))
    # each key needs more than one state, so with max_states=1 none can be ok; the
    # stale one may still be caught early, and the overall verdict is never OK
    result = check_history(ops, max_states=1)
    assert result.verdict is not Verdict.OK
    assert result.per_key[bad.key].verdict is not Verdict.OK
