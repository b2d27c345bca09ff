"""Applying committed entries to this member's state, by kind of entry.

- configuration changes: the membership registry, the waiting change, our own removal;
- empty entries (a new leader's no-op): only advance the applied index;
- member attributes (`membership.encode_attrs`): the registry;
- client requests (`raftkv.kv.proposal`): the state machine (which also deduplicates
  by request id), the watchers (the changes' events) and the writes waiting on that
  request id.

A write a leader proposed at an index where another entry ends up fails at once: a
new leader overwrote it. The loop calls `Applier.apply` with each run of committed
entries, in order; everything else the member must do in reaction (reconnect peers,
stop serving when removed, count commits) goes through the callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..kv.command import CommandDecodeError
from ..kv.machine import StateMachine
from ..kv.mvcc.kv import Event
from ..kv.proposal import Proposal
from ..raft import Entry, EntryType, decode_conf_change
from ..raft.errors import InvalidConfChange
from . import errors as E
from .membership import MemberInfo, Registry, decode_attrs, removes
from .waiters import Waiters

log = logging.getLogger("raftkv.node")


def stable_prefix(committed: Sequence[Entry], stable_index: int) -> int:
    """How many of the leading `committed` entries are already on our disk and may be
    applied before this Ready's fsync. A configuration change always waits for the
    fsync (see Ready.must_sync)."""
    n = 0
    while (
        n < len(committed)
        and committed[n].index <= stable_index
        and committed[n].type != EntryType.CONF_CHANGE
    ):
        n += 1
    return n


@dataclass
class Applier:
    kv: StateMachine
    waiters: Waiters
    registry: Callable[[], Registry]
    """The current registry (a snapshot replaces it, so it is looked up each time)."""
    member_id: Callable[[], int]
    on_peers_changed: Callable[[], None]
    on_removed: Callable[[], None]
    """This member's own removal was applied."""
    on_committed: Callable[[int], None]
    """How many KV commands one `apply` call applied (when any)."""
    on_events: Callable[[tuple[Event, ...]], None] = lambda events: None
    """The changes one applied request made, in revision order (for the watchers)."""

    def apply(self, entries: Sequence[Entry]) -> None:
        kv = self.kv
        committed = 0
        for e in entries:
            if e.index <= kv.applied_index:
                continue  # re-delivered after a restart: the snapshot already has it
            if self._entry(e, self.waiters.pop_owner(e.index)):
                committed += 1
        if committed:
            self.on_committed(committed)
        # Conf-change waiters whose index was passed by something else.
        self.waiters.fail_conf_through(kv.applied_index, E.overwritten())

    def _entry(self, e: Entry, owner: bytes | None) -> bool:
        """Apply one entry; whether it was a KV command."""
        if e.type == EntryType.CONF_CHANGE:
            self._conf_change(e, owner)
            return False
        if not e.data:
            self._noop(e, owner)
            return False
        attrs = decode_attrs(e.data)
        if attrs is not None:
            self._attrs(e, attrs)
            return False
        return self._command(e, owner)

    def _overwritten(self, owner: bytes | None) -> None:
        if owner is not None:
            self.waiters.fail_write(owner, E.overwritten())

    def _conf_change(self, e: Entry, owner: bytes | None) -> None:
        self.kv.advance(e.index)
        try:
            cc = decode_conf_change(e.data)
        except InvalidConfChange:
            cc = None
        if cc is not None:
            self.registry().apply_conf_change(cc)
            self.waiters.resolve_conf(e.index, cc, E.overwritten())
            if removes(cc, self.member_id()):
                self.on_removed()
            self.on_peers_changed()
        self._overwritten(owner)

    def _noop(self, e: Entry, owner: bytes | None) -> None:
        self.kv.advance(e.index)
        self._overwritten(owner)

    def _attrs(self, e: Entry, attrs: MemberInfo) -> None:
        self.kv.advance(e.index)
        self.registry().apply_attrs(attrs)
        if attrs.id != self.member_id():
            self.on_peers_changed()

    def _command(self, e: Entry, owner: bytes | None) -> bool:
        try:
            cmd = Proposal.decode(e.data)
        except CommandDecodeError:
            log.error("entry %d holds no command this member understands; skipped", e.index)
            self.kv.advance(e.index)
            return False
        result = self.kv.apply(e.index, cmd)
        if result.events:
            self.on_events(result.events)
        rid = cmd.request_id
        if owner is not None and owner != rid:
            self.waiters.fail_write(owner, E.overwritten())
        if rid:
            self.waiters.resolve_write(rid, result)
        return True
