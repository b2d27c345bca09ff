"""The harness's own rules, without a cluster: when the CronJob controller fires, how
container paths map to local ones, and the termination message a run leaves (a real
``sh`` process). The scenario that uses them is ``test_backup_e2e.py``."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from kubelet_batch import due_time
from kubelet_containers import map_paths, start_container

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_due_time_is_the_newest_missed_minute() -> None:
    since = at("2026-12-07T10:00:30")
    assert due_time("* * * * *", since, at("2026-12-07T10:00:59"), None) is None
    assert due_time("* * * * *", since, at("2026-12-07T10:01:00"), None) == at(
        "2026-12-07T10:01:00"
    )
    # Several missed: only the newest runs (as the CronJob controller does).
    assert due_time("* * * * *", since, at("2026-12-07T10:05:10"), None) == at(
        "2026-12-07T10:05:00"
    )
    assert due_time("0 3 * * *", since, at("2026-12-08T02:59:59"), None) is None


def test_due_time_in_a_time_zone() -> None:
    # 03:00 in Berlin (UTC+1 in December) is 02:00 UTC.
    since = at("2026-12-07T12:00:00")
    due = due_time("0 3 * * *", since, at("2026-12-08T02:30:00"), "Europe/Berlin")
    assert due is not None
    assert due.astimezone(UTC) == at("2026-12-08T02:00:00")


def test_map_paths_moves_values_under_mounts() -> None:
    env = {
        "DATA": "/var/lib/raftkv",
        "FILE": "/etc/tls/ca.crt",
        "RESULT": "/dev/termination-log",
        "OTHER": "/var/lib/raftkv-not-a-mount",
        "URL": "http://x/var/lib/raftkv",
    }
    mounts = {"/var/lib/raftkv": "/tmp/d", "/etc/tls": "/tmp/s", "/dev/termination-log": "/t"}
    assert map_paths(env, mounts) == {
        "DATA": "/tmp/d",
        "FILE": "/tmp/s/ca.crt",
        "RESULT": "/t",
        "OTHER": "/var/lib/raftkv-not-a-mount",
        "URL": "http://x/var/lib/raftkv",
    }


def run(tmp_path: Path, script: str, policy: str = "FallbackToLogsOnError") -> dict[str, object]:
    container = {
        "name": "c",
        "command": ["sh", "-c", script],
        "terminationMessagePolicy": policy,
    }
    env = {"RESULT": "/dev/termination-log"}
    started = start_container(container, env, {}, tmp_path / f"run-{policy}")
    started.popen.wait(timeout=30)
    started.poll()
    return started.terminated()


def test_termination_message_is_the_file(tmp_path: Path) -> None:
    got = run(tmp_path, 'echo noise; echo \'{"ok": true}\' > "$RESULT"')
    assert got["exitCode"] == 0
    assert got["reason"] == "Completed"
    assert got["message"] == '{"ok": true}\n'


def test_failure_falls_back_to_the_log_tail(tmp_path: Path) -> None:
    got = run(tmp_path, ': > "$RESULT"; echo "it broke" >&2; exit 3')
    assert got["exitCode"] == 3
    assert got["reason"] == "Error"
    assert got["message"] == "it broke"
    # Without the fallback, an empty file is no message at all.
    got = run(tmp_path, 'echo "it broke" >&2; exit 3', policy="File")
    assert "message" not in got
