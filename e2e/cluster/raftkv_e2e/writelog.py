"""The record of every write the suite made, and the check that none was lost.

A write is *acknowledged* when the cluster answered it with a revision; then it must be
visible to every later linearizable read, whatever happened in between (scaling, a
deleted leader). A write whose fate is unknown (a timeout, a connection cut after the
request left) is *indeterminate*: afterwards its key may hold the value or nothing, but
never anything else. Every key is written by one writer only, with a value unique to
that write, so "the value is there" and "it is this write's value" are the same thing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Expected:
    """What a key must read as: ``value`` (None = absent) at ``revision`` or later."""

    value: bytes | None
    revision: int


@dataclass(frozen=True)
class Observed:
    value: bytes
    revision: int


Reader = Callable[[str], Observed | None]


class WriteLog:
    """Thread-safe; writers record outcomes, :meth:`check` compares with the cluster."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expected: dict[str, Expected] = {}
        self._maybe: dict[str, set[bytes]] = {}
        self.failed = 0

    def acked(self, key: str, value: bytes, revision: int) -> None:
        with self._lock:
            self._expected[key] = Expected(value, revision)
            self._maybe.pop(key, None)

    def acked_delete(self, key: str, revision: int) -> None:
        with self._lock:
            self._expected[key] = Expected(None, revision)
            self._maybe.pop(key, None)

    def indeterminate(self, key: str, value: bytes) -> None:
        """A write of ``value`` to ``key`` that may or may not have been applied."""
        with self._lock:
            self._maybe.setdefault(key, set()).add(value)

    def not_applied(self) -> None:
        """A write that certainly did not take effect (counted, nothing to check)."""
        with self._lock:
            self.failed += 1

    @property
    def acked_count(self) -> int:
        with self._lock:
            return sum(1 for e in self._expected.values() if e.value is not None)

    @property
    def indeterminate_count(self) -> int:
        with self._lock:
            return len(self._maybe)

    def max_revision(self) -> int:
        with self._lock:
            return max((e.revision for e in self._expected.values()), default=0)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(set(self._expected) | set(self._maybe))

    def snapshot(self) -> tuple[dict[str, Expected], dict[str, frozenset[bytes]]]:
        with self._lock:
            maybe = {k: frozenset(v) for k, v in self._maybe.items()}
            return dict(self._expected), maybe

    def check(self, read: Reader) -> list[str]:
        """Read every key written (``read`` should be a linearizable GET) and return the
        violations, empty when every acknowledged write survived."""
        expected, maybe = self.snapshot()
        problems: list[str] = []
        for key in sorted(set(expected) | set(maybe)):
            problems += check_key(key, expected.get(key), maybe.get(key, frozenset()), read(key))
        problems += duplicate_revisions(expected.items())
        return problems

    def check_listing(self, prefix: str, listed: Iterable[tuple[str, bytes]]) -> list[str]:
        """Keys under ``prefix`` that no write of ours can explain (phantom writes)."""
        expected, maybe = self.snapshot()
        problems = []
        for key, value in listed:
            if not key.startswith(prefix):
                continue
            exp = expected.get(key)
            if (exp is not None and exp.value == value) or value in maybe.get(key, ()):
                continue
            if exp is None and not maybe.get(key):
                problems.append(f"{key}: listed but never written")
            else:
                problems.append(f"{key}: listed with a value no write of ours had: {value!r:.60}")
        return problems


def check_key(
    key: str, expected: Expected | None, maybe: frozenset[bytes], got: Observed | None
) -> list[str]:
    """The violations for one key (pure; the unit of :meth:`WriteLog.check`)."""
    if expected is not None:
        if expected.value is None:
            if got is not None and got.value not in maybe:
                return [f"{key}: deleted at revision {expected.revision} but reads {got}"]
            return []
        if got is None:
            return [f"{key}: acknowledged at revision {expected.revision}, now absent (lost)"]
        if got.value != expected.value and got.value not in maybe:
            return [
                f"{key}: acknowledged {expected.value!r:.60} at revision {expected.revision}, "
                f"reads {got.value!r:.60} at revision {got.revision}"
            ]
        if got.value == expected.value and got.revision < expected.revision:
            return [
                f"{key}: acknowledged at revision {expected.revision}, reads an older "
                f"revision {got.revision}"
            ]
        return []
    if got is not None and got.value not in maybe:
        return [f"{key}: reads {got.value!r:.60}, which no write of ours had"]
    return []


def duplicate_revisions(entries: Iterable[tuple[str, Expected]]) -> list[str]:
    """Two different keys acknowledged at one revision: one Raft index was claimed by
    two writes, so at least one acknowledgement lied."""
    seen: dict[int, str] = {}
    problems = []
    for key, exp in entries:
        other = seen.setdefault(exp.revision, key)
        if other != key:
            problems.append(f"{other} and {key} were both acknowledged at revision {exp.revision}")
    return problems
