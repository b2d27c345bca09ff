"""`raftkv snapshot save|restore|status|list|prune` against a real S3 endpoint (moto's
standalone server on loopback, IAM enforced) and real members: a backup taken from a
running member, uploaded with its SHA-256, downloaded and checked, restored into a new
one-member cluster that serves every key at its revision; every failure a clear
one-line error with nothing half-made left behind; retention by list and prune."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.harness import LocalCluster
from raftkv.client import Client
from support.members import free_port
from support.moto_s3 import MotoS3

from .conftest import data_dir_absent_or_empty

TOKEN = "restored-from-s3"
AUTO_NAME = re.compile(r"^backups/raftkv-\d{8}T\d{6}Z-\d{12}\.snapshot$")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`raftkv ARGS` as its own process, with only the AWS settings given in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
    )


def one_line_error(r: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The refusal: exit 1 and a single line on stderr, no traceback."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(prefix + ": "), lines[0]
    return lines[0]


def keys_in(s3: MotoS3, bucket: str) -> list[str]:
    cl = s3.client()
    try:
        return [o["Key"] for o in cl.list_objects_v2(Bucket=bucket).get("Contents", [])]
    finally:
        cl.close()


def snapshot_bytes(member: LocalCluster) -> bytes:
    r = httpx.get(member.endpoints()[0] + "/v1/snapshot", timeout=15)
    r.raise_for_status()
    return r.content


def put_object(s3: MotoS3, bucket: str, key: str, body: bytes, meta: dict[str, str]) -> None:
    cl = s3.client()
    try:
        cl.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta)
    finally:
        cl.close()


def test_save_to_s3_then_restore_a_new_cluster_from_it(
    s3: MotoS3, bucket: str, member: LocalCluster, tmp_path: Path
) -> None:
    with member.client() as cl:
        written = {
            f"s3/{i:02d}": cl.put(f"s3/{i:02d}", f"v{i}".encode()).revision for i in range(30)
        }
        written["s3/07"] = cl.put("s3/07", b"again").revision
        cl.delete("s3/29")
        del written["s3/29"]
    endpoints = ",".join(member.endpoints())

    # Endpoint from AWS_ENDPOINT_URL, to an explicit key.
    url = f"s3://{bucket}/backups/kv.snapshot"
    r = cli(s3.env(), "snapshot", "save", url, "--endpoints", endpoints, "--json")
    assert r.returncode == 0, r.stderr
    saved = json.loads(r.stdout)
    assert saved["file"] == url
    assert saved["keys"] >= len(written)
    # Endpoint from the flag, to a prefix: a timestamped name is chosen.
    env = {k: v for k, v in s3.env().items() if k != "AWS_ENDPOINT_URL"}
    prefix = f"s3://{bucket}/backups/"
    r = cli(
        env, "snapshot", "save", prefix, "--s3-endpoint", s3.url, "--endpoints", endpoints, "--json"
    )
    assert r.returncode == 0, r.stderr
    auto = json.loads(r.stdout)["file"]
    assert AUTO_NAME.match(auto.removeprefix(f"s3://{bucket}/")), auto

    # Exactly the two objects, no temporary left, the digest stored beside the bytes.
    assert sorted(keys_in(s3, bucket)) == sorted(
        ["backups/kv.snapshot", auto.removeprefix(f"s3://{bucket}/")]
    )
    client = s3.client()
    try:
        obj = client.get_object(Bucket=bucket, Key="backups/kv.snapshot")
        body = obj["Body"].read()
    finally:
        client.close()
    assert hashlib.sha256(body).hexdigest() == saved["sha256"]
    assert obj["Metadata"]["raftkv-sha256"] == saved["sha256"]
    assert obj["Metadata"]["raftkv-applied-index"] == str(saved["applied_index"])

    r = cli(s3.env(), "snapshot", "status", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sha256"] == saved["sha256"]

    new = LocalCluster(tmp_path, 0, extra_args=["--cluster-token", TOKEN])
    try:
        r1 = new.add_process("r1")
        r = cli(
            s3.env(),
            "snapshot",
            "restore",
            url,
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
        assert restored["applied_index"] == saved["applied_index"]
        new.start("r1")
        new.wait_ready(["r1"])
        with Client([r1.url]) as cl:
            for key, rev in written.items():
                got = cl.get(key)
                assert got is not None, key
                assert got.revision == rev, key
            assert cl.get("s3/07").value == b"again"  # type: ignore[union-attr]
            assert cl.get("s3/29") is None
            assert cl.put("after", b"restore").revision > max(written.values())
    finally:
        new.close()


def _digest_mismatch(s3: MotoS3, bucket: str, good: bytes) -> str:
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    put_object(s3, bucket, "tampered", bad, {"raftkv-sha256": hashlib.sha256(good).hexdigest()})
    return f"s3://{bucket}/tampered"


def _not_a_snapshot(s3: MotoS3, bucket: str, good: bytes) -> str:
    junk = b"this is not a snapshot"
    put_object(s3, bucket, "junk", junk, {"raftkv-sha256": hashlib.sha256(junk).hexdigest()})
    return f"s3://{bucket}/junk"


def _no_digest(s3: MotoS3, bucket: str, good: bytes) -> str:
    put_object(s3, bucket, "foreign", good, {})
    return f"s3://{bucket}/foreign"


def _good(s3: MotoS3, bucket: str, good: bytes) -> str:
    put_object(s3, bucket, "good", good, {"raftkv-sha256": hashlib.sha256(good).hexdigest()})
    return f"s3://{bucket}/good"


Setup = Callable[[MotoS3, str, bytes], str]


@pytest.mark.parametrize(
    ("setup", "user", "unreachable", "message"),
    [
        pytest.param(
            lambda s, b, g: "s3://raftkv-no-such-bucket/x",
            "admin",
            False,
            "bucket 'raftkv-no-such-bucket' does not exist",
            id="bucket-missing",
        ),
        pytest.param(
            lambda s, b, g: f"s3://{b}/missing",
            "admin",
            False,
            "no such object",
            id="object-missing",
        ),
        pytest.param(_good, "nobody", False, "access denied (AccessDenied", id="access-denied"),
        pytest.param(_digest_mismatch, "admin", False, "is corrupt: its SHA-256 is", id="digest"),
        pytest.param(
            _not_a_snapshot, "admin", False, "is not a valid raftkv snapshot", id="not-a-snapshot"
        ),
        pytest.param(_no_digest, "admin", False, "is not a raftkv backup", id="no-digest"),
        pytest.param(_good, "admin", True, "cannot reach http://127.0.0.1:", id="unreachable"),
    ],
)
def test_restore_refuses_clearly_and_creates_nothing(
    s3: MotoS3,
    bucket: str,
    member: LocalCluster,
    tmp_path: Path,
    setup: Setup,
    user: str,
    unreachable: bool,
    message: str,
) -> None:
    url = setup(s3, bucket, snapshot_bytes(member))
    env = s3.env(user)
    if unreachable:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    target = tmp_path / "restored"
    r = cli(
        env,
        "snapshot",
        "restore",
        url,
        "--data-dir",
        str(target),
        "--name",
        "r1",
        "--advertise-peer-url",
        "http://127.0.0.1:1",
    )
    assert message in one_line_error(r, "raftkv snapshot restore")
    assert data_dir_absent_or_empty(target)
    r = cli(env, "snapshot", "status", url)
    assert message in one_line_error(r, "raftkv snapshot status")


@pytest.mark.parametrize(
    ("where", "user", "unreachable", "message"),
    [
        pytest.param(
            "s3://raftkv-no-such-bucket/x",
            "admin",
            False,
            "bucket 'raftkv-no-such-bucket' does not exist",
            id="bucket-missing",
        ),
        pytest.param("{bucket}/k", "nobody", False, "access denied", id="access-denied"),
        pytest.param(
            # Upload and read-back pass; the copy to the final name is refused.
            "{bucket}/k",
            "tmponly",
            False,
            "cannot copy to s3://",
            id="refused-at-final-name",
        ),
        pytest.param("{bucket}/k", "admin", True, "cannot reach", id="unreachable"),
    ],
)
def test_a_failed_save_says_why_and_leaves_no_object(
    s3: MotoS3,
    bucket: str,
    member: LocalCluster,
    where: str,
    user: str,
    unreachable: bool,
    message: str,
) -> None:
    url = where.replace("{bucket}", f"s3://{bucket}")
    env = s3.env(user)
    if unreachable:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    r = cli(env, "snapshot", "save", url, "--endpoints", ",".join(member.endpoints()))
    assert message in one_line_error(r, "raftkv snapshot save")
    assert keys_in(s3, bucket) == []


def test_list_and_prune_keep_the_newest(s3: MotoS3, bucket: str, member: LocalCluster) -> None:
    env = s3.env()
    endpoints = ",".join(member.endpoints())
    saved: list[str] = []
    with member.client() as cl:
        for i in range(3):
            cl.put("prune/marker", str(i).encode())  # a new applied index per backup
            r = cli(
                env,
                "snapshot",
                "save",
                f"s3://{bucket}/backups/",
                "--endpoints",
                endpoints,
                "--json",
            )
            assert r.returncode == 0, r.stderr
            saved.append(json.loads(r.stdout)["file"])
    good = snapshot_bytes(member)
    # Another prefix, and the temporary object of a save still running: both untouched.
    put_object(s3, bucket, "other/keep-me", good, {})
    put_object(s3, bucket, "backups/x.snapshot.raftkv-tmp-0123456789ab", good, {})

    def listed() -> list[str]:
        r = cli(env, "snapshot", "list", f"s3://{bucket}/backups/", "--json")
        assert r.returncode == 0, r.stderr
        return [o["url"] for o in json.loads(r.stdout)["objects"]]

    assert listed() == saved  # oldest first, temporaries skipped

    r = cli(
        env, "snapshot", "prune", f"s3://{bucket}/backups/", "--keep", "2", "--dry-run", "--json"
    )
    assert r.returncode == 0, r.stderr
    assert [o["url"] for o in json.loads(r.stdout)["deleted"]] == saved[:1]
    assert listed() == saved

    r = cli(env, "snapshot", "prune", f"s3://{bucket}/backups/", "--keep", "2", "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    assert [o["url"] for o in out["deleted"]] == saved[:1]
    assert [o["url"] for o in out["kept"]] == saved[1:]
    assert out["stale_temporaries"] == []  # a fresh temporary may belong to a running save
    assert listed() == saved[1:]
    assert sorted(keys_in(s3, bucket)) == sorted(
        [
            "other/keep-me",
            "backups/x.snapshot.raftkv-tmp-0123456789ab",
            *(u.removeprefix(f"s3://{bucket}/") for u in saved[1:]),
        ]
    )

    r = cli(env, "snapshot", "prune", f"s3://{bucket}/backups/", "--keep", "0")
    assert "--keep must be at least 1" in one_line_error(r, "raftkv snapshot prune")
    r = cli(s3.env("nobody"), "snapshot", "list", f"s3://{bucket}/backups/")
    assert "access denied" in one_line_error(r, "raftkv snapshot list")
    r = cli(env, "snapshot", "list", "s3://raftkv-no-such-bucket/")
    assert "does not exist" in one_line_error(r, "raftkv snapshot list")


def test_no_credentials_is_a_clear_error(s3: MotoS3, bucket: str, tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": s3.url,
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup on this machine
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    r = cli(env, "snapshot", "list", f"s3://{bucket}/")
    assert "Unable to locate credentials" in one_line_error(r, "raftkv snapshot list")


def test_prune_deletes_temporaries_left_by_a_killed_save_once_stale(
    s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from raftkv.s3 import STALE_TMP, S3Options, Store, parse_url

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    put_object(s3, bucket, "p/b1", b"1", {})
    put_object(s3, bucket, "p/b1.raftkv-tmp-0123456789ab", b"partial", {})
    prefix = parse_url(f"s3://{bucket}/p/")
    with Store(S3Options()) as store:
        fresh = store.prune(prefix, 1)
        assert (fresh.deleted, fresh.stale_temporaries) == ([], [])
        later = dt.datetime.now(dt.UTC) + STALE_TMP + dt.timedelta(minutes=1)
        old = store.prune(prefix, 1, now=later)
        assert [o.url.key for o in old.stale_temporaries] == ["p/b1.raftkv-tmp-0123456789ab"]
        assert [o.url.key for o in old.kept] == ["p/b1"]
    assert keys_in(s3, bucket) == ["p/b1"]
