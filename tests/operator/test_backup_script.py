"""The backup CronJob's container, run for real: its exact command and environment as
``backup.cronjob`` renders them, against a real member process, writing to moto's S3
server on loopback or to a directory (the PVC). Only what a cluster provides is
swapped in: the client Service URL (the member's loopback URL), the Secret's values,
the mount point, and the termination-message file (a temporary file the test reads
back the way the kubelet would, then hands to the operator's parser).

The local kubelet of e2e/local does not run Jobs, so this is how the Job's part is
tested end to end without a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.harness import LocalCluster
from raftkv.client import Client
from raftkv_operator import backup as b
from raftkv_operator.objects import RaftKVObject
from support.moto_s3 import MotoS3

pytestmark = pytest.mark.timeout(180)

BIN = str(Path(sys.executable).parent)  # where the `raftkv` console script is


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("source"), 1)
    try:
        c.start_all()
        c.leader()
        with Client(c.endpoints()) as cl:
            for i in range(5):
                cl.put(f"k{i}", f"v{i}".encode())
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server.start()
    finally:
        server.close()


def run_job(
    backup: dict[str, Any],
    member: LocalCluster,
    tmp: Path,
    secrets: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the rendered container; returns the process and its termination message."""
    cron = b.cronjob(RaftKVObject(name="kv", namespace="ns", uid="u", spec={"backup": backup}))
    assert cron is not None
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    result = tmp / "termination-log"
    result.write_text("")
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:  # a secretKeyRef: what the kubelet resolves from the Secret
            env[var["name"]] = (secrets or {})[var["valueFrom"]["secretKeyRef"]["key"]]
    env["RAFTKV_BACKUP_ENDPOINTS"] = member.endpoints()[0]
    env["RAFTKV_BACKUP_RESULT"] = str(result)
    if "RAFTKV_BACKUP_ROOT" in env:
        env["RAFTKV_BACKUP_ROOT"] = str(tmp / "claim")
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        container["command"],
        env={**base, **env, "PATH": f"{BIN}:{base.get('PATH', '/usr/bin:/bin')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # FallbackToLogsOnError: the file's content, or the log's tail when the
    # container failed and wrote nothing.
    message = result.read_text()
    if not message.strip() and proc.returncode != 0:
        message = (proc.stdout + proc.stderr)[-2048:]
    return proc, message


def test_pvc_target_saves_a_named_file_and_prunes_by_name(
    member: LocalCluster, tmp_path: Path
) -> None:
    directory = tmp_path / "claim" / "kv"
    directory.mkdir(parents=True)
    old = [f"raftkv-2020010{d}T000000Z.snapshot" for d in range(1, 5)]
    for name in old:
        (directory / name).write_bytes(b"old")
    (directory / "notes.txt").write_text("not a backup")
    (directory / "raftkv-20200101T000000Z.snapshot.tmp").write_text("not a backup name")

    backup = {"schedule": "0 3 * * *", "retention": 2, "pvc": {"claimName": "c", "path": "kv"}}
    proc, message = run_job(backup, member, tmp_path)
    assert proc.returncode == 0, proc.stderr
    parsed = b.parse_result(message)
    assert parsed is not None
    made = Path(parsed["file"])
    assert made.parent == directory
    assert parsed["applied_index"] > 0
    assert parsed["keys"] == 5
    assert made.stat().st_size == parsed["bytes"]
    # The new one and the newest old one are kept; other files are never touched.
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [made.name, old[-1], "notes.txt", "raftkv-20200101T000000Z.snapshot.tmp"]
    )
    for name in old[:-1]:
        assert f"pruned {directory / name}" in proc.stdout
    # The operator's side: a succeeded Job with this pod is what status.backup shows.
    view = b.job_view(
        {
            "metadata": {"name": "j", "creationTimestamp": "2030-01-01T00:00:00Z"},
            "status": {"succeeded": 1, "completionTime": "2030-01-01T00:00:05Z"},
        },
        [
            {
                "metadata": {"labels": {"job-name": "j"}},
                "status": {
                    "containerStatuses": [
                        {"state": {"terminated": {"exitCode": 0, "message": message}}}
                    ]
                },
            }
        ],
    )
    status = b.backup_status([view], None)
    assert status["object"] == str(made)
    assert status["appliedIndex"] == parsed["applied_index"]


def test_s3_target_saves_under_the_prefix_and_prunes(
    member: LocalCluster, s3: MotoS3, tmp_path: Path
) -> None:
    cl = s3.client()
    try:
        cl.create_bucket(Bucket="bkp")
    finally:
        cl.close()
    creds = s3.credentials["admin"]
    secrets = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
    }
    backup = {
        "schedule": "0 3 * * *",
        "retention": 1,
        "s3": {
            "bucket": "bkp",
            "prefix": "prod/kv",
            "endpoint": s3.url,
            "region": "us-east-1",
            "credentialsSecret": "creds",
        },
    }
    urls = []
    for _ in range(2):
        with Client(member.endpoints()) as c:
            c.put("more", b"x")  # a new applied index: a new object name
        proc, message = run_job(backup, member, tmp_path, secrets)
        assert proc.returncode == 0, proc.stderr
        parsed = b.parse_result(message)
        assert parsed is not None
        assert parsed["file"].startswith("s3://bkp/prod/kv/raftkv-")
        urls.append(parsed["file"])
        pruned = b.parse_result(proc.stdout)  # prune's --json, after the save's file
        assert pruned is not None
        assert "deleted" in pruned
    cl = s3.client()
    try:
        keys = [o["Key"] for o in cl.list_objects_v2(Bucket="bkp").get("Contents", [])]
    finally:
        cl.close()
    assert keys == [urls[-1].removeprefix("s3://bkp/")]  # retention 1: the newest only


def test_a_failed_save_fails_the_job_with_the_error_as_its_message(
    member: LocalCluster, s3: MotoS3, tmp_path: Path
) -> None:
    creds = s3.credentials["admin"]
    secrets = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
    }
    backup = {
        "schedule": "0 3 * * *",
        "s3": {"bucket": "no-such-bucket", "endpoint": s3.url, "credentialsSecret": "c"},
    }
    proc, message = run_job(backup, member, tmp_path, secrets)
    assert proc.returncode != 0
    assert "does not exist" in message
    view = b.job_view(
        {
            "metadata": {"name": "j", "creationTimestamp": "2030-01-01T00:00:00Z"},
            "status": {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "lastTransitionTime": "2030-01-01T00:00:05Z",
                    }
                ],
            },
        },
        [
            {
                "metadata": {"labels": {"job-name": "j"}},
                "status": {
                    "containerStatuses": [
                        {"state": {"terminated": {"exitCode": 1, "message": message}}}
                    ]
                },
            }
        ],
    )
    status = b.backup_status([view], None)
    assert b.is_failing(status)
    assert "does not exist" in b.failing_condition(status)[2]
