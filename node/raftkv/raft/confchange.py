"""Membership arithmetic: pure functions over ConfState, plus the entry codec.

raftkv changes membership one server at a time (Raft thesis §4.1) rather than with joint
consensus. Any two majorities of configurations that differ by one voter overlap, so no
two leaders can be elected in one term across the change, provided a leader never
starts a second change before the first is committed and a new leader commits an
entry of its own term before proposing one (the fix for the single-server bug Ongaro
reported in 2015). The core enforces both. Single-server changes are all an operator
needs (it adds and removes one pod at a time) and keep the quorum code trivial.
"""

from __future__ import annotations

import msgpack

from .errors import InvalidConfChange
from .types import ConfChange, ConfChangeType, ConfState


def encode_conf_change(cc: ConfChange) -> bytes:
    out: bytes = msgpack.packb([int(cc.type), cc.node_id, cc.context], use_bin_type=True)
    return out


def decode_conf_change(data: bytes) -> ConfChange:
    try:
        kind, node_id, context = msgpack.unpackb(data, raw=False)
        return ConfChange(ConfChangeType(kind), int(node_id), bytes(context))
    except Exception as exc:  # malformed bytes from disk or the wire
        raise InvalidConfChange(f"undecodable conf change: {exc}") from exc


def validate_conf_change(cs: ConfState, cc: ConfChange) -> None:
    """Refuse changes that are not meaningful single-server steps."""
    if cc.node_id <= 0:
        raise InvalidConfChange(f"member id must be positive, got {cc.node_id}")
    if cc.type == ConfChangeType.ADD_LEARNER and cc.node_id in cs.voters:
        raise InvalidConfChange(f"member {cc.node_id} is already a voter; demotion is unsupported")
    if cc.type == ConfChangeType.ADD_NODE and cc.node_id in cs.voters:
        raise InvalidConfChange(f"member {cc.node_id} is already a voter")
    if cc.type == ConfChangeType.ADD_LEARNER and cc.node_id in cs.learners:
        raise InvalidConfChange(f"member {cc.node_id} is already a learner")
    if cc.type == ConfChangeType.REMOVE_NODE:
        if cc.node_id not in cs.voters and cc.node_id not in cs.learners:
            raise InvalidConfChange(f"member {cc.node_id} is not in the configuration")
        if cs.voters == (cc.node_id,):
            raise InvalidConfChange("cannot remove the last voter")


def apply_conf_change(cs: ConfState, cc: ConfChange) -> ConfState:
    """Total and idempotent, because committed entries are re-applied after a restart."""
    voters = set(cs.voters)
    learners = set(cs.learners)
    if cc.type == ConfChangeType.ADD_NODE:
        learners.discard(cc.node_id)
        voters.add(cc.node_id)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        if cc.node_id not in voters:
            learners.add(cc.node_id)
    elif cc.type == ConfChangeType.REMOVE_NODE:
        voters.discard(cc.node_id)
        learners.discard(cc.node_id)
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
