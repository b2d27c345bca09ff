"""The nemesis in the test suite: a CI-sized run under faults must be linearizable, and
the same machinery with serializable reads against a partitioned member must be caught.

Outputs (history.jsonl, summary.txt/json, latency.png) go to pytest's tmp dir, or to
$RAFTKV_NEMESIS_OUT/<test> to keep them; the paths are printed on failure.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from . import expect
from .nemesis import NemesisConfig, run_nemesis, stale_read_config, stale_read_plan

pytestmark = expect.NEEDS_NETNS


@pytest.mark.timeout(240)
def test_nemesis_run_is_linearizable(tmp_path: Path) -> None:
    cfg = NemesisConfig(seed=expect.SEED, fault_time=55.0)
    run = run_nemesis(expect.out_dir(tmp_path, "nemesis-ci"), cfg, title="raftkv nemesis (CI)")
    expect.assert_full_run(run)
    assert run.artifacts.picture is not None
    assert run.artifacts.picture.stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_serializable_reads_from_a_partitioned_member_are_flagged(tmp_path: Path) -> None:
    run = run_nemesis(
        expect.out_dir(tmp_path, "nemesis-stale"),
        stale_read_config(),
        stale_read_plan,
        title="raftkv nemesis (serializable reads, must fail)",
    )
    k0 = expect.assert_stale_read_flagged(run)
    # The explanation names the stale value, and its window is small enough to read.
    why = expect.describe(run)
    assert k0.window, why
    assert len(k0.window) <= 10, why


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_nemesis_soak(tmp_path: Path) -> None:
    cfg = replace(
        NemesisConfig(seed=expect.SEED), fault_time=expect.SOAK_SECONDS, keys=8, check_timeout=900.0
    )
    run = run_nemesis(expect.out_dir(tmp_path, "nemesis-soak"), cfg, title="raftkv nemesis soak")
    expect.assert_linearizable(run)
