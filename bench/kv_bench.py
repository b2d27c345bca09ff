"""raftkv versus etcd 3.4 on this machine: a local three-member cluster of each, driven
by the same load generator (bench/loadgen.py, in its own process) in the same run.

Prints writes/s and p50/p99 latency for PUT (100-byte values) at 1, 16 and 64 clients,
linearizable and serializable GET at 64 clients, txn (compare mod_revision, then put:
etcd's compare-and-swap) at 64 clients, a linearizable range of 1,000 keys at 16
clients, each raftkv member's peak RSS, and the raftkv/etcd ratio. etcd comes from
Debian's `etcd-server` package (`apt-get install etcd-server`); without it the etcd
columns are skipped. Figures only: nothing here passes or fails.

    python bench/kv_bench.py [--seconds 5] [--skip-etcd]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The clusters (and the member spawner of tests/support they use): run this with
# PYTHONPATH=tests, as `make bench-kv` does.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clusters import Cluster, start_etcd, start_raftkv, wait_http

__all__ = ["Cluster", "start_etcd", "start_raftkv", "wait_http"]

HERE = Path(__file__).resolve().parent
CASES = [
    ("put", 1),
    ("put", 16),
    ("put", 64),
    ("get-lin", 64),
    ("get-ser", 64),
    ("txn", 64),
    ("range1k", 16),
]


def load(
    system: str, endpoints: list[str], op: str, clients: int, seconds: float
) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            "--system",
            system,
            "--endpoints",
            ",".join(endpoints),
            "--op",
            op,
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--skip-etcd", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="raftkv-bench-"))
    results: dict[tuple[str, str, int], dict[str, object]] = {}
    rss: list[float] = []
    try:
        systems = ["raftkv"] if args.skip_etcd else ["raftkv", "etcd"]
        for system in systems:
            cluster = start_raftkv(root) if system == "raftkv" else start_etcd(root)
            if cluster is None:
                print("etcd not installed (apt-get install etcd-server): skipping etcd")
                continue
            try:
                for op, n in CASES:
                    results[(system, op, n)] = load(system, cluster.endpoints, op, n, args.seconds)
                if system == "raftkv":
                    rss = cluster.peak_rss_mb()
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"3-member clusters on 127.0.0.1, {os.cpu_count()} cores, {args.seconds:.0f} s per case, "
        "100-byte values, load generator in its own process"
    )
    print(
        f"{'case':<22} {'raftkv ops/s':>12} {'p50 ms':>8} {'p99 ms':>8}   "
        f"{'etcd ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}  ratio"
    )
    for op, n in CASES:
        r = results.get(("raftkv", op, n), {})
        e = results.get(("etcd", op, n), {})
        ratio = ""
        if r and e and float(e["ops_per_s"]) > 0:  # type: ignore[arg-type]
            ratio = f"{float(r['ops_per_s']) / float(e['ops_per_s']):.2f}"  # type: ignore[arg-type]
        print(
            f"{op + ' x' + str(n):<22} {r.get('ops_per_s', '-'):>12} {r.get('p50_ms', '-'):>8} "
            f"{r.get('p99_ms', '-'):>8}   {e.get('ops_per_s', '-'):>10} {e.get('p50_ms', '-'):>8} "
            f"{e.get('p99_ms', '-'):>8}  {ratio}"
        )
        errs = (r.get("errors", 0), e.get("errors", 0))
        if any(errs):
            print(f"    errors: raftkv {errs[0]}, etcd {errs[1]}")
    if rss:
        print("raftkv peak RSS per member (MB): " + ", ".join(f"{x:.0f}" for x in rss))


if __name__ == "__main__":
    main()
