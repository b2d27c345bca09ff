"""Seed sets of the simulator tests, overridable from the environment.

RAFTKV_SIM_SEEDS=A:B   seeds of the CI set (default 0:4000)
RAFTKV_SOAK_SEEDS=A:B  seeds of the soak set (default 100000:110000); the soak set only
                       runs when selected with `-m soak` or RAFTKV_SOAK=1, so a plain
                       `pytest` stays within the CI budget.
RAFTKV_SOAK_STEPS=N    chaos-phase events per soak schedule (default 6000)
"""

from __future__ import annotations

import os

import pytest

# The scripted schedules shared by several test modules live in harness.py: keep
# pytest's assertion messages for their asserts.
pytest.register_assert_rewrite("sim.harness")


def seed_range(var: str, default: str) -> range:
    a, _, b = os.environ.get(var, default).partition(":")
    return range(int(a), int(b))


def soak_selected(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("-m") or "")
    selected = "soak" in markexpr and "not soak" not in markexpr
    return selected or bool(os.environ.get("RAFTKV_SOAK"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if soak_selected(config):
        return
    skip = pytest.mark.skip(reason="soak set: run with `-m soak` (make soak) or RAFTKV_SOAK=1")
    for item in items:
        if "soak" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)
