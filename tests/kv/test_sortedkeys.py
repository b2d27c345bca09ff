"""SortedKeys against the obvious model (a sorted list), with tiny chunks so that
splits and merges happen after a handful of operations."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.kv import sortedkeys
from raftkv.kv.sortedkeys import SortedKeys


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sortedkeys, "LOAD", 4)


ops = st.lists(st.tuples(st.booleans(), st.text("abc", max_size=4)), max_size=300)


@given(ops, st.text("abc", max_size=4))
def test_matches_sorted_list_model(steps: list[tuple[bool, str]], probe: str) -> None:
    sk = SortedKeys()
    model: list[str] = []
    for add, key in steps:
        i = bisect.bisect_left(model, key)
        present = i < len(model) and model[i] == key
        if add and not present:
            sk.add(key)
            model.insert(i, key)
        elif not add and present:
            sk.remove(key)
            del model[i]
        assert len(sk) == len(model)
    assert list(sk) == model == sk.to_list()
    assert list(sk.iter_from(probe)) == model[bisect.bisect_left(model, probe) :]
    assert list(sk.iter_from(probe, inclusive=False)) == model[bisect.bisect_right(model, probe) :]
    assert list(SortedKeys(model)) == model


def test_remove_absent_raises_key_error() -> None:
    sk = SortedKeys(["a", "c"])
    with pytest.raises(KeyError):
        sk.remove("b")
