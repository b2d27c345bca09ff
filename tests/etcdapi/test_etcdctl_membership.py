"""etcdctl's membership and maintenance commands against raftkv: member add
--learner / promote / remove (mapped onto raftkv's membership rules), move-leader,
snapshot save, defrag; on a cluster of its own, since they change it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.harness import LocalCluster
from support.wait import wait_for

from .tools import etcdctl, etcdctl_fails, live_endpoints


def _members(c: LocalCluster) -> dict[int, Any]:
    out = json.loads(etcdctl(live_endpoints(c), "-w", "json", "member", "list"))
    return {m["ID"]: m for m in out["members"]}


def test_learner_add_promote_remove(fresh: LocalCluster) -> None:
    follower = next(m for m in fresh.members.values() if m is not fresh.leader())
    new = fresh.add_process("m4")
    out = etcdctl(
        [follower.etcd_endpoint], "member", "add", "m4", f"--peer-urls={new.peer_url}", "--learner"
    )
    assert "added to cluster" in out
    hex_id = out.split("Member ", 1)[1].split()[0]
    member_id = int(hex_id, 16)
    assert _members(fresh)[member_id]["isLearner"] is True
    fresh.start("m4", join=True, member_id=member_id)
    fresh.wait_ready(["m4"])
    assert "promoted" in etcdctl([follower.etcd_endpoint], "member", "promote", hex_id)
    assert "isLearner" not in _members(fresh)[member_id]
    err = etcdctl_fails(live_endpoints(fresh), "member", "promote", hex_id)
    assert "can only promote a learner member" in err
    assert "removed from cluster" in etcdctl([follower.etcd_endpoint], "member", "remove", hex_id)
    wait_for("m4 gone from the list", lambda: member_id not in _members(fresh), 20)
    assert "member not found" in etcdctl_fails(live_endpoints(fresh), "member", "remove", hex_id)


def test_move_leader_snapshot_and_defrag(fresh: LocalCluster, tmp_path: Path) -> None:
    leader = fresh.leader()
    target = next(m for m in fresh.members.values() if m is not leader)
    assert "Leadership transferred" in etcdctl(
        live_endpoints(fresh), "move-leader", f"{target.member_id:x}"
    )
    assert fresh.leader() is target
    etcdctl(live_endpoints(fresh), "put", "snap", "shot")
    path = tmp_path / "backup.db"
    assert "Snapshot saved" in etcdctl([target.etcd_endpoint], "snapshot", "save", str(path))
    data = path.read_bytes()
    assert data
    assert b"shot" in data
    assert "Finished defragmenting" in etcdctl([target.etcd_endpoint], "defrag")
