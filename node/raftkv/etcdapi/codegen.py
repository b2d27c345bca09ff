"""Regenerate the Python code of etcd's protos (`proto/*.proto`) with grpcio-tools.

The generated `*_pb2.py` (and their `.pyi` stubs, for mypy) are committed, so that a
member needs only `protobuf` and `grpcio` at run time, not the compiler; a test
(`tests/etcdapi/test_codegen.py`) regenerates them into a temporary folder and checks
they are identical to the committed ones, so the two cannot drift.

    python -m raftkv.etcdapi.codegen        # rewrite node/raftkv/etcdapi/proto/*_pb2.py*

Only message code is generated: the services are registered by hand in
`etcdapi.services`, from one table, which needs no untyped generated stubs.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTOS = ("kv.proto", "auth.proto", "rpc.proto", "v3lock.proto", "v3election.proto")
"""In dependency order; the import path of each is raftkv/etcdapi/proto/<name>."""

NODE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the `raftkv` package (`node/`): protoc's include root, so
that generated imports read `from raftkv.etcdapi.proto import kv_pb2`."""


def generate(out_root: Path) -> list[Path]:
    """Write `raftkv/etcdapi/proto/*_pb2.py` and `*_pb2.pyi` under `out_root`; the
    files written. Raises RuntimeError when protoc fails."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    include = str(resources.files("grpc_tools") / "_proto")
    out_root.mkdir(parents=True, exist_ok=True)
    rel = [f"raftkv/etcdapi/proto/{name}" for name in PROTOS]
    args = [
        "protoc",
        f"-I{NODE_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        *rel,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    out = out_root / "raftkv" / "etcdapi" / "proto"
    return sorted(p for name in PROTOS for p in out.glob(name.removesuffix(".proto") + "_pb2.py*"))


def main() -> int:
    for path in generate(NODE_ROOT):
        print(path.relative_to(NODE_ROOT))
    return 0


if __name__ == "__main__":  # pragma: no cover - a developer's command
    sys.exit(main())
