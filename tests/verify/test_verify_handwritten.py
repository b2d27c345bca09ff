"""Hand-written register histories with a known verdict: the cases are in
``testdata/*.txt`` (see ``support.datadriven`` for the file format), one file per theme.

Commands:

``check``
    The input is a history, one op per line; the output is the overall verdict, then one
    line per key (``<key>: <verdict>``) and, for a violation, the window's op ids and
    the explanation, both exact.
``format``
    The input is a history; the output is ``format_result`` of its check, verbatim.

An op line is ``<kind> <key> <values...> <call> <ret> [<status>]``:

- ``w k v1 0 1`` writes v1; ``r k v1 4 5`` reads v1; ``r k - 2 3`` reads "absent";
  ``d k 2 3`` deletes; ``cas k old new 3 8`` swaps old for new (``-`` is "absent" on
  either side: create-only, conditional delete);
- a value ``b'v1'`` is bytes (a Python bytes literal), anything else a str;
- times are arbitrary units; ``-`` for ret is "never returned";
- the status is ``ok`` (the default), ``refused`` (a CAS answered 412), ``failed``
  (definitely no effect) or ``indeterminate`` (may take effect any time after call).

Op ids are the line numbers within the history (1, 2, ...), and op n is run by client n.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from raftkv.verify import Op, OpKind, OpStatus, Value, check_history, format_result
from support import datadriven as dd

TESTDATA = Path(__file__).parent / "testdata"

_KINDS = {"r": OpKind.READ, "w": OpKind.WRITE, "d": OpKind.DELETE, "cas": OpKind.CAS}
_VALUES = {OpKind.READ: 1, OpKind.WRITE: 1, OpKind.DELETE: 0, OpKind.CAS: 2}
_STATUSES = {
    "ok": (OpStatus.OK, False),
    "refused": (OpStatus.OK, True),
    "failed": (OpStatus.FAIL, False),
    "indeterminate": (OpStatus.INFO, False),
}


def parse_value(token: str) -> Value:
    if token == "-":
        return None
    if token[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(token)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"not a bytes literal: {token}") from e
        if not isinstance(value, bytes):
            raise ValueError(f"not a bytes literal: {token}")
        return value
    return token


def parse_op(line: str, n: int) -> Op:
    """Op number `n` (1-based) of a history, from its line."""
    words = line.split()
    if not words or words[0] not in _KINDS:
        raise ValueError(f"op {n}: kind must be one of {sorted(_KINDS)}: {line!r}")
    kind = _KINDS[words[0]]
    nvalues = _VALUES[kind]
    rest = words[2 + nvalues :]
    if len(words) < 2 + nvalues or len(rest) not in (2, 3):
        raise ValueError(
            f"op {n}: expected '{words[0]} <key> {'<value> ' * nvalues}<call> <ret> "
            f"[status]': {line!r}"
        )
    key = words[1]
    values = [parse_value(t) for t in words[2 : 2 + nvalues]]
    status_word = rest[2] if len(rest) == 3 else "ok"
    if status_word not in _STATUSES:
        raise ValueError(f"op {n}: status must be one of {sorted(_STATUSES)}: {line!r}")
    status, cas_failed = _STATUSES[status_word]
    value: Value = None
    expected: Value = None
    if kind is OpKind.CAS:
        expected, value = values
    elif values:
        (value,) = values
    return Op(
        id=n,
        client=n,
        key=key,
        kind=kind,
        value=value,
        expected=expected,
        call=float(rest[0]),
        ret=None if rest[1] == "-" else float(rest[1]),
        status=status,
        cas_failed=cas_failed,
    )


def parse_history(text: str) -> list[Op]:
    return [parse_op(line, n) for n, line in enumerate(text.splitlines(), start=1)]


def show_check(ops: list[Op]) -> str:
    result = check_history(ops)
    out = [result.verdict.value]
    for key, kr in sorted(result.per_key.items()):
        out.append(f"{key}: {kr.verdict.value}")
        if kr.window:
            out.append(f"  window: {' '.join(str(o.id) for o in kr.window)}")
        if kr.explanation is not None:
            out.append(f"  {kr.explanation}")
    return "\n".join(out)


def handle(td: dd.TestData) -> str:
    try:
        ops = parse_history(td.input)
    except ValueError as e:
        raise td.fail(str(e)) from e
    if td.cmd == "check":
        return show_check(ops)
    if td.cmd == "format":
        return format_result(check_history(ops))
    raise td.fail("unknown command (check, format)")


@pytest.mark.parametrize("case", dd.cases(dd.files(TESTDATA)))
def test_history(case: dd.Case) -> None:
    dd.run_case(case, lambda: handle)


def test_every_theme_has_cases() -> None:
    names = {p.stem for p in dd.files(TESTDATA)}
    assert {"basic", "indeterminate", "cas", "delete", "explanations", "format"} <= names


def test_op_lines_parse_to_the_builder_ops() -> None:
    ops = parse_history(
        "w k v1 0 1\n"
        "r k - 2 3\n"
        "cas k - b'x' 3 8 refused\n"
        "d j 4 5 failed\n"
        "w k v2 6 - indeterminate\n"
        "r k v2 6.5 7"
    )
    assert [(o.id, o.client, o.key, o.kind) for o in ops] == [
        (1, 1, "k", OpKind.WRITE),
        (2, 2, "k", OpKind.READ),
        (3, 3, "k", OpKind.CAS),
        (4, 4, "j", OpKind.DELETE),
        (5, 5, "k", OpKind.WRITE),
        (6, 6, "k", OpKind.READ),
    ]
    assert ops[1].value is None
    assert (ops[2].expected, ops[2].value, ops[2].cas_failed) == (None, b"x", True)
    assert ops[3].status is OpStatus.FAIL
    assert (ops[4].status, ops[4].ret) == (OpStatus.INFO, None)
    assert (ops[5].call, ops[5].ret) == (6.5, 7.0)


@pytest.mark.parametrize(
    "line",
    [
        "x k v1 0 1",  # no such kind
        "w k 0 1",  # missing value
        "cas k v1 0 1",  # missing new value
        "r k v1 0 1 maybe",  # no such status
        "r k v1 0 1 ok extra",
        "r k b'v1 0 1",  # not a literal
    ],
)
def test_malformed_op_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_op(line, 1)
