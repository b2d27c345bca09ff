"""Which TLS context the outgoing half of the transport dials peers with.

`TransportOptions.client_ssl` says it explicitly. A member's `Transport` is built deep
inside the node's start-up, which knows nothing of TLS, so `raftkv serve` sets
`PEER_CLIENT_SSL` before it starts the node instead: a context variable, inherited by
every task created after it is set, and therefore scoped to that member even when
several members share one test process."""

from __future__ import annotations

import ssl
from contextvars import ContextVar

PEER_CLIENT_SSL: ContextVar[ssl.SSLContext | None] = ContextVar(
    "raftkv_peer_client_ssl", default=None
)
"""The member's peer client context (its peer certificate, the peer CA), or None."""


def peer_client_ssl(explicit: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """`explicit` if given, else the member's context from `PEER_CLIENT_SSL`."""
    return explicit if explicit is not None else PEER_CLIENT_SSL.get()
