"""The nemesis with its clients on etcd's v3 gRPC API (`grpc_nemesis.py`): the register
workload through KV Range/Put/DeleteRange/Txn and the watchers through Watch streams
must pass the same linearizability checker and watch checker as the HTTP run (the same
assertions, `expect.py`), and serializable reads through it from a partitioned member
must be flagged.

One seed in the default suite (RAFTKV_NEMESIS_SEED, default 1); the soak (`-m soak` or
RAFTKV_SOAK=1, see conftest.py) runs three more seeds for RAFTKV_NEMESIS_SOAK_SECONDS
each. Outputs go to pytest's tmp dir, or $RAFTKV_NEMESIS_OUT/<test> to keep them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from . import expect
from .grpc_nemesis import grpc_stale_read_plan, run_grpc_nemesis
from .nemesis import NemesisConfig, stale_read_config

pytestmark = expect.NEEDS_NETNS


@pytest.mark.timeout(240)
def test_grpc_nemesis_run_is_linearizable(tmp_path: Path) -> None:
    cfg = NemesisConfig(seed=expect.SEED, fault_time=55.0)
    expect.assert_full_run(run_grpc_nemesis(expect.out_dir(tmp_path, "grpc-nemesis-ci"), cfg))


@pytest.mark.timeout(120)
def test_grpc_serializable_reads_from_a_partitioned_member_are_flagged(tmp_path: Path) -> None:
    """The gRPC path can fail the check: serializable Ranges (the workload's and a probe
    on a partitioned member's etcd port) are recorded, and the checker flags them."""
    run = run_grpc_nemesis(
        expect.out_dir(tmp_path, "grpc-nemesis-stale"),
        stale_read_config(),
        grpc_stale_read_plan,
        title="raftkv nemesis over etcd gRPC (serializable reads, must fail)",
    )
    expect.assert_stale_read_flagged(run)


@pytest.mark.soak
@pytest.mark.timeout(0)
@pytest.mark.parametrize("offset", [1, 2, 3])
def test_grpc_nemesis_soak(tmp_path: Path, offset: int) -> None:
    cfg = replace(
        NemesisConfig(seed=expect.SEED + offset),
        fault_time=expect.SOAK_SECONDS,
        keys=8,
        check_timeout=900.0,
    )
    run = run_grpc_nemesis(expect.out_dir(tmp_path, f"grpc-nemesis-soak-{cfg.seed}"), cfg)
    expect.assert_linearizable(run)
