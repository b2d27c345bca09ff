"""What a run leaves behind: history.jsonl, summary.json / summary.txt and the picture.

The summary is for a person deciding whether to trust a verdict: how many ops there were
and how they ended (a run that is all INFO proves little even when it is "ok"), the
verdict of every key with the checker's explanation, and the fault timeline on the same
clock as the ops (seconds since the first op) so a violation can be lined up with the
fault that provoked it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.verify.explain import format_result
from raftkv.verify.history import Op, write_history
from raftkv.verify.result import CheckResult

__all__ = ["FaultWindow", "RunArtifacts", "summarize", "write_run"]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One injected fault, on `time.monotonic` like the ops."""

    kind: str
    """e.g. "kill", "kill-leader", "pause", "partition-minority", "partition-bridge",
    "torn-wal"."""
    target: str
    start: float
    end: float
    """When the fault was healed (the member restarted / resumed, the links restored)."""
    detail: str = ""
    recovered: float | None = None
    """When the cluster was observed healthy again after the heal (None: not observed)."""


@dataclass(frozen=True, slots=True)
class RunArtifacts:
    out_dir: Path
    history: Path
    summary_json: Path
    summary_txt: Path
    picture: Path | None
    """None when matplotlib is not installed."""


def summarize(
    ops: Sequence[Op],
    result: CheckResult,
    faults: Sequence[FaultWindow] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    t0 = min((op.call for op in ops), default=0.0)
    by_status = Counter(op.status.value for op in ops)
    by_kind = Counter(op.kind.value for op in ops)
    by_kind_status = Counter(f"{op.kind.value}:{op.status.value}" for op in ops)
    cas_failed = sum(1 for op in ops if op.cas_failed)
    end = max((op.ret for op in ops if op.ret is not None), default=t0)
    return {
        "verdict": result.verdict.value,
        "ops": len(ops),
        "duration_s": round(end - t0, 3),
        "by_status": dict(sorted(by_status.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "by_kind_status": dict(sorted(by_kind_status.items())),
        "cas_412": cas_failed,
        "keys": {
            k: {
                "verdict": r.verdict.value,
                "ops_checked": r.ops_checked,
                "states_explored": r.states_explored,
                "explanation": r.explanation,
                "window_op_ids": [op.id for op in r.window],
            }
            for k, r in sorted(result.per_key.items())
        },
        "faults": [
            {
                "kind": f.kind,
                "target": f.target,
                "start_s": round(f.start - t0, 3),
                "end_s": round(f.end - t0, 3),
                "recovered_s": None if f.recovered is None else round(f.recovered - t0, 3),
                "detail": f.detail,
            }
            for f in faults
        ],
        **(extra or {}),
    }


def _summary_text(summary: dict[str, Any], result: CheckResult) -> str:
    lines = [
        f"verdict: {summary['verdict'].upper()}",
        f"ops: {summary['ops']} over {summary['duration_s']} s; "
        + ", ".join(f"{k} {v}" for k, v in summary["by_status"].items())
        + f"; CAS answered 412: {summary['cas_412']}",
        "by kind: " + ", ".join(f"{k} {v}" for k, v in summary["by_kind_status"].items()),
    ]
    for key in ("seed", "members", "nemesis_error"):
        if key in summary:
            lines.append(f"{key}: {summary[key]}")
    if summary["faults"]:
        lines.append("faults (seconds since the first op):")
        for f in summary["faults"]:
            rec = "never observed" if f["recovered_s"] is None else f"{f['recovered_s']:.1f}"
            lines.append(
                f"  {f['start_s']:7.1f} - {f['end_s']:7.1f}  {f['kind']:<19} {f['target']:<8}"
                f" recovered {rec}  {f['detail']}"
            )
    lines.append("")
    lines.append(format_result(result))
    return "\n".join(lines) + "\n"


def write_run(
    out_dir: str | Path,
    ops: Sequence[Op],
    result: CheckResult,
    faults: Sequence[FaultWindow] = (),
    *,
    title: str = "raftkv",
    extra: dict[str, Any] | None = None,
) -> RunArtifacts:
    """Write the history, the summary and (when matplotlib is available) the picture."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = out / "history.jsonl"
    write_history(history, ops)
    summary = summarize(ops, result, faults, extra)
    sj = out / "summary.json"
    sj.write_text(json.dumps(summary, indent=2) + "\n")
    st = out / "summary.txt"
    st.write_text(_summary_text(summary, result))
    picture: Path | None = out / "latency.png"
    try:
        from raftkv.verify.plot import plot_run
    except ImportError:  # matplotlib is optional for users of `raftkv verify`
        picture = None
    else:
        assert picture is not None
        plot_run(ops, faults, picture, title=f"{title}: {result.verdict.value.upper()}")
    return RunArtifacts(out, history, sj, st, picture)
