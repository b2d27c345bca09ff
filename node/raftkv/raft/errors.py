"""Every exception of the Raft core, in one place.

`RaftError` and its subclasses are typed refusals: a proposal or request the core cannot
accept fails at once, never silently, and its stable `code` maps to one HTTP status.
`LogError` is different: an impossible log operation, i.e. a bug or corrupt input.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the core raises; `code` is stable and maps to one HTTP status."""

    code = "raft_error"


class ProposalDropped(RaftError):
    code = "proposal_dropped"


class NoLeader(ProposalDropped):
    code = "no_leader"


class TransferInProgress(ProposalDropped):
    code = "leader_transfer_in_progress"


class NotAMember(ProposalDropped):
    """This member is not (or no longer) in the configuration; it must not lead writes."""

    code = "not_a_member"


class ConfChangeInProgress(ProposalDropped):
    """Only one configuration change may be in flight (single-server changes, §4.1)."""

    code = "conf_change_in_progress"


class InvalidConfChange(RaftError):
    code = "invalid_conf_change"


class UnsafeConfChange(InvalidConfChange):
    """The change is well-formed but would endanger availability right now."""

    code = "unsafe_conf_change"


class NotLeader(RaftError):
    code = "not_leader"


class CompactionError(RaftError):
    code = "compaction_error"


class StorageMismatch(RaftError):
    """Recovered state that cannot be a Raft log: refuse to run rather than guess."""

    code = "storage_mismatch"


class LogError(Exception):
    """An impossible log operation: a bug or corrupt input, never a normal event."""
