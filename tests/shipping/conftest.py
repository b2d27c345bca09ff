"""Shared set-up of the shipping checks: the tools (helm, kubectl, hadolint).

The repository's generators under scripts/ are imported by module name (``devtools``,
``render_manifests``: scripts/ is on pytest's ``pythonpath``), and what helm and kubectl
render goes through the apiserver stand-in's CRD checks (``support.crd_schema``,
``support.structural``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import devtools

# rbac.py's checks of a rendered Role are asserts: keep pytest's messages for them.
pytest.register_assert_rewrite("shipping.rbac")


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
