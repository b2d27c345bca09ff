"""The suite's settings, all from environment variables (see ``e2e/README.md``)."""

from __future__ import annotations

import os
import re
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


#: The S3 settings: all of the first four, or none (the backup then targets a PVC).
S3_REQUIRED = (
    "RAFTKV_E2E_S3_ENDPOINT",
    "RAFTKV_E2E_S3_BUCKET",
    "RAFTKV_E2E_S3_ACCESS_KEY_ID",
    "RAFTKV_E2E_S3_SECRET_ACCESS_KEY",
)


@dataclass(frozen=True)
class S3Target:
    """An S3-compatible store the backup Job and the restore can reach *from inside the
    cluster* (the endpoint is used by pods, not by the suite)."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = ""
    prefix: str = "raftkv-e2e"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Target | None:
        values = {k: env.get(k, "").strip() for k in S3_REQUIRED}
        given = [k for k, v in values.items() if v]
        if not given:
            return None
        missing = [k for k, v in values.items() if not v]
        if missing:
            raise ConfigError(
                f"an S3 backup target needs all of {', '.join(S3_REQUIRED)}; "
                f"{', '.join(given)} set but {', '.join(missing)} missing"
            )
        endpoint = values["RAFTKV_E2E_S3_ENDPOINT"]
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"RAFTKV_E2E_S3_ENDPOINT={endpoint!r}: expected an http(s):// URL")
        bucket = values["RAFTKV_E2E_S3_BUCKET"]
        if "/" in bucket:
            raise ConfigError(f"RAFTKV_E2E_S3_BUCKET={bucket!r}: a bucket name, no slash")
        prefix = env.get("RAFTKV_E2E_S3_PREFIX", "").strip().strip("/") or "raftkv-e2e"
        return cls(
            endpoint=endpoint,
            bucket=bucket,
            access_key_id=values["RAFTKV_E2E_S3_ACCESS_KEY_ID"],
            secret_access_key=values["RAFTKV_E2E_S3_SECRET_ACCESS_KEY"],
            region=env.get("RAFTKV_E2E_S3_REGION", "").strip(),
            prefix=prefix,
        )


def step_timeout(env: Mapping[str, str] = os.environ) -> float:
    """RAFTKV_E2E_TEST_TIMEOUT: seconds one step of a story may take in all (pytest's
    timeout mark, read at import), 3600 unless set to a number."""
    try:
        return float(env.get("RAFTKV_E2E_TEST_TIMEOUT") or 3600)
    except ValueError:
        return 3600.0


def broken_image_for(image: str) -> str:
    """The image under test with a tag that does not exist: same registry and
    repository (so the pull really is attempted and fails), never pullable."""
    repository = image.split("@", 1)[0]
    slash, colon = repository.rfind("/"), repository.rfind(":")
    if colon > slash:
        repository = repository[:colon]
    return f"{repository}:raftkv-e2e-no-such-tag"


def duration_seconds(text: str) -> int:
    """Whole seconds of a Go duration made of ``h``/``m``/``s`` parts (``1h30m``)."""
    parts = re.findall(r"([0-9]+)(h|m|s)", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _tls_duration(raw: str) -> str:
    """RAFTKV_E2E_TLS_DURATION: a Go duration of at least one minute (the operator's
    minimum), at most an hour (the suite waits for a renewal at two thirds of it)."""
    text = raw.strip() or "9m"
    try:
        seconds = duration_seconds(text)
    except ValueError:
        raise ConfigError(
            f"RAFTKV_E2E_TLS_DURATION={text!r}: expected a duration like 6m or 90s"
        ) from None
    if not 60 <= seconds <= 3600:
        raise ConfigError(f"RAFTKV_E2E_TLS_DURATION={text!r}: must be 1m..1h")
    return text


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
    step_timeout: float
    write_rate: float
    storage_class: str | None
    operator_namespace: str
    release: str
    repo_root: Path
    #: The day-2 steps (``test_raftkv_on_cluster_day2.py``): the image a roll is stopped by,
    #: the lifetime of the certificates whose renewal is awaited, and the optional S3
    #: target of the backup (a PVC otherwise).
    broken_image: str = ""
    tls_duration: str = "9m"
    s3: S3Target | None = None

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
            step_timeout=_positive(env, "RAFTKV_E2E_TEST_TIMEOUT", 3600),
            write_rate=_positive(env, "RAFTKV_E2E_WRITE_RATE", 10),
            storage_class=env.get("RAFTKV_E2E_STORAGE_CLASS") or None,
            operator_namespace=env.get("RAFTKV_E2E_OPERATOR_NAMESPACE") or OPERATOR_NAMESPACE,
            release=env.get("RAFTKV_E2E_RELEASE") or RELEASE,
            repo_root=REPO_ROOT,
            broken_image=env.get("RAFTKV_E2E_BROKEN_IMAGE", "").strip() or broken_image_for(image),
            tls_duration=_tls_duration(env.get("RAFTKV_E2E_TLS_DURATION", "")),
            s3=S3Target.from_env(env),
        )

    @property
    def manifests_dir(self) -> Path:
        return self.repo_root / "manifests"

    @property
    def chart_dir(self) -> Path:
        return self.repo_root / "charts" / "raftkv"

    @property
    def tls_seconds(self) -> float:
        """The certificates' lifetime in seconds (``tls_duration``)."""
        return float(duration_seconds(self.tls_duration))

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
