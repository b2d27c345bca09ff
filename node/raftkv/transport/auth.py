"""Who may talk to the peer port: the admission decision for streams and snapshots.

Both peer endpoints carry the same four handshake headers and go through `admit`
before a single byte of payload is read, so a stranger never gets a WebSocket
accepted or a snapshot body buffered. The decision is a plain function over headers
(no FastAPI types) so tests can call it with dicts. Each refusal is one `PeerRefused`
with the HTTP status it maps to, here and nowhere else:

- 403 `forbidden`: another cluster id, or a missing or wrong peer secret. Both are
  compared in constant time, and the two causes are not told apart in the answer.
- 400 `bad_handshake`: a sender or target id header that is not a member id.
- 410 `member_removed`: an authenticated sender that the cluster has removed (etcd's
  rafthttp answers the same), so that member learns it and stops instead of
  campaigning forever against a cluster that will never answer it.
- 409 `wrong_member`: the sender meant another member. Happens when a pod comes back
  on an address that used to belong to someone else; the sender must not believe it
  delivered anything.
- 503 `not_ready` (`not_ready()`): the member does not know its own id yet (a learner
  still discovering which id the cluster gave it), so it cannot admit anyone. Every
  learner goes through this for a moment while the leader is already dialling it, so
  it has its own status and code: senders retry it quietly, where a 403 is logged as
  the misconfiguration it is. `refusal_code` reads the code back on the sender.
- 503 `stopping`: the member is shutting down (`server.Inbound.close_all`); as
  passing as `not_ready` for the sender, though slower to heal.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raftkv.wire import U64_MAX

NOT_READY = "not_ready"
"""Refusal code of a member that does not know its own id yet (see `not_ready`)."""
STOPPING = "stopping"
"""Refusal code of a member that is shutting down."""

CLUSTER_HEADER = "x-raftkv-cluster-id"
SECRET_HEADER = "x-raftkv-peer-secret"
FROM_HEADER = "x-raftkv-from"
TO_HEADER = "x-raftkv-to"
URL_HEADER = "x-raftkv-peer-url"
"""The sender's advertised peer URL: a member that has just joined knows nobody's URL
until it has replicated the membership, yet must answer the leader at once."""


def _printable_ascii(value: str) -> bool:
    # Header values travel as latin-1 on the wire and `hmac.compare_digest` refuses
    # non-ASCII str; visible ASCII keeps both sides byte-identical.
    return bool(value) and all(0x21 <= ord(c) <= 0x7E for c in value)


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """The cluster's identity and its shared peer secret (mounted from a Secret)."""

    cluster_id: str
    secret: str
    advertise_url: str = ""

    def __post_init__(self) -> None:
        if not _printable_ascii(self.cluster_id):
            raise ValueError("cluster id must be non-empty visible ASCII")
        if not _printable_ascii(self.secret):
            raise ValueError("peer secret must be non-empty visible ASCII")

    def headers(self, sender: int, target: int) -> dict[str, str]:
        """Handshake headers for a stream or snapshot from `sender` to `target`."""
        return {
            CLUSTER_HEADER: self.cluster_id,
            SECRET_HEADER: self.secret,
            FROM_HEADER: str(sender),
            TO_HEADER: str(target),
            **({URL_HEADER: self.advertise_url} if self.advertise_url else {}),
        }


class PeerRefused(Exception):
    """An admission refusal; `status` is the HTTP status both endpoints answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        """The house error shape: `{"error": code, "message": ...}`."""
        return {"error": self.code, "message": self.message}


def not_ready() -> PeerRefused:
    """The refusal of a member that has no id yet. Not a verdict on the caller, so
    not a 403: a passing state that the sender should retry as it would retry an
    unreachable peer, without reporting an authentication failure."""
    return PeerRefused(503, NOT_READY, "member id not known yet")


def refusal_code(body: bytes | bytearray) -> str | None:
    """The `error` code of a refusal body (`PeerRefused.body`), or None when there is
    none. A peer from before `not_ready` existed answers a bare 403 without a body, so
    a missing or unreadable code must leave the sender judging by the status alone,
    never by a guess at the softer reading."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        # Whatever the body, this must not raise: it runs in the stream's redial loop.
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    return code if isinstance(code, str) else None


def _same(got: str | None, want: str) -> bool:
    if got is None:
        return False
    try:
        return hmac.compare_digest(got.encode("ascii"), want.encode("ascii"))
    except UnicodeEncodeError:
        return False


def _member_id(value: str | None, what: str) -> int:
    # isdigit() alone accepts Unicode digits that int() parses; insist on ASCII.
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise PeerRefused(400, "bad_handshake", f"{what} is not a member id")
    member = int(value)
    if not 0 < member <= U64_MAX:
        raise PeerRefused(400, "bad_handshake", f"{what} is not a member id")
    return member


def admit(
    headers: Mapping[str, str],
    auth: PeerAuth,
    local_id: int,
    is_removed: Callable[[int], bool],
) -> int:
    """Return the sender's member id, or raise `PeerRefused`.

    Authentication comes first so that an unauthenticated caller learns nothing about
    membership (not even whether an id was removed)."""
    cluster_ok = _same(headers.get(CLUSTER_HEADER), auth.cluster_id)
    secret_ok = _same(headers.get(SECRET_HEADER), auth.secret)
    if not (cluster_ok and secret_ok):
        raise PeerRefused(403, "forbidden", "wrong cluster id or peer secret")
    sender = _member_id(headers.get(FROM_HEADER), "sender")
    target = _member_id(headers.get(TO_HEADER), "target")
    if is_removed(sender):
        raise PeerRefused(410, "member_removed", f"member {sender:x} was removed from the cluster")
    if target != local_id:
        raise PeerRefused(409, "wrong_member", f"this is member {local_id:x}, not {target:x}")
    return sender
