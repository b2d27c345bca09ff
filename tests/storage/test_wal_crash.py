"""Crash at every byte: whatever a crash leaves of the last write, reopening yields the
old durable state plus a prefix of the whole new records -- never less, never invented."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.raft.types import Entry, HardState
from raftkv.storage import WAL, WalCorruptError
from raftkv.storage.record import decode_at
from raftkv.storage.wal import segment_name


def ents(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, data=f"t{term}-i{i}".encode() * 3) for i in range(first, last + 1)]


@dataclass
class State:
    entries: list[Entry]
    hard_state: HardState

    def apply(self, body: Entry | HardState) -> State:
        if isinstance(body, HardState):
            return State(self.entries, body)
        kept = [e for e in self.entries if e.index < body.index]
        return State([*kept, body], self.hard_state)


@dataclass
class Scenario:
    seg: bytes
    start: int
    """Offset where the last write group begins: everything before was synced."""
    boundaries: list[int]
    """End offset of each record of the last group."""
    states: list[State]
    """states[k]: the expected replay when exactly k records of the group are whole."""
    previous_group: tuple[int, int]


def build(tmp: Path, *, multi_save_group: bool) -> Scenario:
    d = tmp / "orig"
    wal, _ = WAL.open(d, fsync=False)
    state = State([], HardState())
    writes: list[tuple[HardState | None, list[Entry]]]
    history: list[tuple[HardState, list[Entry]]] = [
        (HardState(1, 1, 0), ents(1, 4, 1)),
        (HardState(1, 1, 4), ents(5, 9, 1)),
        (HardState(2, 2, 6), ents(8, 10, 2)),  # overwrite of an uncommitted suffix
    ]
    for hs, es in history:
        wal.save(hs, es)
        for e in es:
            state = state.apply(e)
        state = state.apply(hs)
    seg_path = d / segment_name(1)
    prev_start = seg_path.stat().st_size
    wal.save(HardState(2, 2, 9), ents(11, 11, 2))
    state = state.apply(ents(11, 11, 2)[0]).apply(HardState(2, 2, 9))
    start = seg_path.stat().st_size
    groups_before = wal.group_count
    if multi_save_group:
        writes = [
            (HardState(3, 3, 10), ents(10, 12, 3)),  # overwrites 10..11 of term 2
            (None, ents(13, 14, 3)),
            (HardState(3, 3, 12), []),
        ]
        tickets = [wal.submit(h, es) for h, es in writes]
        wal.wait(tickets[-1])
    else:
        writes = [(HardState(3, 0, 11), ents(12, 16, 3))]
        wal.save(*writes[0])
    assert wal.group_count == groups_before + 1, "the last writes must form one group"
    wal.close()
    bodies: list[Entry | HardState] = []
    for last_hs, es in writes:
        bodies.extend(es)
        if last_hs is not None:
            bodies.append(last_hs)
    states = [state]
    for b in bodies:
        states.append(states[-1].apply(b))
    seg = seg_path.read_bytes()
    boundaries: list[int] = []
    pos = start
    while pos < len(seg):
        rec = decode_at(seg, pos, segment_seq=1)
        assert rec.body == bodies[len(boundaries)]
        pos = rec.end
        boundaries.append(pos)
    assert len(boundaries) == len(bodies)
    return Scenario(seg, start, boundaries, states, (prev_start, start))


def reopen(d: Path, content: bytes) -> State:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    (d / segment_name(1)).write_bytes(content)
    wal, replay = WAL.open(d, fsync=False)
    wal.close()
    return State(replay.entries, replay.hard_state)


def expected(sc: Scenario, cut: int) -> State:
    whole = sum(1 for end in sc.boundaries if end <= cut)
    return sc.states[whole]


@pytest.mark.parametrize("multi", [False, True], ids=["one-save", "multi-save-group"])
def test_truncation_at_every_byte(tmp_path: Path, multi: bool) -> None:
    sc = build(tmp_path, multi_save_group=multi)
    for cut in range(sc.start, len(sc.seg) + 1):
        got = reopen(tmp_path / "crash", sc.seg[:cut])
        assert got == expected(sc, cut), f"cut at {cut}"


@pytest.mark.parametrize("multi", [False, True], ids=["one-save", "multi-save-group"])
def test_torn_sector_with_garbage_at_every_byte(tmp_path: Path, multi: bool) -> None:
    sc = build(tmp_path, multi_save_group=multi)
    rng = random.Random(1234)
    for cut in range(sc.start, len(sc.seg)):
        junk_len = len(sc.seg) - cut + rng.randrange(0, 64)
        junk = bytes(rng.randrange(256) for _ in range(junk_len))
        if junk[:1] == sc.seg[cut : cut + 1]:
            junk = bytes([junk[0] ^ 0xFF]) + junk[1:]  # make sure the record is really damaged
        got = reopen(tmp_path / "crash", sc.seg[:cut] + junk)
        assert got == expected(sc, cut), f"garbage from {cut}"


def test_repaired_tail_accepts_appends(tmp_path: Path) -> None:
    sc = build(tmp_path, multi_save_group=True)
    d = tmp_path / "crash"
    for cut in range(sc.start, len(sc.seg), 7):
        before = reopen(d, sc.seg[:cut] + b"\xd5\x7a\x01\x00garbage")
        wal, _ = WAL.open(d, fsync=False)
        nxt = before.entries[-1].index + 1
        wal.save(HardState(9, 0, 0), ents(nxt, nxt + 1, 9))
        wal.close()
        after = reopen_existing(d)
        assert after.entries == before.entries + ents(nxt, nxt + 1, 9)
        assert after.hard_state == HardState(9, 0, 0)


def reopen_existing(d: Path) -> State:
    wal, replay = WAL.open(d, fsync=False)
    wal.close()
    return State(replay.entries, replay.hard_state)


@pytest.mark.parametrize("multi", [False, True], ids=["one-save", "multi-save-group"])
def test_damage_before_the_last_group_is_never_a_torn_tail(tmp_path: Path, multi: bool) -> None:
    sc = build(tmp_path, multi_save_group=multi)
    lo, hi = sc.previous_group
    for pos in range(lo, hi):
        bad = bytearray(sc.seg)
        bad[pos] ^= 0x10
        with pytest.raises(WalCorruptError) as info:
            reopen(tmp_path / "crash", bytes(bad))
        assert lo <= info.value.offset <= pos
    # ... even when the last group is torn as well, as long as its start survived.
    first_end = sc.boundaries[0]
    for cut in range(first_end, len(sc.seg) + 1, 5):
        bad = bytearray(sc.seg[:cut])
        bad[(lo + hi) // 2] ^= 0x10
        with pytest.raises(WalCorruptError):
            reopen(tmp_path / "crash", bytes(bad))
