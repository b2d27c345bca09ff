"""Tuning knobs of the core. Time is counted in ticks; the member decides what a tick is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    id: int
    election_tick: int = 10
    """A follower that hears nothing from a leader for a randomized timeout in
    [election_tick, 2 * election_tick) ticks starts an election (§5.2)."""
    heartbeat_tick: int = 1
    pre_vote: bool = True
    """Ask for votes without bumping the term first, so a member that was partitioned
    away cannot depose a healthy leader when it comes back (thesis §9.6)."""
    check_quorum: bool = True
    """A leader that has not heard from a quorum within an election timeout steps down,
    and followers inside that lease ignore vote requests."""
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_per_ready: int = 8192
    snapshot_catchup_entries: int = 5000
    """Entries kept behind a snapshot so that slightly lagging followers catch up from
    the log instead of a full snapshot (raftexample keeps 10,000)."""
    max_promote_lag: int = 1000
    """A learner is promoted only once its log is at most this far behind the leader's
    commit index; promoting a far-behind learner could stall commits."""
    seed: int | None = None
    """Seed of the election-timeout randomness; the simulator fixes it for replay."""

    def validate(self) -> None:
        if self.id <= 0:
            raise ValueError("member id must be positive")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
