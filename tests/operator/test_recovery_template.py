"""The pod template that forces one member (quorum-loss recovery), and how it is read back.

The start command is run for real by ``/bin/sh`` with a stand-in ``raftkv`` on PATH that
prints its arguments: only the pod the variable names gets ``--force-new-cluster``.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from raftkv.client import Member, StatusInfo
from raftkv_operator import objects as o
from raftkv_operator.observe import pod_view, pvc_view, statefulset_view
from raftkv_operator.recovery_model import FORCE_POD_ENV

RKV = o.RaftKVObject(name="kv", namespace="prod", uid="u-1", spec={"replicas": 3})


def test_forcing_a_pod_keeps_the_member_revision() -> None:
    plain = o.pod_template(RKV)
    forced = o.pod_template(RKV, force_pod="kv-1")
    assert forced["metadata"]["labels"] == plain["metadata"]["labels"]
    assert o.member_revision(RKV) == plain["metadata"]["labels"][o.REVISION_LABEL]
    (container,) = forced["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c", o.FORCE_COMMAND]
    assert container["env"][-1] == {"name": FORCE_POD_ENV, "value": "kv-1"}
    (before,) = plain["spec"]["containers"]
    assert before["command"] == ["raftkv", "serve"]
    assert FORCE_POD_ENV not in {e["name"] for e in before["env"]}


def test_the_forcing_statefulset_is_a_valid_object() -> None:
    sts = o.statefulset(RKV, 3)
    sts["spec"]["template"] = o.pod_template(RKV, force_pod="kv-2")
    kubernetes_validate.validate(sts, "1.30", strict=True)


def test_the_member_ports_include_etcd() -> None:
    (container,) = o.pod_template(RKV)["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 2379, "peer": 2380, "etcd": 12379}
    for service in (o.client_service(RKV), o.peer_service(RKV)):
        assert {"name": "etcd", "port": 12379, "targetPort": "etcd"} in service["spec"]["ports"]
        kubernetes_validate.validate(service, "1.30", strict=True)


@pytest.fixture
def fake_raftkv(tmp_path: Path) -> Path:
    script = tmp_path / "raftkv"
    script.write_text('#!/bin/sh\necho "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return tmp_path


@pytest.mark.parametrize(
    ("pod", "named", "expected"),
    [
        ("kv-1", "kv-1", "serve --force-new-cluster"),
        ("kv-0", "kv-1", "serve"),
        ("kv-10", "kv-1", "serve"),
        ("kv-1", None, "serve"),
        ("kv-1", "", "serve"),
    ],
)
def test_only_the_named_pod_starts_with_the_flag(
    fake_raftkv: Path, pod: str, named: str | None, expected: str
) -> None:
    env = {"PATH": f"{fake_raftkv}:{os.environ.get('PATH', '/usr/bin:/bin')}", "POD_NAME": pod}
    if named is not None:
        env[FORCE_POD_ENV] = named
    out = subprocess.run(
        ["/bin/sh", "-c", o.FORCE_COMMAND], env=env, capture_output=True, text=True, timeout=10
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_observation_reads_the_forced_pod_and_the_member_data() -> None:
    template = o.pod_template(RKV, force_pod="kv-1")
    sts: dict[str, Any] = {"spec": {"replicas": 3, "template": template}}
    view = statefulset_view(sts)
    assert view is not None
    assert view.force_pod == "kv-1"
    assert statefulset_view({"spec": {"template": o.pod_template(RKV)}}).force_pod is None  # type: ignore[union-attr]
    pod = {"metadata": {"name": "kv-1", "uid": "p"}, "spec": template["spec"]}
    answer = StatusInfo(
        id=2,
        name="kv-1",
        role="follower",
        leader=0,
        term=9,
        commit_index=40,
        applied_index=41,
        last_index=44,
        snapshot_index=0,
        members=[Member(2, "kv-1", ["http://p"], [], False), Member(3, "kv-2", [], [], True)],
    )
    seen = pod_view(pod, 1, answer)
    assert (seen.term, seen.last_index, seen.applied_index) == (9, 44, 41)
    assert seen.voter
    assert seen.force_new_cluster
    other = pod_view({"metadata": {"name": "kv-2"}, "spec": template["spec"]}, 2, None)
    assert not other.force_new_cluster
    assert not other.voter
    assert pvc_view({"metadata": {"uid": "v-1"}}, 1).uid == "v-1"
