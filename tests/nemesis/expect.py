"""What the nemesis tests assert about a run, shared by the HTTP run (test_nemesis.py)
and the gRPC one (test_grpc_nemesis.py): both must meet the same bar, so it is written
once. Each helper fails with the run's summary and the paths of its outputs attached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv.verify import KeyResult, OpStatus, Verdict

from .nemesis import FAULT_KINDS, STALE_PROBE_KEY, NemesisRun
from .netns import netns_unavailable_reason

_REASON = netns_unavailable_reason()
NEEDS_NETNS = pytest.mark.skipif(_REASON is not None, reason=f"nemesis: {_REASON}")
"""The nemesis needs root and iproute2 (network namespaces): skip with the reason."""

SEED = int(os.environ.get("RAFTKV_NEMESIS_SEED", "1"))
"""The CI-sized run's seed (the soak's are SEED + n)."""
SOAK_SECONDS = float(os.environ.get("RAFTKV_NEMESIS_SOAK_SECONDS", "900"))


def out_dir(tmp_path: Path, name: str) -> Path:
    """pytest's tmp dir, or $RAFTKV_NEMESIS_OUT/<name> to keep the outputs."""
    base = os.environ.get("RAFTKV_NEMESIS_OUT")
    return Path(base) / name if base else tmp_path / name


def describe(run: NemesisRun) -> str:
    arts = run.artifacts
    return f"\n{arts.summary_txt.read_text()}\nhistory: {arts.history}\npicture: {arts.picture}"


def assert_linearizable(run: NemesisRun) -> None:
    """No nemesis problems (a cluster that did not recover, a watcher or lease check
    that failed) and a linearizable history."""
    why = describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.OK, why


def assert_full_run(run: NemesisRun) -> None:
    """`assert_linearizable`, and the run had the evidence to mean something: many
    acknowledged ops, every fault kind, and six watchers (checked in run.errors: every
    acknowledged write seen once, in order, ending at the final state) that saw the
    run and moved between members."""
    assert_linearizable(run)
    why = describe(run)
    ok = [op for op in run.ops if op.status is OpStatus.OK]
    assert len(ok) > 1000, why
    assert {f.kind for f in run.faults} == set(FAULT_KINDS), why
    assert len(run.watchers) == 6, why
    assert all(len(w.events) > 500 for w in run.watchers), why
    assert sum(w.reconnects for w in run.watchers) > 0, why


def assert_stale_read_flagged(run: NemesisRun) -> KeyResult:
    """The stale-read plan's run: no nemesis problems, and the checker flags the probe
    key with an explanation. Returns the probe key's result for further checks."""
    why = describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.VIOLATION, why
    k0 = run.result.per_key[STALE_PROBE_KEY]
    assert k0.verdict is Verdict.VIOLATION, why
    assert k0.explanation, why
    return k0
