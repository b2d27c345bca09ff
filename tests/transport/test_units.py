"""The pure parts: admission, framing, snapshot envelopes, backoff."""

from __future__ import annotations

import random

import pytest

from raftkv.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from raftkv.transport import PeerAuth, PeerRefused, admit
from raftkv.transport.backoff import Backoff
from raftkv.transport.framing import (
    decode_snapshot_envelope,
    encode_frames,
    encode_snapshot_envelope,
)
from raftkv.transport.peer import stream_url
from raftkv.wire import WireError, decode_messages

from .harness import app

AUTH = PeerAuth("c", "s3cret")


def status(headers: dict[str, str], removed: frozenset[int] = frozenset()) -> int:
    try:
        admit(headers, AUTH, 2, lambda s: s in removed)
    except PeerRefused as r:
        return r.status
    return 200


def test_admission_table() -> None:
    good = AUTH.headers(1, 2)
    assert admit(good, AUTH, 2, lambda _: False) == 1
    assert status({}) == 403
    assert status({**good, "x-raftkv-peer-secret": "s3cre"}) == 403
    assert status({**good, "x-raftkv-peer-secret": "s3cret\u00e9"}) == 403
    assert status({**good, "x-raftkv-cluster-id": "d"}) == 403
    assert status({**good, "x-raftkv-from": "-1"}) == 400
    assert status({**good, "x-raftkv-from": "0"}) == 400
    assert status({**good, "x-raftkv-from": "\u0661"}) == 400  # Arabic-Indic digit one
    assert status({**good, "x-raftkv-to": str(1 << 64)}) == 400
    assert status(good, removed=frozenset({1})) == 410
    assert status(AUTH.headers(1, 3)) == 409
    # Authentication before membership: a stranger never sees 410.
    assert status({**good, "x-raftkv-peer-secret": "x"}, removed=frozenset({1})) == 403


def test_peer_auth_rejects_values_that_cannot_be_headers() -> None:
    for cluster, secret in [("", "s"), ("c", ""), ("c c", "s"), ("c", "sé"), ("c", "s\n")]:
        with pytest.raises(ValueError):
            PeerAuth(cluster, secret)


def test_frames_preserve_order_and_respect_the_limit() -> None:
    batch = [app(1, 2, i, payload=b"p" * 100) for i in range(1, 501)]
    frames = encode_frames(batch, max_frame=4096)
    assert len(frames) > 10
    assert all(len(f) <= 4096 for f in frames)
    assert [m.index for f in frames for m in decode_messages(f)] == list(range(1, 501))
    assert len(encode_frames(batch)) == 1


def test_a_single_oversized_message_still_goes_out_alone() -> None:
    frames = encode_frames([app(1, 2, 1, payload=b"x" * 10_000)], max_frame=100)
    assert len(frames) == 1


def test_an_unencodable_message_is_dropped_alone() -> None:
    batch = [app(1, 2, 1), Message(MessageType.HUP, 2, 1), app(1, 2, 3)]
    frames = encode_frames(batch)
    assert [m.index for f in frames for m in decode_messages(f)] == [1, 3]


def test_snapshot_envelope_round_trip_carries_no_data() -> None:
    snap = Snapshot(SnapshotMetadata(9, 3, ConfState((1, 2), (3,))), b"big" * 1000)
    msg = Message(MessageType.SNAP, 2, 1, term=3, snapshot=snap)
    header = encode_snapshot_envelope(msg)
    assert len(header) < 200
    back = decode_snapshot_envelope(header)
    assert back.snapshot == Snapshot(snap.metadata, b"")
    assert (back.term, back.to, back.sender) == (3, 2, 1)
    for bad in ["", "!!", "AAAA", encode_snapshot_envelope(msg)[:-4]]:
        with pytest.raises(WireError):
            decode_snapshot_envelope(bad)
    with pytest.raises(WireError):
        encode_snapshot_envelope(app(1, 2, 1))


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(0.05, 2.0, random.Random(1))
    delays = [b.next() for _ in range(20)]
    assert 0.025 <= delays[0] <= 0.05
    assert all(1.0 <= d <= 2.0 for d in delays[8:])
    assert len(set(delays[8:])) > 1
    b.reset()
    assert b.next() <= 0.05


def test_stream_url() -> None:
    assert stream_url("http://10.0.0.1:2380/") == "ws://10.0.0.1:2380/raft/stream"
    assert stream_url("https://m-0.peers:2380") == "wss://m-0.peers:2380/raft/stream"
    with pytest.raises(ValueError):
        stream_url("10.0.0.1:2380")
