"""etcd's v3 gRPC services over one member (`Node`): KV, Watch, Lease, Cluster,
Maintenance and Auth, one module per service (as etcd's `v3rpc/*.go`), joined here into
the one object the gRPC server (`server.handlers`) and the JSON gateway call.

Each handler checks the request, calls one method of the member, and maps errors
through `errors` (etcd's table). Writes are proposed through Raft (`Node.write`)
from any member; linearizable reads wait for the ReadIndex barrier; lease keep-alive
and time-to-live, which only the leader can answer, are forwarded to the leader over
its native HTTP API when this member does not lead.
"""

from __future__ import annotations

from .base import ETCD_VERSION, GRPC_OVERHEAD_BYTES, MAX_REQUEST_BYTES, ServiceBase
from .cluster_service import ClusterService
from .kv_service import KVService
from .lease_service import LeaseService
from .maintenance_service import MaintenanceService
from .watch_service import WatchService

__all__ = [
    "ETCD_VERSION",
    "GRPC_OVERHEAD_BYTES",
    "MAX_REQUEST_BYTES",
    "EtcdServices",
    "ServiceBase",
]


class EtcdServices(KVService, LeaseService, WatchService, ClusterService, MaintenanceService):
    """The handlers of one member. `forwarder` is the client API's shared HTTP client
    to the leader (lease keep-alive and time-to-live, membership changes)."""
