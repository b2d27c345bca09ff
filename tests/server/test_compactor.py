"""Automatic compaction decisions (etcd's --auto-compaction-mode/-retention)."""

from __future__ import annotations

import pytest

from raftkv.server.compactor import REVISION_CHECK_INTERVAL, AutoCompactor, parse_retention


@pytest.mark.parametrize(
    ("mode", "text", "want"),
    [
        ("periodic", "1h", 3600.0),
        ("periodic", "1h30m", 5400.0),
        ("periodic", "90s", 90.0),
        ("periodic", "2", 7200.0),
        ("periodic", "0.5", 1800.0),
        ("periodic", "0", 0.0),
        ("revision", "1000", 1000.0),
        ("revision", "0", 0.0),
    ],
)
def test_retention_parses_as_etcd_reads_it(mode: str, text: str, want: float) -> None:
    assert parse_retention(mode, text) == want


@pytest.mark.parametrize(
    ("mode", "text"),
    [("periodic", "1d"), ("periodic", ""), ("periodic", "h"), ("revision", "1h"), ("x", "1")],
)
def test_bad_retention_is_refused_with_the_reason(mode: str, text: str) -> None:
    with pytest.raises(ValueError, match="auto-compaction"):
        parse_retention(mode, text)


def test_zero_retention_never_compacts() -> None:
    c = AutoCompactor.from_config("periodic", "0")
    c.reset(0.0, 1)
    assert c.due(1e9, 10**6, -1) is None


def test_periodic_keeps_the_retention_window_of_revisions() -> None:
    c = AutoCompactor.from_config("periodic", "100s")
    assert c.interval == 10.0
    assert c.due(5.0, 50, -1) is None  # not leading yet
    c.reset(0.0, 1)
    rev = 1
    compactions: list[int] = []
    for t in range(1, 400):
        rev += 3
        got = c.due(float(t), rev, compactions[-1] if compactions else -1)
        if got is not None:
            compactions.append(got)
            # What was the revision `retention` ago: everything newer stays readable.
            assert got <= 1 + 3 * (t - 100)
    assert compactions == sorted(compactions)
    assert compactions[0] > 0
    assert len(compactions) >= 25


def test_revision_mode_keeps_the_last_n_revisions() -> None:
    c = AutoCompactor.from_config("revision", "1000")
    c.reset(0.0, 1)
    assert c.due(REVISION_CHECK_INTERVAL - 1, 5000, -1) is None
    assert c.due(REVISION_CHECK_INTERVAL, 5000, -1) == 4000
    assert c.due(2 * REVISION_CHECK_INTERVAL, 4500, 4000) is None  # nothing new to drop
    assert c.due(3 * REVISION_CHECK_INTERVAL, 6000, 4000) == 5000
