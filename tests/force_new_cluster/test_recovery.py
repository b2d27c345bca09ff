"""Quorum-loss recovery with real processes, as etcd's `--force-new-cluster`: a majority
killed with SIGKILL, the surviving follower restarted with the flag leads a one-member
cluster holding every acknowledged write, takes writes, grows back through the
membership API; the flag left set is harmless, a start without it is normal, and the
killed members are refused if they come back with their old data."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from cluster.harness import LocalCluster, Member
from raftkv.client import Client
from raftkv.server.force_new_cluster import MARKER_FILE
from support.members import free_ports, serve_command
from support.wait import wait_for

FLAG = "--force-new-cluster"


def members_of(m: Member) -> list[tuple[int, bool]]:
    st = m.status()
    return sorted((int(x["id"]), bool(x["learner"])) for x in st["members"])  # type: ignore[attr-defined]


def restart(c: LocalCluster, m: Member, *, force: bool) -> None:
    c.stop(m.name)
    m.args = [a for a in m.args if a != FLAG] + ([FLAG] if force else [])
    c.start(m.name)


def sole_leader(c: LocalCluster, m: Member) -> None:
    def leads() -> bool:
        st = m.status()
        return st["role"] == "leader" and m.ready()

    c.wait_ready([m.name])
    wait_for(f"{m.name} to lead", leads, 20, ignore=httpx.HTTPError)


def test_force_new_cluster_after_losing_a_majority(tmp_path: Path) -> None:
    # Small snapshot interval: the configuration also comes from a snapshot's ConfState.
    c = LocalCluster(tmp_path, 3, snapshot_count=20)
    try:
        c.start_all()
        leader = c.leader()
        survivor = next(m for m in c.members.values() if m is not leader)
        lost = [m for m in c.members.values() if m is not survivor]
        acked: dict[str, int] = {}
        with Client([leader.url]) as cl:
            for i in range(60):
                acked[f"k/{i:02d}"] = cl.put(f"k/{i:02d}", f"v{i}".encode()).revision
        # The majority goes first, then the survivor (a follower, which may not yet
        # know that the last acknowledged writes committed).
        for m in lost:
            c.kill(m.name, signal.SIGKILL)
        c.kill(survivor.name, signal.SIGKILL)

        survivor.args = [*survivor.args, FLAG]
        c.start(survivor.name)
        sole_leader(c, survivor)
        sid = int(survivor.status()["id"])  # type: ignore[call-overload]
        assert members_of(survivor) == [(sid, False)]
        assert "--force-new-cluster: member" in survivor.log()
        assert (survivor.data_dir / MARKER_FILE).exists()
        with Client([survivor.url]) as cl:
            for key, rev in acked.items():
                got = cl.get(key)
                assert got is not None, key
                assert got.revision == rev, key
            after = {f"after/{i}": cl.put(f"after/{i}", b"x").revision for i in range(30)}

            # Grow back through the membership API: a fresh member joins as a learner,
            # catches up (by snapshot: the log was compacted), is promoted.
            m4 = c.add_process("m4")
            new = cl.add_member(m4.peer_url, name="m4", learner=True)
            c.start("m4", join=True, member_id=new.id)
            last = max(after.values())
            wait_for("m4 to catch up", lambda: _serves(m4, "after/29", last), 30, ignore=Exception)
            cl.promote_member(new.id)
            assert members_of(survivor) == [(sid, False), (new.id, False)]
        with Client([m4.url]) as c4:
            for key, rev in {**acked, **after}.items():
                got = c4.get(key, consistency="serializable")
                assert got is not None, key
                assert got.revision == rev, key

        # The flag still set at the next start: nothing is removed again.
        restart(c, survivor, force=True)
        c.wait_ready([survivor.name, "m4"])
        assert "already ran" in survivor.log()
        assert members_of(survivor) == [(sid, False), (new.id, False)]
        with c.client() as cl:
            assert cl.put("after/restart", b"ok").revision > last

        # A start without it is an ordinary restart, and clears the marker.
        restart(c, survivor, force=False)
        c.wait_ready([survivor.name, "m4"])
        assert not (survivor.data_dir / MARKER_FILE).exists()
        assert members_of(survivor) == [(sid, False), (new.id, False)]
        with c.client() as cl:
            assert cl.get("after/restart") is not None

        # A lost member that comes back with its old data was removed: it must not run.
        old = lost[0]
        c.start(old.name)
        assert old.proc is not None
        code = old.proc.wait(timeout=60)
        assert code != 0
        assert "removed" in old.log()
    finally:
        c.close()


def _serves(m: Member, key: str, revision: int) -> bool:
    with Client([m.url]) as cl:
        got = cl.get(key, consistency="serializable")
    return got is not None and got.revision == revision


def test_refused_on_an_empty_data_dir(tmp_path: Path) -> None:
    client_port, peer_port = free_ports(2)
    argv = serve_command(
        "--name",
        "lonely",
        "--data-dir",
        str(tmp_path / "empty"),
        "--listen-client",
        f"127.0.0.1:{client_port}",
        "--listen-peer",
        f"127.0.0.1:{peer_port}",
        FLAG,
    )
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert "holds no Raft state" in out, out
    assert "Traceback" not in out
