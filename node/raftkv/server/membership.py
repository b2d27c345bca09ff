"""Who the members are, beyond Raft's bare ids: names and URLs, and every id ever
removed. It is replicated state (applied from committed entries, saved in snapshots),
so all members agree on it and a removed id is refused everywhere, forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import msgpack

from ..raft import NONE, ConfChange, ConfChangeType, ConfState
from . import errors as E


class InvalidURL(ValueError):
    pass


def validate_url(url: str) -> str:
    """A peer or client URL must be absolute http(s) with a host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise InvalidURL(f"invalid URL {url!r}: want http(s)://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidURL(f"invalid URL {url!r}: no path, query or fragment allowed")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    etcd_urls: tuple[str, ...] = ()
    """The member's advertised etcd API URL (`--advertise-etcd-url`), for etcd's
    MemberList; published in a v2 attributes entry (`encode_attrs_v2`)."""

    def encode(self) -> bytes:
        out: bytes = msgpack.packb(
            [self.name, list(self.peer_urls), list(self.client_urls)], use_bin_type=True
        )
        return out

    @classmethod
    def decode(cls, member_id: int, data: bytes) -> MemberInfo:
        if not data:
            return cls(member_id)
        try:
            name, peers, clients = msgpack.unpackb(data, raw=False)
            return cls(member_id, str(name), tuple(map(str, peers)), tuple(map(str, clients)))
        except Exception:
            return cls(member_id)


ATTRS_TAG = b"\xa8attrs/v1"
"""Entry data that updates a member's attributes starts with this msgpack string; a
KV command is a msgpack array and can never start with it."""


def encode_attrs(info: MemberInfo) -> bytes:
    body: bytes = msgpack.packb(
        [info.id, info.name, list(info.peer_urls), list(info.client_urls)], use_bin_type=True
    )
    return ATTRS_TAG + body


ATTRS_V2_TAG = b"\xa8attrs/v2"
"""Attributes with the etcd API URL as a fifth field. Members that predate it do not
recognise the tag and skip the entry (logging that they do not understand it), so
a member publishes a v1 entry first, which every member applies."""


def encode_attrs_v2(info: MemberInfo) -> bytes:
    body: bytes = msgpack.packb(
        [
            info.id,
            info.name,
            list(info.peer_urls),
            list(info.client_urls),
            list(info.etcd_urls),
        ],
        use_bin_type=True,
    )
    return ATTRS_V2_TAG + body


def decode_attrs(data: bytes) -> MemberInfo | None:
    if data.startswith(ATTRS_V2_TAG):
        try:
            mid, name, peers, clients, etcd = msgpack.unpackb(data[len(ATTRS_V2_TAG) :], raw=False)
            return MemberInfo(
                int(mid),
                str(name),
                tuple(map(str, peers)),
                tuple(map(str, clients)),
                tuple(map(str, etcd)),
            )
        except Exception:
            return None
    if not data.startswith(ATTRS_TAG):
        return None
    try:
        mid, name, peers, clients = msgpack.unpackb(data[len(ATTRS_TAG) :], raw=False)
        return MemberInfo(int(mid), str(name), tuple(map(str, peers)), tuple(map(str, clients)))
    except Exception:
        return None


@dataclass
class Registry:
    members: dict[int, MemberInfo] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)

    def apply_conf_change(self, cc: ConfChange) -> None:
        if cc.type == ConfChangeType.REMOVE_NODE:
            self.members.pop(cc.node_id, None)
            self.removed.add(cc.node_id)
            return
        if cc.node_id in self.removed:
            return
        info = MemberInfo.decode(cc.node_id, cc.context)
        old = self.members.get(cc.node_id)
        if old is not None and not cc.context:
            return  # a promotion carries no attributes: keep what we know
        self.members[cc.node_id] = info if old is None else _merge(old, info)

    def apply_attrs(self, info: MemberInfo) -> None:
        if info.id in self.members:
            self.members[info.id] = _merge(self.members[info.id], info)

    def max_id(self) -> int:
        return max((*self.members, *self.removed, 0))

    def encode(self) -> bytes:
        out: bytes = msgpack.packb(
            [
                [
                    # etcd URLs last: older members read the first four fields only
                    [m.id, m.name, list(m.peer_urls), list(m.client_urls), list(m.etcd_urls)]
                    for m in self.members.values()
                ],
                sorted(self.removed),
            ],
            use_bin_type=True,
        )
        return out

    @classmethod
    def decode(cls, data: bytes) -> Registry:
        members_raw, removed = msgpack.unpackb(data, raw=False)
        members = {
            int(m[0]): MemberInfo(
                int(m[0]), str(m[1]), tuple(m[2]), tuple(m[3]), tuple(m[4]) if len(m) > 4 else ()
            )
            for m in members_raw
        }
        return cls(members, {int(r) for r in removed})

    def copy(self) -> Registry:
        return Registry(dict(self.members), set(self.removed))

    def entries(self, cs: ConfState) -> list[MemberView]:
        """Every member of the configuration `cs`, with what the registry knows of it."""
        out: list[MemberView] = []
        for mid in cs.members():
            info = self.members.get(mid, MemberInfo(mid))
            out.append(
                MemberView(mid, info.name, info.peer_urls, info.client_urls, mid in cs.learners)
            )
        return out

    def view(self, cs: ConfState) -> list[dict[str, object]]:
        return [m.to_json() for m in self.entries(cs)]


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member as the API shows it (`/v1/members`, `/v1/status`)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "peer_urls": list(self.peer_urls),
            "client_urls": list(self.client_urls),
            "learner": self.learner,
        }


def scheme_changed(recorded: tuple[str, ...], advertised: tuple[str, ...]) -> bool:
    """The same peer addresses with http and https swapped: a member restarted with
    TLS turned on or off (docs/tls.md) publishes its new peer URL itself, so the
    others dial it the new way; any other change of address stays the job of an
    explicit member update."""
    if len(recorded) != len(advertised) or recorded == advertised:
        return False
    for old, new in zip(recorded, advertised, strict=True):
        o_scheme, _, o_rest = old.partition("://")
        n_scheme, _, n_rest = new.partition("://")
        if o_rest != n_rest or {o_scheme, n_scheme} - {"http", "https"}:
            return False
    return True


def _merge(old: MemberInfo, new: MemberInfo) -> MemberInfo:
    """Attributes an update leaves empty keep their old values."""
    return MemberInfo(
        old.id,
        new.name or old.name,
        new.peer_urls or old.peer_urls,
        new.client_urls or old.client_urls,
        new.etcd_urls or old.etcd_urls,
    )


# --- removal --------------------------------------------------------------------------


def removes(cc: ConfChange, member_id: int) -> bool:
    """Whether the configuration change `cc` removes `member_id`."""
    return cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == member_id


def was_removed(member_id: int, registry: Registry, changes: Iterable[ConfChange] = ()) -> bool:
    """The one test of "was this member removed": by a removal the registry has applied
    (it keeps every removed id forever), or by one of `changes`, configuration changes
    committed but not applied to `registry` yet."""
    return member_id in registry.removed or any(removes(cc, member_id) for cc in changes)


# --- rules for membership requests ---------------------------------------------------
# Plain functions over plain data (the registry, the configuration, the leader's view
# of its peers); the client API calls them and turns nothing into HTTP itself. Each
# refusal is a typed `errors.ApiError`.


def check_serving(*, joined: bool, removed: bool, member_id: int, stopping: bool) -> None:
    """Refuse when this member cannot answer from its own state: it has no id yet, it
    was removed, or (when `stopping` is true) it is shutting down."""
    if not joined:
        raise E.Unavailable("member is joining the cluster", code="joining")
    if removed:
        raise E.Gone(f"member {member_id} was removed from the cluster")
    if stopping:
        raise E.Unavailable("member is shutting down", code="shutting_down")


def next_member_id(registry: Registry) -> int:
    """Ids are never reused: a fresh one is above every id ever seen."""
    return registry.max_id() + 1


def plan_new_member(
    registry: Registry,
    conf_members: Collection[int],
    *,
    peer_urls: Iterable[str],
    client_urls: Iterable[str] = (),
    name: str | None = None,
    member_id: int | None = None,
) -> MemberInfo:
    """The member an add request describes, or the reason it is refused: URLs must be
    valid and the peer URLs not used by another member; a requested id must be neither
    removed nor in use; without one, a fresh id is allocated."""
    try:
        peers = tuple(validate_url(u) for u in peer_urls)
        clients = tuple(validate_url(u) for u in client_urls)
    except InvalidURL as exc:
        raise E.BadRequest(str(exc), code="invalid_url") from None
    for info in registry.members.values():
        if set(info.peer_urls) & set(peers):
            raise E.Conflict(f"peer URL already belongs to member {info.id}", code="member_exists")
    mid = next_member_id(registry) if member_id is None else member_id
    if member_id is not None:
        if member_id in registry.removed:
            raise E.Conflict(
                f"member id {member_id} was removed and is never reused", code="id_removed"
            )
        if member_id in registry.members or member_id in conf_members:
            raise E.Conflict(f"member id {member_id} is in use", code="member_exists")
    return MemberInfo(mid, name or f"member-{mid}", peers, clients)


def plan_member_update(
    registry: Registry, conf_members: Collection[int], member_id: int, peer_urls: Iterable[str]
) -> MemberInfo:
    """New peer URLs for a member (etcd's MemberUpdate), or the reason they are
    refused: the member must be in the cluster, the URLs valid, and none of them
    another member's. The attributes it returns change only the peer URLs (empty
    fields keep their values, `_merge`)."""
    check_member(conf_members, member_id)
    try:
        peers = tuple(validate_url(u) for u in peer_urls)
    except InvalidURL as exc:
        raise E.BadRequest(str(exc), code="invalid_url") from None
    if not peers:
        raise E.BadRequest("a member needs at least one peer URL", code="invalid_url")
    for info in registry.members.values():
        if info.id != member_id and set(info.peer_urls) & set(peers):
            raise E.Conflict(f"peer URL already belongs to member {info.id}", code="member_exists")
    return MemberInfo(member_id, "", peers, ())


def check_member(conf_members: Collection[int], member_id: int) -> None:
    if member_id not in conf_members:
        raise E.NotFound(f"member {member_id} is not in the cluster")


def check_promotable(cs: ConfState, member_id: int) -> None:
    check_member(cs.members(), member_id)
    if member_id not in cs.learners:
        raise E.Conflict(f"member {member_id} is already a voter", code="not_a_learner")


def member_view(registry: Registry, cs: ConfState, member_id: int) -> dict[str, object]:
    for m in registry.view(cs):
        if m["id"] == member_id:
            return m
    raise E.NotFound(f"member {member_id} is not in the cluster")


class PeerProgressLike(Protocol):
    @property
    def match(self) -> int: ...

    @property
    def learner(self) -> bool: ...

    @property
    def recent_active(self) -> bool: ...


def best_transfer_target(self_id: int, progress: Mapping[int, PeerProgressLike]) -> int:
    """The most up-to-date recently active voter other than `self_id` (thesis §3.10),
    or NONE (0) when there is none."""
    best, best_match = NONE, -1
    for mid, pr in progress.items():
        if mid != self_id and not pr.learner and pr.recent_active and pr.match > best_match:
            best, best_match = mid, pr.match
    return best


def transfer_target(
    self_id: int,
    conf_members: Collection[int],
    progress: Mapping[int, PeerProgressLike],
    requested: int | None,
) -> int:
    """Where a leadership transfer goes: the requested member if it is in the
    cluster, else the best caught-up voter."""
    if requested is not None:
        check_member(conf_members, requested)
        return requested
    to = best_transfer_target(self_id, progress)
    if to == NONE:
        raise E.Unavailable("no caught-up voter to transfer to", code="no_target")
    return to
