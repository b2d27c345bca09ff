"""Hand-written register histories with a known verdict, named after what they protect.

Times are arbitrary units; an op "completes before another starts" when its ret is
strictly less than the other's call.
"""

from __future__ import annotations

from verify_histgen import Builder

from raftkv.verify import OpStatus, Verdict, check_history, format_result


def verdict(b: Builder) -> Verdict:
    return check_history(b.ops).verdict


def test_sequential_history_is_linearizable() -> None:
    b = Builder()
    b.read(None, 0, 1)
    b.write("v1", 2, 3)
    b.read("v1", 4, 5)
    b.write("v2", 6, 7)
    b.read("v2", 8, 9)
    assert verdict(b) is Verdict.OK


def test_read_concurrent_with_write_may_see_old_value() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 10)
    b.read("v1", 3, 4)
    assert verdict(b) is Verdict.OK


def test_read_concurrent_with_write_may_see_new_value() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 10)
    b.read("v2", 3, 4)
    b.read("v2", 5, 6)
    assert verdict(b) is Verdict.OK


def test_overlapping_ops_may_take_effect_in_any_order() -> None:
    b = Builder()
    b.write("a", 0, 10)
    b.write("b", 1, 9)
    b.read("a", 2, 8)
    b.read("b", 3, 7)  # all four overlap: write a, read a, write b, read b
    b.read("b", 11, 12)
    assert verdict(b) is Verdict.OK


def test_ops_touching_at_an_instant_count_as_concurrent() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 5)
    b.read("v1", 5, 6)  # starts the instant the write returns: may precede it
    assert verdict(b) is Verdict.OK


def test_stale_read_after_completed_write_is_a_violation() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 3)
    stale = b.read("v1", 4, 5)
    result = check_history(b.ops)
    assert result.verdict is Verdict.VIOLATION
    kr = result.per_key["k"]
    assert [o.id for o in kr.window] == [1, 2, stale.id]
    assert kr.explanation is not None
    assert "returned 'v1'" in kr.explanation
    assert "op 2 wrote 'v2'" in kr.explanation
    assert "completed before op 3 started" in kr.explanation


def test_lost_write_is_a_violation() -> None:
    # v2 is acknowledged, but every later read sees the older v1.
    b = Builder()
    b.write("v1", 0, 1)
    b.read("v1", 2, 3)
    b.write("v2", 4, 5)
    b.read("v1", 6, 7)
    b.read("v1", 8, 9)
    assert verdict(b) is Verdict.VIOLATION


def test_read_of_a_value_never_written_is_a_violation() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    phantom = b.read("ghost", 2, 3)
    result = check_history(b.ops)
    assert result.verdict is Verdict.VIOLATION
    kr = result.per_key["k"]
    assert [o.id for o in kr.window] == [phantom.id]
    assert kr.explanation is not None
    assert "no op ever wrote that value" in kr.explanation


def test_read_of_a_value_before_its_write_began_is_a_violation() -> None:
    b = Builder()
    b.read("v1", 0, 1)
    b.write("v1", 2, 3)
    result = check_history(b.ops)
    assert result.verdict is Verdict.VIOLATION
    assert "started after" in (result.per_key["k"].explanation or "")


def test_read_absent_after_completed_write_is_a_violation() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.read(None, 2, 3)
    assert verdict(b) is Verdict.VIOLATION


def test_delete_then_read_absent_is_linearizable() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.delete(2, 3)
    b.read(None, 4, 5)
    b.write("v2", 6, 7)
    b.read("v2", 8, 9)
    assert verdict(b) is Verdict.OK


def test_read_of_deleted_value_after_delete_is_a_violation() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.delete(2, 3)
    b.read("v1", 4, 5)
    assert verdict(b) is Verdict.VIOLATION


def test_successful_cas_on_matching_value_is_linearizable() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.cas("v1", "v2", 2, 3)
    b.read("v2", 4, 5)
    b.cas(None, "x", 6, 7, cas_failed=True)  # create-only refused: the key exists
    assert verdict(b) is Verdict.OK


def test_cas_succeeding_on_a_wrong_value_is_a_violation() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 3)
    b.cas("v1", "v3", 4, 5)  # v1 was overwritten before the CAS started
    result = check_history(b.ops)
    assert result.verdict is Verdict.VIOLATION
    assert "CAS on key 'k' expecting 'v1' succeeded" in (result.per_key["k"].explanation or "")


def test_cas_refused_while_value_matched_is_a_violation() -> None:
    # A 412 is an observation: the value was not 'v1'. Nothing could have changed it.
    b = Builder()
    b.write("v1", 0, 1)
    b.cas("v1", "v2", 2, 3, cas_failed=True)
    result = check_history(b.ops)
    assert result.verdict is Verdict.VIOLATION
    kr = result.per_key["k"]
    assert len(kr.window) == 2
    assert "refused (412" in (kr.explanation or "")


def test_cas_refused_with_concurrent_write_is_linearizable() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v9", 2, 6)
    b.cas("v1", "v2", 3, 4, cas_failed=True)
    assert verdict(b) is Verdict.OK


def test_cas_refused_is_explained_by_an_indeterminate_write() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.info_write("v9", 2)  # may have landed before the CAS
    b.cas("v1", "v2", 3, 4, cas_failed=True)
    assert verdict(b) is Verdict.OK


def test_failed_op_has_no_effect() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.write("v2", 2, 3, status=OpStatus.FAIL)
    b.read("v1", 4, 5)
    assert verdict(b) is Verdict.OK
    # ...and so it cannot explain a read of its value
    b.read("v2", 6, 7)
    assert verdict(b) is Verdict.VIOLATION


def test_indeterminate_write_that_later_becomes_visible_is_linearizable() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.info_write("v2", 2)
    b.read("v1", 3, 4)
    b.read("v1", 5, 6)
    b.read("v2", 100, 101)  # committed long after the client gave up
    b.read("v2", 102, 103)
    assert verdict(b) is Verdict.OK


def test_indeterminate_write_that_never_becomes_visible_is_linearizable() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.info_write("v2", 2)
    b.read("v1", 3, 4)
    b.read("v1", 100, 101)
    assert verdict(b) is Verdict.OK


def test_indeterminate_write_cannot_be_seen_then_unseen() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.info_write("v2", 2)
    b.read("v2", 3, 4)
    b.read("v1", 5, 6)  # v1 again: nothing rewrote it
    assert verdict(b) is Verdict.VIOLATION


def test_indeterminate_read_is_ignored() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.read("garbage", 2, None, status=OpStatus.INFO)
    b.read("v1", 3, 4)
    assert verdict(b) is Verdict.OK


def test_indeterminate_cas_may_or_may_not_take_effect() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.cas("v1", "v2", 2, None, status=OpStatus.INFO)
    b.read("v1", 3, 4)
    b.read("v2", 5, 6)
    assert verdict(b) is Verdict.OK
    c = Builder()
    c.write("v1", 0, 1)
    c.cas("v1", "v2", 2, None, status=OpStatus.INFO)
    c.read("v1", 3, 4)
    assert verdict(c) is Verdict.OK


def test_indeterminate_cas_cannot_swap_a_value_it_did_not_expect() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.cas("other", "v2", 2, None, status=OpStatus.INFO)
    b.read("v2", 3, 4)
    assert verdict(b) is Verdict.VIOLATION


def test_keys_are_checked_independently() -> None:
    a = Builder("a")
    a.write("x", 0, 1)
    a.read("x", 2, 3)
    b = Builder("b")
    b.write("x", 0, 1)
    b.write("y", 2, 3)
    b.read("x", 4, 5)
    # renumber b's ids so they do not collide with a's
    from dataclasses import replace

    ops = a.ops + [replace(o, id=o.id + 100) for o in b.ops]
    result = check_history(ops)
    assert result.verdict is Verdict.VIOLATION
    assert result.per_key["a"].verdict is Verdict.OK
    assert result.per_key["b"].verdict is Verdict.VIOLATION


def test_str_and_bytes_values_compare_equal_by_utf8() -> None:
    b = Builder()
    b.write("v1", 0, 1)
    b.read(b"v1", 2, 3)
    assert verdict(b) is Verdict.OK


def test_format_result_shows_reason_and_window_table() -> None:
    b = Builder()
    b.write("v1", 0.0, 0.5)
    b.write("v2", 1.0, 1.5)
    b.read("v1", 2.0, 2.5)
    text = format_result(check_history(b.ops))
    assert "linearizability: VIOLATION" in text
    assert "key 'k': VIOLATION" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["op", "client", "kind"])
    rows = [line.split() for line in lines[header + 1 :]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][4:] == ["+0.000", "+0.500", "ok"]
    assert rows[2][2:4] == ["read", "'v1'"]


def test_empty_history_is_linearizable() -> None:
    assert check_history([]).verdict is Verdict.OK
