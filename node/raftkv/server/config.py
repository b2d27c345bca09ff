"""Settings of one member, from flags or RAFTKV_* environment variables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .membership import validate_url


@dataclass(frozen=True, slots=True)
class InitialMember:
    id: int
    name: str
    peer_url: str


def parse_initial_cluster(spec: str) -> list[InitialMember]:
    """`name=url,name=url,...` as in etcd; ids are positions (1-based), so every
    member given the same string derives the same ids."""
    out: list[InitialMember] = []
    seen: set[str] = set()
    for i, part in enumerate(p for p in spec.split(",") if p.strip()):
        name, sep, url = part.strip().partition("=")
        if not sep or not name:
            raise ValueError(f"initial cluster entry {part!r} is not name=url")
        if name in seen:
            raise ValueError(f"member name {name!r} appears twice in the initial cluster")
        seen.add(name)
        out.append(InitialMember(i + 1, name, validate_url(url)))
    if not out:
        raise ValueError("the initial cluster is empty")
    return out


def cluster_id_for(token: str) -> str:
    """Every member of one cluster derives the same id from the shared token; peers
    with another id are refused, so two clusters on one network cannot mix."""
    return hashlib.sha256(b"raftkv-cluster:" + token.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    data_dir: Path
    client_host: str = "127.0.0.1"
    client_port: int = 2379
    peer_host: str = "127.0.0.1"
    peer_port: int = 2380
    advertise_client_url: str = ""
    advertise_peer_url: str = ""
    initial_cluster: list[InitialMember] = field(default_factory=list)
    join: bool = False
    member_id: int = 0
    """The id we were added with, when joining; 0 = find it by discovery."""
    discovery_endpoints: tuple[str, ...] = ()
    """Client URLs of the existing cluster (e.g. its client Service). A joining member
    with an empty data dir and no id polls the member list there until a learner with
    its own peer URL appears, and takes that id."""
    cluster_token: str = "raftkv"
    peer_secret: str = ""
    snapshot_count: int = 10_000
    snapshot_catchup_entries: int = 5_000
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    request_timeout: float = 5.0
    stop_timeout: float = 10.0
    log_format: str = "text"
    log_level: str = "info"

    @property
    def cluster_id(self) -> str:
        return cluster_id_for(self.cluster_token)

    @property
    def client_url(self) -> str:
        return self.advertise_client_url or f"http://{self.client_host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return self.advertise_peer_url or f"http://{self.peer_host}:{self.peer_port}"
