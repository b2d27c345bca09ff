"""Putting a violation into words: a one-line reason and a table of the window's ops.

The reason is best effort: it recognizes the common shapes (a value nobody wrote, a
value read before its write began, a stale value after a completed overwrite, a 412
while the value must have matched) and otherwise says plainly that no order works.
The table is always exact: it is the evidence, the sentence only points at it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from raftkv.verify.history import Op, OpKind, OpStatus, Value
from raftkv.verify.model import ABSENT, Code, KeyHistory
from raftkv.verify.result import CheckResult, KeyResult, Verdict

_MAX_VALUE_CHARS = 24


def show_value(value: Value) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, bytes):
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = value.hex()
            return "0x" + (text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "…")
    else:
        text = value
    if len(text) > _MAX_VALUE_CHARS:
        text = text[:_MAX_VALUE_CHARS] + "…"
    return repr(text)


def _show_id(h: KeyHistory, vid: int) -> str:
    return show_value(h.values[vid])


def _verb(h: KeyHistory, i: int) -> str:
    op = h.ops[i]
    if op.kind is OpKind.DELETE or (h.result(i) == ABSENT and op.kind is not OpKind.READ):
        return "deleted it"
    return f"wrote {_show_id(h, h.result(i) or ABSENT)}"


def reason(h: KeyHistory, window: Sequence[int], key: str) -> str:
    """One line on why the window (indices into h) cannot be linearized."""
    w = sorted(window, key=lambda i: h.call[i], reverse=True)
    mutators = [i for i in w if h.result(i) is not None]
    for o in w:
        c = h.code[o]
        op = h.ops[o]
        if c in (Code.READ, Code.CAS):
            v = h.a[o]
            what = (
                f"read of key {key!r} returned {_show_id(h, v)} (op {op.id})"
                if c == Code.READ
                else f"CAS on key {key!r} expecting {_show_id(h, v)} succeeded (op {op.id})"
            )
            # claims about all writes of v look at the whole key, not just the window
            anywhere = [m for m in range(len(h)) if h.result(m) == v and m != o]
            if not anywhere and v != ABSENT:
                return f"{what}, but no op ever wrote that value"
            if v != ABSENT and all(h.call[p] > h.ret[o] for p in anywhere):
                p = min(anywhere, key=lambda j: h.call[j])
                return (
                    f"{what}, but no write of it started before op {op.id} completed "
                    f"(the first, op {h.ops[p].id}, started after)"
                )
            producers = [m for m in mutators if h.result(m) == v and m != o]
            # Stale: every way the value could be there is overwritten before o starts.
            latest = max(producers, key=lambda j: h.ret[j], default=None)
            after = h.ret[latest] if latest is not None else -math.inf
            overwrite = [
                m
                for m in mutators
                if not h.pending[m]
                and h.result(m) != v
                and h.call[m] > after
                and h.ret[m] < h.call[o]
                and h.code[m] != Code.CAS_PENDING
            ]
            if overwrite and (latest is None or not h.pending[latest]):
                m = max(overwrite, key=lambda j: h.ret[j])
                since = (
                    f"after the write of {_show_id(h, v)} (op {h.ops[latest].id}) completed"
                    if latest is not None
                    else "and nothing could have deleted it again"
                )
                return (
                    f"{what}, but op {h.ops[m].id} {_verb(h, m)} {since}, "
                    f"and op {h.ops[m].id} completed before op {op.id} started"
                )
        elif c == Code.CAS_FAILED:
            v = h.a[o]
            before = [m for m in mutators if not h.pending[m] and h.ret[m] < h.call[o]]
            concurrent = [m for m in mutators if h.ret[m] >= h.call[o] and h.call[m] <= h.ret[o]]
            last = max(before, key=lambda j: h.call[j], default=None)
            if last is None:
                settled = v == ABSENT and not concurrent
                cause = "the key was never written before it"
            else:
                # mutators that overlap `last` could be the last one too
                rivals = [m for m in before if h.ret[m] >= h.call[last]]
                settled = all(h.result(m) == v for m in rivals) and not concurrent
                cause = f"op {h.ops[last].id} {_verb(h, last)} and completed before it started"
            if settled:
                return (
                    f"CAS on key {key!r} expecting {_show_id(h, v)} was refused (412, op "
                    f"{op.id}), but the value was {_show_id(h, v)} then: {cause}, and no "
                    "other op could change it in between"
                )
    return (
        f"no order of these {len(window)} ops on key {key!r} is consistent with a single "
        "register (each respects real time: an op that completed before another started "
        "comes first)"
    )


def _fmt_time(t: float, origin: float) -> str:
    if math.isinf(t):
        return "∞"
    return f"{t - origin:+.3f}"


def format_window(window: Sequence[Op]) -> str:
    """A table of ops sorted by call; times are seconds since the first call shown."""
    if not window:
        return "  (no ops)"
    ops = sorted(window, key=lambda o: (o.call, o.id))
    origin = ops[0].call
    header = ("op", "client", "kind", "value", "expected", "call", "ret", "status")
    rows: list[tuple[str, ...]] = [header]
    for o in ops:
        kind = o.kind.value
        expected = show_value(o.expected) if o.kind is OpKind.CAS else ""
        value = "" if o.kind is OpKind.DELETE else show_value(o.value)
        if o.status is OpStatus.INFO:
            status = "info (indeterminate)"
            ret = "∞"
        else:
            status = "412 (value != expected)" if o.cas_failed else o.status.value
            ret = _fmt_time(o.ret if o.ret is not None else math.inf, origin)
        rows.append(
            (
                str(o.id),
                str(o.client),
                kind,
                value,
                expected,
                _fmt_time(o.call, origin),
                ret,
                status,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(wd) for cell, wd in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def format_key_result(r: KeyResult) -> str:
    lines = [
        f"key {r.key!r}: {r.verdict.value.upper()} "
        f"({r.ops_checked} ops, {r.states_explored} states explored)"
    ]
    if r.explanation:
        lines.append(f"  {r.explanation}")
    if r.window:
        lines.append(format_window(r.window))
    return "\n".join(lines)


def format_result(result: CheckResult) -> str:
    """A human summary: the verdict, then every key that is not OK with its evidence."""
    counts = {v: 0 for v in Verdict}
    for r in result.per_key.values():
        counts[r.verdict] += 1
    ops = sum(r.ops_checked for r in result.per_key.values())
    summary = (
        f"linearizability: {result.verdict.value.upper()} — {len(result.per_key)} keys, "
        f"{ops} ops checked: {counts[Verdict.OK]} ok, {counts[Verdict.VIOLATION]} violation, "
        f"{counts[Verdict.UNKNOWN]} inconclusive"
    )
    if result.verdict is Verdict.UNKNOWN:
        summary += " (inconclusive is not ok: raise the bounds and check again)"
    blocks = [summary]
    for verdict in (Verdict.VIOLATION, Verdict.UNKNOWN):
        blocks.extend(
            format_key_result(r)
            for r in sorted(result.per_key.values(), key=lambda r: r.key)
            if r.verdict is verdict
        )
    return "\n\n".join(blocks)
