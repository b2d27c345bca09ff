"""Backup bookkeeping from Job states (``raftkv_operator.backup``), on plain data.

Tables for the CronJob the spec renders (validated against the Kubernetes batch/v1
schema), for reading a Job and its pod (termination message), and for folding Jobs
into ``status.backup`` and the ``BackupFailing`` condition; hypothesis properties for
the folding rules over arbitrary Job histories: the condition follows the newest
finished Job, the last success is never forgotten or moved back in time, and a Job
still running changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv_operator import backup as b
from raftkv_operator import naming as n
from raftkv_operator.objects import RaftKVObject
from raftkv_operator.status import format_time, parse_time

K8S_VERSION = "1.30"
T0 = 1_800_000_000.0


def rkv(backup: dict[str, Any] | None, **spec: Any) -> RaftKVObject:
    body: dict[str, Any] = {"replicas": 3, **spec}
    if backup is not None:
        body["backup"] = backup
    return RaftKVObject(name="kv", namespace="prod", uid="u-1", spec=body)


S3 = {
    "schedule": "0 3 * * *",
    "retention": 5,
    "s3": {
        "bucket": "backups",
        "prefix": "prod/kv",
        "endpoint": "http://minio:9000",
        "region": "eu-west-1",
        "credentialsSecret": "s3-creds",
    },
}
PVC = {"schedule": "*/30 * * * *", "retention": 2, "pvc": {"claimName": "bk", "path": "kv"}}


def env_of(cron: dict[str, Any]) -> dict[str, Any]:
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --------------------------------------------------------------------------- the CronJob


def test_no_backup_spec_renders_no_cronjob() -> None:
    assert b.cronjob(rkv(None)) is None
    assert b.cronjob(rkv({})) is None


@pytest.mark.parametrize("backup", [S3, PVC], ids=["s3", "pvc"])
def test_the_cronjob_is_a_valid_batch_v1_object(backup: dict[str, Any]) -> None:
    cron = b.cronjob(rkv(backup), "raftkv:1")
    assert cron is not None
    kubernetes_validate.validate(cron, K8S_VERSION, strict=True)
    spec = cron["spec"]
    assert spec["schedule"] == backup["schedule"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "raftkv:1"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["terminationMessagePath"] == b.RESULT_FILE
    # Backup pods are never members: not the members' selector labels.
    member = n.selector_labels("kv")
    for where in (cron["metadata"], spec["jobTemplate"]["metadata"], job["template"]["metadata"]):
        labels = where["labels"]
        assert not all(labels.get(k) == v for k, v in member.items())
        assert all(labels.get(k) == v for k, v in b.selector_labels("kv").items())
    env = env_of(cron)
    assert env["RAFTKV_BACKUP_ENDPOINTS"] == "http://kv-client.prod.svc:2379"
    assert env["RAFTKV_BACKUP_KEEP"] == str(backup["retention"])


def test_s3_target_env_and_credentials() -> None:
    cron = b.cronjob(rkv(S3))
    assert cron is not None
    env = env_of(cron)
    assert env["RAFTKV_BACKUP_TARGET"] == "s3://backups/prod/kv/"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert env["AWS_REGION"] == "eu-west-1"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "s3-creds", "key": key}}
    script = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert script == ["sh", "-c", b.S3_SCRIPT]


@pytest.mark.parametrize(
    ("prefix", "url"),
    [("", "s3://b/"), ("/", "s3://b/"), ("a", "s3://b/a/"), ("/a/b/", "s3://b/a/b/")],
)
def test_s3_prefix_url(prefix: str, url: str) -> None:
    assert b.s3_prefix_url({"bucket": "b", "prefix": prefix}) == url


def test_pvc_target_mounts_the_claim() -> None:
    cron = b.cronjob(rkv(PVC))
    assert cron is not None
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "backup", "persistentVolumeClaim": {"claimName": "bk"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "backup", "mountPath": "/backup"}]
    env = env_of(cron)
    assert env["RAFTKV_BACKUP_ROOT"] == "/backup"
    assert env["RAFTKV_BACKUP_PATH"] == "kv"
    assert "AWS_ACCESS_KEY_ID" not in env


@pytest.mark.parametrize("length", [1, 10, 45, 46, 63, 200])
def test_cronjob_names_fit_and_stay_unique(length: int) -> None:
    name = "k" * length
    made = b.cronjob_name(name)
    assert len(made) <= b.MAX_CRONJOB_NAME
    assert made.endswith("-backup")
    if length <= 45:
        assert made == f"{name}-backup"
    else:
        assert b.cronjob_name(name[:-1] + "x") != made


def test_the_spec_hash_says_when_the_cronjob_must_be_rewritten() -> None:
    first = b.cronjob(rkv(S3))
    same = b.cronjob(rkv(dict(S3)))
    other = b.cronjob(rkv({**S3, "schedule": "0 4 * * *"}))
    image = b.cronjob(rkv(S3, image="raftkv:2"))
    assert first is not None
    assert same is not None
    assert other is not None
    assert image is not None
    assert not b.needs_update(first, same)
    assert b.needs_update(first, other)
    assert b.needs_update(first, image)
    assert b.needs_update({"metadata": {}}, first)  # a CronJob someone else wrote


# --------------------------------------------------------------------------- Jobs


def job(
    name: str,
    created: float,
    state: str,
    finished: float | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if state == "succeeded":
        status = {
            "succeeded": 1,
            "completionTime": format_time(finished or created),
            "conditions": [
                {
                    "type": "Complete",
                    "status": "True",
                    "lastTransitionTime": format_time(finished or created),
                }
            ],
        }
    elif state == "failed":
        status = {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": format_time(finished or created),
                }
            ],
        }
    elif state == "running":
        status = {"active": 1}
    return {
        "metadata": {"name": name, "creationTimestamp": format_time(created)},
        "status": status,
    }


def pod(job_name: str, exit_code: int, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{job_name}-x", "labels": {"job-name": job_name}},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": exit_code, "message": message}}}
            ]
        },
    }


RESULT = {
    "file": "s3://backups/prod/kv/raftkv-20270115T080000Z-000000004711.snapshot",
    "applied_index": 4711,
    "keys": 12,
    "bytes": 3456,
    "sha256": "ab" * 32,
}


def test_a_succeeded_job_carries_the_saves_json() -> None:
    view = b.job_view(
        job("kv-backup-1", T0, "succeeded", T0 + 5),
        [pod("kv-backup-1", 0, json.dumps(RESULT)), pod("other", 0, "{}")],
    )
    assert view.succeeded
    assert not view.failed
    assert view.finished == T0 + 5
    assert view.result == RESULT


def test_a_failed_job_carries_the_error_from_the_log_tail() -> None:
    err = "error: cannot save: bucket 'backups' does not exist"
    view = b.job_view(job("kv-backup-2", T0, "failed", T0 + 3), [pod("kv-backup-2", 1, err)])
    assert view.failed
    assert not view.succeeded
    assert view.message == err
    # Without a pod (deleted, or never scheduled) the Job's own condition says why.
    bare = b.job_view(job("kv-backup-2", T0, "failed", T0 + 3), [])
    assert bare.message == "Job has reached the specified backoff limit"


def test_a_running_job_is_not_finished() -> None:
    view = b.job_view(job("kv-backup-3", T0, "running"), [])
    assert view.finished is None
    assert not view.succeeded
    assert not view.failed


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (json.dumps(RESULT), RESULT),
        ("warning: something\n" + json.dumps(RESULT) + "\n", RESULT),
        ("warning: something\n" + json.dumps(RESULT, indent=2) + "\n", RESULT),
        ('{"a": 1}\n' + json.dumps(RESULT, indent=2), RESULT),
        ("not json", None),
        ("", None),
        ("[1, 2]", None),
    ],
)
def test_parse_result(text: str, parsed: dict[str, Any] | None) -> None:
    assert b.parse_result(text) == parsed


# --------------------------------------------------------------------------- status


def test_status_table() -> None:
    ok = b.job_view(job("j1", T0, "succeeded", T0 + 5), [pod("j1", 0, json.dumps(RESULT))])
    bad = b.job_view(job("j2", T0 + 60, "failed", T0 + 65), [pod("j2", 1, "boom")])
    ok2 = b.job_view(job("j3", T0 + 120, "succeeded", T0 + 125), [])

    # Nothing finished yet.
    assert b.backup_status([], None) == {}
    assert b.failing_condition({})[:2] == ("False", "NoBackupYet")

    first = b.backup_status([ok], None)
    assert first == {
        "lastSuccessfulTime": format_time(T0 + 5),
        "lastSuccessfulJob": "j1",
        "object": RESULT["file"],
        "appliedIndex": 4711,
        "keys": 12,
        "bytes": 3456,
        "sha256": RESULT["sha256"],
    }
    assert b.failing_condition(first)[:2] == ("False", "BackupSucceeded")
    assert b.backup_events(None, first)[0][:2] == ("Normal", "BackupSucceeded")

    second = b.backup_status([ok, bad], first)
    assert second["lastFailedJob"] == "j2"
    assert second["lastFailure"] == "boom"
    assert second["lastSuccessfulJob"] == "j1"
    state, reason, message = b.failing_condition(second)
    assert (state, reason) == ("True", "BackupFailed")
    assert "boom" in message
    assert b.backup_events(first, second) == [("Warning", "BackupFailed", message)]
    assert b.backup_events(second, second) == []  # once per Job, not once per pass

    # The next success clears the condition; its result being unreadable does not
    # keep the previous object's details.
    third = b.backup_status([ok, bad, ok2], second)
    assert third["lastSuccessfulJob"] == "j3"
    assert "object" not in third
    assert "appliedIndex" not in third
    assert b.failing_condition(third)[:2] == ("False", "BackupSucceeded")

    # The history limit deleted every Job: what status knew stays.
    assert b.backup_status([], third) == third


# --------------------------------------------------------------------------- properties

job_states = st.sampled_from(["succeeded", "failed", "running"])


@st.composite
def histories(draw: st.DrawFn) -> list[b.JobView]:
    count = draw(st.integers(min_value=0, max_value=8))
    out = []
    for i in range(count):
        state = draw(job_states)
        created = T0 + 60 * i
        duration = draw(st.integers(min_value=1, max_value=50))
        raw = job(f"j{i}", created, state, created + duration)
        pods = [pod(f"j{i}", 0 if state == "succeeded" else 1, json.dumps(RESULT))]
        out.append(b.job_view(raw, pods))
    return out


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_the_condition_follows_the_newest_finished_job(jobs: list[b.JobView], rng: Any) -> None:
    rng.shuffle(jobs)  # the API lists Jobs in no particular order
    status = b.backup_status(jobs, None)
    finished = [j for j in jobs if j.finished is not None]
    if not finished:
        assert status == {}
        assert b.failing_condition(status)[0] == "False"
        return
    newest = max(finished, key=lambda j: j.finished or 0.0)
    assert b.is_failing(status) == newest.failed
    assert (b.failing_condition(status)[0] == "True") == newest.failed


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(min_value=0, max_value=8))
def test_folding_in_steps_never_forgets_or_goes_back(jobs: list[b.JobView], cut: int) -> None:
    """Seeing the history in two passes, with the older Jobs deleted in between (the
    history limit), ends where seeing it all at once does."""
    cut = min(cut, len(jobs))
    at_once = b.backup_status(jobs, None)
    first = b.backup_status(jobs[:cut], None)
    stepped = b.backup_status(jobs[cut:], first)
    assert stepped == at_once
    # A pass that sees only older Jobs again changes nothing.
    assert b.backup_status(jobs[:cut], stepped) == stepped
    known = stepped.get("lastSuccessfulTime")
    if known is not None:
        wins = [j.finished for j in jobs if j.succeeded and j.finished is not None]
        assert parse_time(known) == max(wins)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_a_running_job_changes_nothing(jobs: list[b.JobView]) -> None:
    status = b.backup_status(jobs, None)
    running = b.job_view(job("late", T0 + 10_000, "running"), [])
    assert b.backup_status([*jobs, running], None) == status
    assert b.backup_status([running], status) == status
