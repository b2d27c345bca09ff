"""The suite's settings, all from environment variables (see ``e2e/README.md``)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

#: Installation defaults fixed by ``manifests/`` (rendered with release ``raftkv`` in
#: namespace ``raftkv-system``); the Helm path uses the same names.
OPERATOR_NAMESPACE = "raftkv-system"
RELEASE = "raftkv"
OPERATOR_DEPLOYMENT = "raftkv-operator"
OPERATOR_CONTAINER = "operator"
CRD_NAME = "raftkvs.raftkv.dev"
MEMBER_REVISION_LABEL = "raftkv.dev/member-revision"
"""The pod label the operator sets to the member revision (pod template hash) a pod
runs; `status.rollout.targetRevision` is the one the spec renders."""
#: The name of the RaftKV the suite creates (pods ``kv-0``.., Service ``kv-client``).
RAFTKV_NAME = "kv"

INSTALL_METHODS = ("manifests", "helm")


class ConfigError(ValueError):
    """A setting has a value the suite cannot use (a usage error, not a skip)."""


@dataclass(frozen=True)
class E2EConfig:
    kubeconfig: str | None
    kubectl: str
    helm: str
    image: str
    pull_policy: str
    install: str
    namespace: str
    namespace_generated: bool
    keep: bool
    timeout: float
    startup_timeout: float
    connect_timeout: float
    test_timeout: float
    write_rate: float
    storage_class: str | None
    operator_namespace: str
    release: str
    repo_root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> E2EConfig:
        env = os.environ if env is None else env
        install = env.get("RAFTKV_E2E_INSTALL", "manifests").strip() or "manifests"
        if install not in INSTALL_METHODS:
            raise ConfigError(
                f"RAFTKV_E2E_INSTALL={install!r}: expected one of {', '.join(INSTALL_METHODS)}"
            )
        pull_policy = env.get("RAFTKV_E2E_PULL_POLICY", "IfNotPresent").strip()
        if pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(
                f"RAFTKV_E2E_PULL_POLICY={pull_policy!r}: expected Always, IfNotPresent or Never"
            )
        image = env.get("RAFTKV_E2E_IMAGE", "raftkv:e2e").strip()
        if not image:
            raise ConfigError("RAFTKV_E2E_IMAGE is empty")
        namespace = env.get("RAFTKV_E2E_NAMESPACE", "").strip()
        generated = not namespace
        if generated:
            namespace = f"raftkv-e2e-{secrets.token_hex(3)}"
        return cls(
            kubeconfig=env.get("KUBECONFIG") or None,
            kubectl=env.get("RAFTKV_KUBECTL") or "kubectl",
            helm=env.get("RAFTKV_HELM") or "helm",
            image=image,
            pull_policy=pull_policy,
            install=install,
            namespace=namespace,
            namespace_generated=generated,
            keep=_flag(env.get("RAFTKV_E2E_KEEP", "")),
            timeout=_positive(env, "RAFTKV_E2E_TIMEOUT", 600),
            startup_timeout=_positive(env, "RAFTKV_E2E_STARTUP_TIMEOUT", 900),
            connect_timeout=_positive(env, "RAFTKV_E2E_CONNECT_TIMEOUT", 5),
            test_timeout=_positive(env, "RAFTKV_E2E_TEST_TIMEOUT", 3600),
            write_rate=_positive(env, "RAFTKV_E2E_WRITE_RATE", 10),
            storage_class=env.get("RAFTKV_E2E_STORAGE_CLASS") or None,
            operator_namespace=env.get("RAFTKV_E2E_OPERATOR_NAMESPACE") or OPERATOR_NAMESPACE,
            release=env.get("RAFTKV_E2E_RELEASE") or RELEASE,
            repo_root=REPO_ROOT,
        )

    @property
    def manifests_dir(self) -> Path:
        return self.repo_root / "manifests"

    @property
    def chart_dir(self) -> Path:
        return self.repo_root / "charts" / "raftkv"

    def binary(self, name: str) -> str | None:
        """The full path of ``kubectl``/``helm`` as configured, or None if not found."""
        return shutil.which(self.kubectl if name == "kubectl" else self.helm)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` → (repository, tag) for the chart's ``image.repository/tag``.

    A registry port (``localhost:5000/raftkv``) is not a tag; a digest reference cannot
    be expressed as a tag and is refused."""
    if "@" in image:
        raise ConfigError(f"RAFTKV_E2E_IMAGE={image!r}: use a tag, not a digest")
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        repository, tag = image[:colon], image[colon + 1 :]
        if not repository or not tag:
            raise ConfigError(f"RAFTKV_E2E_IMAGE={image!r} is not an image reference")
        return repository, tag
    return image, "latest"
