"""Linearizability checking of per-key register histories (read, write, delete, CAS).

    from raftkv.verify import check_history, format_result, read_history
    result = check_history(read_history("history.jsonl"), timeout_s=60)
    print(format_result(result))
    assert result.ok  # UNKNOWN (inconclusive) is not ok

Layers: `history` (the op records, JSONL), `model` (the register, compiled to ints),
`search` (Wing & Gong + Lowe's memoization on one key), `window` (shrinking a violation
to a small fair witness), `explain` (words and tables), `checker` (per-key driver).
"""

from raftkv.verify.checker import check_history, check_key
from raftkv.verify.explain import format_key_result, format_result, format_window
from raftkv.verify.history import (
    Op,
    OpKind,
    OpStatus,
    Value,
    read_history,
    write_history,
)
from raftkv.verify.result import CheckResult, KeyResult, Verdict

__all__ = [
    "CheckResult",
    "KeyResult",
    "Op",
    "OpKind",
    "OpStatus",
    "Value",
    "Verdict",
    "check_history",
    "check_key",
    "format_key_result",
    "format_result",
    "format_window",
    "read_history",
    "write_history",
]
