"""The values the store hands out: revisions, key-values and change events.

All frozen: the store keeps and shares these objects, so nobody may mutate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


class Revision(NamedTuple):
    """etcd's `revision{main, sub}`: `main` is the store revision of the transaction
    that made a change, `sub` its position among that transaction's changes. Tuples
    order by (main, sub), which is the order of the changes."""

    main: int
    sub: int = 0


@dataclass(frozen=True, slots=True)
class KeyValue:
    """etcd's `mvccpb.KeyValue`. `version` is 1 at creation and grows by one per put;
    a delete ends the key's generation, and the next put starts again at 1 with a new
    `create_revision`. A tombstone (the kv of a DELETE event) has only `key` and
    `mod_revision`."""

    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes = b""
    lease: int = 0

    @property
    def is_tombstone(self) -> bool:
        return self.create_revision == 0


class EventType(IntEnum):
    """etcd's `mvccpb.Event_EventType` values."""

    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as a watcher will receive it. `prev_kv` is the key's kv just before
    the change (None when the key did not exist)."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None
