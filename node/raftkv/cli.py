"""The `raftkv` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftkv", description=__doc__)
    p.add_argument("--version", action="version", version=f"raftkv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="run a simulated three-member cluster in-process")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
