"""Save, then restore, with the operator's own containers run for real: the backup
CronJob's container writes a backup of a live member to a directory (the PVC) or to
moto's S3 server on loopback, and the restore init container of the StatefulSet's pod
template (exactly as ``objects`` renders it) turns it into ordinal 0's data dir; a real
member then starts on that data dir with the RaftKV's cluster token and serves the
backed-up data. Only what a
cluster provides is swapped in: the mount points, the env the kubelet resolves
(``POD_NAME``, the bootstrap ConfigMap's state), and the termination-message file.

Also: the script restores only once (a restart keeps its data), only on ordinal 0,
only while the cluster was never bootstrapped, and a missing backup fails with the
error as its message and leaves the data dir empty, so a retry works once the backup
is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.harness import LocalCluster
from raftkv.client import Client
from raftkv_operator import backup as b
from raftkv_operator import objects as o
from raftkv_operator import restore
from support.moto_s3 import MotoS3

pytestmark = pytest.mark.timeout(180)

BIN = str(Path(sys.executable).parent)
TOKEN = "uid-of-the-new-raftkv"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("source"), 1)
    try:
        c.start_all()
        c.leader()
        with Client(c.endpoints()) as cl:
            for i in range(10):
                cl.put(f"key/{i:02}", f"value {i}".encode())
        yield c
    finally:
        c.close()


def sh(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAFTKV_"))}
    return subprocess.run(
        command,
        env={**base, **env, "PATH": f"{BIN}:{base.get('PATH', '/usr/bin:/bin')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def take_backup(source: LocalCluster, claim: Path, result: Path) -> dict[str, Any]:
    backup = {"schedule": "0 3 * * *", "retention": 3, "pvc": {"claimName": "c", "path": "kv"}}
    cron = b.cronjob(o.RaftKVObject(name="kv", namespace="ns", uid="u", spec={"backup": backup}))
    assert cron is not None
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {
        "RAFTKV_BACKUP_ENDPOINTS": source.endpoints()[0],
        "RAFTKV_BACKUP_ROOT": str(claim),
        "RAFTKV_BACKUP_RESULT": str(result),
    }
    proc = sh(container["command"], env)
    assert proc.returncode == 0, proc.stderr
    parsed = b.parse_result(result.read_text())
    assert parsed is not None
    return dict(parsed)


def restore_env(
    from_in_claim: str, claim: Path, data_dir: Path, pod: str, peer_url: str, state: str
) -> tuple[list[str], dict[str, str], Path]:
    rkv = o.RaftKVObject(
        name="kv",
        namespace="ns",
        uid=TOKEN,
        spec={"restore": {"from": from_in_claim, "pvc": "backups"}},
    )
    pod_spec = o.pod_spec(rkv)
    (init,) = pod_spec["initContainers"]
    result = data_dir.parent / f"{pod}-restore-termination-log"
    plain = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    env = {
        **plain,
        # What the kubelet resolves: the downward API, the ConfigMap, $(VAR) references.
        "POD_NAME": pod,
        "RAFTKV_NAME": pod,
        "RAFTKV_INITIAL_CLUSTER_STATE": state,
        "RAFTKV_DATA_DIR": str(data_dir),
        "RAFTKV_ADVERTISE_PEER_URL": peer_url,
        "RAFTKV_RESTORE_FROM": plain["RAFTKV_RESTORE_FROM"].replace(
            restore.SOURCE_ROOT, str(claim), 1
        ),
        "RAFTKV_RESTORE_RESULT": str(result),
    }
    assert env["RAFTKV_CLUSTER_TOKEN"] == TOKEN
    return init["command"], env, result


def test_save_then_restore_into_ordinal_0_and_serve(source: LocalCluster, tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    saved = take_backup(source, claim, tmp_path / "backup-termination-log")
    in_claim = str(Path(saved["file"]).relative_to(claim))

    new = LocalCluster(tmp_path / "new", 0, extra_args=["--cluster-token", TOKEN])
    try:
        m = new.add_process("kv-0")
        m.data_dir.mkdir(parents=True)
        (m.data_dir / "lost+found").mkdir()  # what a fresh ext4 volume holds

        # Not ordinal 0, or bootstrapped already: nothing happens.
        for pod, state in (("kv-1", "new"), ("kv-0", "existing")):
            command, env, _ = restore_env(in_claim, claim, m.data_dir, pod, m.peer_url, state)
            proc = sh(command, env)
            assert proc.returncode == 0, proc.stderr
            assert "nothing to restore" in proc.stdout
            assert sorted(p.name for p in m.data_dir.iterdir()) == ["lost+found"]

        command, env, result = restore_env(in_claim, claim, m.data_dir, "kv-0", m.peer_url, "new")
        proc = sh(command, env)
        assert proc.returncode == 0, proc.stderr
        restored = b.parse_result(result.read_text())
        assert restored is not None
        assert restored["applied_index"] == saved["applied_index"]
        assert (m.data_dir / "member.json").exists()
        assert not (m.data_dir / ".raftkv-restore").exists()

        # A restart of the init container (the pod restarted) restores nothing again.
        proc = sh(command, env)
        assert proc.returncode == 0, proc.stderr
        assert "holds data: not restoring again" in proc.stdout

        new.start("kv-0")
        new.wait_ready(["kv-0"])
        with Client([m.url]) as cl:
            assert cl.status().id == restored["member_id"]
            revisions = []
            for i in range(10):
                got = cl.get(f"key/{i:02}")
                assert got is not None
                assert got.value == f"value {i}".encode()
                revisions.append(got.revision)
            assert cl.put("after", b"restore").revision > max(revisions)
    finally:
        new.close()


def test_a_missing_backup_fails_clearly_and_a_retry_works(
    source: LocalCluster, tmp_path: Path
) -> None:
    claim = tmp_path / "claim"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    command, env, result = restore_env(
        "kv/missing.snapshot", claim, data_dir, "kv-0", "http://127.0.0.1:1", "new"
    )
    proc = sh(command, env)
    assert proc.returncode != 0
    # FallbackToLogsOnError: nothing was written to the result file, so the log's
    # tail is the message, and that is what the operator shows in Restored=False.
    assert result.read_text() == ""
    message = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    assert "missing.snapshot" in message
    assert "Traceback" not in proc.stderr
    assert list(data_dir.iterdir()) == []  # nothing half-made

    saved = take_backup(source, claim, tmp_path / "backup-termination-log")
    shutil.copy(saved["file"], claim / "kv" / "missing.snapshot")
    proc = sh(command, env)
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "member.json").exists()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server.start()
    finally:
        server.close()


def test_s3_backup_then_restore_into_a_new_raftkv(
    source: LocalCluster, s3: MotoS3, tmp_path: Path
) -> None:
    """The scheduled backup's container to moto's S3, then the restore init container
    of a new RaftKV from the object it wrote, with the credentials of a Secret."""
    cl = s3.client()
    try:
        cl.create_bucket(Bucket="bkp")
    finally:
        cl.close()
    creds = s3.credentials["admin"]
    secret = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
    }
    target = {"endpoint": s3.url, "region": "us-east-1", "credentialsSecret": "kv-s3"}

    backup = {"schedule": "0 3 * * *", "s3": {"bucket": "bkp", "prefix": "kv", **target}}
    cron = b.cronjob(o.RaftKVObject(name="kv", namespace="ns", uid="u", spec={"backup": backup}))
    assert cron is not None
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    result = tmp_path / "backup-termination-log"
    env = {e["name"]: e.get("value") or secret[e["name"]] for e in container["env"]}
    env |= {"RAFTKV_BACKUP_ENDPOINTS": source.endpoints()[0], "RAFTKV_BACKUP_RESULT": str(result)}
    proc = sh(container["command"], env)
    assert proc.returncode == 0, proc.stderr
    saved = b.parse_result(result.read_text())
    assert saved is not None
    assert saved["file"].startswith("s3://bkp/kv/raftkv-")

    new = LocalCluster(tmp_path / "new", 0, extra_args=["--cluster-token", TOKEN])
    try:
        m = new.add_process("kv-0")
        rkv = o.RaftKVObject(
            name="kv",
            namespace="ns",
            uid=TOKEN,
            spec={"restore": {"from": saved["file"], "s3": target}},
        )
        (init,) = o.pod_spec(rkv)["initContainers"]
        restored_result = tmp_path / "restore-termination-log"
        env = {e["name"]: e["value"] for e in init["env"] if "value" in e}
        env |= {k: secret[k] for k in secret}
        env |= {
            "POD_NAME": "kv-0",
            "RAFTKV_NAME": "kv-0",
            "RAFTKV_INITIAL_CLUSTER_STATE": "new",
            "RAFTKV_DATA_DIR": str(m.data_dir),
            "RAFTKV_ADVERTISE_PEER_URL": m.peer_url,
            "RAFTKV_RESTORE_RESULT": str(restored_result),
        }
        assert env["RAFTKV_RESTORE_FROM"] == saved["file"]
        assert env["AWS_ENDPOINT_URL_S3"] == s3.url
        proc = sh(init["command"], env)
        assert proc.returncode == 0, proc.stderr
        restored = b.parse_result(restored_result.read_text())
        assert restored is not None
        assert restored["applied_index"] == saved["applied_index"]
        new.start("kv-0")
        new.wait_ready(["kv-0"])
        with Client([m.url]) as restored_client, Client(source.endpoints()) as original:
            for i in range(10):
                got = restored_client.get(f"key/{i:02}")
                want = original.get(f"key/{i:02}")
                assert got is not None
                assert want is not None
                assert got.value == want.value
    finally:
        new.close()
