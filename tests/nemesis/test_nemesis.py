"""The nemesis in the test suite: a CI-sized run under faults must be linearizable, and
the same machinery with serializable reads against a partitioned member must be caught.

Outputs (history.jsonl, summary.txt/json, latency.png) go to pytest's tmp dir, or to
$RAFTKV_NEMESIS_OUT/<test> to keep them; the paths are printed on failure.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from raftkv.verify import OpStatus, Verdict

from .nemesis import (
    FAULT_KINDS,
    STALE_PROBE_KEY,
    NemesisConfig,
    run_nemesis,
    stale_read_config,
    stale_read_plan,
)
from .netns import netns_unavailable_reason

_REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"nemesis: {_REASON}")


def _out(tmp_path: Path, name: str) -> Path:
    base = os.environ.get("RAFTKV_NEMESIS_OUT")
    return Path(base) / name if base else tmp_path / name


def _describe(run: object) -> str:
    arts = run.artifacts  # type: ignore[attr-defined]
    return f"\n{arts.summary_txt.read_text()}\nhistory: {arts.history}\npicture: {arts.picture}"


@pytest.mark.timeout(240)
def test_nemesis_run_is_linearizable(tmp_path: Path) -> None:
    cfg = NemesisConfig(seed=int(os.environ.get("RAFTKV_NEMESIS_SEED", "1")), fault_time=55.0)
    run = run_nemesis(_out(tmp_path, "nemesis-ci"), cfg, title="raftkv nemesis (CI)")
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.OK, why
    # A verdict over a history with no evidence would prove nothing.
    ok = [op for op in run.ops if op.status is OpStatus.OK]
    assert len(ok) > 1000, why
    assert {f.kind for f in run.faults} == set(FAULT_KINDS), why
    # The watchers (checked in run.errors: every acknowledged write seen once, in order,
    # ending at the final state) saw the run and moved between members.
    assert len(run.watchers) == 6, why
    assert all(len(w.events) > 500 for w in run.watchers), why
    assert sum(w.reconnects for w in run.watchers) > 0, why
    assert run.artifacts.picture is not None
    assert run.artifacts.picture.stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_serializable_reads_from_a_partitioned_member_are_flagged(tmp_path: Path) -> None:
    run = run_nemesis(
        _out(tmp_path, "nemesis-stale"),
        stale_read_config(),
        stale_read_plan,
        title="raftkv nemesis (serializable reads, must fail)",
    )
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.VIOLATION, why
    assert run.result.per_key[STALE_PROBE_KEY].verdict is Verdict.VIOLATION, why
    # The explanation names the stale value, and its window is small enough to read.
    k0 = run.result.per_key[STALE_PROBE_KEY]
    assert k0.explanation, why
    assert k0.window, why
    assert len(k0.window) <= 10, why


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_nemesis_soak(tmp_path: Path) -> None:
    seconds = float(os.environ.get("RAFTKV_NEMESIS_SOAK_SECONDS", "900"))
    cfg = replace(
        NemesisConfig(seed=int(os.environ.get("RAFTKV_NEMESIS_SEED", "1"))),
        fault_time=seconds,
        keys=8,
        check_timeout=900.0,
    )
    run = run_nemesis(_out(tmp_path, "nemesis-soak"), cfg, title="raftkv nemesis soak")
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.OK, why
