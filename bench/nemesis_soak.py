"""Long nemesis soak in one command (needs root and iproute2, like tests/nemesis):

    sudo .venv/bin/python bench/nemesis_soak.py --fault-time 600 --seed 42 --out /tmp/soak

Starts a local cluster in network namespaces, runs the register workload while faults
are injected on a seeded schedule (tests/nemesis/nemesis.py), then checks the history.
Prints the summary and where history.jsonl, summary.txt and latency.png are. Exit status
0 when linearizable and the nemesis saw no liveness problem, 1 otherwise. Re-running with
the same seed replays the same fault schedule (the cluster's own timing still varies).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# The shared test helpers come from tests/ (pytest's pythonpath): run this with
# PYTHONPATH=tests, as `make bench-nemesis` does.
from nemesis.nemesis import FAULT_KINDS, NemesisConfig, run_nemesis
from nemesis.netns import netns_unavailable_reason


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fault-time", type=float, default=600.0, help="seconds of faults (600)")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--rate", type=float, default=60.0, help="ops/s cap over all clients")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS), help="fault kinds to draw from")
    p.add_argument("--check-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    reason = netns_unavailable_reason()
    if reason:
        print(f"cannot run the nemesis here: {reason}", file=sys.stderr)
        return 2
    out = args.out or Path(f"nemesis-soak-{args.seed}")
    cfg = NemesisConfig(
        seed=args.seed,
        members=args.members,
        fault_time=args.fault_time,
        clients=args.clients,
        keys=args.keys,
        rate=args.rate,
        kinds=tuple(k for k in args.kinds.split(",") if k),
        check_timeout=args.check_timeout,
    )
    print(f"nemesis soak: seed {cfg.seed}, {cfg.fault_time:g}s of faults -> {out}", flush=True)
    run = run_nemesis(out, cfg, title="raftkv nemesis soak")
    print(run.artifacts.summary_txt.read_text())
    print(f"history: {run.artifacts.history}\npicture: {run.artifacts.picture}")
    for e in run.errors:
        print(f"nemesis error: {e}", file=sys.stderr)
    return 0 if run.result.ok and not run.errors else 1


if __name__ == "__main__":
    sys.exit(main())
