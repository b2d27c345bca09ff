"""Shared set-up of the shipping checks: the tools (helm, kubectl, hadolint) and the
repository's generators under scripts/, which these tests import by module name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = str(REPO / "scripts")
# The apiserver stand-in's CRD checks (crd_schema, structural) live with the operator
# tests; the shipping checks put what helm and kubectl render through them too.
OPERATOR_TESTS = str(REPO / "tests" / "operator")
for folder in (SCRIPTS, OPERATOR_TESTS):
    if folder not in sys.path:
        sys.path.insert(0, folder)

import devtools  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds a wheel and installs it with its dependencies (~20-40 s)"
    )


@pytest.fixture(scope="session")
def helm() -> Path:
    return devtools.helm()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return devtools.kubectl()


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return devtools.hadolint()
