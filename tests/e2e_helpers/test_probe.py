"""Deciding whether a cluster is there: fast, with the reason, never hanging."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from raftkv_e2e.config import E2EConfig
from raftkv_e2e.kubectl import NO_KUBECONFIG, current_context, probe_cluster

from .conftest import E2E_CLUSTER

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: kind-raftkv
contexts:
- name: kind-raftkv
  context: {cluster: kind-raftkv, user: kind-raftkv}
clusters:
- name: kind-raftkv
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: kind-raftkv
  user: {token: t}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def config(kubectl: str, connect_timeout: float = 5) -> E2EConfig:
    return E2EConfig.from_env(
        {"RAFTKV_KUBECTL": kubectl, "RAFTKV_E2E_CONNECT_TIMEOUT": str(connect_timeout)}
    )


def test_no_kubeconfig(monkeypatch: pytest.MonkeyPatch, fake_kubectl: str) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert probe_cluster(config(fake_kubectl)).reason == NO_KUBECONFIG
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/config")
    assert "names no existing file" in (probe_cluster(config(fake_kubectl)).reason or "")


def test_no_kubectl(kubeconfig: Path) -> None:
    assert "kubectl not found" in (probe_cluster(config("/nonexistent/kubectl")).reason or "")


def test_reachable_cluster(kubeconfig: Path, fake_kubectl: str) -> None:
    probe = probe_cluster(config(fake_kubectl))
    assert probe.ok, probe.reason
    assert (probe.context, probe.server) == ("kind-raftkv", "https://127.0.0.1:6443")


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FAKE_VERSION": "refused"}, "is unreachable: The connection to the server"),
        ({"FAKE_CAN_I": "no"}, "may not create CustomResourceDefinitions"),
        ({"FAKE_CRD_EXISTS": "1"}, "already installed"),
    ],
)
def test_reasons_to_skip(
    kubeconfig: Path,
    fake_kubectl: str,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    reason: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    probe = probe_cluster(config(fake_kubectl))
    assert probe.reason is not None
    assert reason in probe.reason
    assert "cluster https://127.0.0.1:6443 (context kind-raftkv)" in probe.reason


def test_a_server_that_never_answers_is_given_up_on(
    kubeconfig: Path, fake_kubectl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubectl's own --request-timeout is the first line of defence; this stand-in
    # ignores it, so the hard deadline (and the kill) is what ends the wait.
    monkeypatch.setenv("FAKE_VERSION", "hang")
    started = time.monotonic()
    probe = probe_cluster(config(fake_kubectl, connect_timeout=0.1))
    assert "did not answer within 0.1s" in (probe.reason or "")
    assert time.monotonic() - started < 10


def test_current_context_merges_kubeconfig_files(tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.write_text("apiVersion: v1\nkind: Config\ncurrent-context: ctx\n")
    second = tmp_path / "b"
    second.write_text(KUBECONFIG.replace("kind-raftkv", "ctx"))
    assert current_context([str(first), str(second)]) == ("ctx", "https://127.0.0.1:6443")
    assert current_context([str(tmp_path / "missing")]) == ("", "")


def test_the_suite_is_collected_and_skipped_without_a_cluster() -> None:
    """``pytest e2e/cluster`` on a machine with no cluster: every step is collected and
    reported as skipped, with the reason, in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(E2E_CLUSTER), "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=E2E_CLUSTER.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ skipped in [\d.]+s", summary), done.stdout
    assert "KUBECONFIG is not set" in done.stdout
    assert time.monotonic() - started < 60
