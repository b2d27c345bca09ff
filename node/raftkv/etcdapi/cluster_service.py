"""etcd's Cluster service, on raftkv's membership rules (`server/membership.py`):
changes run on the leader, forwarded there from any member."""

from __future__ import annotations

from typing import Any

import httpx

from ..api.forward import FORWARDED_HEADER
from ..raft import ConfChange, ConfChangeType
from ..server import errors as E
from ..server import membership as M
from . import errors as X
from .base import ServiceBase
from .proto import rpc_pb2 as pb


class ClusterService(ServiceBase):
    def _members(self) -> list[pb.Member]:
        node = self.node
        raw = node.raw
        if raw is None:
            raise X.NOT_CAPABLE
        out = []
        for m in node.registry.entries(raw.conf_state):
            info = node.registry.members.get(m.id)
            if m.id == node.member_id:
                urls = [self.etcd_url] if self.etcd_url else []
            elif info is not None and info.etcd_urls:
                urls = list(info.etcd_urls)  # what the member published
            else:
                urls = _etcd_urls(m.client_urls)  # a member that publishes none (older)
            out.append(
                pb.Member(
                    ID=m.id,
                    name=m.name,
                    peerURLs=list(m.peer_urls),
                    clientURLs=urls,
                    isLearner=m.learner,
                )
            )
        return out

    async def member_list(self, req: pb.MemberListRequest, ctx: Any) -> pb.MemberListResponse:
        if req.linearizable:
            await self.node.linearizable_barrier()
        return pb.MemberListResponse(header=self.header(), members=self._members())

    async def _changed_members(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        """Run a membership change on the leader: here when we lead, else through
        the leader's native API (`/v1/members`), which applies the same rules."""
        node = self.node
        url = node.leader_client_url()
        if url is None:
            raise X.NO_LEADER
        try:
            r = await self.forwarder.client().request(
                method, url + path, json=body, headers={FORWARDED_HEADER: "1"}
            )
        except httpx.HTTPError:
            raise X.NO_LEADER from None
        if r.status_code >= 400:
            try:
                err = r.json()
                code, message = str(err.get("error", "")), str(err.get("message", ""))
            except ValueError:
                code, message = "", r.text
            raise X.from_api_error(_api_error(r.status_code, code, message))

    async def member_add(self, req: pb.MemberAddRequest, ctx: Any) -> pb.MemberAddResponse:
        node = self.node
        if not req.peerURLs:
            raise X.MEMBER_BAD_URLS
        if node.is_leader():
            raw = node.raw
            assert raw is not None
            try:
                info = M.plan_new_member(
                    node.registry, raw.conf_state.members(), peer_urls=list(req.peerURLs)
                )
            except E.ApiError as exc:
                raise _member_error(exc) from None
            kind = ConfChangeType.ADD_LEARNER if req.isLearner else ConfChangeType.ADD_NODE
            await node.change_membership(ConfChange(kind, info.id, info.encode()))
            new_id = info.id
        else:
            before = {m.ID for m in self._members()}
            await self._changed_members(
                "POST", "/v1/members", {"peer_urls": list(req.peerURLs), "learner": req.isLearner}
            )
            await node.linearizable_barrier()
            new_id = next((m.ID for m in self._members() if m.ID not in before), 0)
        members = self._members()
        added = next(
            (x for x in members if int(x.ID) == new_id),
            pb.Member(ID=new_id, peerURLs=list(req.peerURLs), isLearner=req.isLearner),
        )
        return pb.MemberAddResponse(header=self.header(), member=added, members=members)

    async def member_remove(self, req: pb.MemberRemoveRequest, ctx: Any) -> pb.MemberRemoveResponse:
        node = self.node
        if node.is_leader():
            raw = node.raw
            assert raw is not None
            try:
                M.check_member(raw.conf_state.members(), req.ID)
            except E.ApiError:
                raise X.MEMBER_NOT_FOUND from None
            await node.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, req.ID))
        else:
            await self._changed_members("DELETE", f"/v1/members/{req.ID}", None)
            await node.linearizable_barrier()
        return pb.MemberRemoveResponse(header=self.header(), members=self._members())

    async def member_promote(
        self, req: pb.MemberPromoteRequest, ctx: Any
    ) -> pb.MemberPromoteResponse:
        node = self.node
        if node.is_leader():
            raw = node.raw
            assert raw is not None
            try:
                M.check_member(raw.conf_state.members(), req.ID)
                M.check_promotable(raw.conf_state, req.ID)
            except E.ApiError as exc:
                raise _member_error(exc) from None
            await node.change_membership(ConfChange(ConfChangeType.ADD_NODE, req.ID))
        else:
            await self._changed_members("POST", f"/v1/members/{req.ID}/promote", None)
            await node.linearizable_barrier()
        return pb.MemberPromoteResponse(header=self.header(), members=self._members())

    async def member_update(self, req: pb.MemberUpdateRequest, ctx: Any) -> pb.MemberUpdateResponse:
        """etcd's MemberUpdate: new peer URLs for a member, through Raft (a member
        attributes entry, which raftkv members also use to publish themselves), so
        every member dials it there from then on. As with etcd, the member itself
        must then listen there (restart it with the new `--listen-peer` /
        `--advertise-peer-url`). Validated after a ReadIndex, on the member's
        current registry."""
        node = self.node
        await node.linearizable_barrier()
        raw = node.raw
        assert raw is not None
        try:
            info = M.plan_member_update(
                node.registry, raw.conf_state.members(), req.ID, list(req.peerURLs)
            )
            await node.update_member(info)
        except E.ApiError as exc:
            raise _member_error(exc) from None
        return pb.MemberUpdateResponse(header=self.header(), members=self._members())


def _member_error(exc: E.ApiError) -> X.EtcdError:
    """raftkv's membership refusals (`server.membership`) as etcd's."""
    if exc.code in ("member_exists",):
        return X.PEER_URL_EXIST
    if exc.code == "not_a_learner":
        return X.MEMBER_NOT_LEARNER
    if exc.status == 404:
        return X.MEMBER_NOT_FOUND
    return X.from_api_error(exc)


def _api_error(status: int, code: str, message: str) -> E.ApiError:
    err = E.ApiError(message, code=code or None)
    err.status = status
    return err


def _etcd_urls(client_urls: tuple[str, ...]) -> list[str]:
    """Another member's etcd endpoint by the default rule (its client port + 10000),
    for a member that has not published its own (one of a version before it did)."""
    out = []
    for url in client_urls:
        scheme, _, rest = url.partition("://")
        host, _, port = rest.rpartition(":")
        if port.isdigit() and int(port) + 10000 <= 65535:
            out.append(f"{scheme}://{host}:{int(port) + 10000}")
    return out
