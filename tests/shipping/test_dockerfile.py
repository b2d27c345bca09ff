"""The Dockerfile passes hadolint and keeps the contract the operator's pods rely on.

No Docker engine runs here; test_install_path.py replays the image's install path.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from raftkv_operator import naming as n
from raftkv_operator import objects as o

from .dockerfile import DOCKERFILE, Stage, copy_sources, ignore_patterns, ignored, parse

BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_hadolint_reports_nothing(hadolint: Path) -> None:
    # The default failure threshold is "info": any finding at all fails. Exceptions must
    # be inline `# hadolint ignore=DLxxxx` comments with their reason.
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip(), done.stdout + done.stderr


def test_every_hadolint_exception_gives_a_reason() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore=" in line:
            assert re.search(r"ignore=\S+\s+\S", line), f"no reason given: {line!r}"


def test_two_stages_on_the_same_pinned_slim_base(stages: list[Stage]) -> None:
    builder, runtime = stages
    assert builder.name == "builder"
    # The venv is copied between stages: its interpreter symlink must resolve the same.
    assert builder.base == runtime.base
    assert BASE.match(runtime.base), f"{runtime.base} is not python:3.11.<patch>-slim-bookworm"


def test_builder_installs_the_wheel_with_the_operator_extra(stages: list[Stage]) -> None:
    run = " ".join(i.args for i in stages[0].all("RUN"))
    assert "pip wheel" in run
    assert "--no-deps" in run
    assert re.search(r"pip install .*raftkv-\*\.whl'?\)?\[operator\]", run), run
    assert stages[1].all("RUN"), "the runtime stage creates the user"
    assert not [i for i in stages[1].all("RUN") if "pip" in i.args], "no pip in the runtime stage"


def test_runtime_contract(stages: list[Stage]) -> None:
    runtime = stages[1]
    # Exec form: raftkv is PID 1 and gets SIGTERM itself (no shell in between).
    assert runtime.one("ENTRYPOINT").exec_form() == ["raftkv"]
    assert runtime.one("CMD").exec_form() == ["serve"]
    assert runtime.one("STOPSIGNAL").args == "SIGTERM"
    # The uid the member pods run as (and make their volume writable for).
    assert runtime.one("USER").args == f"{o.MEMBER_UID}:{o.MEMBER_UID}"
    assert runtime.one("VOLUME").args == n.DATA_DIR
    assert runtime.one("EXPOSE").args.split() == [str(n.CLIENT_PORT), str(n.PEER_PORT)]
    copies = runtime.all("COPY")
    assert [c.args for c in copies] == ["--from=builder /opt/raftkv /opt/raftkv"]
    env = " ".join(i.args for i in runtime.all("ENV"))
    assert "PATH=/opt/raftkv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem
    assert f"RAFTKV_DATA_DIR={n.DATA_DIR}" in env
    users = " ".join(i.args for i in runtime.all("RUN"))
    assert f"--uid {o.MEMBER_UID}" in users
    assert f"chown {o.MEMBER_UID}:{o.MEMBER_UID}" in users


def test_dockerignore_lets_exactly_the_build_inputs_through(stages: list[Stage]) -> None:
    patterns = ignore_patterns()
    for source in copy_sources(stages[0]):
        assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
    for kept_out in (".venv/bin/python", "tests/test_wire.py", ".git/HEAD", "data/x"):
        assert ignored(kept_out, patterns), kept_out
    assert ignored("node/raftkv/__pycache__/cli.cpython-311.pyc", patterns)
