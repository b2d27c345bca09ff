"""The write-log checker: every acknowledged write must read back; nothing else may."""

from __future__ import annotations

import threading

from raftkv_e2e.writelog import Expected, Observed, WriteLog, check_key, duplicate_revisions

NOTHING: dict[str, Observed] = {}


def test_all_acknowledged_writes_readable() -> None:
    log = WriteLog()
    log.acked("a", b"1", 5)
    log.acked("b", b"2", 6)
    log.acked_delete("c", 7)
    store = {"a": Observed(b"1", 5), "b": Observed(b"2", 6)}
    assert log.check(store.get) == []
    assert log.acked_count == 2
    assert log.max_revision() == 7


def test_a_lost_write_is_reported() -> None:
    log = WriteLog()
    log.acked("a", b"1", 5)
    log.acked("b", b"2", 6)
    problems = log.check({"a": Observed(b"1", 5)}.get)
    assert problems == ["b: acknowledged at revision 6, now absent (lost)"]


def test_a_wrong_or_older_value_is_reported() -> None:
    exp = Expected(b"new", 9)
    assert check_key("k", exp, frozenset(), Observed(b"new", 9)) == []
    assert check_key("k", exp, frozenset(), Observed(b"new", 12)) == []  # re-applied retry
    assert "reads an older revision 8" in check_key("k", exp, frozenset(), Observed(b"new", 8))[0]
    assert "reads b'old'" in check_key("k", exp, frozenset(), Observed(b"old", 3))[0]


def test_indeterminate_writes_may_or_may_not_be_there() -> None:
    log = WriteLog()
    log.indeterminate("x", b"maybe")
    log.indeterminate("y", b"maybe")
    log.indeterminate("z", b"maybe")
    store = {"x": Observed(b"maybe", 3), "z": Observed(b"other", 4)}
    assert log.check(store.get) == ["z: reads b'other', which no write of ours had"]
    assert log.indeterminate_count == 3


def test_an_acknowledged_retry_supersedes_its_indeterminate_attempt() -> None:
    log = WriteLog()
    log.indeterminate("k", b"v")
    log.acked("k", b"v", 10)
    assert log.indeterminate_count == 0
    assert log.check(NOTHING.get) == ["k: acknowledged at revision 10, now absent (lost)"]


def test_deleted_keys_must_stay_deleted() -> None:
    log = WriteLog()
    log.acked("k", b"v", 3)
    log.acked_delete("k", 4)
    assert log.check(NOTHING.get) == []
    assert "deleted at revision 4" in log.check({"k": Observed(b"v", 3)}.get)[0]


def test_two_keys_cannot_share_a_revision() -> None:
    entries = [("a", Expected(b"1", 5)), ("b", Expected(b"2", 5)), ("c", Expected(b"3", 6))]
    assert duplicate_revisions(entries) == ["a and b were both acknowledged at revision 5"]
    log = WriteLog()
    log.acked("a", b"1", 5)
    log.acked("b", b"2", 5)
    store = {"a": Observed(b"1", 5), "b": Observed(b"2", 5)}
    assert log.check(store.get) == ["a and b were both acknowledged at revision 5"]


def test_listing_finds_phantom_writes() -> None:
    log = WriteLog()
    log.acked("p/1", b"one", 1)
    log.indeterminate("p/2", b"two")
    listed = [
        ("p/1", b"one"),
        ("p/2", b"two"),
        ("p/3", b"three"),
        ("p/1x", b"?"),
        ("other/1", b"not ours"),
    ]
    problems = log.check_listing("p/", listed)
    assert problems == ["p/3: listed but never written", "p/1x: listed but never written"]
    assert "no write of ours had" in log.check_listing("p/", [("p/1", b"uno")])[0]


def test_recording_is_thread_safe() -> None:
    log = WriteLog()

    def write(t: int) -> None:
        for i in range(500):
            log.acked(f"{t}/{i}", b"v", t * 1000 + i + 1)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert log.acked_count == 2000
    assert len(log.keys()) == 2000
