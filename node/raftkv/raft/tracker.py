"""The leader's bookkeeping about the other members (etcd's tracker.ProgressTracker).

It owns the configuration in force, one `Progress` per member (replication position,
flow control, recent activity), and the votes of the current election. Aggregate
decisions (what is committed, who won, is a quorum still there) are delegated to
`quorum`, over the plain ids and indexes the tracker holds.

Time is the core's logical clock (`now`, in ticks), passed in by the caller; the
tracker itself never reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import quorum
from .progress import Progress
from .quorum import VoteResult
from .types import ConfState, PeerProgress


class ProgressTracker:
    __slots__ = ("active_window", "conf", "max_inflight", "progress", "votes")

    def __init__(self, conf: ConfState, max_inflight: int, active_window: int) -> None:
        self.conf = conf
        """The configuration in force: who votes, who only learns."""
        self.max_inflight = max_inflight
        self.active_window = active_window
        """A member heard from within this many ticks counts as active (the election
        timeout: CheckQuorum asks for a quorum active within one, thesis §6.2)."""
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        """Member -> whether it granted its vote, in the current (pre-)election."""

    # --- configuration -------------------------------------------------------------

    @property
    def voters(self) -> tuple[int, ...]:
        return self.conf.voters

    def get(self, member: int) -> Progress | None:
        return self.progress.get(member)

    def __contains__(self, member: object) -> bool:
        return member in self.progress

    def __iter__(self) -> Iterator[int]:
        """Ids of every tracked member, voters and learners, in insertion order."""
        return iter(self.progress)

    def peers(self, self_id: int) -> list[int]:
        """Every tracked member but `self_id`: whom a leader replicates to."""
        return [mid for mid in self.progress if mid != self_id]

    def reset(
        self, conf: ConfState, last_index: int, self_id: int, self_stable: int, now: int
    ) -> None:
        """Start over for `conf` (a new term, or a snapshot replacing the log): every
        member is probed from just past our last entry (§5.3: nextIndex starts at the
        leader's last index + 1), and counts as active from `now` for a grace period.
        Our own match is what is durable here: the leader's copy counts toward a quorum
        only once it is on disk (thesis §10.2.1)."""
        self.conf = conf
        prs: dict[int, Progress] = {}
        for mid in conf.voters:
            prs[mid] = Progress(last_index + 1, self.max_inflight, now=now)
        for mid in conf.learners:
            prs[mid] = Progress(last_index + 1, self.max_inflight, learner=True, now=now)
        if self_id in prs:
            prs[self_id].match = min(last_index, self_stable)
        self.progress = prs

    def apply_conf(self, conf: ConfState, last_index: int, now: int) -> None:
        """Switch to `conf` after a committed membership change (single-server changes,
        thesis §4.1): members that stay keep their progress, new members are probed
        from our last entry, removed ones are forgotten."""
        self.conf = conf
        learners = set(conf.learners)
        for mid in (*conf.voters, *conf.learners):
            pr = self.progress.get(mid)
            if pr is None:
                pr = Progress(max(last_index, 1), self.max_inflight, now=now)
                self.progress[mid] = pr
            pr.is_learner = mid in learners
        keep = set(conf.voters) | learners
        for mid in [m for m in self.progress if m not in keep]:
            del self.progress[mid]

    # --- replication -------------------------------------------------------------

    def committed(self) -> int:
        """The largest index a quorum of voters has acknowledged (§5.3); the caller
        still checks the term of that entry (§5.4.2)."""
        return quorum.committed_index(
            self.conf.voters, {mid: pr.match for mid, pr in self.progress.items()}
        )

    def most_up_to_date_voter(self) -> tuple[int, int]:
        """(id, match) of the voter with the highest match index, first in configuration
        order on ties; (0, -1) if no voter is tracked."""
        best, best_match = 0, -1
        for mid in self.conf.voters:
            pr = self.progress.get(mid)
            if pr is not None and pr.match > best_match:
                best, best_match = mid, pr.match
        return best, best_match

    # --- activity ------------------------------------------------------------------

    def record_response(self, member: int, now: int) -> None:
        pr = self.progress.get(member)
        if pr is not None:
            pr.record_response(now)

    def is_active(self, pr: Progress, now: int) -> bool:
        return pr.is_active(now, self.active_window)

    def is_reachable(self, pr: Progress, now: int) -> bool:
        return pr.is_reachable(now, self.active_window)

    def quorum_active(self, self_id: int, now: int) -> bool:
        """CheckQuorum (thesis §6.2): whether a quorum of voters, counting ourselves,
        was active within the last election timeout."""
        active = {self_id} | {mid for mid, pr in self.progress.items() if self.is_active(pr, now)}
        return quorum.has_quorum(self.conf.voters, active)

    def reachable(self, self_id: int, now: int) -> set[int]:
        """Members, ourselves included, that answered recently: whom a strict
        reconfiguration check may count on."""
        return {self_id} | {mid for mid, pr in self.progress.items() if self.is_reachable(pr, now)}

    # --- votes ---------------------------------------------------------------------

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, member: int, granted: bool) -> None:
        """Only a member's first answer counts (it votes once per term, §5.2)."""
        self.votes.setdefault(member, granted)

    def vote_result(self) -> VoteResult:
        return quorum.vote_result(self.conf.voters, self.votes)

    # --- observation -------------------------------------------------------------------

    def peer_progress(self, self_id: int, now: int) -> dict[int, PeerProgress]:
        """A read-only copy for Status; we always count as active ourselves."""
        return {
            mid: PeerProgress(
                pr.match,
                pr.next,
                pr.state,
                pr.is_learner,
                self.is_active(pr, now) or mid == self_id,
            )
            for mid, pr in self.progress.items()
        }
