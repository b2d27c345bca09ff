"""The image's install path, without Docker: the builder stage's files → a wheel → a
fresh virtualenv with the ``operator`` extra → ``raftkv --version`` → a member that
serves, writes only to its data dir, and exits 0 on SIGTERM (what the kubelet sends).

The wheel is built from a copy of exactly what the Dockerfile's builder stage copies
(filtered by .dockerignore), in a temporary folder, so a file the image would miss is
missed here too, and the shared work tree gets no build/ or egg-info litter. pip's
cache makes the install take ~15 s on a warm machine; nothing is downloaded from
anywhere but PyPI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.members import free_ports, serve_command, spawn_member

from .dockerfile import REPO, build_context

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self) -> dict[str, str]:
        """The image's environment, not the test runner's: no PYTHONPATH, no RAFTKV_*."""
        keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")}
        return {
            **keep,
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.home),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "raftkv"), *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _pip(python: Path, *args: str, cwd: Path) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install-path")
    context = root / "context"
    copied = build_context(context)
    assert "pyproject.toml" in copied
    assert any(p.startswith("operator/") for p in copied)
    dist = root / "dist"
    # As in the builder stage: `pip wheel --no-deps .` (with build isolation).
    _pip(Path(sys.executable), "wheel", "--no-deps", "--wheel-dir", str(dist), ".", cwd=context)
    (wheel,) = dist.glob("raftkv-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    _pip(env_dir / "bin" / "python", "install", f"{wheel}[operator]", cwd=root)
    home = root / "home"
    home.mkdir()
    return Installed(wheel=wheel, venv=env_dir, home=home)


def test_wheel_carries_both_packages_the_typing_marker_and_the_console_script(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    for module in ("raftkv/cli.py", "raftkv/server/main.py", "raftkv/py.typed"):
        assert module in names
    for module in ("raftkv_operator/main.py", "raftkv_operator/handlers.py"):
        assert module in names
    # Every source module of both packages made it into the wheel.
    for package_root in (REPO / "node", REPO / "operator"):
        for source in package_root.rglob("*.py"):
            assert source.relative_to(package_root).as_posix() in names, source
    assert "raftkv = raftkv.cli:main" in scripts
    requires = [
        line for line in metadata.decode().splitlines() if line.startswith("Requires-Dist:")
    ]
    assert any("kopf" in r and 'extra == "operator"' in r for r in requires), requires


def test_console_script_reports_the_version(installed: Installed) -> None:
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"raftkv {VERSION}"


def test_the_operator_extra_is_installed(installed: Installed) -> None:
    # `raftkv operator --help` imports kopf, the kubernetes client and the operator.
    done = installed.run("operator", "--help")
    assert done.returncode == 0, done.stderr
    assert "--member-image" in done.stdout
    where = subprocess.run(
        [
            str(installed.bin / "python"),
            "-c",
            "import raftkv, raftkv_operator, kopf; "
            "print(raftkv.__file__); print(raftkv_operator.__file__)",
        ],
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for path in where.stdout.split():
        assert Path(path).is_relative_to(installed.venv), f"imported from outside the venv: {path}"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file()
    }


@dataclass
class Member:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    data: Path
    #: The installation and the home/working dir as they were before the member started.
    venv_before: dict[str, tuple[int, int]]
    home_before: dict[str, tuple[int, int]]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def member(installed: Installed, tmp_path: Path) -> Iterator[Member]:
    client_port, peer_port = free_ports(2)
    data = tmp_path / "data"
    log = tmp_path / "member.log"
    venv_before, home_before = _tree(installed.venv), _tree(installed.home)
    argv = serve_command(
        "--name",
        "m1",
        "--data-dir",
        str(data),
        "--listen-client",
        f"127.0.0.1:{client_port}",
        "--listen-peer",
        f"127.0.0.1:{peer_port}",
        program=[str(installed.bin / "raftkv")],
    )
    # The image's environment only (installed.env() already has PYTHONUNBUFFERED=1).
    proc = spawn_member(argv, log, base_env=installed.env(), cwd=installed.home)
    try:
        url = f"http://127.0.0.1:{client_port}"
        yield Member(proc, url, log, data, venv_before, home_before)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _wait_ready(member: Member, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if member.proc.poll() is not None:
            pytest.fail(
                f"member exited with {member.proc.returncode} before it was ready:\n"
                + member.output()
            )
        try:
            answer = httpx.get(f"{member.url}/readyz", timeout=1, trust_env=False)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(f"member not ready after {deadline_s}s: {last}\n{member.output()}")


def test_member_serves_and_stops_cleanly_on_sigterm(installed: Installed, member: Member) -> None:
    proc = member.proc
    _wait_ready(member)
    with httpx.Client(base_url=member.url, timeout=10, trust_env=False) as http:
        put = http.put("/v1/kv/shipping", content=b"it works")
        assert put.status_code == 200, put.text
        got = http.get("/v1/kv/shipping")
        assert (got.status_code, got.content) == (200, b"it works")
        assert "raftkv_is_leader 1.0" in http.get("/metrics").text.splitlines()

    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("member did not stop within 20 s of SIGTERM")
    assert code == 0, f"exit {code}:\n{member.output()}"
    # Read-only root filesystem in mind: the run wrote nothing into the installation
    # or the working/home directory (only the data dir, which lives elsewhere).
    assert _tree(installed.venv) == member.venv_before
    assert _tree(installed.home) == member.home_before
    assert _tree(member.data), "the member wrote no state"
