"""Wing & Gong's linearizability search with Lowe's memoization, for one key.

The algorithm is the one in Porcupine's checker.go (Lowe, "Testing for linearizability",
2017): put every call and return event on a doubly linked list in time order, then walk
it depth first. At a call event, try to linearize that op now: if the model accepts it
and the pair (set of linearized ops, model state) has not been seen before, lift the op
(its call and return) out of the list, push it and restart from the head. At a return
event, the op returning was not linearized before it returned: undo the last choice.
Memoizing (linearized set, state) is what keeps this from being factorial: two paths that
linearized the same ops and reached the same value are interchangeable.

Pending ops have a call event and no return event: they may be linearized at any point
after their call, and the search succeeds as soon as every op that did return has been
linearized (the rest go at the end, where nothing observes them).

Equal timestamps: calls sort before returns, so ops that touch at an instant count as
concurrent. That only ever allows more orders, so it cannot invent a violation.

On top of Porcupine, four reductions that keep register histories with timeouts and
412s tractable (each argued where it is applied, and all cross-checked against brute
force in tests/verify): forced moves for observers that accept the current state,
symmetry between interchangeable pending ops, folding of "dead" values in the memo key,
and cutting a branch as soon as a value that is still needed can no longer come back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from raftkv.verify.model import ABSENT, Code, KeyHistory

_CLOCK_EVERY = 4096
"""Iterations between two looks at the wall clock."""


class Outcome(Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not_linearizable"
    OUT_OF_STATES = "out_of_states"
    OUT_OF_TIME = "out_of_time"


@dataclass(frozen=True, slots=True)
class SearchResult:
    outcome: Outcome
    states: int
    """Distinct (linearized set, state) pairs visited."""
    order: tuple[int, ...] | None = None
    """On success: op indices in a valid linearization order (pending ops that were never
    needed are left out: they are taken to happen last, or never)."""


# One function on purpose (C901): the search loop keeps its linked list, stack and memo
# in locals, which is what makes it fast enough for long histories; split into helpers
# it would pass them around on every step. tests/verify cross-checks it by brute force.
def search(  # noqa: C901
    h: KeyHistory,
    *,
    max_states: int,
    deadline: float | None = None,
    initial: int = ABSENT,
) -> SearchResult:
    n = len(h)
    events: list[tuple[float, int, int]] = []
    for i in range(n):
        events.append((h.call[i], 0, i))
        if not h.pending[i]:
            events.append((h.ret[i], 1, i))
    events.sort()

    # Dancing links over positions 1..E, with 0 the head and E+1 the tail sentinel.
    n_events = len(events)
    tail = n_events + 1
    nxt = [*range(1, n_events + 2), tail]
    prv = [0, *range(0, n_events + 1)]
    ev_op = [0] * (n_events + 2)
    ev_is_call = [False] * (n_events + 2)
    match = [-1] * (n_events + 2)
    call_pos = [0] * n
    for pos, (_, kind, i) in enumerate(events, start=1):
        ev_op[pos] = i
        if kind == 0:
            ev_is_call[pos] = True
            call_pos[i] = pos
        else:
            match[call_pos[i]] = pos

    code = h.code
    arg_a, arg_b = _canonical_values(h)
    pending = h.pending
    bit = [1 << i for i in range(n)]
    READ, WRITE, CAS, CAS_FAILED = Code.READ, Code.WRITE, Code.CAS, Code.CAS_FAILED

    # Symmetry: pending ops with the same (code, a, b) are interchangeable once both are
    # called (neither has a return to respect), so only the earliest-called unused one
    # of each class may be linearized next. Without this, k pending writes multiply the
    # reachable (set, state) pairs by up to 2**k; with it, by k+1.
    cls_of = [-1] * n
    rank = [0] * n
    classes: dict[tuple[int, int, int], int] = {}
    size: list[int] = []
    for pos in range(1, n_events + 1):
        i = ev_op[pos]
        if ev_is_call[pos] and pending[i]:
            cls = classes.setdefault((code[i], arg_a[i], arg_b[i]), len(classes))
            if cls == len(size):
                size.append(0)
            cls_of[i] = cls
            rank[i] = size[cls]
            size[cls] += 1
    used = [0] * len(classes)

    # Dead values: once every op that compares the register with v (READ, CAS, pending
    # CAS, 412'd CAS) is linearized, holding v is the same as holding any other dead
    # value, and a pending write of v is as good as a pending write of any other dead
    # value. The memo key therefore counts linearized pending writes of dead values
    # instead of naming them, and folds a dead state into one. This is what keeps a key
    # with many timed-out writes and 412s from exploding when it has to be exhausted.
    n_values = len(h.values) + 1  # the last id is the merged unobserved value
    total_obs = [0] * n_values
    is_obs = [False] * n
    pending_writes = [0] * n_values  # bitmask of pending WRITEs of each value
    for i in range(n):
        if code[i] != WRITE:
            is_obs[i] = True
            total_obs[arg_a[i]] += 1
        elif pending[i]:
            pending_writes[arg_a[i]] |= bit[i]
    lin_obs = [0] * n_values

    # Lost causes: when the register leaves value v while ops that need to read v (READ,
    # successful CAS) are still to come and nothing left can write v again, the branch is
    # dead. Cutting it at the overwrite, rather than at the read much later, is what
    # stops a pending write linearized too early from dragging a copy of the search
    # along until the end of the history.
    needs_left = [0] * n_values
    producers_left = [0] * n_values
    for i in range(n):
        if code[i] in (READ, CAS):
            needs_left[arg_a[i]] += 1
        if code[i] == WRITE:
            producers_left[arg_a[i]] += 1
        elif code[i] != READ and code[i] != CAS_FAILED:
            producers_left[arg_b[i]] += 1
    dead_state = n_values - 1
    dead_mask = 0
    dead_count = 0

    remaining = sum(1 for p in pending if not p)
    state = initial
    linearized = 0
    # (call position, state, set, dead mask, dead count before; was it a forced move)
    stack: list[tuple[int, int, int, int, int, bool]] = []
    seen: set[tuple[int, int, int]] = set()
    states = 0
    ticks = 0
    # Partial-order reduction: each configuration is first scanned for ops that observe
    # without changing anything (a READ, a 412'd CAS) and accept the current state. Such
    # an op can be linearized right now in every completion that exists (it is callable,
    # nothing before it has to come first, and moving it earlier changes no state), so it
    # is a forced move: taken without branching, and if it leads nowhere, neither does
    # the configuration. Only then are the mutators tried, one branch each.
    forced_phase = True
    entry = nxt[0]

    while remaining:
        ticks += 1
        if ticks >= _CLOCK_EVERY:
            ticks = 0
            if deadline is not None and time.monotonic() > deadline:
                return SearchResult(Outcome.OUT_OF_TIME, states)
        if ev_is_call[entry]:
            i = ev_op[entry]
            c = code[i]
            if forced_phase:
                if c == READ:
                    ok = state == arg_a[i]
                elif c == CAS_FAILED:
                    ok = state != arg_a[i]
                else:
                    ok = False
                if not ok:
                    entry = nxt[entry]
                    continue
                new_state = state
            else:
                if c in (READ, CAS_FAILED):
                    entry = nxt[entry]  # it did not accept this state in the forced scan
                    continue
                cls = cls_of[i]
                if cls >= 0 and rank[i] != used[cls]:
                    entry = nxt[entry]
                    continue
                # A pending op that would change nothing now is never worth placing now:
                # any order that does so works as well with it moved to the end (it has
                # no return to respect), so it is only tried where it has an effect.
                if c == WRITE:
                    new_state = arg_a[i]
                    if cls >= 0 and new_state == state:
                        entry = nxt[entry]
                        continue
                elif state == arg_a[i]:  # CAS, or pending CAS that matches
                    new_state = arg_b[i]
                else:
                    entry = nxt[entry]
                    continue
                if (
                    new_state != state
                    and producers_left[state] == 0
                    and needs_left[state] > (c == CAS)
                ):
                    entry = nxt[entry]
                    continue
            new_linearized = linearized | bit[i]
            new_mask = dead_mask
            new_count = dead_count
            if is_obs[i]:
                v = arg_a[i]
                if lin_obs[v] + 1 == total_obs[v] and pending_writes[v]:
                    new_mask |= pending_writes[v]
                    new_count += (new_linearized & pending_writes[v]).bit_count()
            elif new_mask & bit[i]:
                new_count += 1
            folded = new_state
            if lin_obs[new_state] + (is_obs[i] and arg_a[i] == new_state) == total_obs[new_state]:
                folded = dead_state
            memo = (new_linearized & ~new_mask, new_count, folded)
            if memo not in seen:
                seen.add(memo)
                states += 1
                if states > max_states:
                    return SearchResult(Outcome.OUT_OF_STATES, states)
                stack.append((entry, state, linearized, dead_mask, dead_count, forced_phase))
                state = new_state
                linearized = new_linearized
                dead_mask = new_mask
                dead_count = new_count
                if is_obs[i]:
                    lin_obs[arg_a[i]] += 1
                if c == READ:
                    needs_left[arg_a[i]] -= 1
                elif c == WRITE:
                    producers_left[arg_a[i]] -= 1
                elif c != CAS_FAILED:
                    producers_left[arg_b[i]] -= 1
                    if c == CAS:
                        needs_left[arg_a[i]] -= 1
                # lift the call and its return out of the list
                p, q = prv[entry], nxt[entry]
                nxt[p] = q
                prv[q] = p
                r = match[entry]
                if r >= 0:
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    remaining -= 1
                else:
                    used[cls_of[i]] += 1
                entry = nxt[0]
                forced_phase = True
                continue
            if not forced_phase:
                entry = nxt[entry]
                continue
            # A forced move into an explored (hence dead) configuration: this one is dead.
        elif forced_phase:
            forced_phase = False  # no forced move here; now branch over the mutators
            entry = nxt[0]
            continue
        # else: the op returning here was never linearized, so this path is dead.

        # Backtrack: undo forced moves wholesale, then resume after the last real choice.
        while True:
            if not stack:
                return SearchResult(Outcome.NOT_LINEARIZABLE, states)
            entry, state, linearized, dead_mask, dead_count, was_forced = stack.pop()
            i = ev_op[entry]
            c = code[i]
            if is_obs[i]:
                lin_obs[arg_a[i]] -= 1
            if c == READ:
                needs_left[arg_a[i]] += 1
            elif c == WRITE:
                producers_left[arg_a[i]] += 1
            elif c != CAS_FAILED:
                producers_left[arg_b[i]] += 1
                if c == CAS:
                    needs_left[arg_a[i]] += 1
            r = match[entry]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                remaining += 1
            else:
                used[cls_of[i]] -= 1
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            if not was_forced:
                break
        entry = nxt[entry]
        forced_phase = False

    return SearchResult(
        Outcome.LINEARIZABLE, states, order=tuple(ev_op[frame[0]] for frame in stack)
    )


def _canonical_values(h: KeyHistory) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Value ids with every value that no op observes merged into one.

    No READ returns such a value, no CAS expects it: the register holding one of them or
    another is the same state for every op that follows (a 412 sees "not expected" in
    both). Merging them lets the memo table recognize those states as one, and makes
    pending writes of such values one symmetry class.
    """
    observed = {h.a[i] for i in range(len(h)) if h.code[i] != Code.WRITE}
    observed.add(ABSENT)
    unobserved = len(h.values)

    def canon(v: int) -> int:
        return v if v in observed else unobserved

    a = tuple(canon(v) if c == Code.WRITE else v for c, v in zip(h.code, h.a, strict=True))
    b = tuple(
        canon(v) if c in (Code.CAS, Code.CAS_PENDING) else v
        for c, v in zip(h.code, h.b, strict=True)
    )
    return a, b
