"""Run-to-completion containers (Job pods, init containers) as local processes.

The members are long-running ``raftkv serve`` processes that ``kubelet.py`` starts
itself; a backup Job's container and a restore init container are different: they run
a ``command`` (``sh -c <script>``) once, and what the kubelet reports about them when
they end (exit code, termination message) is what the operator reads. This module is
that part of a kubelet, shared by ``kubelet_batch.py`` and ``kubelet_init.py``:

- the environment: only the container's own ``env`` (``valueFrom`` resolved as for the
  members), never the test process's (a container sees nothing else), with ``raftkv``
  of this checkout first on ``PATH``;
- volume mounts mapped to local directories: every environment value that names a
  path under a ``mountPath`` is rewritten to the local directory standing for that
  volume (a claim's directory, a Secret's files, an emptyDir), and the
  ``terminationMessagePath`` to a fresh local file;
- the termination message as the kubelet builds it: the file's content, or, with
  ``FallbackToLogsOnError``, the tail of the log when the file is empty and the
  container failed (80 lines, 2048 bytes), at most 4096 bytes.

Only values of environment variables are mapped, not paths written into a script:
the operator's scripts take every path from the environment, which is what makes this
mapping enough.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.members import spawn_member

JSON = dict[str, Any]
#: Where a container's termination message goes unless it says otherwise.
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
#: The kubelet's limits for the message and for the log fallback.
MESSAGE_LIMIT = 4096
FALLBACK_BYTES = 2048
FALLBACK_LINES = 80
#: The directory of this interpreter's console scripts (``raftkv``).
VENV_BIN = str(Path(sys.executable).parent)


def now_rfc3339() -> str:
    """A ``metav1.Time`` as the apiserver writes it (seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def map_paths(env: Mapping[str, str], mounts: Mapping[str, str]) -> dict[str, str]:
    """``env`` with every value that is a mount path, or a path under one, moved to the
    local directory (or file) standing for it; the longest mount path wins."""
    out = dict(env)
    ordered = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)
    for key, value in env.items():
        for mount_path, local in ordered:
            if value == mount_path:
                out[key] = local
                break
            if value.startswith(mount_path.rstrip("/") + "/"):
                out[key] = local + value[len(mount_path.rstrip("/")) :]
                break
    return out


def base_env(home: Path) -> dict[str, str]:
    """What a container gets besides its ``env``: a ``PATH`` with this checkout's
    ``raftkv`` first, and a ``HOME`` of its own."""
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }


@dataclass
class ContainerRun:
    """One run of one container: the process, its log and its termination file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    termination_path: Path
    fallback_to_logs: bool
    started_at: str = field(default_factory=now_rfc3339)
    finished_at: str | None = None
    exit_code: int | None = None

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None and self.exit_code is None:
            self.exit_code = code
            self.finished_at = now_rfc3339()
        return code

    def message(self) -> str:
        """The termination message, as the kubelet builds it."""
        try:
            text = self.termination_path.read_text(errors="replace")
        except OSError:
            text = ""
        if not text.strip() and self.fallback_to_logs and self.exit_code not in (None, 0):
            try:
                raw = self.log_path.read_bytes()[-FALLBACK_BYTES:]
            except OSError:
                raw = b""
            text = "\n".join(raw.decode(errors="replace").splitlines()[-FALLBACK_LINES:])
        return text[-MESSAGE_LIMIT:]

    def terminated(self) -> JSON:
        """``state.terminated`` of a finished run."""
        assert self.exit_code is not None
        code = self.exit_code
        if code < 0:  # killed by a signal: the runtime reports 128 + signal
            code = 128 - code
        out: JSON = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": self.finished_at or now_rfc3339(),
        }
        message = self.message()
        if message:
            out["message"] = message
        return out

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaped."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
            if self.popen.poll() is None:
                self.popen.kill()
        self.popen.wait(timeout=10)
        self.poll()


def start_container(
    container: Mapping[str, Any],
    env: Mapping[str, str],
    mounts: Mapping[str, str],
    workdir: Path,
) -> ContainerRun:
    """Start ``container`` (its ``command`` and ``args``) with ``env`` (resolved, not
    yet mapped) and ``mounts`` (mountPath -> local path) under ``workdir``, a fresh
    directory for this run: the log, the termination file and ``HOME`` live there."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    termination = workdir / "termination-log"
    termination.write_bytes(b"")  # the kubelet creates it empty before the start
    message_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
    mapped = map_paths(env, {**mounts, message_path: str(termination)})
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise ValueError(f"container {container.get('name')!r} has no command")
    log_path = workdir / "log"
    popen = spawn_member(argv, log_path, env=mapped, base_env=base_env(home), cwd=workdir)
    return ContainerRun(
        name=str(container.get("name") or ""),
        popen=popen,
        log_path=log_path,
        termination_path=termination,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
    )


def claim_dirs(kubelet: Any) -> dict[str, Path]:
    """Claim name -> the local directory of its volume (the kubelet's, per claim uid),
    for the claims that exist and are not being deleted."""
    core: Any = kubelet.core
    return {
        str(p.metadata.name): kubelet._dir(p.metadata.uid)
        for p in core.list_namespaced_persistent_volume_claim(kubelet.namespace).items
        if not p.metadata.deletion_timestamp
    }


def volume_dirs(
    core: Any,
    namespace: str,
    root: Path,
    pod_name: str,
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    claim_dirs: Mapping[str, Path],
    named: Mapping[str, Path] | None = None,
) -> dict[str, str]:
    """``container``'s volume mounts as mountPath -> local directory.

    ``named``: volumes given directly (a member's data volume from its claim template,
    which is no entry of ``volumes``). A ``persistentVolumeClaim`` volume is that
    claim's directory (``claim_dirs``: claim name -> directory, as the members' own);
    a ``secret`` volume is its keys written as files under ``root``; an ``emptyDir`` a
    fresh directory. A mount of any other kind of volume is refused (ValueError)."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    out: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if named is not None and name in named:
            local = named[name]
        elif name not in volumes:
            raise ValueError(f"{pod_name}: volume {name!r} is mounted but not defined")
        elif "persistentVolumeClaim" in volumes[name]:
            claim = volumes[name]["persistentVolumeClaim"]["claimName"]
            if claim not in claim_dirs:
                raise ValueError(f"{pod_name}: claim {claim!r} does not exist")
            local = claim_dirs[claim]
        elif "secret" in volumes[name]:
            secret = core.read_namespaced_secret(volumes[name]["secret"]["secretName"], namespace)
            local = root / "secrets" / pod_name / f"{container.get('name')}-{name}"
            local.mkdir(parents=True, exist_ok=True)
            for key, value in (secret.data or {}).items():
                path = local / key
                path.write_bytes(base64.b64decode(value))
                path.chmod(0o600)
        elif "emptyDir" in volumes[name]:
            local = root / "emptydir" / pod_name / f"{container.get('name')}-{name}"
        else:
            raise ValueError(f"{pod_name}: volume {name!r} is of a kind this kubelet lacks")
        local.mkdir(parents=True, exist_ok=True)
        sub = mount.get("subPath")
        out[mount["mountPath"]] = str(local / sub if sub else local)
    return out
