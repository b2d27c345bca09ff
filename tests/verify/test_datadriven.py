"""The datadriven runner (support.datadriven) on its own: parsing, diffs, rewriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import datadriven as dd

SAMPLE = """\
# a comment
echo a b=c
one
two
----
one
two

# the output has a blank line
upper
x
----
----
X

Y
----
----

empty
----
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sample.txt"
    path.write_text(text)
    return path


def echo(td: dd.TestData) -> str:
    if td.cmd == "upper":
        return "X\n\nY"
    return td.input


def test_parse_blocks_commands_args_input_and_expected(tmp_path: Path) -> None:
    blocks = dd.parse(write(tmp_path, SAMPLE))
    assert [(b.line, b.index, b.cmd) for b in blocks] == [
        (2, 0, "echo"),
        (10, 1, "upper"),
        (20, 2, "empty"),
    ]
    echo_block = blocks[0]
    assert echo_block.args == ("a", "b=c")
    assert echo_block.positional() == ["a"]
    assert echo_block.kwargs() == {"b": "c"}
    assert echo_block.input_lines() == ["one", "two"]
    assert echo_block.expected == "one\ntwo\n"
    assert echo_block.pos == "sample.txt:2"
    assert blocks[1].expected == "X\n\nY\n"
    assert (blocks[2].input, blocks[2].expected) == ("", "")


@pytest.mark.parametrize(
    "text",
    [
        "cmd\ninput\n",  # no separator
        "cmd\ninput\n\nmore\n----\n",  # blank line inside the input
        "cmd\n----\n----\nout\n",  # doubled separator never closed
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(dd.ParseError, match=r"sample\.txt:1"):
        dd.parse(write(tmp_path, text))


def test_cases_are_named_file_colon_line(tmp_path: Path) -> None:
    params = dd.cases([write(tmp_path, SAMPLE)])
    assert [p.id for p in params] == ["sample.txt:2", "sample.txt:10", "sample.txt:20"]
    assert all(not p.values[0].prelude for p in params)
    stateful = dd.cases([tmp_path / "sample.txt"], stateful=True)
    assert [len(p.values[0].prelude) for p in stateful] == [0, 1, 2]


def test_matching_output_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dd.REWRITE_ENV, raising=False)
    for td in dd.parse(write(tmp_path, SAMPLE)):
        dd.check(td, echo(td))


def test_mismatch_fails_with_a_unified_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(dd.REWRITE_ENV, raising=False)
    td = dd.parse(write(tmp_path, SAMPLE))[0]
    with pytest.raises(pytest.fail.Exception) as info:
        dd.check(td, "one\nthree")
    message = str(info.value)
    assert "sample.txt:2: output of 'echo a b=c' differs" in message
    assert "--- sample.txt:2 expected" in message
    assert "+++ sample.txt:2 actual" in message
    assert "-two\n+three\n" in message


def test_rewrite_replaces_outputs_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SAMPLE)
    monkeypatch.setenv(dd.REWRITE_ENV, "1")
    outputs = {"echo": "one\nmore\nlines", "upper": "flat", "empty": "now\n\nblank"}
    for td in dd.parse(path):  # parsed once: later blocks move as earlier ones grow
        dd.check(td, outputs[td.cmd])
    assert path.read_text() == (
        "# a comment\n"
        "echo a b=c\none\ntwo\n----\none\nmore\nlines\n\n"
        "# the output has a blank line\n"
        "upper\nx\n----\nflat\n\n"
        "empty\n----\n----\nnow\n\nblank\n----\n----\n"
    )
    monkeypatch.delenv(dd.REWRITE_ENV)
    for td in dd.parse(path):
        dd.check(td, outputs[td.cmd])


def test_stateful_case_replays_its_prelude_on_a_fresh_handler(tmp_path: Path) -> None:
    path = write(tmp_path, "add 1\n----\n1\n\nadd 2\n----\n3\n\nadd 3\n----\n6\n")
    handlers = 0

    def make() -> dd.Handler:
        nonlocal handlers
        handlers += 1
        total = 0

        def handle(td: dd.TestData) -> str:
            nonlocal total
            total += int(td.args[0])
            return str(total)

        return handle

    for param in dd.cases([path], stateful=True):
        dd.run_case(param.values[0], make)
    assert handlers == 3
