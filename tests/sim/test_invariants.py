"""The checker itself: each invariant fires on a hand-made violation.

These feed the InvariantChecker synthetic observations, so they pin down what each
property means independently of the core.
"""

from __future__ import annotations

import pytest

from raftkv.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
)

from .invariants import InvariantChecker, InvariantViolation
from .statemachine import HashStateMachine
from .storage import DurableStore, StorageContractError

VOTERS = ConfState(voters=(1, 2, 3))


def persist(
    ck: InvariantChecker, node: int, st: DurableStore, ents: list[Entry], hs: HardState
) -> None:
    st.append(ents)
    st.hard_state = hs
    ck.on_persist(node, st, ents, hs, None)


def test_two_leaders_in_one_term() -> None:
    ck = InvariantChecker()
    ck.observe_role(1, Role.LEADER, 5, VOTERS, DurableStore(), durable=True)
    with pytest.raises(InvariantViolation, match="election-safety"):
        ck.observe_role(2, Role.LEADER, 5, VOTERS, DurableStore(), durable=True)


def test_leader_only_message_from_a_second_leader() -> None:
    ck = InvariantChecker()
    ck.observe_role(1, Role.LEADER, 5, VOTERS, DurableStore(), durable=True)
    m = Message(MessageType.HEARTBEAT, to=3, sender=2, term=5)
    with pytest.raises(InvariantViolation, match="election-safety"):
        ck.on_send(2, m, DurableStore(), was_voter=True)


def test_same_index_and_term_with_different_data() -> None:
    ck = InvariantChecker()
    persist(ck, 1, DurableStore(), [Entry(1, 1, data=b"a")], HardState(1, 0, 0))
    with pytest.raises(InvariantViolation, match="log-matching"):
        persist(ck, 2, DurableStore(), [Entry(1, 1, data=b"b")], HardState(1, 0, 0))


def test_same_entry_after_different_prefixes() -> None:
    ck = InvariantChecker()
    persist(ck, 1, DurableStore(), [Entry(1, 1), Entry(2, 2, data=b"x")], HardState(2, 0, 0))
    with pytest.raises(InvariantViolation, match="log-matching"):
        persist(ck, 2, DurableStore(), [Entry(2, 1), Entry(2, 2, data=b"x")], HardState(2, 0, 0))


def test_committed_entries_differ() -> None:
    ck = InvariantChecker()
    ck.proposed |= {b"a", b"b"}
    persist(ck, 1, DurableStore(), [Entry(1, 1, data=b"a")], HardState(1, 0, 1))
    with pytest.raises(InvariantViolation):
        persist(ck, 2, DurableStore(), [Entry(2, 1, data=b"b")], HardState(2, 0, 1))


def test_leader_elected_without_a_committed_entry() -> None:
    ck = InvariantChecker()
    persist(ck, 1, DurableStore(), [Entry(1, 1), Entry(1, 2)], HardState(1, 0, 2))
    ck.leaders[1] = 1
    st = DurableStore()
    persist(ck, 2, st, [Entry(1, 1)], HardState(2, 0, 0))
    with pytest.raises(InvariantViolation, match="leader-completeness"):
        ck.observe_role(2, Role.LEADER, 2, VOTERS, st, durable=True)


def test_apply_gap_and_unproposed_data() -> None:
    ck = InvariantChecker()
    st = DurableStore()
    persist(ck, 1, st, [Entry(1, 1, data=b"forged"), Entry(1, 2)], HardState(1, 0, 2))
    sm = HashStateMachine()
    with pytest.raises(InvariantViolation, match="in order"):
        ck.on_apply(1, sm, Entry(1, 2), st)
    with pytest.raises(InvariantViolation, match="no client proposed"):
        ck.on_apply(1, sm, Entry(1, 1, data=b"forged"), st)


def test_apply_beyond_persisted_commit() -> None:
    ck = InvariantChecker()
    st = DurableStore()
    persist(ck, 1, st, [Entry(1, 1)], HardState(1, 0, 0))
    with pytest.raises(InvariantViolation, match="persisted commit"):
        ck.on_apply(1, HashStateMachine(), Entry(1, 1), st)


def test_vote_changes_within_a_term() -> None:
    ck = InvariantChecker()
    st = DurableStore()
    persist(ck, 1, st, [], HardState(3, 2, 0))
    with pytest.raises(InvariantViolation, match="voted for 2 and then 3"):
        persist(ck, 1, st, [], HardState(3, 3, 0))


def test_vote_granted_before_it_is_durable() -> None:
    ck = InvariantChecker()
    st = DurableStore(hard_state=HardState(2, 0, 0))
    m = Message(MessageType.VOTE_RESP, to=2, sender=1, term=3)
    with pytest.raises(InvariantViolation, match="durability"):
        ck.on_send(1, m, st, was_voter=True)


def test_learner_campaigns() -> None:
    ck = InvariantChecker()
    learner = ConfState(voters=(1, 2, 3), learners=(4,))
    with pytest.raises(InvariantViolation, match="learners-never-campaign"):
        ck.observe_role(4, Role.PRE_CANDIDATE, 2, learner, DurableStore(), durable=True)
    m = Message(MessageType.PRE_VOTE, to=1, sender=4, term=3)
    with pytest.raises(InvariantViolation, match="learners-never-campaign"):
        ck.on_send(4, m, DurableStore(), was_voter=False)


def test_stale_read() -> None:
    ck = InvariantChecker()
    ck.on_read_call(b"r1", 1, required=7)
    with pytest.raises(InvariantViolation, match="stale read"):
        ck.on_read_state(1, ReadState(6, b"r1"))
    ck.on_read_state(1, ReadState(7, b"r1"))


def test_storage_refuses_a_gap() -> None:
    st = DurableStore()
    st.append([Entry(1, 1)])
    with pytest.raises(StorageContractError):
        st.append([Entry(1, 3)])
    st.append([Entry(1, 2), Entry(1, 3)])
    st.append([Entry(2, 2)])  # overwrite from 2 on
    assert [(e.index, e.term) for e in st.entries] == [(1, 1), (2, 2)]
