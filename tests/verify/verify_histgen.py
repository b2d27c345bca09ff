"""Test helpers for the linearizability checker: a history builder for hand-written
cases, a simulator that produces linearizable histories from a sequential register, an
anomaly injector, and a brute-force checker to compare the real one against."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from raftkv.verify import Op, OpKind, OpStatus, Value
from raftkv.verify.history import normalize


class Builder:
    """Hand-written histories: one line per op, times in arbitrary units."""

    def __init__(self, key: str = "k") -> None:
        self.key = key
        self.ops: list[Op] = []

    def _add(self, **kw: object) -> Op:
        kw.setdefault("key", self.key)
        kw.setdefault("client", len(self.ops))
        op = Op(id=len(self.ops) + 1, **kw)  # type: ignore[arg-type]
        self.ops.append(op)
        return op

    def write(self, value: Value, call: float, ret: float | None, **kw: object) -> Op:
        return self._add(kind=OpKind.WRITE, value=value, call=call, ret=ret, **kw)

    def read(self, value: Value, call: float, ret: float | None, **kw: object) -> Op:
        return self._add(kind=OpKind.READ, value=value, call=call, ret=ret, **kw)

    def delete(self, call: float, ret: float | None, **kw: object) -> Op:
        return self._add(kind=OpKind.DELETE, call=call, ret=ret, **kw)

    def cas(self, expected: Value, new: Value, call: float, ret: float | None, **kw: object) -> Op:
        return self._add(kind=OpKind.CAS, expected=expected, value=new, call=call, ret=ret, **kw)

    def info_write(self, value: Value, call: float) -> Op:
        return self.write(value, call, None, status=OpStatus.INFO)


@dataclass
class SimConfig:
    clients: int = 10
    keys: int = 5
    ops: int = 500
    p_read: float = 0.5
    p_write: float = 0.3
    p_cas: float = 0.15
    # the rest: delete
    p_info: float = 0.03
    p_fail: float = 0.02
    mean_gap: float = 0.002
    mean_latency: float = 0.005


def simulate(rng: random.Random, cfg: SimConfig) -> list[Op]:
    """A linearizable history: each op takes effect at a random instant inside its
    interval (pending ops: later, or never), results come from a sequential register."""
    keys = [f"key{k}" for k in range(cfg.keys)]
    clock = [0.0] * cfg.clients
    written: dict[str, list[str | None]] = {k: [None] for k in keys}
    raw: list[dict[str, object]] = []
    counter = itertools.count(1)
    for n in range(cfg.ops):
        c = rng.randrange(cfg.clients)
        key = rng.choice(keys)
        call = clock[c] + rng.expovariate(1 / cfg.mean_gap)
        ret = call + rng.expovariate(1 / cfg.mean_latency)
        clock[c] = ret
        x = rng.random()
        op: dict[str, object] = {"id": n + 1, "client": c, "key": key, "call": call, "ret": ret}
        if x < cfg.p_read:
            op["kind"] = OpKind.READ
        elif x < cfg.p_read + cfg.p_write:
            op["kind"] = OpKind.WRITE
            op["value"] = f"{key}-v{next(counter)}"
            written[key].append(op["value"])  # type: ignore[arg-type]
        elif x < cfg.p_read + cfg.p_write + cfg.p_cas:
            op["kind"] = OpKind.CAS
            op["expected"] = rng.choice(written[key][-3:])
            op["value"] = f"{key}-v{next(counter)}" if rng.random() < 0.9 else None
            written[key].append(op["value"])  # type: ignore[arg-type]
        else:
            op["kind"] = OpKind.DELETE
        y = rng.random()
        if y < cfg.p_info:
            op["status"] = OpStatus.INFO
            # the client gives up at `ret`; the op lands later, or never
            op["lin"] = call + rng.expovariate(1 / (4 * cfg.mean_latency))
            if rng.random() < 0.4:
                op["lin"] = None
            if rng.random() < 0.5:
                op["ret"] = None
        elif y < cfg.p_info + cfg.p_fail:
            op["status"] = OpStatus.FAIL
            op["lin"] = None
        else:
            op["status"] = OpStatus.OK
            op["lin"] = rng.uniform(call, ret)
        raw.append(op)

    state: dict[str, str | None] = dict.fromkeys(keys)
    for op in sorted((o for o in raw if o["lin"] is not None), key=lambda o: o["lin"]):  # type: ignore[arg-type,return-value]
        key = op["key"]  # type: ignore[assignment]
        assert isinstance(key, str)
        kind = op["kind"]
        if kind is OpKind.READ:
            op["value"] = state[key]
        elif kind is OpKind.WRITE:
            state[key] = op["value"]  # type: ignore[assignment]
        elif kind is OpKind.DELETE:
            state[key] = None
        elif state[key] == op["expected"]:
            state[key] = op["value"]  # type: ignore[assignment]
        elif op["status"] is OpStatus.OK:
            op["cas_failed"] = True
    out = []
    for op in raw:
        del op["lin"]
        out.append(Op(**op))  # type: ignore[arg-type]
    return out


def _before(a: Op, b: Op) -> bool:
    """a definitely precedes b in real time."""
    return a.status is OpStatus.OK and a.ret is not None and a.ret < b.call


def inject_stale_read(rng: random.Random, ops: Sequence[Op]) -> tuple[list[Op], Op]:
    """Make one ok read return a value that was definitely overwritten before it began:
    written by op w, then a completed write of another value m with w < m < read in real
    time, and (values being unique) never written again. Returns (history, bad read)."""
    ok = [o for o in ops if o.status is OpStatus.OK]
    reads = [o for o in ok if o.kind is OpKind.READ]
    mutators = [o for o in ok if o.kind in (OpKind.WRITE, OpKind.DELETE, OpKind.CAS)]
    mutators = [o for o in mutators if not o.cas_failed]
    rng.shuffle(reads)
    for r in reads:
        same = [m for m in mutators if m.key == r.key]
        for w in same:
            if (
                w.value is None
                or w.kind is OpKind.DELETE
                or normalize(w.value) == normalize(r.value)
            ):
                continue
            producers = [
                o
                for o in ops
                if o.key == r.key
                and o.kind in (OpKind.WRITE, OpKind.CAS)
                and not o.cas_failed
                and normalize(o.value) == normalize(w.value)
            ]
            if len(producers) != 1:
                continue
            if any(
                _before(w, m) and _before(m, r) and normalize(m.value) != normalize(w.value)
                for m in same
            ):
                bad = replace(r, value=w.value)
                return [bad if o.id == r.id else o for o in ops], bad
    raise LookupError("no read can be made definitely stale in this history")


def brute_force_linearizable(ops: Sequence[Op]) -> bool:
    """Exhaustive, memo-free, written from the definitions rather than the model codes.

    An order is valid if every ok op is in it, pending ops are in it or left out (never
    happened), FAIL ops and pending reads are left out, real time is respected (an ok op
    that returned before another was called comes first), and each op's answer matches a
    sequential register started absent.
    """
    live = [
        o
        for o in ops
        if o.status is not OpStatus.FAIL
        and not (o.status is OpStatus.INFO and o.kind is OpKind.READ)
    ]
    must = {o.id for o in live if o.status is OpStatus.OK}

    def apply(o: Op, state: bytes | None) -> tuple[bool, bytes | None]:
        if o.kind is OpKind.READ:
            return normalize(o.value) == state, state
        if o.kind is OpKind.WRITE:
            return True, normalize(o.value)
        if o.kind is OpKind.DELETE:
            return True, None
        matches = state == normalize(o.expected)
        if o.cas_failed:
            return not matches, state
        if o.status is OpStatus.INFO:
            return True, normalize(o.value) if matches else state
        return matches, normalize(o.value) if matches else state

    def go(placed: frozenset[int], state: bytes | None) -> bool:
        if must <= placed:
            return True
        rest = [o for o in live if o.id not in placed]
        for o in rest:
            if any(_before(p, o) for p in rest if p is not o):
                continue
            ok, new = apply(o, state)
            if ok and go(placed | {o.id}, new):
                return True
        return False

    return go(frozenset(), None)
