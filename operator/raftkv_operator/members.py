"""How the operator talks to members: raftkv's own ``AsyncClient``, nothing else.

Two small protocols keep the executor and the observer testable with plain fakes:
:class:`MemberProbe` asks one member about itself, :class:`MemberAdmin` changes the
configuration through any member (followers forward to the leader). Which URL a
member answers on is decided by :class:`~raftkv_operator.naming.Addressing`, never here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Protocol

from raftkv.client import AsyncClient, RaftKVError, StatusInfo

#: Seconds one member may take to answer the operator; a slow member counts as down
#: for this observation rather than stalling every other RaftKV's reconcile.
PROBE_TIMEOUT = 2.0
#: Membership calls wait for the change to be applied on the leader.
ADMIN_TIMEOUT = 10.0


class MemberProbe(Protocol):
    async def status(self, url: str) -> StatusInfo | None:
        """The member's ``/v1/status``, or None when it does not answer usefully."""
        ...

    async def ready(self, url: str) -> bool: ...


class MemberAdmin(Protocol):
    async def add_learner(
        self, member_id: int, name: str, peer_url: str, client_url: str
    ) -> None: ...
    async def promote(self, member_id: int) -> None: ...
    async def remove(self, member_id: int) -> None: ...
    async def transfer(self, to_id: int) -> None: ...


class HttpProbe:
    """:class:`MemberProbe` over HTTP; one client for a whole observation."""

    def __init__(
        self, timeout: float = PROBE_TIMEOUT, verify: ssl.SSLContext | bool = True
    ) -> None:
        self._timeout = timeout
        #: With spec.tls: trusts the RaftKV's CA and presents its client certificate.
        self._verify = verify

    async def status(self, url: str) -> StatusInfo | None:
        async with AsyncClient(
            [url], timeout=self._timeout, retries=0, verify=self._verify
        ) as client:
            try:
                return await asyncio.wait_for(client.status(endpoint=url), self._timeout * 2)
            except (RaftKVError, OSError, TimeoutError):
                return None

    async def ready(self, url: str) -> bool:
        async with AsyncClient(
            [url], timeout=self._timeout, retries=0, verify=self._verify
        ) as client:
            try:
                return await asyncio.wait_for(client.ready(url), self._timeout * 2)
            except (OSError, TimeoutError):
                return False


class HttpAdmin:
    """:class:`MemberAdmin` over HTTP against the given members (leader first is best:
    it saves a forward). Errors are the client's typed ``RaftKVError``s; the executor
    decides which of them mean "already done"."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = ADMIN_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._endpoints = list(endpoints)
        self._timeout = timeout
        self._verify = verify

    def _client(self) -> AsyncClient:
        return AsyncClient(
            self._endpoints, timeout=self._timeout, retries=1, backoff=0.2, verify=self._verify
        )

    async def add_learner(self, member_id: int, name: str, peer_url: str, client_url: str) -> None:
        async with self._client() as client:
            await client.add_member(
                peer_url, name=name, learner=True, id=member_id, client_urls=[client_url]
            )

    async def promote(self, member_id: int) -> None:
        async with self._client() as client:
            await client.promote_member(member_id)

    async def remove(self, member_id: int) -> None:
        async with self._client() as client:
            await client.remove_member(member_id)

    async def transfer(self, to_id: int) -> None:
        async with self._client() as client:
            await client.transfer_leader(to_id)
