"""A readable event log of a schedule, cheap enough to keep on for every run.

Formatting every event would dominate the simulator's cost, so events are stored as a
formatter plus its arguments and rendered only when printed: all of them with
``--trace``, and the last few in the message of a failing run.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from raftkv.raft.types import Entry, Message, MessageType

Formatter = Callable[..., str]


def fmt_text(text: str) -> str:
    return text


def fmt_entries(ents: tuple[Entry, ...] | list[Entry]) -> str:
    if not ents:
        return ""
    first, last = ents[0], ents[-1]
    if first is last:
        return f" e[{first.index}/t{first.term}]"
    return f" e[{first.index}/t{first.term}..{last.index}/t{last.term}]"


def fmt_msg(m: Message) -> str:
    t = m.type
    s = f"{t.name} {m.sender}->{m.to} t{m.term}"
    if t in (MessageType.APP, MessageType.APP_RESP):
        s += f" i{m.index}/lt{m.log_term}"
    elif t in (MessageType.VOTE, MessageType.PRE_VOTE):
        s += f" last{m.index}/lt{m.log_term}"
    elif t == MessageType.READ_INDEX_RESP:
        s += f" i{m.index}"
    if m.commit:
        s += f" c{m.commit}"
    s += fmt_entries(m.entries)
    if m.snapshot is not None:
        md = m.snapshot.metadata
        s += f" snap[{md.index}/t{md.term} {list(md.conf_state.voters)}"
        s += f"+L{list(md.conf_state.learners)}]"
    if m.reject:
        s += f" REJECT hint{m.reject_hint}"
    if m.context:
        s += f" ctx={m.context!r}"
    return s


class Trace:
    def __init__(self, stream: TextIO | None = None, keep: int = 80) -> None:
        self.stream = stream
        self.tail: deque[tuple[int, Formatter, tuple[Any, ...]]] = deque(maxlen=keep)

    def add(self, now: int, fmt: Formatter, *args: Any) -> None:
        self.tail.append((now, fmt, args))
        if self.stream is not None:
            self.stream.write(_line(now, fmt, args) + "\n")

    def note(self, now: int, text: str) -> None:
        self.add(now, fmt_text, text)

    def render_tail(self) -> str:
        return "\n".join(_line(now, fmt, args) for now, fmt, args in self.tail)

    @classmethod
    def to_stdout(cls) -> Trace:
        return cls(sys.stdout)


def _line(now: int, fmt: Formatter, args: tuple[Any, ...]) -> str:
    return f"{now:>7} {fmt(*args)}"


class TraceLogHandler(logging.Handler):
    """Routes the core's log records into the trace, so that its own account of what it
    did (elections, membership, snapshots) sits between the events that caused it."""

    def __init__(self, trace: Trace, clock: Callable[[], int]) -> None:
        super().__init__(logging.INFO)
        self.trace = trace
        self.clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        self.trace.add(self.clock(), _fmt_record, record)


def _fmt_record(record: logging.LogRecord) -> str:
    return f"    core {record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def core_logs_into(trace: Trace, clock: Callable[[], int]) -> Iterator[None]:
    logger = logging.getLogger("raftkv.raft")
    handler = TraceLogHandler(trace, clock)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
