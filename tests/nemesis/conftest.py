"""The nemesis needs root and iproute2 (network namespaces); without them its tests skip
with the reason. The soak (`-m soak`, or RAFTKV_SOAK=1) is skipped by default.

The same run with its clients on etcd's gRPC API is test_grpc_nemesis.py: one seed in
the default suite, three more (seed + 1..3) in the soak.

RAFTKV_NEMESIS_SEED=N         seed of the CI-sized run (default 1)
RAFTKV_NEMESIS_SOAK_SECONDS=N fault time of the soak (default 900)
RAFTKV_NEMESIS_OUT=DIR        keep the runs' outputs there instead of pytest's tmp dir
"""

from __future__ import annotations

import os

import pytest


def _soak_selected(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("-m") or "")
    return ("soak" in markexpr and "not soak" not in markexpr) or bool(
        os.environ.get("RAFTKV_SOAK")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _soak_selected(config):
        return
    skip = pytest.mark.skip(reason="nemesis soak: run with `-m soak` or RAFTKV_SOAK=1")
    for item in items:
        if "soak" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)
