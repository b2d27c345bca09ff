"""FastAPI dependencies shared by the routers: the member (`Node`) the app serves, the
leader forwarder, and the serving checks that come before a read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from ..raft import RawNode
from ..server import errors as E
from ..server.membership import check_serving
from ..server.node import Node
from .forward import LeaderForwarder


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def get_forwarder(request: Request) -> LeaderForwarder:
    fwd: LeaderForwarder = request.app.state.forwarder
    return fwd


NodeDep = Annotated[Node, Depends(get_node)]
ForwarderDep = Annotated[LeaderForwarder, Depends(get_forwarder)]


async def guard_read(node: Node, consistency: str) -> None:
    """Linearizable reads wait for a ReadIndex barrier; serializable ones only need a
    member that has joined and was not removed (a stopping member still answers)."""
    if consistency == "linearizable":
        await node.linearizable_barrier()
    elif consistency != "serializable":
        raise E.BadRequest("consistency must be linearizable or serializable")
    else:
        check_serving(
            joined=node.raw is not None,
            removed=node.removed,
            member_id=node.member_id,
            stopping=False,
        )


async def read_guard(
    node: NodeDep,
    consistency: Annotated[
        str, Query(description="linearizable (default) or serializable")
    ] = "linearizable",
) -> None:
    await guard_read(node, consistency)


ReadGuard = Depends(read_guard)


def joined_raw(node: NodeDep) -> RawNode:
    """The Raft node of a member that knows its id (503 `joining` before)."""
    if node.raw is None:
        raise E.Unavailable("member is joining the cluster", code="joining")
    return node.raw


JoinedRaw = Annotated[RawNode, Depends(joined_raw)]


def leader_raw(node: Node) -> RawNode:
    """The Raft node of a member that was just found to be the leader."""
    raw = node.raw
    assert raw is not None
    return raw
