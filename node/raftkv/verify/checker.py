"""Checking a register history for linearizability, one key at a time.

Linearizability is compositional (Herlihy & Wing's locality, the "P-compositionality" Lowe
and Porcupine exploit): a history is linearizable iff each key's sub-history is. So the
history is partitioned by key and each key is searched on its own, which turns one
hopeless search over 20,000 ops into fifty easy ones over a few hundred.

Bounds are explicit. `max_states` caps the distinct search states per key, `timeout_s`
caps wall-clock time for the whole check; a key whose search hits either is UNKNOWN
(and so is every key not reached before the deadline). UNKNOWN is never reported as OK.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from raftkv.verify.explain import reason
from raftkv.verify.history import Op
from raftkv.verify.model import compile_key, prune_unobservable, relevant
from raftkv.verify.result import CheckResult, KeyResult, Verdict, worst
from raftkv.verify.search import Outcome, search
from raftkv.verify.window import minimal_window

DEFAULT_MAX_STATES = 1_000_000
"""Per key. A linearizable key of a few hundred ops with ~10 clients needs a few
thousand; the memo table costs roughly 200 bytes a state."""

DEFAULT_TIMEOUT_S = 300.0

WINDOW_MAX_STATES = 100_000
"""Per sub-check while shrinking a violation's window (the verdict is already known)."""

WINDOW_TIMEOUT_S = 10.0
"""Wall-clock allowance for shrinking one key's window."""


def check_key(
    key: str,
    ops: Iterable[Op],
    *,
    max_states: int = DEFAULT_MAX_STATES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    deadline: float | None = None,
    minimize: bool = True,
) -> KeyResult:
    """Check the ops of one key (ops on other keys are an error).

    `deadline` (time.monotonic() seconds) overrides `timeout_s`; check_history uses it to
    share one budget across keys. `minimize=False` skips shrinking a violation's window
    and reports every op of the key.
    """
    if deadline is None and timeout_s is not None:
        deadline = time.monotonic() + timeout_s
    selected = [op for op in ops if relevant(op)]
    for op in selected:
        if op.key != key:
            raise ValueError(f"op {op.id} is on key {op.key!r}, not {key!r}")
    full = compile_key(selected)
    h = prune_unobservable(full)
    r = search(h, max_states=max_states, deadline=deadline)

    if r.outcome is Outcome.LINEARIZABLE:
        return KeyResult(key, Verdict.OK, len(full), r.states)
    if r.outcome is Outcome.OUT_OF_STATES:
        return KeyResult(
            key,
            Verdict.UNKNOWN,
            len(full),
            r.states,
            f"inconclusive: explored max_states={max_states} states without a verdict",
        )
    if r.outcome is Outcome.OUT_OF_TIME:
        return KeyResult(
            key,
            Verdict.UNKNOWN,
            len(full),
            r.states,
            f"inconclusive: ran out of time after exploring {r.states} states",
        )

    if minimize:
        # The verdict is settled; shrinking only improves the evidence, so it gets a short
        # allowance of its own (within the overall deadline). Cut short, the window is
        # larger but still a sound witness.
        shrink_deadline = time.monotonic() + WINDOW_TIMEOUT_S
        if deadline is not None:
            shrink_deadline = min(deadline, shrink_deadline)
        window = minimal_window(
            h,
            max_states=min(max_states, WINDOW_MAX_STATES),
            deadline=shrink_deadline,
        )
    else:
        window = list(range(len(h)))
    return KeyResult(
        key,
        Verdict.VIOLATION,
        len(full),
        r.states,
        reason(h, window, key),
        [h.ops[i] for i in window],
    )


def check_history(
    ops: Iterable[Op],
    *,
    max_states: int = DEFAULT_MAX_STATES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    minimize: bool = True,
) -> CheckResult:
    """Check a whole history: each key on its own, the overall verdict the worst one.

    `max_states` bounds each key's search; `timeout_s` bounds the whole check.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    by_key: dict[str, list[Op]] = defaultdict(list)
    seen_ids: set[int] = set()
    for op in ops:
        if op.id in seen_ids:
            raise ValueError(f"duplicate op id {op.id}")
        seen_ids.add(op.id)
        by_key[op.key].append(op)

    per_key: dict[str, KeyResult] = {}
    for key in sorted(by_key):
        if deadline is not None and time.monotonic() > deadline:
            n = sum(1 for op in by_key[key] if relevant(op))
            per_key[key] = KeyResult(
                key, Verdict.UNKNOWN, n, 0, "inconclusive: not checked, the time budget ran out"
            )
            continue
        per_key[key] = check_key(
            key, by_key[key], max_states=max_states, deadline=deadline, minimize=minimize
        )
    return CheckResult(worst([r.verdict for r in per_key.values()]), per_key)
