"""Backups and disaster recovery with real processes: `raftkv snapshot save` from a
three-member cluster, `raftkv snapshot restore` into a new one-member cluster that keeps
every key and revision, grows again by `member add` + `--join`; bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from raftkv.backup import verify
from raftkv.cli import main
from raftkv.client import Client
from raftkv.kv.command import Command, Op
from raftkv.kv.store import KVStore
from support.wait import wait_for

from .harness import LocalCluster

TOKEN = "restored-test"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_save_restore_grow(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = LocalCluster(tmp_path / "old", 3)
    new = LocalCluster(tmp_path / "new", 0, extra_args=["--cluster-token", TOKEN])
    try:
        old.start_all()
        old.leader()
        with old.client() as cl:
            written = {
                f"k/{i:03d}": cl.put(f"k/{i:03d}", f"v{i}".encode()).revision for i in range(40)
            }
            written["k/007"] = cl.put("k/007", b"v7-again").revision
            cl.delete("k/039")
            del written["k/039"]
        old_cluster_id = old.members["m1"].status()["cluster_id"]

        backup = tmp_path / "backup.snap"
        r = cli("snapshot", "save", str(backup), "--endpoints", ",".join(old.endpoints()), "--json")
        assert r.returncode == 0, r.stderr
        saved = json.loads(r.stdout)
        assert saved["keys"] == len(written)
        assert saved["bytes"] == backup.stat().st_size
        assert not backup.with_name("backup.snap.tmp").exists()
        index = saved["applied_index"]
        assert index >= max(written.values())

        # Without a quorum the linearizable copy is refused in the API's error shape.
        old.stop("m2")
        old.stop("m3")
        resp = httpx.get(old.members["m1"].url + "/v1/snapshot", timeout=15)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]
        assert resp.json()["message"]
        assert "Retry-After" in resp.headers
        old.stop("m1")

        r1 = new.add_process("r1")
        r = cli(
            "snapshot",
            "restore",
            str(backup),
            "--data-dir",
            str(r1.data_dir),
            "--name",
            "r1",
            "--advertise-peer-url",
            r1.peer_url,
            "--cluster-token",
            TOKEN,
            "--json",
        )
        assert r.returncode == 0, r.stderr
        restored = json.loads(r.stdout)
        assert restored["applied_index"] == index
        assert restored["keys"] == len(written)
        assert restored["cluster_id"] != old_cluster_id

        new.start("r1")
        new.wait_ready(["r1"])
        st = r1.status()
        assert st["role"] == "leader"
        assert st["id"] == restored["member_id"]
        assert st["cluster_id"] != old_cluster_id
        members: list[dict[str, object]] = st["members"]  # type: ignore[assignment]
        assert [m["id"] for m in members] == [restored["member_id"]]
        with Client([r1.url]) as cl:
            for key, rev in written.items():
                got = cl.get(key)
                assert got is not None, key
                assert got.revision == rev, key
            assert cl.get("k/007").value == b"v7-again"  # type: ignore[union-attr]
            assert cl.get("k/039") is None
            after = cl.put("after-restore", b"yes").revision
            assert after > max(written.values())  # the store revision goes on

            r2 = new.add_process("r2")
            # Grow the restored cluster as usual: a learner that joins, then promotion.
            r = cli(
                "member",
                "add",
                r2.peer_url,
                "--name",
                "r2",
                "--learner",
                "--endpoints",
                r1.url,
                "--json",
            )
            assert r.returncode == 0, r.stderr
            mid = json.loads(r.stdout)["id"]
            new.start("r2", join=True, member_id=mid)
            wait_for(
                "r2 to catch up",
                lambda: r2.ready() and r2.status()["applied_index"] >= after,  # type: ignore[operator]
                20,
                ignore=Exception,
            )
            with Client([r2.url]) as c2:
                got = c2.get("after-restore", consistency="serializable")
                assert got is not None
                assert got.revision == after
                for key, rev in written.items():
                    got = c2.get(key, consistency="serializable")
                    assert got is not None, key
                    assert got.revision == rev, key
            r = cli("member", "promote", str(mid), "--endpoints", r1.url)
            assert r.returncode == 0, r.stderr
            assert [m.learner for m in cl.members()] == [False, False]
            assert cl.put("after-promote", b"ok").revision > after
    finally:
        old.close()
        new.close()


def _snapshot_bytes(n: int = 5) -> bytes:
    kv = KVStore()
    for i in range(n):
        kv.apply(i + 1, Command(Op.PUT, f"key{i}", b"x" * 10, b"rid%d" % i))
    return kv.snapshot()


def _restore_args(file: Path, data_dir: Path) -> list[str]:
    return [
        "snapshot",
        "restore",
        str(file),
        "--data-dir",
        str(data_dir),
        "--name",
        "r1",
        "--advertise-peer-url",
        "http://127.0.0.1:1",
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "checksum mismatch"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "checksum mismatch"),
        (lambda b: b"garbage", "not a raftkv state-machine snapshot"),
        (lambda b: b"", "not a raftkv state-machine snapshot"),
    ],
)
def test_restore_refuses_a_damaged_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[bytes], bytes],
    message: str,
) -> None:
    good = _snapshot_bytes()
    assert verify(good).keys == 5
    bad = tmp_path / "bad.snap"
    bad.write_bytes(damage(good))
    target = tmp_path / "restored"
    assert main(_restore_args(bad, target)) != 0
    err = capsys.readouterr().err
    assert "not a valid raftkv snapshot" in err
    assert message in err
    assert not target.exists()
    assert main(["snapshot", "status", str(bad)]) != 0


def test_restore_refuses_a_non_empty_dir_and_works_into_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "ok.snap"
    file.write_bytes(_snapshot_bytes())
    target = tmp_path / "busy"
    target.mkdir()
    (target / "something").write_text("x")
    assert main(_restore_args(file, target)) != 0
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["something"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_restore_args(file, empty)) == 0
    out = capsys.readouterr().out
    assert "restored 5 keys at applied index 5" in out
    assert "--cluster-token restored-" in out
    assert sorted(p.name for p in empty.iterdir()) == ["member.json", "snap", "wal"]
    # A second restore into the now-populated dir is refused.
    assert main(_restore_args(file, empty)) != 0
    assert "is not empty" in capsys.readouterr().err
    assert main(["snapshot", "status", str(file)]) == 0
    assert "applied index 5, 5 keys" in capsys.readouterr().out
