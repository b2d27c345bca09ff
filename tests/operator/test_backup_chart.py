"""The chart's optional RaftKV instance carries ``spec.backup`` and ``spec.restore``
from values, and what it renders is a RaftKV the CRD admits (defaults and CEL)."""

from __future__ import annotations

from typing import Any

from shipping.chart import one, raftkv_errors, render

BACKUP = {
    "schedule": "0 3 * * *",
    "retention": 10,
    "s3": {"bucket": "backups", "prefix": "prod/kv", "credentialsSecret": "kv-s3"},
}
RESTORE = {"from": "s3://backups/prod/kv/raftkv-x.snapshot", "s3": {"credentialsSecret": "kv-s3"}}


def test_instance_backup_and_restore_follow_values() -> None:
    values: dict[str, Any] = {
        "instance": {"enabled": True, "name": "kv", "backup": BACKUP, "restore": RESTORE}
    }
    rkv = one(render(values), "RaftKV", "kv")
    assert rkv["spec"]["backup"] == BACKUP
    assert rkv["spec"]["restore"] == RESTORE
    assert raftkv_errors(rkv) == []


def test_instance_without_them_renders_neither() -> None:
    rkv = one(render({"instance": {"enabled": True}}), "RaftKV")
    assert "backup" not in rkv["spec"]
    assert "restore" not in rkv["spec"]
