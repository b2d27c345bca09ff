"""The history records: validation and the JSON Lines round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from raftkv.verify import Op, OpKind, OpStatus, read_history, write_history


def test_jsonl_round_trip_keeps_every_field(tmp_path: Path) -> None:
    ops = [
        Op(id=1, client=0, key="k", kind=OpKind.WRITE, call=0.5, ret=0.75, value="v1"),
        Op(id=2, client=1, key="k", kind=OpKind.READ, call=1.0, ret=1.5, value=b"\xff\x00"),
        Op(id=3, client=2, key="k", kind=OpKind.READ, call=2.0, ret=2.5, value=None),
        Op(
            id=4,
            client=3,
            key="k",
            kind=OpKind.CAS,
            call=3.0,
            ret=3.5,
            expected="v1",
            value="v2",
            cas_failed=True,
        ),
        Op(id=5, client=4, key="k", kind=OpKind.DELETE, call=4.0, status=OpStatus.INFO),
        Op(id=6, client=5, key="k", kind=OpKind.WRITE, call=5.0, ret=5.1, status=OpStatus.FAIL),
    ]
    path = tmp_path / "history.jsonl"
    write_history(path, ops)
    assert read_history(path) == ops


def test_infinite_return_time_is_written_as_null(tmp_path: Path) -> None:
    op = Op(
        id=1, client=0, key="k", kind=OpKind.WRITE, call=0.0, ret=math.inf, status=OpStatus.INFO
    )
    path = tmp_path / "h.jsonl"
    write_history(path, [op])
    assert '"ret":null' in path.read_text()
    assert read_history(path)[0].ret is None


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"id": 1, "client": 0, "key": "k", "kind": "frobnicate", "call": 0}\n')
    with pytest.raises(ValueError, match=r"h\.jsonl:1"):
        read_history(path)


def test_op_returning_before_its_call_is_rejected() -> None:
    with pytest.raises(ValueError, match="before its call"):
        Op(id=1, client=0, key="k", kind=OpKind.READ, call=2.0, ret=1.0)


def test_ok_op_without_return_is_rejected() -> None:
    with pytest.raises(ValueError, match="return time"):
        Op(id=1, client=0, key="k", kind=OpKind.READ, call=2.0)


def test_cas_failed_only_on_an_answered_cas() -> None:
    with pytest.raises(ValueError, match="cas_failed"):
        Op(id=1, client=0, key="k", kind=OpKind.WRITE, call=0.0, ret=1.0, cas_failed=True)
    with pytest.raises(ValueError, match="cas_failed"):
        Op(
            id=1,
            client=0,
            key="k",
            kind=OpKind.CAS,
            call=0.0,
            status=OpStatus.INFO,
            cas_failed=True,
        )


def test_duplicate_op_ids_are_rejected() -> None:
    from raftkv.verify import check_history

    op = Op(id=1, client=0, key="k", kind=OpKind.READ, call=0.0, ret=1.0)
    with pytest.raises(ValueError, match="duplicate"):
        check_history([op, op])
