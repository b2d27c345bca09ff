"""`raftkv watch | lease | txn | compact | lock | elect` as a user runs them: real
processes against real members."""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.harness import LocalCluster
from raftkv.client import Client
from support.members import RAFTKV
from support.wait import wait_for

_names = itertools.count()


@pytest.fixture
def ns() -> str:
    return f"cli{next(_names)}/"


@pytest.fixture
def c(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster.endpoints()) as client:
        yield client


def argv(cluster: LocalCluster, *args: str) -> list[str]:
    return [*RAFTKV, *args, "--endpoints", ",".join(cluster.endpoints())]


def run(
    cluster: LocalCluster, *args: str, stdin: str | None = None, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv(cluster, *args), *extra],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Running:
    """A long-running command whose stdout lines are read with deadlines."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = 30) -> str:
        got = self.lines.get(timeout=timeout)
        assert got is not None, f"exited {self.proc.wait()}: {self.stderr()}"
        return got

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr is not None else ""

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# -- watch ----------------------------------------------------------------------------------


def test_watch_prints_events_until_ctrl_c(cluster: LocalCluster, c: Client, ns: str) -> None:
    rev = c.put(ns + "a", b"1").revision
    w = Running(argv(cluster, "watch", ns, "--prefix", "--rev", str(rev), "--prev-kv"))
    try:
        assert w.line() == f"PUT\t{rev}\t{ns}a\t1"
        r2 = c.put(ns + "a", b"2").revision
        assert w.line() == f"PUT\t{r2}\t{ns}a\t2\tprev=1"
        r3 = c.delete(ns + "a").revision
        assert w.line() == f"DELETE\t{r3}\t{ns}a\tprev=2"
        assert w.interrupt() == 0
    finally:
        w.close()


def test_watch_json_lines(cluster: LocalCluster, c: Client, ns: str) -> None:
    rev = c.put(ns + "k", b"v").revision
    w = Running([*argv(cluster, "watch", ns + "k", "--rev", str(rev)), "--json"])
    try:
        row = json.loads(w.line())
        assert row == {
            "type": "PUT",
            "key": ns + "k",
            "value": "v",
            "create_revision": rev,
            "mod_revision": rev,
            "version": 1,
            "lease": 0,
        }
        assert w.interrupt() == 0
    finally:
        w.close()


def test_watch_from_a_compacted_revision_fails_clearly(
    cluster: LocalCluster, c: Client, ns: str
) -> None:
    old = c.put(ns + "k", b"1").revision
    new = c.put(ns + "k", b"2").revision
    c.compact(new)
    out = run(cluster, "watch", ns + "k", "--rev", str(old))
    assert out.returncode == 1
    assert out.stderr.startswith("raftkv watch: compacted:"), out.stderr
    assert "compacted" in out.stderr


# -- lease ----------------------------------------------------------------------------------


def test_lease_commands(cluster: LocalCluster, c: Client, ns: str) -> None:
    out = run(cluster, "lease", "grant", "60", extra=("--json",))
    assert out.returncode == 0, out.stderr
    granted = json.loads(out.stdout)
    lid = granted["id"]
    assert granted["ttl"] >= 60
    assert granted["hex"] == f"{lid:x}"
    assert run(cluster, "put", ns + "k", "v", "--lease", str(lid)).returncode == 0
    kv = c.get_kv(ns + "k")
    assert kv is not None
    assert kv.lease == lid
    assert str(lid) in run(cluster, "lease", "list").stdout.split()
    out = run(cluster, "lease", "ttl", f"0x{lid:x}", "--keys")
    assert out.returncode == 0
    assert f"lease {lid} granted with TTL {granted['ttl']}s" in out.stdout
    assert f"attached keys [{ns}k]" in out.stdout
    out = run(cluster, "lease", "keep-alive", str(lid), "--once")
    assert (out.returncode, out.stdout.strip()) == (
        0,
        f"lease {lid} renewed, TTL {granted['ttl']}s",
    )
    out = run(cluster, "lease", "revoke", str(lid))
    assert (out.returncode, out.stdout.strip()) == (0, f"lease {lid} revoked (1 keys deleted)")
    assert c.get_kv(ns + "k") is None
    out = run(cluster, "lease", "ttl", str(lid))
    assert (out.returncode, out.stdout.strip()) == (4, f"lease {lid} already expired")
    out = run(cluster, "lease", "keep-alive", str(lid), "--once")
    assert out.returncode == 4
    assert "lease_not_found" in out.stderr
    assert run(cluster, "lease", "revoke", "nope").returncode == 2


def test_lease_keep_alive_renews_until_ctrl_c(cluster: LocalCluster, c: Client) -> None:
    g = c.lease_grant(3)
    k = Running(argv(cluster, "lease", "keep-alive", str(g.id)))
    try:
        for _ in range(2):
            assert k.line() == f"lease {g.id} renewed, TTL {g.ttl}s"
        assert k.interrupt() == 0
    finally:
        k.close()
        c.lease_revoke(g.id)


# -- txn, compact ---------------------------------------------------------------------------


def test_txn_in_etcdctls_line_form(cluster: LocalCluster, c: Client, ns: str) -> None:
    script = f'create("{ns}k") = "0"\n\nput {ns}k "hello world"\nget {ns}k\n\nget {ns}k\n'
    out = run(cluster, "txn", stdin=script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["SUCCESS", "OK", f"{ns}k", "hello world"]
    out = run(cluster, "txn", stdin=script)
    assert out.stdout.splitlines() == ["FAILURE", f"{ns}k", "hello world"]
    kv = c.get_kv(ns + "k")
    assert kv is not None
    script = f'mod("{ns}k") = "{kv.mod_revision}"\nvalue("{ns}k") = "hello world"\n\ndel {ns}k\n'
    out = run(cluster, "txn", stdin=script)
    assert out.stdout.splitlines() == ["SUCCESS", "1"]


def test_txn_interactive_prompts_for_each_part(cluster: LocalCluster, ns: str) -> None:
    script = f'version("{ns}k") = "0"\n\nput {ns}k v\n\nget {ns}k\n\n'
    out = run(cluster, "txn", "--interactive", stdin=script)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stdout.splitlines() if line] == [
        "compares:",
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
        "SUCCESS",
        "OK",
    ]


def test_txn_from_a_json_file(cluster: LocalCluster, c: Client, ns: str, tmp_path: Path) -> None:
    body = {
        "compare": [{"key": b64(ns + "k"), "target": "VERSION", "result": "EQUAL", "version": 0}],
        "success": [
            {"request_put": {"key": b64(ns + "k"), "value": b64("v")}},
            {"request_range": {"key": b64(ns + "k")}},
        ],
        "failure": [],
    }
    f = tmp_path / "txn.json"
    f.write_text(json.dumps(body))
    out = run(cluster, "txn", "--file", str(f), extra=("--json",))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["succeeded"] is True
    assert res["responses"][1]["kvs"][0]["value"] == "v"
    assert res["responses"][1]["kvs"][0]["mod_revision"] == res["revision"]


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ('bogus("k") = "1"\n', "bad compare"),
        ('mod("k") = "x"\n', "compares with an integer"),
        ("\nfrob k\n", "use get, put or del"),
        ('{"compare": [{"target": "NOPE"}]}', "target must be one of"),
        ('{"success": [{"request_put": {"key": "***"}}]}', "not base64"),
        ("{not json", "not valid JSON"),
    ],
)
def test_txn_input_errors_are_usage_errors(cluster: LocalCluster, script: str, says: str) -> None:
    out = run(cluster, "txn", stdin=script)
    assert out.returncode == 2
    assert says in out.stderr, out.stderr


def test_compact(cluster: LocalCluster, c: Client, ns: str) -> None:
    old = c.put(ns + "k", b"1").revision
    new = c.put(ns + "k", b"2").revision
    out = run(cluster, "compact", str(new))
    assert (out.returncode, out.stdout.strip()) == (0, f"compacted revision {new}")
    out = run(cluster, "compact", str(old))
    assert out.returncode == 1
    assert "compacted" in out.stderr


# -- lock, elect ----------------------------------------------------------------------------


def test_lock_runs_the_command_and_passes_its_exit_code(cluster: LocalCluster, ns: str) -> None:
    code = (
        "import os, sys; print(os.environ['RAFTKV_LOCK_KEY'], os.environ['RAFTKV_LOCK_REV']);"
        " sys.exit(7)"
    )
    out = run(cluster, "lock", ns + "l", "--ttl", "5", extra=("--", sys.executable, "-c", code))
    assert out.returncode == 7, out.stderr
    key, rev = out.stdout.split()
    assert key.startswith(ns + "l/")
    assert int(rev) > 0
    with Client(cluster.endpoints()) as client:
        assert client.range(ns + "l/", prefix=True).count == 0  # released
    out = run(cluster, "lock", ns + "l", extra=("--", sys.executable, "-c", "pass"))
    assert out.returncode == 0
    out = run(cluster, "lock", ns + "l", extra=("--", "/nonexistent/cmd"))
    assert out.returncode == 127


def test_lock_excludes_concurrent_processes(cluster: LocalCluster, ns: str, tmp_path: Path) -> None:
    """Processes append "start" and "end" around an unguarded read-modify-write of a
    counter file; under the lock the lines alternate and no increment is lost."""
    log, counter = tmp_path / "log", tmp_path / "counter"
    counter.write_text("0")
    code = (
        "import sys; from pathlib import Path\n"
        "log, counter = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "with log.open('a') as f: f.write('start\\n')\n"
        "counter.write_text(str(int(counter.read_text()) + 1))\n"
        "with log.open('a') as f: f.write('end\\n')\n"
    )
    n = 4
    procs = [
        subprocess.Popen(
            [
                *argv(cluster, "lock", ns + "mx", "--ttl", "5"),
                "--",
                sys.executable,
                "-c",
                code,
                str(log),
                str(counter),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            if p.stderr is not None:
                p.stderr.close()
    assert codes == [0] * n
    assert counter.read_text() == str(n)
    assert log.read_text().split() == ["start", "end"] * n


def test_lock_without_command_holds_until_ctrl_c(cluster: LocalCluster, c: Client, ns: str) -> None:
    held = Running(argv(cluster, "lock", ns + "h", "--ttl", "5"))
    try:
        key = held.line()
        assert key.startswith(ns + "h/")
        kv = c.get_kv(key)
        assert kv is not None
        assert kv.lease > 0
        assert held.interrupt() == 0
        assert c.get_kv(key) is None
        assert c.lease_time_to_live(kv.lease).ttl == -1  # its session ended too
    finally:
        held.close()


def test_elect_campaigns_and_listen_observes(cluster: LocalCluster, c: Client, ns: str) -> None:
    name = ns + "e"
    first = Running(argv(cluster, "elect", name, "one", "--ttl", "5"))
    listen: Running | None = None
    second: Running | None = None
    try:
        key = first.line()
        assert key.startswith(name + "/")
        assert first.line() == "one"
        listen = Running(argv(cluster, "elect", name, "--listen"))
        assert (listen.line(), listen.line()) == (key, "one")
        second = Running(argv(cluster, "elect", name, "two", "--ttl", "5"))
        assert first.interrupt() == 0  # resigns: the second takes over
        key2 = second.line()
        assert (second.line(), listen.line(), listen.line()) == ("two", key2, "two")
        assert second.interrupt() == 0
        assert c.range(name + "/", prefix=True).count == 0
    finally:
        for r in (first, listen, second):
            if r is not None:
                r.close()


def test_new_commands_have_help() -> None:
    for cmd in (
        ["watch"],
        ["lease", "grant"],
        ["lease", "keep-alive"],
        ["txn"],
        ["compact"],
        ["lock"],
        ["elect"],
    ):
        out = subprocess.run(
            [*RAFTKV, *cmd, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
            check=False,
        )
        assert out.returncode == 0, (cmd, out.stderr)
        assert "usage: raftkv" in out.stdout


def test_lock_stops_the_command_when_the_lock_is_lost(
    cluster: LocalCluster, c: Client, ns: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    code = f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(300)"
    held = Running(
        [*argv(cluster, "lock", ns + "lost", "--ttl", "3"), "--", sys.executable, "-c", code]
    )
    try:
        wait_for("the command to start", started.exists, 30)
        (kv,) = c.range(ns + "lost/", prefix=True).kvs
        c.lease_revoke(kv.lease)  # as if the session expired
        assert held.proc.wait(timeout=30) == 1
        assert "the lock was lost" in held.stderr()
    finally:
        held.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("watch", "a", "b", "--prefix"), "not both"),
        (("lease", "grant", "0"), "TTL"),
        (("lock", "/"), "non-empty"),
        (("compact", "0"), "REV must be > 0"),
    ],
)
def test_bad_arguments_are_usage_errors(
    cluster: LocalCluster, args: tuple[str, ...], says: str
) -> None:
    out = run(cluster, *args)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr


def test_lock_wants_its_command_after_a_double_dash(cluster: LocalCluster) -> None:
    out = run(cluster, "lock", "x", extra=("true",))
    assert out.returncode == 2
    assert "after --" in out.stderr


def test_get_rev_reads_the_past(cluster: LocalCluster, c: Client, ns: str) -> None:
    old = c.put(f"{ns}k", b"old").revision
    now = c.put(f"{ns}k", b"new").revision
    r = run(cluster, "get", f"{ns}k", "--rev", str(old))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "old\n"
    r = run(cluster, "get", f"{ns}k", "--rev", str(old), "--json")
    got = json.loads(r.stdout)
    assert (got["value"], got["revision"], got["version"]) == ("old", old, got["version"])
    c.compact(now)
    r = run(cluster, "get", f"{ns}k", "--rev", str(old))
    assert r.returncode != 0
    assert "compacted" in r.stderr
