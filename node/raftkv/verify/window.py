"""Shrinking a violation to the smallest window of ops a person can check by hand.

A subset of a history is only a fair witness if it is non-linearizable for the same
reason as the whole, not because an op it depends on was cut away (drop the write of
'v3' and every read of 'v3' looks impossible). So windows are kept *closed*:

- an op that observes a value v (a READ of v, a CAS expecting v, a pending CAS that
  may match v) keeps the most recent ops that can produce v: those that may start
  before it returns and are not definitely followed by another producer of v that
  completes before it starts;
- a CAS answered 412 (value was not `expected`) keeps every mutator that can be the last
  one before it, by the same rule over all mutators.

Closed subsets inherit linearizability. Take a linearization of the whole history; move
the pending CASes that did not take effect in it to the end (they never returned, and
there they change nothing observed); restrict it to the subset. Each observer's last
effective mutator is one of the ops it keeps (a mutator that definitely completes in
between would be later), so by induction along the order every op sees the value it saw
before. Hence a closed subset that cannot be linearized proves that the whole history
cannot, and that is what the window is.

Minimization: (1) bisect for a short closed prefix (by call time) that fails; take the
last k ops of it, close the set, and double k until the closed set fails; (2) greedily
try removing each op (earliest first), keeping a removal when the rest is still closed
and still fails, until a full pass removes nothing. Sub-checks are bounded; one that
runs out of budget counts as "still linearizable", so the window stays a sound witness
even when shrinking is cut short.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from raftkv.verify.model import Code, KeyHistory
from raftkv.verify.search import Outcome, search


class Closure:
    """Which ops each op needs beside it for a subset to be a fair witness."""

    def __init__(self, h: KeyHistory) -> None:
        producers: dict[int, list[int]] = defaultdict(list)
        for i in range(len(h)):
            r = h.result(i)
            if r is not None:
                producers[r].append(i)
        mutators = [i for i in range(len(h)) if h.result(i) is not None]
        self._needs: list[tuple[int, ...]] = []
        for i in range(len(h)):
            observed = h.observed(i)
            if observed is not None:
                # Only the most recent producers matter: an older write of the same value
                # can only be the one observed if the recent ones are, too.
                needs = _possible_last(h, i, producers.get(observed, []))
            elif h.code[i] == Code.CAS_FAILED:
                needs = _possible_last(h, i, mutators)
            else:
                needs = []
            self._needs.append(tuple(needs))

    def close(self, indices: Iterable[int]) -> set[int]:
        out = set(indices)
        todo = list(out)
        while todo:
            for j in self._needs[todo.pop()]:
                if j not in out:
                    out.add(j)
                    todo.append(j)
        return out

    def is_closed(self, indices: set[int]) -> bool:
        return all(j in indices for i in indices for j in self._needs[i])


def _possible_last(h: KeyHistory, o: int, among: list[int]) -> list[int]:
    """The ops of `among` that can be the last of them to take effect before op o.

    They may start before o returns, and are not definitely followed by another one of
    them that completes before o starts. (If a definite op of `among` returned before o
    was called, the latest call among those is a horizon: whatever returned before it is
    overwritten in every order.) This always contains o's last effective mutator in any
    linearization, which is what soundness needs; it also keeps the write a stale read
    returned, which is what a reader needs.
    """
    horizon = max(
        (h.call[m] for m in among if not h.pending[m] and h.ret[m] < h.call[o]),
        default=float("-inf"),
    )
    return [m for m in among if m != o and h.call[m] <= h.ret[o] and h.ret[m] >= horizon]


def _fails(h: KeyHistory, indices: set[int], max_states: int, deadline: float | None) -> bool:
    r = search(h.subset(indices), max_states=max_states, deadline=deadline)
    return r.outcome is Outcome.NOT_LINEARIZABLE


def minimal_window(h: KeyHistory, *, max_states: int, deadline: float | None) -> list[int]:
    """Indices (sorted by call) of a small closed subset of `h` that is not linearizable.

    `h` must be known not to be linearizable.
    """
    closure = Closure(h)
    order = sorted(range(len(h)), key=lambda i: (h.call[i], i))
    # A short failing prefix (by call time), by bisection over closed prefixes. Failure
    # is not strictly monotone in the prefix, so this finds *a* short failing one; every
    # candidate is checked, none assumed. The whole key is known to fail.
    lo, hi = 1, len(order)
    while lo < hi and not _expired(deadline):
        mid = (lo + hi) // 2
        if _fails(h, closure.close(order[:mid]), max_states, deadline):
            hi = mid
        else:
            lo = mid + 1
    window = closure.close(order[:hi])
    # The violation is near the end of that prefix: grow a tail of it until it fails.
    k = 1
    while k < hi and not _expired(deadline):
        candidate = closure.close(order[hi - k : hi])
        if _fails(h, candidate, max_states, deadline):
            window = candidate
            break
        k *= 2

    changed = True
    while changed and not _expired(deadline):
        changed = False
        for i in sorted(window, key=lambda j: (h.call[j], j)):
            if len(window) <= 1 or _expired(deadline):
                break
            rest = window - {i}
            if closure.is_closed(rest) and _fails(h, rest, max_states, deadline):
                window = rest
                changed = True
    return sorted(window, key=lambda j: (h.call[j], j))


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline
