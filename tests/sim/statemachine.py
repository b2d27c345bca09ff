"""The replicated application: a hash chain over every applied entry.

A running digest is all the state the safety checks need: two members that applied the
same entries in the same order have the same digest at every index, and the snapshot
data (index, digest) lets the checker verify that an installed snapshot is exactly the
state some member reached by applying the committed log — nothing lost, nothing extra.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgpack

from raftkv.raft.types import Entry, Snapshot

GENESIS = b"\x00" * 8


def chain(digest: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(digest, digest_size=8)
    h.update(e.term.to_bytes(8, "little"))
    h.update(e.index.to_bytes(8, "little"))
    h.update(bytes((int(e.type),)))
    h.update(e.data)
    return h.digest()


def encode_state(index: int, digest: bytes) -> bytes:
    packed: bytes = msgpack.packb([index, digest], use_bin_type=True)
    return packed


def decode_state(data: bytes) -> tuple[int, bytes]:
    index, digest = msgpack.unpackb(data, raw=False)
    return int(index), bytes(digest)


@dataclass(slots=True)
class HashStateMachine:
    applied: int = 0
    digest: bytes = GENESIS
    history: dict[int, bytes] = field(default_factory=dict)
    """Digest after each index applied in this incarnation, so that the member can
    snapshot at any applied index, not just the latest."""

    @classmethod
    def from_snapshot(cls, snap: Snapshot | None) -> HashStateMachine:
        sm = cls()
        if snap is not None and not snap.empty:
            sm.restore(snap)
        return sm

    def restore(self, snap: Snapshot) -> None:
        """Adopt the snapshot's state; InvariantChecker.on_install_snapshot has already
        verified that it is the state of the committed log at its index."""
        _, digest = decode_state(snap.data)
        self.applied = snap.metadata.index
        self.digest = digest
        self.history = {self.applied: digest}

    def apply(self, e: Entry) -> None:
        self.digest = chain(self.digest, e)
        self.applied = e.index
        self.history[e.index] = self.digest

    def state_at(self, index: int) -> bytes:
        return encode_state(index, self.history[index])
