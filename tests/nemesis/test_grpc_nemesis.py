"""The nemesis with its clients on etcd's v3 gRPC API (`grpc_nemesis.py`): the register
workload through KV Range/Put/DeleteRange/Txn and the watchers through Watch streams
must pass the same linearizability checker and watch checker as the HTTP run, and
serializable reads through it from a partitioned member must be flagged.

One seed in the default suite (RAFTKV_NEMESIS_SEED, default 1); the soak (`-m soak` or
RAFTKV_SOAK=1, see conftest.py) runs three more seeds for RAFTKV_NEMESIS_SOAK_SECONDS
each. Outputs go to pytest's tmp dir, or $RAFTKV_NEMESIS_OUT/<test> to keep them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from raftkv.verify import OpStatus, Verdict

from .grpc_nemesis import grpc_stale_read_plan, run_grpc_nemesis
from .nemesis import FAULT_KINDS, STALE_PROBE_KEY, NemesisConfig, NemesisRun, stale_read_config
from .netns import netns_unavailable_reason

_REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"nemesis: {_REASON}")

_SEED = int(os.environ.get("RAFTKV_NEMESIS_SEED", "1"))


def _out(tmp_path: Path, name: str) -> Path:
    base = os.environ.get("RAFTKV_NEMESIS_OUT")
    return Path(base) / name if base else tmp_path / name


def _describe(run: NemesisRun) -> str:
    arts = run.artifacts
    return f"\n{arts.summary_txt.read_text()}\nhistory: {arts.history}\npicture: {arts.picture}"


@pytest.mark.timeout(240)
def test_grpc_nemesis_run_is_linearizable(tmp_path: Path) -> None:
    cfg = NemesisConfig(seed=_SEED, fault_time=55.0)
    run = run_grpc_nemesis(_out(tmp_path, "grpc-nemesis-ci"), cfg)
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.OK, why
    # A verdict over a history with no evidence would prove nothing.
    ok = [op for op in run.ops if op.status is OpStatus.OK]
    assert len(ok) > 1000, why
    assert {f.kind for f in run.faults} == set(FAULT_KINDS), why
    # The gRPC watchers (checked in run.errors: every acknowledged write seen once, in
    # order, ending at the final state) saw the run and moved between members.
    assert len(run.watchers) == 6, why
    assert all(len(w.events) > 500 for w in run.watchers), why
    assert sum(w.reconnects for w in run.watchers) > 0, why


@pytest.mark.timeout(120)
def test_grpc_serializable_reads_from_a_partitioned_member_are_flagged(tmp_path: Path) -> None:
    """The gRPC path can fail the check: serializable Ranges (the workload's and a probe
    on a partitioned member's etcd port) are recorded, and the checker flags them."""
    run = run_grpc_nemesis(
        _out(tmp_path, "grpc-nemesis-stale"),
        stale_read_config(),
        grpc_stale_read_plan,
        title="raftkv nemesis over etcd gRPC (serializable reads, must fail)",
    )
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.VIOLATION, why
    k0 = run.result.per_key[STALE_PROBE_KEY]
    assert k0.verdict is Verdict.VIOLATION, why
    assert k0.explanation, why


@pytest.mark.soak
@pytest.mark.timeout(0)
@pytest.mark.parametrize("offset", [1, 2, 3])
def test_grpc_nemesis_soak(tmp_path: Path, offset: int) -> None:
    seconds = float(os.environ.get("RAFTKV_NEMESIS_SOAK_SECONDS", "900"))
    cfg = replace(
        NemesisConfig(seed=_SEED + offset), fault_time=seconds, keys=8, check_timeout=900.0
    )
    run = run_grpc_nemesis(_out(tmp_path, f"grpc-nemesis-soak-{cfg.seed}"), cfg)
    why = _describe(run)
    assert not run.errors, f"nemesis problems: {run.errors}{why}"
    assert run.result.verdict is Verdict.OK, why
