"""Running ``kubectl`` and ``helm``: every call has a deadline and every child is reaped.

``subprocess.run`` with a timeout kills and waits for the child when the deadline
passes (or when pytest-timeout interrupts the test), so no call can hang the suite
and no zombie is left behind. API calls also carry ``--request-timeout`` so kubectl
itself gives up on a server that stopped answering.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from raftkv_e2e.config import CRD_NAME, E2EConfig

log = logging.getLogger("e2e.kubectl")

JSON = dict[str, Any]


class ToolError(RuntimeError):
    """A kubectl/helm call failed or timed out."""

    def __init__(self, argv: Sequence[str], message: str, returncode: int | None = None) -> None:
        super().__init__(f"`{' '.join(argv)}`: {message}")
        self.argv = list(argv)
        self.returncode = returncode


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Tool:
    """One command-line tool; ``run`` returns its output or raises :class:`ToolError`."""

    binary: str
    default_timeout: float = 120.0

    def run(
        self,
        *args: str,
        input: str | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        argv = [self.binary, *args]
        limit = self.default_timeout if timeout is None else timeout
        log.debug("$ %s", " ".join(argv))
        try:
            done = subprocess.run(
                argv,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ToolError(argv, f"no answer within {limit:g}s (killed)") from None
        except OSError as exc:
            raise ToolError(argv, f"cannot run: {exc}") from None
        result = Result(argv, done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise ToolError(argv, f"exit {done.returncode}: {_tail(done.stderr)}", done.returncode)
        return result


@dataclass(frozen=True)
class Kubectl(Tool):
    #: kubectl's own limit for one API request (``--request-timeout``).
    request_timeout: float = 30.0

    def api(self, *args: str, input: str | None = None, check: bool = True) -> Result:
        """A call that talks to the API server, bounded on both sides."""
        flag = f"--request-timeout={self.request_timeout:g}s"
        return self.run(*args, flag, input=input, timeout=self.request_timeout + 30, check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """The object, or None when it does not exist."""
        args = ["get", kind, name, "--ignore-not-found", "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        out = self.api(*args).stdout.strip()
        return json.loads(out) if out else None

    def list(
        self, kinds: str, namespace: str | None = None, selector: str | None = None
    ) -> list[JSON]:
        """Items of one or more kinds (``pods``, ``statefulsets,services``)."""
        args = ["get", kinds, "-o", "json"]
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        if selector:
            args += ["-l", selector]
        out = self.api(*args).stdout.strip()
        items: list[JSON] = json.loads(out).get("items", []) if out else []
        return items

    def apply(self, manifest: JSON | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.api(*args, input=text)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Ask for deletion; callers poll for the object to be gone (never ``--wait``)."""
        args = ["delete", kind, name, "--ignore-not-found", "--wait=false"]
        if namespace:
            args += ["-n", namespace]
        self.api(*args)

    def text(self, *args: str) -> str:
        """Best-effort output for diagnostics: never raises."""
        try:
            res = self.api(*args, check=False)
        except ToolError as exc:
            return f"({exc})"
        return res.stdout + (f"\n(stderr) {_tail(res.stderr, 5)}" if res.returncode else "")


def kubectl_for(config: E2EConfig) -> Kubectl:
    path = shutil.which(config.kubectl)
    if path is None:
        raise ToolError([config.kubectl], "not found")
    return Kubectl(path)


def helm_for(config: E2EConfig) -> Tool:
    path = shutil.which(config.helm)
    if path is None:
        raise ToolError([config.helm], "not found")
    return Tool(path, default_timeout=config.startup_timeout + 60)


# --------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class Probe:
    """Whether the suite can run here; ``reason`` says why not (the skip message)."""

    reason: str | None
    context: str = ""
    server: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


NO_KUBECONFIG = (
    "KUBECONFIG is not set: no Kubernetes cluster configured for the real-cluster e2e "
    "(point KUBECONFIG at kind, k3d, minikube or any cluster; see e2e/README.md)"
)


def probe_cluster(config: E2EConfig) -> Probe:
    """Decide quickly whether a cluster is configured and reachable.

    Never hangs: local kubeconfig reads first, then one ``/version`` request bounded by
    ``RAFTKV_E2E_CONNECT_TIMEOUT`` (kubectl's ``--request-timeout`` plus a hard kill).
    """
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        return Probe(NO_KUBECONFIG)
    paths = [p for p in kubeconfig.split(os.pathsep) if p]
    if not any(os.path.isfile(p) for p in paths):
        return Probe(f"KUBECONFIG={kubeconfig} names no existing file: no cluster configured")
    path = shutil.which(config.kubectl)
    if path is None:
        return Probe(
            f"kubectl not found ({config.kubectl!r}; put it on PATH or set RAFTKV_KUBECTL)"
        )
    limit = config.connect_timeout
    tool = Kubectl(path, default_timeout=limit + 5, request_timeout=limit)
    context, server = current_context(paths)
    if not context:
        return Probe(f"KUBECONFIG={kubeconfig} has no current context: no cluster configured")
    where = f"cluster {server or '?'} (context {context})"
    try:
        res = tool.run(
            "get",
            "--raw",
            "/version",
            f"--request-timeout={limit:g}s",
            timeout=3 * limit + 2,
            check=False,
        )
    except ToolError:
        return Probe(f"{where} did not answer within {limit:g}s", context, server)
    if res.returncode != 0:
        return Probe(f"{where} is unreachable: {_tail(res.stderr)}", context, server)
    try:
        version = json.loads(res.stdout).get("gitVersion", "?")
    except ValueError:
        return Probe(f"{where} answered /version with something else: {res.stdout[:200]!r}")
    try:
        can = tool.run(
            "auth",
            "can-i",
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            f"--request-timeout={limit:g}s",
            timeout=3 * limit + 2,
            check=False,
        )
    except ToolError as exc:
        return Probe(f"{where}: cannot check permissions: {exc}", context, server)
    if can.stdout.strip() != "yes":
        return Probe(
            f"{where} (Kubernetes {version}): the current user may not create "
            "CustomResourceDefinitions, and the suite installs raftkv cluster-wide",
            context,
            server,
        )
    try:
        existing = tool.run(
            "get",
            "crd",
            CRD_NAME,
            "--ignore-not-found",
            "-o",
            "name",
            f"--request-timeout={limit:g}s",
            timeout=3 * limit + 2,
        )
    except ToolError as exc:
        return Probe(f"{where}: cannot list CRDs: {exc}", context, server)
    if existing.stdout.strip():
        return Probe(
            f"{where}: raftkv is already installed (CRD {CRD_NAME} exists). The suite "
            "installs and uninstalls raftkv itself and never touches an existing "
            "installation; remove it first (kubectl delete -k manifests/, or helm uninstall "
            f"and kubectl delete crd {CRD_NAME}), e.g. after a run with RAFTKV_E2E_KEEP=1",
            context,
            server,
        )
    log.info("using %s, Kubernetes %s", where, version)
    return Probe(None, context, server)


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) if kept else "(no output)"


def current_context(paths: Sequence[str]) -> tuple[str, str]:
    """(current context, its cluster's server) from the kubeconfig files, merged the
    way kubectl merges ``KUBECONFIG`` (the first file to set a value wins). Read here
    rather than with ``kubectl config``, which some kubectl wrappers slow down by
    asking the server for its version first."""
    context = ""
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        context = context or str(doc.get("current-context") or "")
        for key, into in (("contexts", contexts), ("clusters", clusters)):
            for entry in doc.get(key) or []:
                if isinstance(entry, dict):
                    into.setdefault(str(entry.get("name")), entry.get(key[:-1]) or {})
    cluster = clusters.get(str((contexts.get(context) or {}).get("cluster")), {})
    return context, str(cluster.get("server") or "")
