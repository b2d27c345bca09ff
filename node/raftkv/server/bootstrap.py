"""Who this member is and how it starts: a new cluster, a restart from its data dir, or
a join (with a known member id, or discovering it from the cluster).

`plan_start` decides from the data dir and the configuration alone, refusing a data
dir that belongs to another member or cluster; the functions below it create the Raft
node for each case. `discover_member_id` finds the id the cluster gave a member that
joins with neither an id nor a data dir.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..client import AsyncClient, RaftKVError
from ..raft import (
    ConfChange,
    Config,
    Entry,
    EntryType,
    RawNode,
    decode_conf_change,
)
from ..raft.errors import InvalidConfChange
from ..storage.recovery import RecoveredState
from . import force_new_cluster
from .config import InitialMember, ServerConfig
from .membership import MemberInfo, Registry, validate_url, was_removed
from .meta import META_FILE, IdentityError, MemberMeta

log = logging.getLogger("raftkv.node")


class StartKind(enum.Enum):
    RESTART = "restart"
    """The data dir holds Raft state: continue as the member it belongs to."""
    JOIN = "join"
    """Join an existing cluster under a known member id."""
    DISCOVER = "discover"
    """Join an existing cluster; learn the member id from it first."""
    BOOTSTRAP = "bootstrap"
    """Start a new cluster as one of its initial members."""


@dataclass(frozen=True, slots=True)
class StartPlan:
    kind: StartKind
    member_id: int = 0
    """0 only for DISCOVER."""


def has_raft_state(storage: RecoveredState) -> bool:
    return storage.hard_state.term > 0 or bool(storage.entries) or storage.snapshot is not None


def plan_start(cfg: ServerConfig, meta: MemberMeta | None, has_state: bool) -> StartPlan:
    """How this member starts. Raises IdentityError for a data dir of another member
    or cluster and ValueError for a configuration that cannot start."""
    if cfg.force_new_cluster and not has_state:
        raise ValueError(
            f"--force-new-cluster: {cfg.data_dir} holds no Raft state, so there is nothing "
            "to recover; point --data-dir at a surviving member's data or drop the flag"
        )
    if has_state:
        if meta is None:
            raise IdentityError(f"{cfg.data_dir} holds Raft state but no {META_FILE}")
        check_identity(cfg, meta)
        return StartPlan(StartKind.RESTART, meta.member_id)
    if cfg.join:
        if meta is not None and cfg.member_id and meta.member_id != cfg.member_id:
            raise IdentityError(
                f"{cfg.data_dir} belongs to member {meta.member_id}, not {cfg.member_id}"
            )
        mid = cfg.member_id or (meta.member_id if meta is not None else 0)
        if mid > 0:
            return StartPlan(StartKind.JOIN, mid)
        if not cfg.discovery_endpoints:
            raise ValueError("joining needs --member-id or --discovery-endpoints")
        return StartPlan(StartKind.DISCOVER)
    return StartPlan(StartKind.BOOTSTRAP, initial_member(cfg).id)


def check_identity(cfg: ServerConfig, meta: MemberMeta) -> None:
    """The data dir must belong to our cluster and, when an id is given, to our id."""
    if meta.cluster_id != cfg.cluster_id:
        raise IdentityError(
            f"{cfg.data_dir} belongs to cluster {meta.cluster_id}, "
            f"not {cfg.cluster_id} (check --cluster-token)"
        )
    if cfg.join and cfg.member_id and cfg.member_id != meta.member_id:
        raise IdentityError(
            f"{cfg.data_dir} belongs to member {meta.member_id}, not {cfg.member_id}"
        )


def initial_member(cfg: ServerConfig) -> InitialMember:
    me = next((m for m in cfg.initial_cluster if m.name == cfg.name), None)
    if me is None:
        raise ValueError(f"member name {cfg.name!r} is not in the initial cluster")
    return me


def raft_config(cfg: ServerConfig, member_id: int) -> Config:
    return Config(
        id=member_id,
        election_tick=cfg.election_ticks,
        heartbeat_tick=cfg.heartbeat_ticks,
        snapshot_catchup_entries=cfg.snapshot_catchup_entries,
        seed=int.from_bytes(os.urandom(8), "big"),
    )


# --- the Raft node for each way of starting ------------------------------------------


def restart(cfg: ServerConfig, member_id: int, storage: RecoveredState) -> RawNode:
    """The Raft node of a member restarting from its data dir; `storage`'s snapshot,
    if any, must already be installed.

    With --force-new-cluster, first the one-time rewrite of the configuration to this
    member alone (`force_new_cluster.apply`: REMOVE_NODE entries appended to the WAL,
    committed by the hard state), which the node then applies like any committed
    change; without it, the marker of an earlier forced start is cleared."""
    if cfg.force_new_cluster:
        force_new_cluster.apply(cfg.data_dir, member_id, storage)
    else:
        force_new_cluster.clear_marker(cfg.data_dir)
    return RawNode.restart(
        raft_config(cfg, member_id), storage.hard_state, storage.snapshot, storage.entries
    )


def check_not_removed(
    member_id: int, registry: Registry, entries: Sequence[Entry], commit: int
) -> None:
    """Refuse to restart a member that was removed: by the registry of its snapshot or
    by a configuration change committed (up to `commit`) in its log after it."""
    if was_removed(member_id, registry, committed_conf_changes(entries, commit)):
        raise IdentityError(
            f"member {member_id} was removed from the cluster; "
            "wipe its data dir and add it again as a new member"
        )


def committed_conf_changes(entries: Sequence[Entry], commit: int) -> Iterator[ConfChange]:
    for e in entries:
        if e.index > commit:
            break
        if e.type == EntryType.CONF_CHANGE:
            try:
                yield decode_conf_change(e.data)
            except InvalidConfChange:
                continue


def join(cfg: ServerConfig, member_id: int) -> RawNode:
    """Record our identity, then wait (as an empty Raft node) to be added."""
    MemberMeta(member_id, cfg.name, cfg.cluster_id).save(cfg.data_dir)
    return RawNode.join(raft_config(cfg, member_id))


def bootstrap(cfg: ServerConfig, member_id: int) -> RawNode:
    """Record our identity, then start as one member of the new initial cluster."""
    MemberMeta(member_id, cfg.name, cfg.cluster_id).save(cfg.data_dir)
    contexts = {m.id: MemberInfo(m.id, m.name, (m.peer_url,)).encode() for m in cfg.initial_cluster}
    return RawNode.bootstrap(
        raft_config(cfg, member_id), [m.id for m in cfg.initial_cluster], contexts
    )


# --- discovery -----------------------------------------------------------------------


async def discover_member_id(cfg: ServerConfig, *, interval: float = 1.0) -> int:
    """Find our id: the learner the cluster added with our peer URL. A voter with our
    URL means our old identity is still in the configuration while our data dir is
    empty (a lost volume): taking it could lose committed entries, so we refuse and
    keep looking until it is replaced."""
    own = validate_url(cfg.peer_url)
    warned = False
    from .member_tls import member_client_verify  # lazily: plain members skip cryptography

    verify = member_client_verify(cfg)
    async with AsyncClient(
        list(cfg.discovery_endpoints), timeout=3, retries=0, verify=verify
    ) as cl:
        while True:
            try:
                members = await cl.members()
            except (RaftKVError, OSError) as exc:
                log.debug("discovery: %s", exc)
                members = []
            for m in members:
                if own not in {_norm(u) for u in m.peer_urls}:
                    continue
                if m.learner:
                    log.info("discovered our member id %d (learner at %s)", m.id, own)
                    return m.id
                if not warned:
                    log.warning(
                        "voter %d holds our peer URL but our data dir is empty: "
                        "refusing to take its identity; waiting to be replaced",
                        m.id,
                    )
                    warned = True
            await asyncio.sleep(interval)


def _norm(url: str) -> str:
    try:
        return validate_url(url)
    except ValueError:
        return url
