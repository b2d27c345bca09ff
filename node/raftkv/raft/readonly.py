"""Bookkeeping for ReadIndex (thesis §6.4): a read is served at the commit index the
leader had when the read arrived, once a quorum has confirmed in a heartbeat round that
it was still the leader at that moment."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Message


@dataclass(slots=True)
class ReadIndexStatus:
    request: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, request: Message) -> None:
        ctx = request.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(request, index)
        self.queue.append(ctx)

    def recv_ack(self, member: int, ctx: bytes) -> set[int] | None:
        status = self.pending.get(ctx)
        if status is None:
            return None
        status.acks.add(member)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Every request queued up to and including `ctx` is confirmed: a heartbeat
        acknowledged for a later request also vouches for the earlier ones."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx)
        done = self.queue[: i + 1]
        del self.queue[: i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
