"""Peer transport: Raft messages and snapshots between members, over the peer port.

```python
t = Transport(member_id, PeerAuth(cluster_id, secret), on_messages, on_unreachable,
              on_snapshot_sent, is_removed=..., on_removed=..., observe_rtt=...)
t.set_peer(2, "http://10.0.0.2:2380"); t.remove_peer(2)
t.send(ready.messages)            # never blocks; SNAP goes over the snapshot path
await t.start(); ...; await t.stop()
uvicorn.Server(t.uvicorn_config("0.0.0.0", 2380))   # serves t.app, the peer port
```

Outgoing: one WebSocket per peer (`ws://<peer>/raft/stream`) carrying batches of
messages as single binary frames (`raftkv.wire`), redialled with capped, jittered
backoff; a bounded queue per peer while it is down. Snapshots: a chunked POST to
`/raft/snapshot`, CRC-verified by the receiver before delivery. Incoming: the same two
routes on `t.app`, admitting only this cluster's members with the peer secret (403),
answering 410 to removed members and 409 to callers that meant another member.

TLS (docs/tls.md): https:// peer URLs are dialled as wss:// (and snapshots POSTed over
https) with `TransportOptions.client_ssl`, or the member's context in
`transport.tls.PEER_CLIENT_SSL`; serving the peer port over TLS is the caller's
uvicorn setting. The peer secret is checked either way.
"""

from raftkv.transport.auth import PeerAuth, PeerRefused, admit
from raftkv.transport.options import TransportOptions
from raftkv.transport.peer import CLOSE_REMOVED, STREAM_PATH, PeerStats
from raftkv.transport.server import HEALTH_PATH
from raftkv.transport.snapshot import SNAPSHOT_PATH
from raftkv.transport.transport import Transport

__all__ = [
    "CLOSE_REMOVED",
    "HEALTH_PATH",
    "SNAPSHOT_PATH",
    "STREAM_PATH",
    "PeerAuth",
    "PeerRefused",
    "PeerStats",
    "Transport",
    "TransportOptions",
    "admit",
]
