"""Member-to-member calls on the client port under TLS: a follower forwards a
membership change to the leader's https URL, and a new member finds its id through
https discovery endpoints, both with the member's own client context."""

from __future__ import annotations

from pathlib import Path

from raftkv.client import Client
from support.wait import wait_for

from .members import TLSCluster, TLSMember


def _follower(c: TLSCluster) -> TLSMember:
    with c.client() as cl:
        leader = cl.status().leader
    for m in c.members:
        with Client([m.url], verify=c.client_ssl()) as one:
            if one.status().id != leader:
                return m
    raise AssertionError("no follower")


def test_a_follower_forwards_and_a_new_member_joins_over_tls(tmp_path: Path) -> None:
    # Snapshots every 20 entries, keeping 5 behind: the newcomer can only catch up
    # through a snapshot transfer, which goes over the peer port's mutual TLS too.
    c = TLSCluster(tmp_path, 3, extra=["--snapshot-count", "20", "--snapshot-catchup-entries", "5"])
    try:
        _join(c)
    finally:
        c.close()


def _join(c: TLSCluster) -> None:
    c.start_all()
    c.wait_ready()
    with c.client() as cl:
        for i in range(60):
            cl.put(f"before/{i}", b"x")
    follower = _follower(c)
    new = c.add_joiner("m4")
    # Through the follower only: the member API forwards it to the leader over https.
    with Client([follower.url], verify=c.client_ssl(), retries=0) as cl:
        learner = cl.add_member(new.peer_url, name="m4", learner=True)
    c.start(new)
    c.wait_ready([new], timeout=60)
    with Client([new.url], verify=c.client_ssl()) as cl:
        assert cl.status().id == learner.id

        def promoted() -> bool:
            if next(m for m in cl.members() if m.id == learner.id).learner:
                cl.promote_member(learner.id)  # refused until caught up: try again
                return False
            return True

        wait_for("the learner promoted", promoted, 30, ignore=Exception)
        assert cl.put("after-join", b"x").revision > 0
        assert len(cl.list("before/", consistency="serializable")) == 60
    received = c.metric(new, "raftkv_snapshots_received_total")
    assert received is not None
    assert received >= 1
