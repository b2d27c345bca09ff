"""`raftkv verify`: a bounded linearizability check against a running cluster.

The same workload and checker the nemesis uses (`raftkv.verify.workload`), packaged so an
operator can ask "is my cluster linearizable right now?" without a test harness. It is
meant to be safe against production, which is why it:

- injects no faults, only client traffic;
- runs at a low, capped rate (default 10 ops/s over all clients) for a bounded time, and
  every request has a short timeout and a single attempt;
- touches only keys under its own fresh prefix (`__raftkv_verify__/<run id>/`), which
  nothing else can be using, and deletes them afterwards (best effort: a cleanup that
  cannot reach the cluster says so and names the prefix);
- bounds the check itself (`--check-timeout`); an inconclusive check is reported as
  UNKNOWN with a non-zero exit, never as OK.

Exit status: 0 linearizable, 1 violation, 3 unknown (inconclusive), 6 the cluster could not
be reached before the run, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from raftkv.cli import UsageError, add_tls_arguments, tls_kwargs
from raftkv.client import AsyncClient, RaftKVError
from raftkv.tls import client_ssl_context
from raftkv.verify.checker import check_history
from raftkv.verify.report import write_run
from raftkv.verify.result import Verdict
from raftkv.verify.workload import Recorder, WorkloadConfig, final_reads, run_workload

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_UNKNOWN = 3
EXIT_UNAVAILABLE = 6

PREFIX_ROOT = "__raftkv_verify__/"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """Parse "60s", "2m", "1.5h", "500ms" or plain seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 60s, 2m or 500ms")
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
    value = float(m.group(1)) * scale
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def _pos_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return v


def _pos_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftkv verify",
        description="Run a bounded, low-rate linearizability check (reads, writes, CAS) "
        "against a running cluster under a private key prefix, then check the history.",
    )
    p.add_argument(
        "--endpoints",
        default=os.environ.get(
            "RAFTKV_ENDPOINTS",
            "http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792",
        ),
        help="comma-separated client URLs; clients are spread over all of them",
    )
    p.add_argument("--duration", type=parse_duration, default=60.0, help="e.g. 60s, 5m")
    p.add_argument("--rate", type=_pos_float, default=10.0, help="ops/s over all clients (10)")
    p.add_argument("--clients", type=_pos_int, default=4, help="concurrent clients (4)")
    p.add_argument("--keys", type=_pos_int, default=4, help="keys in the run (4)")
    p.add_argument("--timeout", type=_pos_float, default=2.0, help="per-request timeout, s (2)")
    p.add_argument("--check-timeout", type=_pos_float, default=60.0, help="checker budget, s (60)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default ./raftkv-verify-<id>)"
    )
    p.add_argument("--keep-keys", action="store_true", help="do not delete the run's keys")
    add_tls_arguments(p)
    return p


async def _reachable(
    endpoints: Sequence[str], timeout: float, verify: ssl.SSLContext | bool = True
) -> bool:
    async with AsyncClient(endpoints, timeout=timeout, retries=0, verify=verify) as c:
        try:
            await c.status()
        except RaftKVError:
            return False
    return True


async def _cleanup(
    endpoints: Sequence[str], prefix: str, timeout: float, verify: ssl.SSLContext | bool = True
) -> str | None:
    """Delete every key under the run's prefix; None on success, else what went wrong."""
    try:
        async with AsyncClient(endpoints, timeout=timeout, retries=3, verify=verify) as c:
            while True:
                page = await c.list_page(prefix, 100)
                for kv in page.items:
                    await c.delete(kv.key)
                if not page.more:
                    return None
    except RaftKVError as exc:
        return str(exc)


def run(args: argparse.Namespace) -> int:
    endpoints = [e.strip() for e in str(args.endpoints).split(",") if e.strip()]
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    prefix = f"{PREFIX_ROOT}{run_id}/"
    out = args.out or Path(f"raftkv-verify-{run_id}")
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    keys = [f"{prefix}k{i}" for i in range(args.keys)]
    try:
        # One context for every client of the run; a bad file is named here, up front.
        tls = tls_kwargs(args)
        verify: ssl.SSLContext | bool = True
        if any(tls.values()):
            verify = client_ssl_context(tls["cacert"], tls["cert"], tls["key"])
        cfg = WorkloadConfig(
            endpoints=[e if "://" in e else "http://" + e for e in endpoints],
            keys=keys,
            clients=args.clients,
            duration=args.duration,
            rate=args.rate,
            timeout=args.timeout,
            seed=seed,
            value_prefix=f"{run_id}:",
            verify=verify,
        )
    except (ValueError, UsageError) as exc:  # tls.CertFileError is a ValueError
        print(f"raftkv verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not asyncio.run(_reachable(cfg.endpoints, args.timeout, verify)):
        print(f"raftkv verify: no endpoint answered: {', '.join(cfg.endpoints)}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    print(
        f"raftkv verify: {args.duration:g}s at <= {args.rate:g} ops/s, {args.clients} clients, "
        f"{len(keys)} keys under {prefix!r} (seed {seed})",
        flush=True,
    )
    rec = Recorder()
    started = time.monotonic()

    async def workload() -> str | None:
        try:
            await run_workload(cfg, rec)
            await final_reads(cfg.endpoints, keys, rec, timeout=args.timeout, verify=verify)
        finally:
            problem = None if args.keep_keys else await _cleanup(cfg.endpoints, prefix, 5.0, verify)
        return problem

    cleanup_problem = asyncio.run(workload())
    ops = rec.ops()
    result = check_history(ops, timeout_s=args.check_timeout)
    arts = write_run(
        out,
        ops,
        result,
        title=f"raftkv verify {run_id}",
        extra={"seed": seed, "prefix": prefix, "endpoints": cfg.endpoints},
    )
    counts = {s: sum(1 for op in ops if op.status.value == s) for s in ("ok", "fail", "info")}
    print(
        f"verdict: {result.verdict.value.upper()}  ({len(ops)} ops: ok {counts['ok']}, "
        f"fail {counts['fail']}, info {counts['info']}; {time.monotonic() - started:.1f}s)"
    )
    for kr in [*result.violations(), *result.unknown()]:
        print(f"  {kr.key}: {kr.verdict.value}: {kr.explanation}")
    print(f"history: {arts.history}")
    print(f"summary: {arts.summary_txt}")
    print(
        f"picture: {arts.picture}"
        if arts.picture
        else "picture: not drawn (install matplotlib for the latency/throughput plot)"
    )
    if cleanup_problem:
        print(
            f"warning: could not delete the keys under {prefix!r}: {cleanup_problem}",
            file=sys.stderr,
        )
    if result.verdict is Verdict.OK:
        return EXIT_OK
    if result.verdict is Verdict.VIOLATION:
        return EXIT_VIOLATION
    return EXIT_UNKNOWN


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `raftkv verify` (the top-level CLI passes its remaining arguments)."""
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
