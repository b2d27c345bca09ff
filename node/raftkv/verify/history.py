"""The records a linearizability check reads: one client operation on one key.

A history is what clients observed, not what the cluster did: when each operation was
invoked, when (if ever) it returned, and what it answered. Three outcomes matter and
they are not interchangeable (Jepsen's ok / fail / info):

- OK: the operation took effect exactly once, somewhere between `call` and `ret`, and
  its answer is an observation of the register at that point.
- FAIL: it definitely had no effect (refused before it was proposed). The checker drops
  it. A compare-and-swap answered 412 is *not* FAIL: that answer says "the value was not
  `expected`", which is an observation, so it is recorded as status OK, `cas_failed=True`.
- INFO: indeterminate (timeout, connection lost). It may take effect at any time after
  `call`, even long after the client gave up, or never; `ret` is ignored by the checker
  (treated as +inf) and may be kept for display. An INFO read tells nothing and is dropped.

Values are `bytes`, `str` (compared as its UTF-8 bytes) or None for "absent" (a 404).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

Value = bytes | str | None


class OpKind(StrEnum):
    READ = "read"
    """`value` is what the read returned (None: 404)."""
    WRITE = "write"
    """`value` is what was written."""
    CAS = "cas"
    """Compare-and-swap: `expected` is the precondition (None: "key absent", i.e. create
    only), `value` the new value (None: conditional delete)."""
    DELETE = "delete"
    """Unconditional delete; `value` is unused."""


class OpStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    id: int
    client: int
    key: str
    kind: OpKind
    call: float
    """Monotonic seconds when the client invoked the operation."""
    ret: float | None = None
    """Monotonic seconds when the answer arrived; None (or +inf) when there was none."""
    status: OpStatus = OpStatus.OK
    value: Value = None
    expected: Value = None
    cas_failed: bool = False
    """A CAS answered "precondition failed": no effect, and the value was not `expected`."""

    def __post_init__(self) -> None:
        if math.isnan(self.call) or math.isinf(self.call):
            raise ValueError(f"op {self.id}: call time must be finite, got {self.call}")
        if self.ret is not None and self.ret < self.call:
            raise ValueError(f"op {self.id}: returned ({self.ret}) before its call ({self.call})")
        if self.status is OpStatus.OK and self.ret is None:
            raise ValueError(f"op {self.id}: an ok op needs a return time")
        if self.status is OpStatus.OK and math.isinf(self.ret or 0.0):
            raise ValueError(f"op {self.id}: an ok op needs a finite return time")
        if self.cas_failed and (self.kind is not OpKind.CAS or self.status is not OpStatus.OK):
            raise ValueError(
                f"op {self.id}: cas_failed is an answer (412) of a CAS, so kind=cas, status=ok"
            )

    @property
    def pending(self) -> bool:
        """Indeterminate: may take effect at any time after `call`, or never."""
        return self.status is OpStatus.INFO


def normalize(value: Value) -> bytes | None:
    """The form values are compared in: a str equals its UTF-8 encoding."""
    if isinstance(value, str):
        return value.encode()
    return value


# --- JSON Lines --------------------------------------------------------------------------
# One op per line. A str value is a JSON string, bytes are {"b64": "..."}, absent is null,
# a missing return time is null.


def _value_to_json(value: Value) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _value_from_json(raw: Any) -> Value:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and set(raw) == {"b64"} and isinstance(raw["b64"], str):
        return base64.b64decode(raw["b64"], validate=True)
    raise ValueError(f"not a value: {raw!r}")


def op_to_json(op: Op) -> dict[str, Any]:
    ret = None if op.ret is None or math.isinf(op.ret) else op.ret
    return {
        "id": op.id,
        "client": op.client,
        "key": op.key,
        "kind": op.kind.value,
        "call": op.call,
        "ret": ret,
        "status": op.status.value,
        "value": _value_to_json(op.value),
        "expected": _value_to_json(op.expected),
        "cas_failed": op.cas_failed,
    }


def op_from_json(raw: dict[str, Any]) -> Op:
    ret = raw.get("ret")
    return Op(
        id=int(raw["id"]),
        client=int(raw["client"]),
        key=str(raw["key"]),
        kind=OpKind(raw["kind"]),
        call=float(raw["call"]),
        ret=None if ret is None else float(ret),
        status=OpStatus(raw.get("status", "ok")),
        value=_value_from_json(raw.get("value")),
        expected=_value_from_json(raw.get("expected")),
        cas_failed=bool(raw.get("cas_failed", False)),
    )


def write_history(path: str | Path, ops: Iterable[Op]) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for op in ops:
            f.write(json.dumps(op_to_json(op), separators=(",", ":")))
            f.write("\n")


def iter_history(path: str | Path) -> Iterator[Op]:
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield op_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e


def read_history(path: str | Path) -> list[Op]:
    return list(iter_history(path))
