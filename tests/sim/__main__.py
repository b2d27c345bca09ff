"""Replay or soak simulator schedules from the command line.

    python -m tests.sim --seed 1234 --trace     # replay one schedule with its event log
    python -m tests.sim --seeds 0:5000          # run a range, report failures and speed

Exit status is 1 if any schedule failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cluster import Stats
from .schedule import Simulation, SimulationFailure
from .trace import Trace


def _range(text: str) -> range:
    a, _, b = text.partition(":")
    return range(int(a), int(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sel = ap.add_mutually_exclusive_group(required=True)
    sel.add_argument("--seed", type=int, help="run one schedule")
    sel.add_argument("--seeds", type=_range, metavar="A:B", help="run seeds A..B-1")
    ap.add_argument("--nodes", type=int, choices=(3, 5), help="cluster size (default: from seed)")
    ap.add_argument("--steps", type=int, help="events in the chaos phase")
    mem = ap.add_mutually_exclusive_group()
    mem.add_argument(
        "--membership",
        dest="membership",
        action="store_true",
        default=None,
        help="force membership changes on",
    )
    mem.add_argument(
        "--no-membership",
        dest="membership",
        action="store_false",
        help="force membership changes off",
    )
    ap.add_argument("--trace", action="store_true", help="print the event log")
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first failure")
    args = ap.parse_args(argv)

    seeds = range(args.seed, args.seed + 1) if args.seed is not None else args.seeds
    total = Stats()
    failed: list[SimulationFailure] = []
    started = time.perf_counter()
    ran = 0
    for seed in seeds:
        sim = Simulation(
            seed,
            args.nodes,
            membership=args.membership,
            steps=args.steps,
            trace=Trace.to_stdout() if args.trace else None,
        )
        ran += 1
        try:
            res = sim.run()
        except SimulationFailure as exc:
            print(exc, file=sys.stderr)
            failed.append(exc)
            if not args.keep_going and len(seeds) > 1:
                break
            continue
        total.merge(res.stats)
        if len(seeds) == 1:
            s = res.stats
            print(f"seed {seed}: ok; {res.profile.describe()}")
            print(
                f"  events={s.events} t={res.end_time} leaders={res.leaders} "
                f"committed={res.committed} applied={s.entries_applied} "
                f"proposals={s.proposals} (refused {s.proposals_refused}) reads={s.reads} "
                f"(served {s.reads_served}) crashes={s.crashes} compactions={s.compactions} "
                f"snapshots sent={s.snapshots_sent} conf changes={s.conf_changes_committed} "
                f"members={list(res.members_final)} converged in {res.converged_at}"
            )
    elapsed = time.perf_counter() - started
    if len(seeds) > 1:
        print(
            f"{ran} schedules in {elapsed:.1f}s ({ran / elapsed:.1f}/s); "
            f"{len(failed)} failed: {[f.seed for f in failed]}"
        )
        print(
            f"  totals: events={total.events} elections={total.elections} "
            f"applied={total.entries_applied} crashes={total.crashes} "
            f"compactions={total.compactions} snapshots sent={total.snapshots_sent} "
            f"installed={total.snapshots_installed} conf changes={total.conf_changes_committed} "
            f"reads served={total.reads_served} errors={total.errors}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
