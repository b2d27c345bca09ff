"""Raft scenarios written as interactions: ``testdata/*.txt``, one file per property it
protects, read by the interpreter in ``interaction.py`` (its docstring lists the
commands). A file is one scenario: each block is a pytest case that replays the blocks
before it. ``REWRITE=1`` rewrites the expected outputs after a deliberate change."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import datadriven as dd

from .interaction import Interaction

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("case", dd.cases(dd.files(TESTDATA), stateful=True))
def test_interaction(case: dd.Case) -> None:
    dd.run_case(case, lambda: Interaction().handle)


def run_script(tmp_path: Path, script: str) -> list[str]:
    path = tmp_path / "script.txt"
    path.write_text(script)
    interaction = Interaction()
    return [interaction.handle(td) for td in dd.parse(path)]


def test_partition_deliver_msgs_tick_and_refusals(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        "add-nodes 3 seed=7\n----\n\n"
        "partition 1 2,3\n----\n\n"
        "campaign 1\n----\n\n"
        "deliver-msgs\n----\n\n"
        "propose 2 x\n----\n\n"
        "heal\n----\n\n"
        "tick 30 2\n----\n\n"
        "deliver-msgs\n----\n\n"
        "status 2\n----\n",
    )
    assert out[2] == "=> 1: pre_candidate term=1 lead=0 commit=3"
    # 1 is cut off from both others: its requests are lost, one round only.
    assert (
        out[3] == "1->2 PRE_VOTE term=2 log=1/3 (dropped)\n1->3 PRE_VOTE term=2 log=1/3 (dropped)"
    )
    assert out[4].startswith("error: NoLeader")
    # 2's election timeout is in [10, 20): it pre-campaigns once, and its requests are
    # delivered (answers stay queued).
    assert out[6] == "=> 2: pre_candidate term=1 lead=0 commit=3"
    assert out[7].splitlines()[:2] == [
        "2->1 PRE_VOTE term=2 log=1/3",
        "2->3 PRE_VOTE term=2 log=1/3",
    ]
    assert out[8].startswith("2: pre_candidate term=1")


def test_unknown_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(dd.ParseError, match=r"script\.txt:1: frobnicate: unknown command"):
        run_script(tmp_path, "frobnicate\n----\n")
