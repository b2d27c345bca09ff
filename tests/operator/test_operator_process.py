"""``raftkv operator`` as a real process: it must stop on SIGTERM/SIGINT, promptly, with 0.

The in-thread harness (``OperatorThread``) stops kopf through ``stop_flag`` and so never
exercises the signal path the Deployment relies on; a regression there (the command
line once handed kopf a ``threading.Event`` nobody set, and asyncio's shutdown then
waited on it forever) only showed on a cluster as a 30 s grace period ending in
SIGKILL. Here the operator is the console script, found through a kubeconfig, against
the same Kubernetes stand-in the other operator tests use.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv_operator.crd import REVISION_ANNOTATION
from raftkv_operator.main import CHATTY_LOGGERS, EXIT_REFUSED, configure_logging
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.crd_schema import load_crd
from support.kube_emulator import EmulatorThread, KubeEmulator
from support.members import free_port
from support.operator_harness import NS, crd_schema, start_emulator
from support.structural import check_crd
from support.wait import wait_for

#: Far below the kubelet's 30 s grace period; a clean stop takes well under a second.
STOP_WITHIN = 10.0


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig without credentials: what both the kubernetes client (the
    operator's writes) and kopf's default login (its watches) read outside a cluster."""
    path.write_text(
        f"""\
apiVersion: v1
kind: Config
clusters:
  - name: emulator
    cluster: {{server: "{server}"}}
users:
  - name: anonymous
    user: {{}}
contexts:
  - name: emulator
    context: {{cluster: emulator, user: anonymous, namespace: {NS}}}
current-context: emulator
"""
    )
    return path


def operator_command() -> list[str]:
    """The installed console script, as the image runs it; ``-m`` if it is missing."""
    script = Path(sys.executable).with_name("raftkv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "raftkv.cli"]


def operator_env(kubeconfig: Path) -> dict[str, str]:
    """This environment, minus whatever could point the operator elsewhere: in-cluster
    credentials (a CI runner in a pod) and a log level other than the default."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KUBERNETES_SERVICE_", "RAFTKV_OPERATOR_"))
    }
    return env | {"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}


def raftkv() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {"replicas": 1, "image": "raftkv:test"},
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_stops_the_operator_promptly(sig: signal.Signals, tmp_path: Path) -> None:
    log_path = tmp_path / "operator.log"
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    with start_emulator() as server, log_path.open("wb") as log_file:
        argv = [*operator_command(), "operator", "--metrics-port", "0", "--liveness", liveness]
        proc = subprocess.Popen(
            [*argv, "--interval", "0.2"],  # timer passes back to back: one is always due
            env=operator_env(write_kubeconfig(tmp_path / "kubeconfig", server.url)),
            stdout=log_file,  # a file, not a pipe nobody drains while the operator runs
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a ^C on pytest must not reach it first
        )
        try:

            def operator_log() -> str:
                return log_path.read_text(errors="replace")

            def healthy() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"exited {proc.returncode}:\n{operator_log()}")
                try:
                    with urllib.request.urlopen(liveness, timeout=1) as answer:
                        return bool(answer.status == 200)
                except OSError:  # not listening yet (URLError, connection reset, ...)
                    return False

            wait_for("the operator's liveness endpoint", healthy, ignore=ApiException)

            # A RaftKV, reconciled through both clients: its StatefulSet shows that kopf
            # logged in and watches, and that the kubernetes client writes.
            with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
                custom = kubernetes.client.CustomObjectsApi(api)
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv())
                apps = kubernetes.client.AppsV1Api(api)
                wait_for(
                    "the StatefulSet",
                    lambda: apps.read_namespaced_stateful_set("kv", NS),
                    ignore=ApiException,
                )

            started = time.monotonic()
            proc.send_signal(sig)
            try:
                code = proc.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"still running {STOP_WITHIN}s after {sig.name}:\n{operator_log()}"
                ) from None
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert not server.emulator.errors, server.emulator.errors

    output = operator_log()
    assert code == 0, output
    assert took < STOP_WITHIN, output
    assert f"Signal {sig.name} is received" in output, output
    assert "Traceback" not in output, output
    # Per-request lines are off at the default level: no member-probe requests (httpx)
    # and not one of the liveness probes just answered (aiohttp.access).
    assert "HTTP Request:" not in output, output
    assert "GET /healthz" not in output, output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide levels; put them back for other tests."""
    names = ["", *CHATTY_LOGGERS]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_libraries_log_requests_only_at_debug() -> None:
    configure_logging("INFO")
    for name in ("raftkv.operator", "raftkv.operator.reconcile", "kopf", "kopf.objects"):
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name
    for name in (*CHATTY_LOGGERS, "httpx._client", "urllib3.connectionpool"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name

    configure_logging("DEBUG")  # RAFTKV_OPERATOR_LOG_LEVEL=DEBUG / --log-level debug
    for name in ("raftkv.operator", "kopf", *CHATTY_LOGGERS):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_an_older_crd_stops_the_operator_at_start_with_exit_2(tmp_path: Path) -> None:
    """After ``helm upgrade`` the CRD can be the previous release's (helm never
    upgrades crds/): the operator must say so and exit, not run against it."""
    old = load_crd()
    del old["metadata"]["annotations"][REVISION_ANNOTATION]  # the first release had none
    emulator = KubeEmulator()
    emulator.register_crd(old, crd_schema, check_crd)
    log_path = tmp_path / "operator.log"
    with EmulatorThread(emulator) as server, log_path.open("wb") as log_file:
        argv = [*operator_command(), "operator", "--metrics-port", "0", "--liveness", ""]
        proc = subprocess.Popen(
            argv,
            env=operator_env(write_kubeconfig(tmp_path / "kubeconfig", server.url)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    output = log_path.read_text(errors="replace")
    assert code == EXIT_REFUSED, output
    assert "the operator cannot run: the installed CustomResourceDefinition" in output, output
    assert "kubectl apply --server-side" in output, output
    assert "Traceback" not in output, output
