"""End to end, locally: a scheduled backup to a loopback S3 endpoint, then a restore
into a new RaftKV whose data equals the backup.

The real operator renders the backup CronJob; ``kubelet_batch.py`` plays the CronJob
and Job controllers and runs the Job's container (``raftkv snapshot save`` then
``prune``, the operator's own script) as a local process against moto's standalone S3
server (``tests/support/moto_s3.py``); the operator reads the result from the pod's
termination message into ``status.backup``. The restore's init container (``raftkv
snapshot restore`` on ordinal 0) runs through ``kubelet_init.py`` before that member
starts.

1. RaftKV ``kv`` (3 members) with ``spec.backup`` (every minute, retention 2),
   suspended while a known data set is written (writes, overwrites, deletes), then
   resumed: the CronJob controller runs the missed minute at once, or the next one.
   ``status.backup`` names the object, its applied index, key count and size; the object
   is in the bucket, the prune kept the newest 2 objects under the prefix (two older
   ones were put there first), ``BackupFailing`` is False and the ``BackupSucceeded``
   Event was posted.
2. ``kv`` is deleted (its members stop, its pods, claims, CronJob and Jobs go), then
   ``kv-restored`` is created with ``spec.restore.from`` = that object. Deleting first
   is the choice here: the loopback addressing (``world``'s templates) has only
   ``{ordinal}``, so two RaftKVs at once would want the same ports, and a restore is
   what one does after losing a cluster anyway. It grows to 3 members in sync; every
   key, value and revision equals the backed-up data set, its cluster id differs from
   ``kv``'s, and ``Restored`` is True.
3. A restore from an object that does not exist fails clearly: ``Restored=False`` with
   ``RestoreFailed`` and the CLI's "no such object", the init container is retried
   (CrashLoopBackOff), and no member ever starts or is added.

Opt-in like the rest of ``e2e/`` (``pytest e2e/local``). The schedule has minute
resolution, as a real CronJob's: step 1 waits for the next minute boundary at most.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException
from test_operator_e2e import STEP_TIMEOUT, TRANSIENT, World, world

from raftkv.client import Client
from raftkv_operator import backup as b
from raftkv_operator import naming as n
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.moto_s3 import REGION, MotoS3
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["world"]  # the fixture, shared with test_operator_e2e

SOURCE = "kv"
RESTORED = "kv-restored"
BUCKET = "raftkv-backups"
PREFIX = "kv"
CREDENTIALS = "kv-backup-s3"
#: The first backup runs at the next minute boundary at the latest, plus its run.
BACKUP_TIMEOUT = 60.0 + STEP_TIMEOUT


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path / "moto.log")
    try:
        yield server.start()
    finally:
        server.close()


def setup_s3(world: World, s3: MotoS3) -> None:
    """The bucket, and the Secret with the credentials the Job and init container use."""
    client = s3.client()
    try:
        client.create_bucket(Bucket=BUCKET)
    finally:
        client.close()
    creds = s3.credentials["admin"]
    core: Any = world.core  # the client types bodies as models; a dict is what it sends
    core.create_namespaced_secret(
        NS,
        {
            "metadata": {"name": CREDENTIALS},
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(creds.access_key_id.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(
                    creds.secret_access_key.encode()
                ).decode(),
            },
        },
    )


def dump(world: World) -> dict[str, tuple[bytes, int]]:
    """Every key of the cluster the client URLs reach: value and revision."""
    out: dict[str, tuple[bytes, int]] = {}
    with Client(world.client_urls, timeout=5, retries=3) as client:
        after: str | None = None
        while page := client.list("", limit=1000, start_after=after):
            out.update((kv.key, (kv.value, kv.revision)) for kv in page)
            after = page[-1].key
    return out


def write_data_set(world: World) -> dict[str, bytes]:
    """A few hundred keys, some overwritten, some deleted; binary values among them.
    Returns what the cluster holds afterwards (every write was acknowledged)."""
    expected: dict[str, bytes] = {}
    with Client(world.client_urls, timeout=5, retries=5, backoff=0.1) as client:
        for i in range(300):
            key = f"data/{i:04d}"
            value = bytes(range(i % 256)) if i % 10 == 0 else f"value-{i}".encode()
            client.put(key, value)
            expected[key] = value
        for i in range(0, 300, 7):
            key = f"data/{i:04d}"
            client.put(key, f"overwritten-{i}".encode())
            expected[key] = f"overwritten-{i}".encode()
        for i in range(0, 300, 11):
            key = f"data/{i:04d}"
            client.delete(key)
            del expected[key]
    return expected


def objects(s3: MotoS3) -> list[str]:
    client = s3.client()
    try:
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    finally:
        client.close()
    return sorted(o["Key"] for o in listed.get("Contents") or [])


def put_object(s3: MotoS3, key: str) -> None:
    client = s3.client()
    try:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"an older backup")
    finally:
        client.close()


def restore_from(url: str, s3: MotoS3) -> dict[str, Any]:
    """``spec.restore`` of the object at ``url`` in the loopback S3."""
    return {
        "from": url,
        "s3": {"endpoint": s3.url, "region": REGION, "credentialsSecret": CREDENTIALS},
    }


def gone(world: World, name: str) -> bool:
    """The RaftKV, its member processes and pods, its claims and its backup Jobs are
    all gone."""
    try:
        world.raftkv(name)
        return False
    except ApiException as exc:
        if exc.status != 404:
            raise
    if any(p.rsplit("-", 1)[0] == name for p in list(world.kubelet.procs)):
        return False
    if world.member_pods(name):
        return False
    selector = ",".join(f"{k}={v}" for k, v in sorted(n.selector_labels(name).items()))
    if world.core.list_namespaced_persistent_volume_claim(NS, label_selector=selector).items:
        return False
    jobs = world.kubelet.batch.batch.list_namespaced_job(NS).items
    return not jobs and not world.kubelet.batch.pods


def test_scheduled_backup_then_restore(world: World, s3: MotoS3) -> None:
    setup_s3(world, s3)
    s3_spec = {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "endpoint": s3.url,
        "region": REGION,
        "credentialsSecret": CREDENTIALS,
    }
    schedule = {"schedule": "* * * * *", "retention": 2, "s3": s3_spec}
    world.create_raftkv(name=SOURCE, backup={**schedule, "suspend": True})
    source_status = world.wait_in_sync(3, SOURCE, timeout=2 * STEP_TIMEOUT)

    # -- 1. the data set, then the scheduled backup --------------------------------
    expected = write_data_set(world)
    backed_up = dump(world)
    assert {k: v for k, (v, _) in backed_up.items()} == expected
    # Two older objects under the prefix: with retention 2 the prune keeps the newer.
    put_object(s3, f"{PREFIX}/raftkv-20200101T000000Z-000000000001.snapshot")
    put_object(s3, f"{PREFIX}/raftkv-20200101T000100Z-000000000002.snapshot")
    cron = world.kubelet.batch.batch.read_namespaced_cron_job(b.cronjob_name(SOURCE), NS)
    assert cron.spec.suspend is True
    assert not (cron.status and cron.status.last_schedule_time)
    world.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, SOURCE, {"spec": {"backup": {"suspend": False}}}
    )

    def backed_up_status() -> dict[str, Any] | None:
        status = world.raftkv(SOURCE).get("status") or {}
        backup = status.get("backup") or {}
        return backup if backup.get("lastSuccessfulJob") and backup.get("object") else None

    backup = wait_for(
        "a successful scheduled backup in status.backup",
        backed_up_status,
        timeout=BACKUP_TIMEOUT,
        interval=0.5,
        ignore=TRANSIENT,
    )
    url = backup["object"]
    assert url.startswith(f"s3://{BUCKET}/{PREFIX}/raftkv-"), backup
    assert backup["keys"] == len(expected), backup
    assert backup["appliedIndex"] >= max(rev for _, rev in backed_up.values()), backup
    assert backup["bytes"] > 0, backup
    assert len(backup["sha256"]) == 64, backup
    key = url.removeprefix(f"s3://{BUCKET}/")
    # The prune ran after the save: the new object and the newer of the older two.
    wait_for(
        "the prune to keep the newest 2 objects",
        lambda: (
            objects(s3) == sorted([key, f"{PREFIX}/raftkv-20200101T000100Z-000000000002.snapshot"])
        ),
        timeout=STEP_TIMEOUT,
        interval=0.2,
    )
    failing = wait_for(
        "BackupFailing=False/BackupSucceeded",
        lambda: (
            (c := world.conditions(SOURCE).get(b.BACKUP_FAILING)) is not None
            and c["reason"] == "BackupSucceeded"
            and c
        ),
        timeout=STEP_TIMEOUT,
        interval=0.2,
        ignore=TRANSIENT,
    )
    assert failing["status"] == "False", failing
    uid = world.raftkv(SOURCE)["metadata"]["uid"]
    events = [
        e
        for e in world.core.list_namespaced_event(NS).items
        if e.involved_object.uid == uid and e.reason == "BackupSucceeded"
    ]
    assert events
    assert url in str(events[0].message), [e.message for e in events]
    # The Job as the controllers left it: Complete, labelled, its pod's result JSON.
    job = world.kubelet.batch.batch.read_namespaced_job(backup["lastSuccessfulJob"], NS)
    assert job.metadata.labels["job-name"] == job.metadata.name
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.status.succeeded == 1
    assert job.status.completion_time is not None
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    pod: Any
    (pod,) = world.core.list_namespaced_pod(
        NS, label_selector=f"job-name={job.metadata.name}"
    ).items
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded"
    assert terminated.exit_code == 0
    result = b.parse_result(terminated.message)
    assert result is not None
    assert result["file"] == url

    # -- 2. the source is deleted, a new RaftKV is restored from the backup ---------
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, SOURCE)
    wait_for(
        f"{SOURCE} and its members to be gone",
        lambda: gone(world, SOURCE),
        timeout=STEP_TIMEOUT,
        interval=0.2,
        ignore=TRANSIENT,
    )
    world.create_raftkv(name=RESTORED, restore=restore_from(url, s3))
    status = world.wait_in_sync(3, RESTORED, timeout=2 * STEP_TIMEOUT)
    restored = wait_for(
        "Restored=True",
        lambda: (c := world.conditions(RESTORED).get("Restored")) and c["status"] == "True" and c,
        timeout=STEP_TIMEOUT,
        interval=0.2,
        ignore=TRANSIENT,
    )
    assert url in restored["message"], restored
    assert status["clusterID"] != source_status["clusterID"], (status, source_status)
    assert dump(world) == backed_up
    pods = sorted(str(p.metadata.name) for p in world.member_pods(RESTORED))
    assert pods == [f"{RESTORED}-0", f"{RESTORED}-1", f"{RESTORED}-2"]
    init = world.member_pods(RESTORED)[0].status.init_container_statuses
    assert init, init
    assert init[0].state.terminated.exit_code == 0, init
    # The restored cluster takes writes.
    with Client(world.client_urls, timeout=5, retries=3) as client:
        client.put("after-restore", b"yes")
        got = client.get("after-restore")
        assert got is not None
        assert got.value == b"yes"


def test_restore_of_a_missing_object_fails_clearly(world: World, s3: MotoS3) -> None:
    setup_s3(world, s3)
    missing = f"s3://{BUCKET}/{PREFIX}/raftkv-20990101T000000Z-000000000042.snapshot"
    world.create_raftkv(name=RESTORED, restore=restore_from(missing, s3))
    failed = wait_for(
        "Restored=False/RestoreFailed",
        lambda: (
            (c := world.conditions(RESTORED).get("Restored"))
            and c["reason"] == "RestoreFailed"
            and c
        ),
        timeout=STEP_TIMEOUT,
        interval=0.2,
        ignore=TRANSIENT,
    )
    assert failed["status"] == "False", failed
    assert "no such object" in failed["message"], failed

    def retried() -> Any:
        (pod,) = world.member_pods(RESTORED)
        statuses = pod.status.init_container_statuses or []
        return statuses and statuses[0].restart_count >= 2 and statuses[0]

    # The kubelet retries the init container (CrashLoopBackOff), and nothing grows.
    init = wait_for(
        "the restore to be retried", retried, timeout=STEP_TIMEOUT, interval=0.5, ignore=TRANSIENT
    )
    assert init.last_state.terminated.exit_code != 0, init
    assert [p.metadata.name for p in world.member_pods(RESTORED)] == [f"{RESTORED}-0"]
    assert world.kubelet.procs == {}
    obj = world.raftkv(RESTORED)
    assert len((obj.get("status") or {}).get("memberIDs") or []) <= 1, obj.get("status")
