"""The Kubernetes API stand-in behaves like an API server where the operator depends on it.

Everything goes over HTTP through the official ``kubernetes`` client or kopf, never
into the emulator's store, so these tests say what the operator will see. Waits are
polls against a deadline; each test ends with no server-side error (5xx) recorded.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kopf
import kubernetes
import kubernetes_validate
import pytest
from kmock._internal.k8s import KubernetesError
from kubernetes.client import ApiClient, ApiException

from support.crd_schema import load_crd
from support.kube_emulator import CRDS, EmulatorThread, KubeEmulator
from support.operator_harness import NS, crd_schema, start_emulator
from support.structural import check_crd
from support.wait import wait_for

GROUP, VERSION, PLURAL = "raftkv.dev", "v1alpha1", "raftkvs"
T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        server_errors = running.emulator.errors
        assert not server_errors, server_errors


@pytest.fixture
def api(server: EmulatorThread) -> Iterator[ApiClient]:
    config = kubernetes.client.Configuration(host=server.url)
    with ApiClient(config) as client:
        yield client


def status_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except ApiException as exc:
        return int(exc.status)
    return 200


def rv(obj: Any) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    version = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    return int(version)


# ----------------------------------------------------------------------------- objects


def raftkv(name: str = "kv", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": name},
        "spec": spec,
    }


def statefulset(name: str = "kv") -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {**labels, "app": name}},
        "spec": {
            "replicas": 1,
            "serviceName": f"{name}-peer",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "raftkv", "image": "raftkv:dev"}]},
            },
        },
    }


class Kind:
    """The calls the kubernetes client offers for one kind, under one name each."""

    def __init__(
        self,
        create: Callable[[dict[str, Any]], Any],
        read: Callable[[str], Any],
        list_: Callable[..., Any],
        patch: Callable[[str, Any], Any],
        delete: Callable[[str], Any],
        body: Callable[[], dict[str, Any]],
    ) -> None:
        self.create, self.read, self.list, self.patch, self.delete = (
            create,
            read,
            list_,
            patch,
            delete,
        )
        self.body = body


def kinds(api: ApiClient) -> dict[str, Kind]:
    core = kubernetes.client.CoreV1Api(api)
    apps = kubernetes.client.AppsV1Api(api)
    policy = kubernetes.client.PolicyV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    return {
        "StatefulSet": Kind(
            lambda b: apps.create_namespaced_stateful_set(NS, b),
            lambda n: apps.read_namespaced_stateful_set(n, NS),
            lambda **kw: apps.list_namespaced_stateful_set(NS, **kw),
            lambda n, p: apps.patch_namespaced_stateful_set(n, NS, p),
            lambda n: apps.delete_namespaced_stateful_set(n, NS),
            statefulset,
        ),
        "Service": Kind(
            lambda b: core.create_namespaced_service(NS, b),
            lambda n: core.read_namespaced_service(n, NS),
            lambda **kw: core.list_namespaced_service(NS, **kw),
            lambda n, p: core.patch_namespaced_service(n, NS, p),
            lambda n: core.delete_namespaced_service(n, NS),
            lambda: {
                "metadata": {"name": "kv-peer", "labels": {"app": "kv"}},
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": {"app": "kv"},
                    "ports": [{"name": "peer", "port": 2380}],
                },
            },
        ),
        "Secret": Kind(
            lambda b: core.create_namespaced_secret(NS, b),
            lambda n: core.read_namespaced_secret(n, NS),
            lambda **kw: core.list_namespaced_secret(NS, **kw),
            lambda n, p: core.patch_namespaced_secret(n, NS, p),
            lambda n: core.delete_namespaced_secret(n, NS),
            lambda: {
                "metadata": {"name": "kv-peer-secret", "labels": {"app": "kv"}},
                "stringData": {"secret": "s3cr3t"},
            },
        ),
        "PodDisruptionBudget": Kind(
            lambda b: policy.create_namespaced_pod_disruption_budget(NS, b),
            lambda n: policy.read_namespaced_pod_disruption_budget(n, NS),
            lambda **kw: policy.list_namespaced_pod_disruption_budget(NS, **kw),
            lambda n, p: policy.patch_namespaced_pod_disruption_budget(n, NS, p),
            lambda n: policy.delete_namespaced_pod_disruption_budget(n, NS),
            lambda: {
                "metadata": {"name": "kv", "labels": {"app": "kv"}},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "kv"}}},
            },
        ),
        "RaftKV": Kind(
            lambda b: custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, b),
            lambda n: custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, n),
            lambda **kw: custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, **kw),
            lambda n, p: custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, n, p),
            lambda n: custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, n),
            lambda: {**raftkv(), "metadata": {"name": "kv", "labels": {"app": "kv"}}},
        ),
    }


def meta(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return dict(obj["metadata"])
    return {
        "name": obj.metadata.name,
        "namespace": obj.metadata.namespace,
        "uid": obj.metadata.uid,
        "resourceVersion": obj.metadata.resource_version,
        "generation": obj.metadata.generation,
        "creationTimestamp": obj.metadata.creation_timestamp,
        "labels": obj.metadata.labels,
    }


def names(listing: Any) -> list[str]:
    items = listing["items"] if isinstance(listing, dict) else listing.items
    return [meta(i)["name"] for i in items]


# ----------------------------------------------------------------------------- CRUD


@pytest.mark.parametrize(
    "kind", ["StatefulSet", "Service", "Secret", "PodDisruptionBudget", "RaftKV"]
)
def test_create_get_list_patch_delete(api: ApiClient, kind: str) -> None:
    k = kinds(api)[kind]
    body = k.body()
    name = body["metadata"]["name"]

    created = meta(k.create(body))
    assert created["namespace"] == NS  # taken from the URL: the body had none
    assert created["uid"]
    assert created["creationTimestamp"]
    assert created["generation"] == 1

    assert meta(k.read(name))["uid"] == created["uid"]
    assert names(k.list()) == [name]
    assert names(k.list(label_selector="app=kv")) == [name]
    assert names(k.list(label_selector="app!=kv")) == []

    patched = meta(k.patch(name, {"metadata": {"labels": {"patched": "yes"}}}))
    assert patched["labels"]["patched"] == "yes"
    assert int(patched["resourceVersion"]) > int(created["resourceVersion"])
    assert patched["generation"] == 1  # metadata is not spec

    k.delete(name)
    assert status_of(lambda: k.read(name)) == 404
    assert names(k.list()) == []
    assert status_of(lambda: k.delete(name)) == 404


def test_resource_version_strictly_increases_and_no_op_keeps_it(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    versions = [rv(core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}}))]
    for i in range(5):
        cm = core.patch_namespaced_config_map("a", NS, {"data": {"i": str(i)}})
        versions.append(rv(cm))
    versions.append(rv(core.create_namespaced_config_map(NS, {"metadata": {"name": "b"}})))
    assert versions == sorted(set(versions))
    same = core.patch_namespaced_config_map("a", NS, {"data": {"i": "4"}})
    assert rv(same) == versions[-2]
    listed = core.list_namespaced_config_map(NS)
    assert int(listed.metadata.resource_version) == versions[-1]


def test_failed_json_patch_test_op_is_422_and_changes_nothing(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "replace", "path": "/data/k", "value": "changed"},
    ]
    assert status_of(lambda: core.patch_namespaced_config_map("a", NS, stale)) == 422
    fresh = [{**stale[0], "value": cm.metadata.resource_version}, stale[1]]
    assert core.patch_namespaced_config_map("a", NS, fresh).data == {"k": "changed"}
    assert core.read_namespaced_config_map("a", NS).data == {"k": "changed"}


def test_stale_resource_version_in_merge_patch_and_put_is_409(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    old_rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("a", NS, {"data": {"k": "2"}})
    patch = {"metadata": {"resourceVersion": old_rv}, "data": {"k": "3"}}
    assert status_of(lambda: core.patch_namespaced_config_map("a", NS, patch)) == 409
    cm.data = {"k": "put"}
    assert status_of(lambda: core.replace_namespaced_config_map("a", NS, cm)) == 409
    cm.metadata.resource_version = core.read_namespaced_config_map(
        "a", NS
    ).metadata.resource_version
    assert core.replace_namespaced_config_map("a", NS, cm).data == {"k": "put"}


def test_generate_name_and_conflicts(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    body = {"metadata": {"generateName": "event-"}, "involvedObject": {"name": "x"}}
    a = core.create_namespaced_event(NS, body).metadata.name
    b = core.create_namespaced_event(NS, body).metadata.name
    assert a != b
    assert a.startswith("event-")
    assert b.startswith("event-")
    core.create_namespaced_config_map(NS, {"metadata": {"name": "same"}})
    twice = lambda: core.create_namespaced_config_map(NS, {"metadata": {"name": "same"}})  # noqa: E731
    assert status_of(twice) == 409
    unnamed = lambda: core.create_namespaced_config_map(NS, {"metadata": {}})  # noqa: E731
    assert status_of(unnamed) == 422


def test_namespace_mismatch_is_rejected_and_namespaces_are_served(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    body = {"metadata": {"name": "a", "namespace": "other"}}
    assert status_of(lambda: core.create_namespaced_config_map(NS, body)) == 400
    core.create_namespace({"metadata": {"name": "team-a"}})
    assert "team-a" in names(core.list_namespace())
    assert core.read_namespace("team-a").metadata.namespace is None


# ----------------------------------------------------------------------------- subresources


def test_status_subresource_is_isolated(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {**raftkv(replicas=3), "status": {"replicas": 99}}
    )
    assert "status" not in created  # ignored on create
    main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 5}, "status": {"replicas": 1}}
    )
    assert main["spec"]["replicas"] == 5
    assert "status" not in main
    assert main["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 1}, "status": {"replicas": 2}}
    )
    assert status["status"] == {"replicas": 2}
    assert status["spec"]["replicas"] == 5
    assert status["metadata"]["generation"] == 2  # status is not spec


def test_crd_defaults_and_validation_apply(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv())
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["storage"] == {"size": "1Gi"}
    create_bad = lambda: custom.create_namespaced_custom_object(  # noqa: E731
        GROUP, VERSION, NS, PLURAL, raftkv("bad", replicas=0)
    )
    assert status_of(create_bad) == 422
    patch_bad = lambda: custom.patch_namespaced_custom_object(  # noqa: E731
        GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": -1}}
    )
    assert status_of(patch_bad) == 422


def rejection(fn: Callable[[], Any]) -> dict[str, Any]:
    """The Status body of a refused request."""
    with pytest.raises(ApiException) as refused:
        fn()
    assert refused.value.status == 422, refused.value
    body = json.loads(refused.value.body)
    assert isinstance(body, dict)
    return body


def test_a_cel_rule_refuses_with_the_apiservers_message_and_causes(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    body = rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, raftkv(raft={"electionTicks": 3, "heartbeatTicks": 3})
        )
    )
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'RaftKV.raftkv.dev "kv" is invalid: spec.raft: Invalid value: "object": '
        "electionTicks must be greater than heartbeatTicks"
    )
    assert body["details"]["kind"] == "RaftKV"
    assert body["details"]["group"] == "raftkv.dev"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "object": electionTicks must be greater than heartbeatTicks',
            "field": "spec.raft",
        }
    ]


def test_several_causes_are_listed_in_brackets(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    body = rejection(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, raftkv(replicas=0, imagePullPolicy="Sometimes")
        )
    )
    assert body["message"].startswith('RaftKV.raftkv.dev "kv" is invalid: [')
    fields = [c["field"] for c in body["details"]["causes"]]
    assert fields == ["spec.imagePullPolicy", "spec.replicas"]


def test_transition_rule_runs_on_updates_only(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    args = (GROUP, VERSION, NS, PLURAL)
    custom.create_namespaced_custom_object(*args, raftkv(storage={"size": "5Gi"}))
    # A no-op update, and changes the rule allows, pass.
    custom.patch_namespaced_custom_object(*args, "kv", {"spec": {"replicas": 5}})
    custom.patch_namespaced_custom_object(
        *args, "kv", {"spec": {"storage": {"size": "5Gi", "storageClassName": "fast"}}}
    )
    body = rejection(
        lambda: custom.patch_namespaced_custom_object(
            *args, "kv", {"spec": {"storage": {"size": "10Gi"}}}
        )
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "object": '
            "storage.size cannot change once members have claims",
            "field": "spec.storage",
        }
    ]
    stored = custom.get_namespaced_custom_object(*args, "kv")
    assert stored["spec"]["storage"] == {"size": "5Gi", "storageClassName": "fast"}


def test_unknown_fields_are_pruned_as_the_apiserver_prunes_them(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    obj = raftkv(replicas=1, bogus=True)
    obj["spec"]["raft"] = {"tickMs": 50, "typo": 1}
    obj["spec"]["affinity"] = {"anything": {"goes": 1}}  # preserve-unknown-fields
    obj["extra"] = "dropped"
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, obj)
    assert "extra" not in created
    assert "bogus" not in created["spec"]
    assert created["spec"]["raft"] == {
        "tickMs": 50,
        "snapshotCount": 10000,
        "electionTicks": 10,
        "heartbeatTicks": 1,
    }
    assert created["spec"]["affinity"] == {"anything": {"goes": 1}}


def test_the_crd_is_served_and_a_refused_crd_is_not_registered(server: EmulatorThread) -> None:
    stored = server.emulator._stored(CRDS, None, "raftkvs.raftkv.dev")
    assert stored is not None
    assert stored["spec"]["group"] == GROUP
    assert {"type": "Established", "status": "True"}.items() <= stored["status"]["conditions"][
        1
    ].items()
    bad = load_crd()
    bad["metadata"]["name"] = "others.raftkv.dev"
    bad["spec"]["names"] = {**bad["spec"]["names"], "plural": "others", "shortNames": []}
    version = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raft = version["properties"]["spec"]["properties"]["raft"]
    raft["default"] = {}  # the shipped mistake: an unguarded rule over an empty default
    raft["x-kubernetes-validations"][0]["rule"] = "self.electionTicks > self.heartbeatTicks"
    with pytest.raises(KubernetesError, match="no such key: electionTicks evaluating rule"):
        KubeEmulator().register_crd(bad, crd_schema, check_crd)


def test_scale_subresource_on_raftkv_and_statefulset(api: ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv(replicas=3))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "kv", {"status": {"replicas": 3, "selector": "app=kv"}}
    )
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "kv")
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 3, "selector": "app=kv"}
    custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 5}}
    )
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
    assert obj["spec"]["replicas"] == 5
    assert obj["metadata"]["generation"] == 2

    apps = kubernetes.client.AppsV1Api(api)
    apps.create_namespaced_stateful_set(NS, statefulset())
    apps.patch_namespaced_stateful_set_scale("kv", NS, {"spec": {"replicas": 4}})
    sts_scale = apps.read_namespaced_stateful_set_scale("kv", NS)
    assert sts_scale.spec.replicas == 4
    assert sts_scale.status.selector == "app.kubernetes.io/instance=kv"


def test_discovery_lists_raftkv_with_its_subresources(api: ApiClient) -> None:
    response = api.call_api("GET", f"{api.configuration.host}/apis/{GROUP}/{VERSION}")
    response.read()
    found = json.loads(response.data)
    resources = {r["name"]: r for r in found["resources"]}
    assert {"raftkvs", "raftkvs/status", "raftkvs/scale"} <= set(resources)
    assert resources["raftkvs"]["kind"] == "RaftKV"
    assert resources["raftkvs"]["namespaced"]
    assert resources["raftkvs"]["shortNames"] == ["rkv"]


# ----------------------------------------------------------------------------- deletion


def test_finalizers_hold_deletion_until_removed(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "finalizers": ["x/y"]}})
    core.delete_namespaced_config_map("a", NS)
    held = core.read_namespaced_config_map("a", NS)
    assert held.metadata.deletion_timestamp is not None
    add_more = {"metadata": {"finalizers": ["x/y", "x/z"]}}
    assert status_of(lambda: core.patch_namespaced_config_map("a", NS, add_more)) == 422
    core.patch_namespaced_config_map("a", NS, {"metadata": {"finalizers": None}})
    assert status_of(lambda: core.read_namespaced_config_map("a", NS)) == 404


def test_garbage_collection_follows_owner_references(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv())
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "name": "kv",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map(NS, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "bystander"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
    assert names(core.list_namespaced_config_map(NS)) == ["bystander"]


# ----------------------------------------------------------------------------- watch


def collect_events(
    api: ApiClient, since: str, count: int, **selectors: Any
) -> list[tuple[str, str, int]]:
    """The first ``count`` events after ``since``, via kubernetes.watch (bounded by a deadline)."""
    core = kubernetes.client.CoreV1Api(api)
    watch = kubernetes.watch.Watch()
    events: list[tuple[str, str, int]] = []
    stream = watch.stream(
        core.list_namespaced_config_map,
        NS,
        resource_version=since,
        timeout_seconds=10,
        **selectors,
    )
    for event in stream:
        obj = event["object"]
        events.append((event["type"], obj.metadata.name, int(obj.metadata.resource_version)))
        if len(events) == count:
            watch.stop()
    return events


def test_watch_delivers_added_modified_deleted_and_resumes(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "labels": {"w": "1"}}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "other"}})
    core.patch_namespaced_config_map("a", NS, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("a", NS)

    # Resumed from a list's resourceVersion: everything since, in order, filtered.
    events = collect_events(api, start, 3, label_selector="w=1")
    assert [(t, n) for t, n, _ in events] == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert [v for _, _, v in events] == sorted(v for _, _, v in events)

    # Resumed from the middle: only what came after.
    events = collect_events(api, str(events[0][2]), 2, field_selector="metadata.name=a")
    assert [t for t, _, _ in events] == ["MODIFIED", "DELETED"]


def test_live_watch_gets_events_published_after_it_connected(api: ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    got: list[tuple[str, str, int]] = []
    watcher = threading.Thread(target=lambda: got.extend(collect_events(api, start, 20)))
    watcher.start()
    for i in range(10):
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"cm-{i}"}})
        core.delete_namespaced_config_map(f"cm-{i}", NS)
    watcher.join(timeout=15)
    assert not watcher.is_alive()
    assert [(t, n) for t, n, _ in got] == [
        (t, f"cm-{i}") for i in range(10) for t in ("ADDED", "DELETED")
    ]


def test_watch_from_an_expired_resource_version_is_410() -> None:
    with start_emulator(event_log_size=3) as running:
        config = kubernetes.client.Configuration(host=running.url)
        with ApiClient(config) as client:
            core = kubernetes.client.CoreV1Api(client)
            for i in range(6):
                core.create_namespaced_config_map(NS, {"metadata": {"name": f"cm-{i}"}})
            watch = kubernetes.watch.Watch()
            with pytest.raises(ApiException) as caught:
                for _ in watch.stream(core.list_namespaced_config_map, NS, resource_version="1"):
                    pass
            assert caught.value.status == 410


def test_watch_sends_bookmarks_and_ends_at_timeout_seconds() -> None:
    """kopf relies on both: bookmarks keep its inactivity timer quiet, and a server-side
    timeout ends the stream so it reconnects from the last resourceVersion."""
    with start_emulator(bookmark_interval=0.1) as running:
        url = (
            f"{running.url}/api/v1/namespaces/{NS}/configmaps"
            "?watch=true&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion=1"
        )
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=10) as response:
            lines = [json.loads(line) for line in response if line.strip()]
        assert time.monotonic() - started < 5
        assert lines
        assert all(line["type"] == "BOOKMARK" for line in lines)
        assert lines[0]["object"]["kind"] == "ConfigMap"
        # The newest write so far: registering the RaftKV CRD stored the CRD object.
        crd = running.emulator._stored(CRDS, None, "raftkvs.raftkv.dev")
        assert crd is not None
        assert (
            lines[0]["object"]["metadata"]["resourceVersion"] == crd["metadata"]["resourceVersion"]
        )


# ----------------------------------------------------------------------------- kopf


class KopfThread:
    """kopf.run in its own thread and loop (a task in pytest's loop would have kopf
    cancel pytest's teardown); stopped through stop_flag, awaited through ready_flag."""

    def __init__(self, registry: kopf.OperatorRegistry, memo: kopf.Memo) -> None:
        self.ready = threading.Event()
        self.stop = threading.Event()
        settings = kopf.OperatorSettings()
        settings.watching.server_timeout = 30
        settings.watching.client_timeout = 40
        self._thread = threading.Thread(
            target=kopf.run,
            kwargs={
                "registry": registry,
                "settings": settings,
                "standalone": True,
                "clusterwide": True,
                "memo": memo,
                "stop_flag": self.stop,
                "ready_flag": self.ready,
            },
            name="kopf",
            daemon=True,
        )

    def __enter__(self) -> KopfThread:
        self._thread.start()
        if not self.ready.wait(timeout=15):
            raise TimeoutError("kopf did not become ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise TimeoutError("kopf did not stop")


def test_minimal_kopf_lifecycle(server: EmulatorThread, api: ApiClient) -> None:
    """create → adopted child → status patch → Event → delete through kopf's finalizer."""
    registry = kopf.OperatorRegistry()
    deleted = threading.Event()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server.url, default_namespace=NS)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def create(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        child: dict[str, Any] = {"metadata": {"name": f"{body.meta.name}-config"}, "data": {}}
        kopf.adopt(child, owner=body)
        core = kubernetes.client.CoreV1Api(memo["api"])
        try:
            core.create_namespaced_config_map(body.meta.namespace, child)
        except ApiException as exc:
            if exc.status != 409:  # a re-run after a crash finds it already there
                raise
        patch.status["leader"] = "Created"  # a field the schema has: others are pruned
        # kopf 1.45 posts only explicit events (settings.posting.loggers is False).
        kopf.info(body, reason="ChildCreated", message=f"created {child['metadata']['name']}")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def delete(**_: Any) -> None:
        deleted.set()

    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    with KopfThread(registry, kopf.Memo(api=api)):
        owner = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv())
        uid = owner["metadata"]["uid"]

        def child() -> Any:
            try:
                return core.read_namespaced_config_map("kv-config", NS)
            except ApiException:
                return None

        cm = wait_for("the adopted ConfigMap", child, timeout=10, interval=0.02)
        (ref,) = cm.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller) == ("RaftKV", "kv", uid, True)
        kubernetes_validate.validate(api.sanitize_for_serialization(cm), "1.30", strict=True)

        def status() -> Any:
            obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            return obj if obj.get("status", {}).get("leader") == "Created" else None

        obj = wait_for("the status patch", status, timeout=10, interval=0.02)
        assert obj["metadata"]["finalizers"]  # kopf's, because of the delete handler

        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")

        def gone() -> bool:
            code = status_of(
                lambda: custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            )
            return code == 404

        wait_for("the RaftKV to be deleted", gone, timeout=10, interval=0.02)
        assert deleted.is_set()
        wait_for(
            "the child to be garbage-collected", lambda: child() is None, timeout=10, interval=0.02
        )

        def events() -> list[tuple[str | None, str | None]]:
            found = core.list_namespaced_event(NS).items
            return [(e.reason, e.type) for e in found if e.involved_object.uid == uid]

        # kopf posts Events in the background, each a generateName'd create.
        assert ("ChildCreated", "Normal") in wait_for(
            "the Event", events, timeout=10, interval=0.02
        )
