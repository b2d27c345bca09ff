"""End to end, locally: a RaftKV scales 1 → 3 → 5 → 3 → 1 → 3 under continuous writes.

On the way the leader is among the members removed (we move leadership onto the
highest ordinal before scaling it away), a pod is deleted and comes back as the same
member, and a pod's data dir is wiped so the operator must replace that member. At
the end every acknowledged write is readable and the Raft configuration is exactly
the members of the pods that exist.

Every wait is a poll with a deadline; every member process is reaped by the kubelet
harness, the operator thread and the emulator are stopped by their context managers.

Opt-in (``e2e/`` is outside ``testpaths``): ``pytest e2e/local`` (or ``-m e2e``). It
needs no cluster, only loopback: the real operator, the Kubernetes stand-in of
``tests/support`` and real ``raftkv serve`` processes played by ``kubelet.py``.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, cast

import kubernetes
import pytest
from kubelet import Kubelet
from kubernetes.client import ApiClient, ApiException

from raftkv.client import Client, RaftKVError
from raftkv_operator.model import PlannerConfig
from raftkv_operator.naming import GROUP, PLURAL, VERSION, Addressing, selector_labels
from raftkv_operator.reconcile import OperatorConfig
from support.operator_harness import NS, OperatorThread, start_emulator
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
log = logging.getLogger("e2e")
NAME = "kv"
STEP_TIMEOUT = 120.0  # a deadline, not a wait: generous for a loaded 2-core machine
#: What a wait shrugs off until its deadline: the API or a member briefly unavailable.
TRANSIENT = (ApiException, RaftKVError, OSError)


def free_prefix() -> tuple[int, int]:
    """Two 4-digit port prefixes P, C such that P0..P9 and C0..C9 are all free (below
    the ephemeral range, so outgoing connections cannot take them meanwhile)."""
    # In a random order: two runs on one machine (a developer's and CI's) must not both
    # take the first free block before either has started a member on it.
    for base in random.sample(range(2100, 3200, 2), k=550):
        ports = [base * 10 + i for i in range(20)]
        try:
            socks = []
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base, base + 1
    raise RuntimeError("no free port block")


class Writer:
    """Writes k000001, k000002, ... as fast as the cluster acknowledges them."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.acked: dict[str, bytes] = {}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        i, start = 0, 0
        client = Client(self.endpoints, timeout=3, retries=1, backoff=0.05)
        try:
            while not self._stop.is_set():
                i += 1
                key, value = f"k{i:06d}", f"v{i}".encode()
                try:
                    client.put(key, value)
                    self.acked[key] = value
                except RaftKVError:
                    # Rotate the endpoints: a removed member keeps answering 410, and
                    # the client sticks to the last member that answered.
                    self.failures += 1
                    start = (start + 1) % len(self.endpoints)
                    client.close()
                    order = self.endpoints[start:] + self.endpoints[:start]
                    client = Client(order, timeout=3, retries=1, backoff=0.05)
                    time.sleep(0.05)
                time.sleep(0.02)
        finally:
            client.close()


class Acked(Protocol):
    """A background writer: what it saw acknowledged, and how many attempts failed."""

    acked: dict[str, bytes]
    failures: int


class World:
    def __init__(self, api: ApiClient, kubelet: Kubelet, addressing: Addressing) -> None:
        self.api = api
        self.kubelet = kubelet
        self.addressing = addressing
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.client_urls = [addressing.client_url(NAME, NS, k) for k in range(10)]

    def create_raftkv(self, replicas: int = 3, name: str = NAME, **spec: Any) -> None:
        """Create a RaftKV (``kv`` unless named) with fast Raft timing (50 ms ticks)
        and ``spec``."""
        body = {
            "replicas": replicas,
            "raft": {"tickMs": 50, "electionTicks": 10, "heartbeatTicks": 1},
            **spec,
        }
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaftKV",
                "metadata": {"name": name},
                "spec": body,
            },
        )

    def raftkv(self, name: str = NAME) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return cast("dict[str, Any]", obj)  # the client types custom objects as object

    def conditions(self, name: str = NAME) -> dict[str, dict[str, Any]]:
        """The RaftKV's status conditions by type."""
        status = self.raftkv(name).get("status") or {}
        return {c["type"]: c for c in status.get("conditions") or []}

    def scale(self, replicas: int) -> None:
        log.info("scaling to %d", replicas)
        self.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, NS, PLURAL, NAME, {"spec": {"replicas": replicas}}
        )

    def mapping(self) -> dict[int, int]:
        status = self.raftkv().get("status") or {}
        return {m["ordinal"]: m["id"] for m in status.get("memberIDs") or []}

    def _client(self, timeout: float = 2, retries: int = 1) -> Client:
        return Client(self.client_urls, timeout=timeout, retries=retries)

    def members(self) -> list[Any]:
        with self._client() as client:
            return client.members()

    def leader(self) -> int:
        with self._client() as client:
            return client.status().leader

    def assert_kept(self, writer: Acked, prefix: str = "k") -> None:
        """Every write the writer saw acknowledged is readable now, with its value."""
        assert len(writer.acked) > 50, (len(writer.acked), writer.failures)
        stored: dict[str, bytes] = {}
        with self._client(timeout=5, retries=2) as client:
            after: str | None = None
            while page := client.list(prefix, limit=10_000, start_after=after):
                stored.update((kv.key, kv.value) for kv in page)
                after = page[-1].key
        lost = {k for k, v in writer.acked.items() if stored.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes missing, e.g. {sorted(lost)[:5]}"

    def member_pods(self, name: str = NAME) -> list[Any]:
        """The RaftKV's member pods (backup Jobs' pods share the namespace)."""
        labels = sorted(selector_labels(name).items())
        selector = ",".join(f"{k}={v}" for k, v in labels)
        return cast("list[Any]", self.core.list_namespaced_pod(NS, label_selector=selector).items)

    def in_sync(self, replicas: int, name: str = NAME) -> dict[str, Any] | None:
        self.why = "status"
        obj = self.raftkv(name)
        status = obj.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        if not (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and conds.get("Progressing", {}).get("reason") == "InSync"
            and conds.get("Available", {}).get("status") == "True"
            and conds.get("Ready", {}).get("status") == "True"
            and status.get("readyReplicas") == replicas
            and len(status.get("memberIDs") or []) == replicas
            and not status.get("inFlight")
        ):
            return None
        self.why = "members"
        members = self.members()
        if len(members) != replicas or any(m.learner for m in members):
            return None
        self.why = "pods"
        if len(self.member_pods(name)) != replicas:
            return None
        return status

    def wait_in_sync(
        self, replicas: int, name: str = NAME, timeout: float = STEP_TIMEOUT
    ) -> dict[str, Any]:
        started = time.monotonic()
        try:
            status = wait_for(
                f"{name}: {replicas} members in sync",
                lambda: self.in_sync(replicas, name),
                timeout=timeout,
                interval=0.1,
                ignore=TRANSIENT,
            )
        except AssertionError as exc:
            stuck = self.raftkv(name).get("status")
            raise AssertionError(f"{exc}; stuck at {self.why}: {stuck}") from None
        log.info("in sync at %d after %.1fs", replicas, time.monotonic() - started)
        return status

    def event_reasons(self) -> list[str | None]:
        uid = self.raftkv()["metadata"]["uid"]
        return [
            e.reason
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.uid == uid
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    # Request logs of the stand-in and the HTTP clients cost more CPU than the run.
    for noisy in ("aiohttp.access", "httpx", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    peer, client = free_prefix()
    addressing = Addressing(
        peer_url_template=f"http://127.0.0.1:{peer}{{ordinal}}",
        client_url_template=f"http://127.0.0.1:{client}{{ordinal}}",
    )
    config = OperatorConfig(
        addressing=addressing,
        planner=PlannerConfig(max_learner_lag=64, stabilization_seconds=0.5),
        interval=0.3,
    )
    with start_emulator() as server:
        api = ApiClient(kubernetes.client.Configuration(host=server.url))
        kubelet = Kubelet(
            server.url,
            tmp_path,
            addressing,
            NS,
            extra_env={"RAFTKV_REQUEST_TIMEOUT": "3", "RAFTKV_STOP_TIMEOUT": "5"},
        )
        try:
            with kubelet, OperatorThread(server.url, config):
                yield World(api, kubelet, addressing)
                assert not kubelet.errors, kubelet.errors
        finally:
            api.close()
            for pod in ("kv-0", "kv-1", "kv-2", "kv-3", "kv-4"):
                text = kubelet.logs(pod)
                if text:
                    log.info("--- %s ---\n%s", pod, text[-1500:])
        assert not server.emulator.errors, server.emulator.errors


def test_scale_kill_wipe_under_writes(world: World) -> None:
    started = time.monotonic()
    world.create_raftkv(replicas=1)
    world.wait_in_sync(1)
    with Writer(world.client_urls) as writer:
        world.scale(3)
        world.wait_in_sync(3)
        world.scale(5)
        world.wait_in_sync(5)

        # Put the leader on the highest ordinal: the 5 → 3 scale-down must move it.
        top = world.mapping()[4]
        with Client(world.client_urls, timeout=5, retries=2) as client:
            client.transfer_leader(top)
        wait_for(
            "member at ordinal 4 to lead",
            lambda: world.leader() == top,
            timeout=STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        world.scale(3)
        world.wait_in_sync(3)
        assert "LeadershipTransferred" in world.event_reasons()
        assert top not in {m.id for m in world.members()}

        # A deleted pod returns at the same ordinal, with its volume, as the same member.
        before = world.mapping()
        old_pid = world.kubelet.pid("kv-1")
        world.core.delete_namespaced_pod("kv-1", NS)
        wait_for(
            "pod kv-1 to run again",
            lambda: world.kubelet.pid("kv-1") not in (None, old_pid),
            timeout=STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        world.wait_in_sync(3)
        assert world.mapping() == before

        # A wiped volume: the member is replaced by a fresh id at the same ordinal.
        old = before[2]
        world.kubelet.wipe("kv-2")
        wait_for(
            "ordinal 2 to get a new member id",
            lambda: world.mapping().get(2) != old,
            timeout=STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        world.wait_in_sync(3)
        assert world.mapping()[2] > max(before.values())
        assert "ReplacingMember" in world.event_reasons()

        world.scale(1)
        world.wait_in_sync(1)
        world.scale(3)
        status = world.wait_in_sync(3)
        time.sleep(0.5)  # a few more writes against the final configuration

    world.assert_kept(writer)

    # The Raft configuration is exactly the members of the pods that exist.
    pods = sorted(str(p.metadata.name) for p in world.core.list_namespaced_pod(NS).items)
    assert pods == ["kv-0", "kv-1", "kv-2"]
    mapping = {m["ordinal"]: m["id"] for m in status["memberIDs"]}
    members = world.members()
    assert {m.id for m in members} == set(mapping.values())
    assert {m.name for m in members} == set(pods)
    assert all(not m.learner for m in members)
    ids = sorted(mapping.values())
    assert len(set(ids)) == 3
    assert status["nextMemberID"] > max(ids)
    log.info(
        "scenario done in %.1fs: %d writes acknowledged, %d failed attempts",
        time.monotonic() - started,
        len(writer.acked),
        writer.failures,
    )
