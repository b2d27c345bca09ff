"""The register model of one key, compiled to small integers for the search.

The search steps the model millions of times, so each op is reduced to a code and two
value ids (0 = absent); comparing two values is then comparing two ints.

Step semantics (state = value id of the register):

    READ a          ok iff state == a; state unchanged
    WRITE a         always ok; state := a          (a DELETE is WRITE of absent)
    CAS a -> b      ok iff state == a; state := b  (answered ok)
    CAS_FAILED a    ok iff state != a; unchanged   (answered 412: an observation)
    CAS_PENDING     always ok; state := b if state == a else unchanged

CAS_PENDING is an indeterminate CAS: if it takes effect where the value matches, it
swaps; if it takes effect anywhere else, or never, it changes nothing. "Never" needs no
special case: a pending op has no return, so it may always be placed after everything
else, where its effect is unobservable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from raftkv.verify.history import Op, OpKind, OpStatus, normalize

ABSENT = 0
INF = math.inf


class Code(IntEnum):
    READ = 0
    WRITE = 1
    CAS = 2
    CAS_FAILED = 3
    CAS_PENDING = 4


MUTATORS = frozenset({Code.WRITE, Code.CAS, Code.CAS_PENDING})


def step(code: int, a: int, b: int, state: int) -> tuple[bool, int]:
    """Reference semantics of one op; the search inlines the same rules."""
    if code == Code.READ:
        return state == a, state
    if code == Code.WRITE:
        return True, a
    if code == Code.CAS:
        return state == a, b
    if code == Code.CAS_FAILED:
        return state != a, state
    return True, (b if state == a else state)


def relevant(op: Op) -> bool:
    """Ops that constrain the register: a FAIL had no effect, a pending read observed nothing."""
    if op.status is OpStatus.FAIL:
        return False
    return not (op.status is OpStatus.INFO and op.kind is OpKind.READ)


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The relevant ops of one key, compiled. Index i describes ops[i]."""

    ops: tuple[Op, ...]
    code: tuple[int, ...]
    a: tuple[int, ...]
    b: tuple[int, ...]
    call: tuple[float, ...]
    ret: tuple[float, ...]
    """+inf for pending ops."""
    pending: tuple[bool, ...]
    values: tuple[bytes | None, ...]
    """Value id -> value (id 0 is absent)."""

    def __len__(self) -> int:
        return len(self.ops)

    def result(self, i: int) -> int | None:
        """The value id a mutator leaves behind (for CAS_PENDING: if it takes effect)."""
        c = self.code[i]
        if c == Code.WRITE:
            return self.a[i]
        if c in (Code.CAS, Code.CAS_PENDING):
            return self.b[i]
        return None

    def observed(self, i: int) -> int | None:
        """The value id an op requires the register to hold (READ, CAS, CAS_PENDING match)."""
        c = self.code[i]
        if c in (Code.READ, Code.CAS, Code.CAS_PENDING):
            return self.a[i]
        return None

    def subset(self, indices: Iterable[int]) -> KeyHistory:
        idx = sorted(indices)
        return KeyHistory(
            ops=tuple(self.ops[i] for i in idx),
            code=tuple(self.code[i] for i in idx),
            a=tuple(self.a[i] for i in idx),
            b=tuple(self.b[i] for i in idx),
            call=tuple(self.call[i] for i in idx),
            ret=tuple(self.ret[i] for i in idx),
            pending=tuple(self.pending[i] for i in idx),
            values=self.values,
        )


def compile_key(ops: Sequence[Op]) -> KeyHistory:
    """Compile the relevant ops of one key (caller filters with `relevant`), sorted by call."""
    ids: dict[bytes | None, int] = {None: ABSENT}
    values: list[bytes | None] = [None]

    def vid(v: bytes | str | None) -> int:
        n = normalize(v)
        i = ids.get(n)
        if i is None:
            i = ids[n] = len(values)
            values.append(n)
        return i

    ordered = sorted(ops, key=lambda o: (o.call, o.id))
    code: list[int] = []
    a: list[int] = []
    b: list[int] = []
    for op in ordered:
        if op.kind is OpKind.READ:
            code.append(Code.READ)
            a.append(vid(op.value))
            b.append(ABSENT)
        elif op.kind is OpKind.WRITE:
            code.append(Code.WRITE)
            a.append(vid(op.value))
            b.append(ABSENT)
        elif op.kind is OpKind.DELETE:
            code.append(Code.WRITE)
            a.append(ABSENT)
            b.append(ABSENT)
        else:
            if op.cas_failed:
                code.append(Code.CAS_FAILED)
            elif op.pending:
                code.append(Code.CAS_PENDING)
            else:
                code.append(Code.CAS)
            a.append(vid(op.expected))
            b.append(vid(op.value))
    return KeyHistory(
        ops=tuple(ordered),
        code=tuple(code),
        a=tuple(a),
        b=tuple(b),
        call=tuple(o.call for o in ordered),
        ret=tuple(INF if o.pending or o.ret is None else o.ret for o in ordered),
        pending=tuple(o.pending for o in ordered),
        values=tuple(values),
    )


def prune_unobservable(h: KeyHistory) -> KeyHistory:
    """Drop pending mutators whose resulting value no op could ever observe.

    Such an op can be assumed never to have happened without changing the verdict: in any
    linearization where it takes effect, the ops up to the next overwrite cannot tell its
    value from the one before it (no READ returns it, no CAS expects it), and pending CASes
    that would now match can be moved to the end (they never returned). The argument needs
    "not equal" observations to be absent, so a key with any 412-answered CAS keeps all.
    Pending writes are common (every timeout during a partition) and each one left in
    doubles the states the search may visit, so this matters for speed.
    """
    if any(c == Code.CAS_FAILED for c in h.code):
        return h
    observed = {h.a[i] for i in range(len(h)) if h.code[i] != Code.WRITE}
    keep = [
        i
        for i in range(len(h))
        if not h.pending[i] or h.result(i) is None or h.result(i) in observed
    ]
    return h if len(keep) == len(h) else h.subset(keep)
