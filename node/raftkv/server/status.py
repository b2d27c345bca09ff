"""What a member reports about itself: one `MemberStatus`, rendered as `/v1/status`
(`to_json`), as the reason `/readyz` gives when not ready (`readiness`) and as the
Raft gauges of `/metrics` (`gauges`).

The JSON is a wire contract (the client's `StatusInfo`, the operator): keys, order and
values stay as they are; `peer_url` appears only while the member is joining.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..metrics import RaftGauges
from ..raft import Role, Status
from .membership import MemberView, Registry

JOINING = "joining"
"""The role of a member that does not know its id yet (no Raft node)."""


@dataclass(frozen=True, slots=True)
class PeerProgressView:
    """The leader's view of one member's replication."""

    match: int
    next: int
    state: str
    learner: bool
    recent_active: bool

    def to_json(self) -> dict[str, object]:
        return {
            "match": self.match,
            "next": self.next,
            "state": self.state,
            "learner": self.learner,
            "recent_active": self.recent_active,
        }


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: int
    name: str
    cluster_id: str
    role: str
    leader: int
    """0 when no leader is known."""
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    removed: bool
    members: tuple[MemberView, ...]
    progress: Mapping[int, PeerProgressView]
    """Only a leader knows it; empty elsewhere."""
    keys: int
    conf_change_pending: bool
    """Only a leader knows; an operator waits for this before the next change."""
    pending_conf_index: int
    peer_url: str | None = field(default=None)
    """Only while joining."""

    @classmethod
    def joining(cls, name: str, cluster_id: str, peer_url: str) -> MemberStatus:
        return cls(
            id=0,
            name=name,
            cluster_id=cluster_id,
            role=JOINING,
            leader=0,
            term=0,
            commit_index=0,
            applied_index=0,
            last_index=0,
            snapshot_index=0,
            removed=False,
            members=(),
            progress={},
            keys=0,
            conf_change_pending=False,
            pending_conf_index=0,
            peer_url=peer_url,
        )

    @classmethod
    def of(
        cls,
        st: Status,
        *,
        member_id: int,
        name: str,
        cluster_id: str,
        registry: Registry,
        applied_index: int,
        snapshot_index: int,
        keys: int,
        removed: bool,
        pending_conf_index: int,
    ) -> MemberStatus:
        """The status of a member with a Raft node, from the node's `status()`."""
        return cls(
            id=member_id,
            name=name,
            cluster_id=cluster_id,
            role=str(st.role),
            leader=st.leader,
            term=st.term,
            commit_index=st.commit,
            applied_index=applied_index,
            last_index=st.last_index,
            snapshot_index=snapshot_index,
            removed=removed,
            members=tuple(registry.entries(st.conf_state)),
            progress={
                mid: PeerProgressView(p.match, p.next, str(p.state), p.learner, p.recent_active)
                for mid, p in st.progress.items()
            },
            keys=keys,
            conf_change_pending=pending_conf_index > st.commit,
            pending_conf_index=pending_conf_index,
        )

    @property
    def is_joining(self) -> bool:
        return self.role == JOINING

    def is_member(self) -> bool:
        """Whether this member is in its own view of the configuration."""
        return any(m.id == self.id for m in self.members)

    def to_json(self) -> dict[str, object]:
        """The body of `GET /v1/status`."""
        out: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "cluster_id": self.cluster_id,
            "role": self.role,
            "leader": self.leader,
            "term": self.term,
            "commit_index": self.commit_index,
            "applied_index": self.applied_index,
            "last_index": self.last_index,
            "snapshot_index": self.snapshot_index,
            "removed": self.removed,
            "members": [m.to_json() for m in self.members],
            "progress": {str(mid): p.to_json() for mid, p in self.progress.items()},
            "keys": self.keys,
            "conf_change_pending": self.conf_change_pending,
            "pending_conf_index": self.pending_conf_index,
        }
        if self.peer_url is not None:
            out["peer_url"] = self.peer_url
        return out

    def readiness(self) -> dict[str, object]:
        """Why a member is not ready (the `status` of a 503 from `/readyz`); nothing
        while it is joining."""
        if self.is_joining:
            return {}
        return {
            "removed": self.removed,
            "leader": self.leader,
            "member": self.is_member(),
            "applied": self.applied_index,
            "commit": self.commit_index,
        }

    def gauges(self, proposals_pending: int) -> RaftGauges:
        """The Raft gauges of `/metrics`; all zero while joining."""
        if self.is_joining:
            return RaftGauges(False, False, 0, 0, 0, 0, 0, 0, 0, 0)
        learners = sum(1 for m in self.members if m.learner)
        return RaftGauges(
            is_leader=self.role == str(Role.LEADER),
            has_leader=self.leader != 0,
            term=self.term,
            commit_index=self.commit_index,
            applied_index=self.applied_index,
            last_log_index=self.last_index,
            snapshot_index=self.snapshot_index,
            voters=len(self.members) - learners,
            learners=learners,
            proposals_pending=proposals_pending,
        )
