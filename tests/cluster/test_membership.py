"""Membership through the HTTP API and the CLI, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from raftkv.client import Client
from support.wait import wait_for

from .harness import LocalCluster


def cli(c: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args, "--endpoints", ",".join(c.endpoints())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def test_add_learner_catch_up_by_snapshot_promote_remove_transfer(
    fresh_cluster: LocalCluster,
) -> None:
    """raftexample's TestAddNewNode, grown up: a fourth member joins as a learner,
    catches up through a snapshot, is promoted; another member is removed; leadership
    moves — through the HTTP API and the CLI."""
    c = fresh_cluster
    c.start_all()
    with Client(c.endpoints()) as cl:
        for i in range(300):
            cl.put(f"pre/{i}", f"{i}".encode())
        first = cl.get("pre/0")
        assert first is not None
        cl.put("pre/0", b"changed")
    m4 = c.add_process("m4")
    r = cli(c, "member", "add", m4.peer_url, "--name", "m4", "--learner", "--json")
    assert r.returncode == 0, r.stderr
    import json

    new_id = json.loads(r.stdout)["id"]
    c.start("m4", join=True, member_id=new_id)
    c.wait_ready(["m4"])
    with Client([m4.url]) as cl:
        got = cl.get("pre/299", consistency="serializable")
        assert got is not None
        assert got.value == b"299"
    # The history travels in the snapshot: the new member serves the past too.
    past = httpx.get(
        f"{m4.url}/v1/kv/pre/0",
        params={"revision": first.revision, "consistency": "serializable"},
    )
    assert past.status_code == 200, past.text
    assert past.content == b"0"
    assert "restored snapshot" in m4.log()
    r = cli(c, "member", "promote", str(new_id))
    assert r.returncode == 0, r.stderr
    members = {m.id: m for m in Client(c.endpoints()).members()}
    assert not members[new_id].learner
    assert len(members) == 4

    leader = c.leader()
    victim = next(m for m in c.members.values() if m.name not in (leader.name, "m4"))
    victim_id = int(victim.status()["id"])  # type: ignore[call-overload]
    r = cli(c, "member", "remove", str(victim_id))
    assert r.returncode == 0, r.stderr
    wait_for(
        "removed member not ready",
        lambda: httpx.get(victim.url + "/readyz").status_code == 503,
        10,
        ignore=Exception,
    )
    c.kill(victim.name)
    assert len(Client([leader.url]).members()) == 3

    r = cli(c, "member", "transfer", "--to", str(new_id))
    assert r.returncode == 0, r.stderr
    assert c.leader().name == "m4"
    with Client([m4.url]) as cl:
        cl.put("after-transfer", b"ok")
    r = cli(c, "member", "list")
    assert r.returncode == 0
    assert "m4" in r.stdout
    r = cli(c, "status")
    assert "leader" in r.stdout

    # A removed member's identity refuses to run again.
    c.start(victim.name)
    proc = victim.proc
    assert proc is not None
    assert proc.wait(timeout=20) != 0
    assert "removed" in victim.log()


def test_join_with_empty_dir_waits_and_never_bootstraps(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    c.start_all()
    m4 = c.add_process("m4")
    c.start("m4", join=True, member_id=99)
    wait_for(
        "joining member up",
        lambda: httpx.get(m4.url + "/healthz").status_code == 200,
        15,
        ignore=Exception,
    )
    st = m4.status()
    assert st["leader"] == 0
    assert st["role"] == "follower"
    with m4.http() as h:
        r = h.put("/v1/kv/x", content=b"y")
        assert r.status_code == 503
    assert httpx.get(m4.url + "/readyz").status_code == 503


def test_membership_refusals(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    c.start_all()
    leader = c.leader()
    with leader.http() as h:
        # Promote a voter: refused. Adding an existing peer URL: refused.
        voter_id = leader.status()["id"]
        r = h.post(f"/v1/members/{voter_id}/promote")
        assert r.status_code == 409
        r = h.post("/v1/members", json={"peer_urls": [leader.peer_url]})
        assert r.status_code == 409
        # A new voter that is not running yet would leave 3 of 4 reachable: allowed
        # (quorum 3), but a second unreachable voter would not be.
        r = h.post("/v1/members", json={"peer_urls": ["http://127.0.0.1:1"], "learner": True})
        assert r.status_code == 201, r.text
        learner = r.json()["member"]["id"]
        r = h.post(f"/v1/members/{learner}/promote")
        assert r.status_code == 409
        assert r.json()["error"] == "unsafe_conf_change"
        r = h.delete(f"/v1/members/{learner}")
        assert r.status_code == 200
        # Its id is never reused.
        r = h.post(
            "/v1/members",
            json={"peer_urls": ["http://127.0.0.1:2"], "id": learner, "learner": True},
        )
        assert r.status_code == 409
        assert r.json()["error"] == "id_removed"


def test_join_by_discovery_takes_the_learner_id_added_for_its_url(
    fresh_cluster: LocalCluster,
) -> None:
    """How pods join under the operator: no id is given; the member finds the learner
    added with its peer URL. A voter holding its URL (its volume was lost) is refused."""
    c = fresh_cluster
    c.start_all()
    m4 = c.add_process("m4")
    c.start("m4", join=True)
    wait_for("m4 joining", lambda: m4.status()["role"] == "joining", 15, ignore=Exception)
    assert m4.status()["id"] == 0
    assert httpx.get(m4.url + "/readyz").status_code == 503
    with Client(c.endpoints()) as cl:
        added = cl.add_member(m4.peer_url, name="m4", learner=True)
    c.wait_ready(["m4"])
    assert m4.status()["id"] == added.id
    with Client(c.endpoints()) as cl:
        cl.put("seen-by-m4", b"1")
        cl.promote_member(added.id)
    with Client([m4.url]) as cl:
        assert cl.get("seen-by-m4") is not None

    # m4's volume is lost while it is a voter: it must not take its old identity.
    c.kill("m4")
    c.wipe("m4")
    c.start("m4", join=True)
    wait_for("m4 joining again", lambda: m4.status()["role"] == "joining", 15, ignore=Exception)
    assert "refusing to take its identity" in wait_for(
        "refusal logged",
        lambda: m4.log() if "refusing" in m4.log() else None,
        15,
        ignore=Exception,
    )
    # Replace it: remove the old id, add a learner at the same URL; it joins as that.
    with Client([c.leader().url]) as cl:
        cl.remove_member(added.id)
        fresh = cl.add_member(m4.peer_url, name="m4", learner=True)
    c.wait_ready(["m4"])
    assert m4.status()["id"] == fresh.id != added.id
