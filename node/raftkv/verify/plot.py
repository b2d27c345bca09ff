"""The Jepsen-style picture of a run: every op's latency over time, fault windows shaded,
and throughput below on the same time axis.

Latency is drawn per op (not as percentiles) because the interesting events are
individual: the burst of INFO ops when a leader is paused, the gap while a new one is
elected. Each op is placed at its invocation time; INFO ops are drawn at the time the
client gave up. The y axis is logarithmic so 2 ms reads and 1.5 s timeouts share a
readable scale. Needs matplotlib (Agg backend; no display).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from raftkv.verify.history import Op, OpKind, OpStatus
from raftkv.verify.report import FaultWindow

__all__ = ["plot_run"]

_STATUS_COLOR = {OpStatus.OK: "#2a9d4b", OpStatus.FAIL: "#d62728", OpStatus.INFO: "#ff9f1c"}
_KIND_MARKER = {OpKind.READ: "o", OpKind.WRITE: "^", OpKind.CAS: "s", OpKind.DELETE: "x"}
_FAULT_COLOR = {
    "kill": "#9467bd",
    "kill-leader": "#8c564b",
    "pause": "#1f77b4",
    "partition-minority": "#e377c2",
    "partition-bridge": "#bcbd22",
    "torn-wal": "#7f7f7f",
}


def plot_run(
    ops: Sequence[Op],
    faults: Sequence[FaultWindow],
    path: str | Path,
    *,
    title: str = "raftkv",
    bin_s: float = 1.0,
) -> Path:
    t0 = min((op.call for op in ops), default=0.0)
    fig, (ax_lat, ax_tp) = plt.subplots(
        2, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    end = max((op.ret for op in ops if op.ret is not None), default=t0 + 1.0) - t0

    # Fault windows first, so points are drawn over them.
    seen_kinds: set[str] = set()
    for f in faults:
        color = _FAULT_COLOR.get(f.kind, "#aaaaaa")
        label = f.kind if f.kind not in seen_kinds else None
        seen_kinds.add(f.kind)
        for ax in (ax_lat, ax_tp):
            ax.axvspan(f.start - t0, f.end - t0, color=color, alpha=0.18, lw=0, label=label)
            label = None
        ax_lat.text(
            f.start - t0,
            1.0,
            f" {f.kind} {f.target}",
            transform=ax_lat.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color=color,
        )

    for status in (OpStatus.OK, OpStatus.FAIL, OpStatus.INFO):
        for kind in OpKind:
            sel = [op for op in ops if op.status is status and op.kind is kind and op.ret]
            if not sel:
                continue
            ax_lat.scatter(
                [op.call - t0 for op in sel],
                [max((op.ret or op.call) - op.call, 1e-4) * 1000 for op in sel],
                s=9 if kind is not OpKind.DELETE else 14,
                marker=_KIND_MARKER[kind],
                color=_STATUS_COLOR[status],
                alpha=0.55,
                linewidths=0.6 if kind is OpKind.DELETE else 0,
                label=f"{kind.value} {status.value}",
            )
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms, log)")
    ax_lat.set_title(title)
    ax_lat.grid(True, which="major", alpha=0.3)
    ax_lat.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, markerscale=1.8)

    nbins = max(1, int(end / bin_s) + 1)
    edges = [i * bin_s for i in range(nbins + 1)]
    for status in (OpStatus.OK, OpStatus.FAIL, OpStatus.INFO):
        counts = [0] * nbins
        for op in ops:
            if op.status is status and op.ret is not None:
                counts[min(nbins - 1, max(0, int((op.ret - t0) / bin_s)))] += 1
        if any(counts):
            ax_tp.step(
                edges[:-1],
                [c / bin_s for c in counts],
                where="post",
                color=_STATUS_COLOR[status],
                label=status.value,
                lw=1.4,
            )
    ax_tp.set_ylabel("completed ops/s")
    ax_tp.set_xlabel("seconds since the first op")
    ax_tp.grid(True, alpha=0.3)
    ax_tp.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    ax_tp.set_xlim(0, max(end, 1.0))

    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
