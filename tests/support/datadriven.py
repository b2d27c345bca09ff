"""A tiny datadriven test runner, after etcd's ``cockroachdb/datadriven``.

A test file is a sequence of blocks separated by blank lines::

    # a comment: lines starting with '#' between blocks are ignored
    <command> [arg ...]
    <input line>
    ...
    ----
    <expected output line>
    ...

A block ends at the first blank line after ``----`` (or at the end of the file). An
expected output that itself contains blank lines is written between doubled
separators, which ``REWRITE=1`` produces on its own when it is needed::

    <command>
    ----
    ----
    first paragraph

    second paragraph
    ----
    ----

Each block is one pytest case, named ``<file>:<line>`` (:func:`cases`). A handler
turns the block (:class:`TestData`) into the actual output; :func:`run_case` compares it
with the expected output and fails with a unified diff. With ``REWRITE=1`` in the
environment it writes the actual output into the file instead (as etcd's ``-rewrite``
does), so a new case is written as a command and its input, and reviewed as a diff.

Stateful files (a scenario whose blocks build on each other, as etcd/raft's interaction
tests) are collected with ``stateful=True``: a case then replays the blocks before it on
a fresh handler, unchecked, so every block still runs (and fails) on its own.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SEPARATOR = "----"
REWRITE_ENV = "REWRITE"


class ParseError(ValueError):
    """A test file that is not a sequence of well-formed blocks."""


@dataclass(frozen=True)
class TestData:
    """One block: a command with its arguments and input, and the expected output."""

    __test__ = False  # not a pytest test class, despite the name

    path: Path
    line: int
    """1-based line of the command."""
    index: int
    """0-based position of the block in its file (stable while outputs change length)."""
    cmd: str
    args: tuple[str, ...] = ()
    input: str = ""
    """The lines between the command and ``----``, joined by newlines (no trailing one)."""
    expected: str = ""
    """The expected output: each line ends with a newline; empty if there is none."""

    @property
    def pos(self) -> str:
        return f"{self.path.name}:{self.line}"

    def input_lines(self) -> list[str]:
        return self.input.splitlines()

    def kwargs(self) -> dict[str, str]:
        """The ``key=value`` arguments."""
        return dict(a.split("=", 1) for a in self.args if "=" in a)

    def positional(self) -> list[str]:
        """The arguments that are not ``key=value``."""
        return [a for a in self.args if "=" not in a]

    def fail(self, message: str) -> ParseError:
        """An error about this block's command or input, located at the block."""
        return ParseError(f"{self.pos}: {self.cmd}: {message}")


@dataclass(frozen=True)
class _Span:
    """Where a block's expected output sits in its file: lines [start, end), 0-based."""

    start: int
    end: int


@dataclass(frozen=True)
class _Parsed:
    data: TestData
    span: _Span


def _parse_lines(path: Path, lines: Sequence[str]) -> list[_Parsed]:
    out: list[_Parsed] = []
    i = 0
    n = len(lines)
    while i < n:
        text = lines[i]
        if not text.strip() or text.startswith("#"):
            i += 1
            continue
        cmd_line = i
        words = text.split()
        i += 1
        body: list[str] = []
        while i < n and lines[i] != SEPARATOR:
            if not lines[i].strip():
                raise ParseError(f"{path.name}:{cmd_line + 1}: blank line before '{SEPARATOR}'")
            body.append(lines[i])
            i += 1
        if i == n:
            raise ParseError(f"{path.name}:{cmd_line + 1}: no '{SEPARATOR}' after the command")
        i += 1  # the separator
        if i < n and lines[i] == SEPARATOR:
            # doubled separator: the output runs to the closing "----\n----"
            i += 1
            start = i
            while i + 1 < n and not (lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
                i += 1
            if i + 1 >= n:
                raise ParseError(f"{path.name}:{cmd_line + 1}: unterminated '{SEPARATOR}' pair")
            end = i
            i += 2
        else:
            start = i
            while i < n and lines[i].strip():
                i += 1
            end = i
        expected = "".join(line + "\n" for line in lines[start:end])
        data = TestData(
            path=path,
            line=cmd_line + 1,
            index=len(out),
            cmd=words[0],
            args=tuple(words[1:]),
            input="\n".join(body),
            expected=expected,
        )
        out.append(_Parsed(data, _Span(start, end)))
    return out


def parse(path: str | Path) -> list[TestData]:
    """The blocks of one file, in order."""
    p = Path(path)
    return [b.data for b in _parse_lines(p, p.read_text().splitlines())]


@dataclass(frozen=True)
class Case:
    """One pytest case: a block, and (for stateful files) the blocks to replay first."""

    data: TestData
    prelude: tuple[TestData, ...] = field(default=())


def files(directory: str | Path, pattern: str = "*.txt") -> list[Path]:
    return sorted(Path(directory).glob(pattern))


def cases(paths: Iterable[str | Path], *, stateful: bool = False) -> list[Any]:
    """``pytest.param``s, one per block, with ids ``<file>:<line>``.

    Use as ``@pytest.mark.parametrize("case", cases(files(TESTDATA)))``.
    """
    params: list[Any] = []
    for path in paths:
        blocks = parse(path)
        for k, td in enumerate(blocks):
            prelude = tuple(blocks[:k]) if stateful else ()
            params.append(pytest.param(Case(td, prelude), id=td.pos))
    return params


Handler = Callable[[TestData], str]


def _normalize(output: str) -> str:
    if output and not output.endswith("\n"):
        output += "\n"
    return output


def _render(output: str) -> list[str]:
    """The file lines for an expected output (the doubled form if it has blank lines)."""
    lines = output.splitlines()
    if any(not line.strip() for line in lines):
        return [SEPARATOR, *lines, SEPARATOR, SEPARATOR]
    return lines


def rewrite(td: TestData, actual: str) -> None:
    """Replace the expected output of block `td` in its file by `actual`."""
    lines = td.path.read_text().splitlines()
    parsed = _parse_lines(td.path, lines)
    if td.index >= len(parsed) or parsed[td.index].data.cmd != td.cmd:
        raise ParseError(f"{td.pos}: the file changed under the rewrite")
    span = parsed[td.index].span
    start = span.start
    end = span.end
    if lines[start - 2 : start] == [SEPARATOR, SEPARATOR]:
        start -= 1  # drop the old doubled form (and its closing pair)
        end += 2
    lines[start:end] = _render(_normalize(actual))
    td.path.write_text("".join(line + "\n" for line in lines))


def rewriting() -> bool:
    return os.environ.get(REWRITE_ENV, "") not in ("", "0")


def diff(td: TestData, actual: str) -> str:
    """A unified diff from the expected to the actual output, headed by the block."""
    lines = difflib.unified_diff(
        td.expected.splitlines(keepends=True),
        _normalize(actual).splitlines(keepends=True),
        fromfile=f"{td.pos} expected",
        tofile=f"{td.pos} actual",
    )
    return "".join(lines)


def check(td: TestData, actual: str) -> None:
    """Fail with a diff if `actual` is not the expected output (rewrite it with REWRITE=1)."""
    actual = _normalize(actual)
    if actual == td.expected:
        return
    if rewriting():
        rewrite(td, actual)
        return
    command = " ".join((td.cmd, *td.args))
    pytest.fail(
        f"{td.pos}: output of '{command}' differs (REWRITE=1 to accept it):\n{diff(td, actual)}",
        pytrace=False,
    )


def run_case(case: Case, make_handler: Callable[[], Handler]) -> None:
    """Run one case on a fresh handler: replay its prelude unchecked, then check it."""
    handler = make_handler()
    for td in case.prelude:
        handler(td)
    check(case.data, handler(case.data))
