"""The real-cluster end-to-end suite: fixtures, skip rules and failure reports.

Opt-in and never collected by ``make test`` (``e2e/`` is outside ``testpaths``). Run it
with ``make e2e-cluster`` or ``.venv/bin/pytest e2e/cluster -v``; without a reachable
cluster in ``KUBECONFIG`` every test is skipped with the reason, within seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator

import pytest

# raftkv_e2e (next to this file) is importable: e2e/cluster is on pytest's pythonpath.
from raftkv_e2e.cluster import Scenario
from raftkv_e2e.config import ConfigError, E2EConfig
from raftkv_e2e.kubectl import (
    NO_KUBECONFIG,
    Kubectl,
    current_context,
    kubectl_for,
    probe_cluster,
)

_FAILED_STEP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end suites under e2e/ (opt-in)")
    # One INFO line per HTTP request would drown the suite's own progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def pytest_report_header(config: pytest.Config) -> list[str]:
    env = os.environ
    kubeconfig = env.get("KUBECONFIG", "")
    context, server = current_context([p for p in kubeconfig.split(os.pathsep) if p])
    target = f"context {context} at {server}" if context else "no cluster"
    return [
        "raftkv cluster e2e: KUBECONFIG={} ({}); install={} image={} namespace={}".format(
            kubeconfig or "(unset)",
            target,
            env.get("RAFTKV_E2E_INSTALL") or "manifests",
            env.get("RAFTKV_E2E_IMAGE") or "raftkv:e2e",
            env.get("RAFTKV_E2E_NAMESPACE") or "(generated)",
        )
    ]


@pytest.fixture(scope="session")
def e2e_config() -> E2EConfig:
    """The settings, once a reachable cluster is known to be configured (else skip)."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip(NO_KUBECONFIG)
    try:
        config = E2EConfig.from_env()
    except ConfigError as exc:
        pytest.fail(f"bad e2e setting: {exc}", pytrace=False)
    probe = probe_cluster(config)
    if not probe.ok:
        pytest.skip(probe.reason or "no cluster")
    if config.install == "helm" and config.binary("helm") is None:
        pytest.skip(f"RAFTKV_E2E_INSTALL=helm but helm not found ({config.helm!r}; RAFTKV_HELM)")
    return config


@pytest.fixture(scope="session")
def kubectl(e2e_config: E2EConfig) -> Kubectl:
    return kubectl_for(e2e_config)


@pytest.fixture(scope="module")
def scenario(e2e_config: E2EConfig, kubectl: Kubectl) -> Iterator[Scenario]:
    """The operator installed (the way RAFTKV_E2E_INSTALL says) for the module; at the
    end everything the run created is removed unless RAFTKV_E2E_KEEP=1."""
    run = Scenario(e2e_config, kubectl)
    try:
        run.installer.install()
    except BaseException:
        try:
            run.close()
        except AssertionError as exc:
            logging.getLogger("e2e").error("%s", exc)
        raise
    yield run
    run.close()


# --------------------------------------------------------------------------- steps


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The tests are the steps of one story: after a failed step, the rest are skipped
    (the fixture still cleans up), and a failure report carries the cluster's state."""
    report: pytest.TestReport = yield
    if report.failed and call.when in ("setup", "call") and item.parent is not None:
        item.parent.stash.setdefault(_FAILED_STEP, item.name)
        run = getattr(item, "funcargs", {}).get("scenario")
        if isinstance(run, Scenario) and call.when == "call":
            try:
                text = run.diagnostics()
            except Exception as exc:  # a report must never break the run
                text = f"(diagnostics failed: {exc!r})"
            report.sections.append(("raftkv cluster state", text))
    return report


def pytest_runtest_setup(item: pytest.Item) -> None:
    failed = item.parent.stash.get(_FAILED_STEP, None) if item.parent is not None else None
    if failed is not None:
        pytest.skip(f"an earlier step failed: {failed}")
