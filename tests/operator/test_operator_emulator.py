"""The operator's kopf handlers against the Kubernetes API stand-in.

The real operator runs (``raftkv_operator.main.run`` in a thread); only the members
are played by :class:`~support.fake_members.FakeMembers`, a tiny in-memory Raft
configuration reached through the same probe/admin protocols the HTTP implementations
serve. Every owned
object is validated against the official Kubernetes 1.30 schemas.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv_operator import metrics
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.fake_members import CONFIG, FakeMembers, ready_pod
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread, start_emulator
from support.wait import wait_for

K8S_VERSION = "1.30"


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


@pytest.fixture
def api(server: EmulatorThread) -> Iterator[ApiClient]:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as client:
        yield client


def raftkv(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {
            "replicas": replicas,
            "image": "raftkv:test",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"disk": "ssd"},
        },
    }


class Cluster:
    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)

    def raftkv(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        return cast("dict[str, Any]", obj)  # the client types custom objects as object

    def status(self) -> dict[str, Any]:
        return dict(self.raftkv().get("status") or {})

    def events(self, uid: str) -> list[tuple[str | None, str | None]]:
        return [
            (e.reason, e.type)
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.uid == uid
        ]

    def owned(self) -> list[Any]:
        return [_read_one(self, kind) for kind in range(6)]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status.get("conditions", []) if c["type"] == kind]
    return dict(found)


def has(reason: str, events: Sequence[tuple[str, str]]) -> bool:
    return any(r == reason for r, _ in events)


def test_create_bootstrap_scale_and_delete(server: EmulatorThread, api: ApiClient) -> None:
    cluster = Cluster(api)
    fake = FakeMembers()
    adds_before = metrics.count(metrics.MEMBERSHIP_CHANGES, "add_learner")
    with OperatorThread(server.url, CONFIG, probe=fake, admin_for=lambda _: fake):
        created = cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, raftkv(1)
        )
        uid = created["metadata"]["uid"]

        # Bootstrap is recorded before anything exists, then the children appear.
        owned = wait_for("the owned objects", lambda: _all(cluster.owned), ignore=ApiException)
        for obj in owned:
            plain = api.sanitize_for_serialization(obj)
            kubernetes_validate.validate(plain, K8S_VERSION, strict=True)
            (ref,) = plain["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
                "RaftKV",
                "kv",
                uid,
                True,
            )
        peer, client, secret, bootstrap, pdb, sts = owned
        assert peer.spec.cluster_ip == "None"
        assert peer.spec.publish_not_ready_addresses
        assert not client.spec.publish_not_ready_addresses
        assert secret.data["peer-secret"]
        assert bootstrap.data == {"initial-cluster-state": "new"}
        assert pdb.spec.max_unavailable == 1
        assert sts.spec.replicas == 1
        assert sts.spec.pod_management_policy == "Parallel"
        pod = sts.spec.template.spec
        assert pod.security_context.run_as_non_root
        assert pod.tolerations[0].key == "dedicated"
        assert pod.node_selector == {"disk": "ssd"}
        (container,) = pod.containers
        assert container.image == "raftkv:test"
        env = {e.name: e for e in container.env}
        assert env["RAFTKV_CLUSTER_TOKEN"].value == uid
        assert env["RAFTKV_INITIAL_CLUSTER_STATE"].value_from.config_map_key_ref.name == (
            "kv-bootstrap"
        )
        assert container.readiness_probe.http_get.path == "/readyz"
        assert container.startup_probe.http_get.path == "/healthz"
        status = cluster.status()
        assert status["clusterID"] == uid
        assert status["memberIDs"] == [{"ordinal": 0, "id": 1}]
        assert status["inFlight"]["kind"] == "Bootstrap"

        # Pod 0 comes up as member 1 and leads: bootstrap ends, the ConfigMap flips.
        ready_pod(api, 0)
        fake.start(0, 1)

        def in_sync() -> dict[str, Any] | None:
            obj = cluster.raftkv()
            s = dict(obj.get("status") or {})
            ok = (
                s.get("conditions")
                and condition(s, "Progressing")["reason"] == "InSync"
                # The report is written at the end of a pass: until then it may
                # still describe the previous generation.
                and s.get("observedGeneration") == obj["metadata"]["generation"]
            )
            return s if ok and not s.get("inFlight") else None

        status = wait_for("bootstrap to finish", in_sync, ignore=ApiException)
        assert condition(status, "Available")["status"] == "True"
        assert condition(status, "Degraded")["status"] == "False"
        assert status["leader"] == "kv-0"
        assert status["leaderID"] == 1
        assert status["replicas"] == 1
        assert status["readyReplicas"] == 1
        assert status["members"] == [
            {"id": 1, "name": "kv-0", "peerURL": "http://kv-0.fake:2380", "learner": False}
        ]
        assert status["selector"] == "app.kubernetes.io/instance=kv,app.kubernetes.io/name=raftkv"
        assert status["observedGeneration"] == 1
        wait_for(
            "the ConfigMap to say existing",
            lambda: (
                cluster.core.read_namespaced_config_map("kv-bootstrap", NS).data
                == {"initial-cluster-state": "existing"}
            ),
            ignore=ApiException,
        )

        # Scale up through the scale subresource, as `kubectl scale` does.
        cluster.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 2}}
        )
        wait_for(
            "the learner to be added", lambda: ("add_learner", 2) in fake.calls, ignore=ApiException
        )
        wait_for(
            "the StatefulSet to grow",
            lambda: cluster.apps.read_namespaced_stateful_set("kv", NS).spec.replicas == 2,
            ignore=ApiException,
        )
        ready_pod(api, 1)
        fake.start(1, 2)
        wait_for(
            "the learner to be promoted", lambda: ("promote", 2) in fake.calls, ignore=ApiException
        )
        status = wait_for("scale-up to finish", in_sync, ignore=ApiException)
        assert status["memberIDs"] == [{"ordinal": 0, "id": 1}, {"ordinal": 1, "id": 2}]
        assert status["nextMemberID"] == 3
        assert status["observedGeneration"] == 2
        assert metrics.count(metrics.MEMBERSHIP_CHANGES, "add_learner") == adds_before + 1

        events = wait_for("the Events", lambda: _enough(cluster.events(uid)), ignore=ApiException)
        for reason in ("Bootstrapping", "ChildrenCreated", "Bootstrapped", "ScalingUp"):
            assert has(reason, events), (reason, events)
        for reason in ("LearnerAdded", "LearnerPromoted", "MemberAdded"):
            assert has(reason, events), (reason, events)
        assert all(kind == "Normal" for _, kind in events)

        # Deletion: kopf's finalizer runs our handler (PVCs go), children are collected.
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        wait_for(
            "the RaftKV to be gone", lambda: _gone(cluster.raftkv), timeout=30, ignore=ApiException
        )
        wait_for(
            "the PVCs to be deleted",
            lambda: not cluster.core.list_namespaced_persistent_volume_claim(NS).items,
            ignore=ApiException,
        )
        wait_for("the children to be collected", lambda: not _any(cluster), ignore=ApiException)


def _all(read: Any) -> list[Any] | None:
    try:
        return list(read())
    except ApiException:
        return None


def _any(cluster: Cluster) -> bool:
    """Whether any owned object is left."""
    found = 0
    for kind in range(6):
        try:
            _read_one(cluster, kind)
            found += 1
        except ApiException:
            pass
    return found > 0


def _read_one(cluster: Cluster, kind: int) -> Any:
    reads = [
        lambda: cluster.core.read_namespaced_service("kv-peer", NS),
        lambda: cluster.core.read_namespaced_service("kv-client", NS),
        lambda: cluster.core.read_namespaced_secret("kv-peer-secret", NS),
        lambda: cluster.core.read_namespaced_config_map("kv-bootstrap", NS),
        lambda: cluster.policy.read_namespaced_pod_disruption_budget("kv", NS),
        lambda: cluster.apps.read_namespaced_stateful_set("kv", NS),
    ]
    return reads[kind]()


def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


def _enough(events: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    return events if has("MemberAdded", events) else None
