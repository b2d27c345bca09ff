"""Thousands of seeded random schedules against the Raft core (see schedule.py).

Seeds run in batches so that per-test overhead stays negligible; a batch reports every
failing seed with the command that replays it. Even seeds are 3-member clusters, odd
seeds 5; seeds with `seed % 4 >= 2` change membership mid-run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cluster import Stats
from .conftest import seed_range
from .schedule import Simulation, SimulationFailure

CI_SEEDS = seed_range("RAFTKV_SIM_SEEDS", "0:4000")
SOAK_SEEDS = seed_range("RAFTKV_SOAK_SEEDS", "100000:110000")
SOAK_STEPS = int(os.environ.get("RAFTKV_SOAK_STEPS", "6000"))
BATCH = 50
SOAK_BATCH = 200


def _batches(seeds: range, size: int = BATCH) -> list[range]:
    return [range(lo, min(lo + size, seeds.stop)) for lo in range(seeds.start, seeds.stop, size)]


def run_seeds(seeds: range, steps: int | None = None) -> tuple[Stats, list[SimulationFailure]]:
    """Run every seed (a failure does not hide the next one); stats include failed runs."""
    total = Stats()
    failures: list[SimulationFailure] = []
    for seed in seeds:
        sim = Simulation(seed, steps=steps)
        try:
            sim.run()
        except SimulationFailure as exc:
            failures.append(exc)
        if sim.cluster is not None:
            total.merge(sim.cluster.stats)
    return total, failures


def check_seeds(seeds: range, steps: int | None = None) -> None:
    _, failures = run_seeds(seeds, steps)
    if failures:
        others = "".join(f"\n  seed {f.seed}: {f.replay}" for f in failures[1:])
        more = (
            f"\n\n{len(failures) - 1} more failing seed(s) in this batch:{others}" if others else ""
        )
        pytest.fail(f"{failures[0]}{more}", pytrace=False)


@pytest.mark.parametrize("seeds", _batches(CI_SEEDS), ids=lambda r: f"seeds{r.start}-{r.stop - 1}")
def test_random_schedules(seeds: range) -> None:
    check_seeds(seeds)


@pytest.mark.soak
@pytest.mark.parametrize(
    "seeds", _batches(SOAK_SEEDS, SOAK_BATCH), ids=lambda r: f"soak{r.start}-{r.stop - 1}"
)
def test_soak_schedules(seeds: range) -> None:
    check_seeds(seeds, steps=SOAK_STEPS)


def test_schedules_exercise_every_fault() -> None:
    """A simulator that never crashes, partitions or compacts proves nothing: guard the
    fault mix of a small fixed seed set against accidental regressions. (Failures of
    these seeds are the other tests' business.)"""
    s, _ = run_seeds(range(900_000, 900_040))
    assert s.elections >= 40
    assert s.crashes >= 40
    assert s.restarts >= 40
    assert s.partitions >= 20
    assert s.compactions >= 40
    assert s.snapshots_installed >= 5
    assert s.conf_changes_committed >= 10
    assert s.transfers >= 5
    assert s.reads_served >= 50
    assert s.entries_applied >= 1000


def test_replay_is_deterministic_across_processes() -> None:
    """The replay command must reproduce a CI run exactly: nothing may depend on the
    process (hash randomization, wall clock, global random state)."""
    root = Path(__file__).resolve().parents[2]
    runs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        r = subprocess.run(
            [sys.executable, "-m", "tests.sim", "--seed", "6", "--trace"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        runs.append((r.returncode, r.stdout, r.stderr))
    assert runs[0] == runs[1]
    assert runs[0][1].count("\n") > 1000  # a full trace, not an early exit
