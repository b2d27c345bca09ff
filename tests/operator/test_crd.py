"""The RaftKV CRD is a valid Kubernetes object, and its schema accepts and defaults RaftKVs.

The official schemas come from kubernetes-validate; the version is pinned so the
test means the same thing on every machine.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from support.crd_schema import (
    CHART_CRD,
    MANIFEST_CRD,
    apply_defaults,
    errors,
    load_crd,
    version_schema,
)

KUBERNETES_VERSION = "1.30"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return load_crd()


def example(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftKV",
        "metadata": {"name": "kv", "namespace": "default"},
        "spec": spec,
    }


def test_manifest_and_chart_ship_identical_bytes() -> None:
    assert MANIFEST_CRD.read_bytes() == CHART_CRD.read_bytes()


def test_is_a_valid_crd_for_the_stated_kubernetes_version(crd: dict[str, Any]) -> None:
    # strict=True also rejects fields the official schema does not know.
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_names_scope_and_version(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "raftkvs.raftkv.dev"
    assert spec["group"] == "raftkv.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "RaftKV"
    assert spec["names"]["plural"] == "raftkvs"
    assert spec["names"]["shortNames"] == ["rkv"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_status_and_scale_subresources(crd: dict[str, Any]) -> None:
    subresources = crd["spec"]["versions"][0]["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Replicas", ".spec.replicas"),
        ("Ready", ".status.readyReplicas"),
        ("Leader", ".status.leader"),
        ("Term", ".status.term"),
        ("Commit", ".status.commitIndex"),
        ("Updated", ".status.rollout.progress"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_minimal_raftkv_gets_the_documented_defaults(crd: dict[str, Any]) -> None:
    obj = apply_defaults(version_schema(crd), example())
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["storage"] == {"size": "1Gi"}
    assert obj["spec"]["raft"] == {
        "snapshotCount": 10000,
        "tickMs": 100,
        "electionTicks": 10,
        "heartbeatTicks": 1,
    }
    assert errors(example(), crd) == []


def test_full_raftkv_validates(crd: dict[str, Any]) -> None:
    obj = example(
        replicas=5,
        image="ghcr.io/example/raftkv:0.1.0",
        imagePullPolicy="IfNotPresent",
        storage={"size": "10Gi", "storageClassName": "fast-ssd"},
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1}},
        raft={"snapshotCount": 5000, "tickMs": 50, "electionTicks": 20, "heartbeatTicks": 2},
        affinity={
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "kv"}},
                    }
                ]
            }
        },
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "kv", "effect": "NoSchedule"}
        ],
        nodeSelector={"disktype": "ssd"},
    )
    obj["status"] = {
        "replicas": 5,
        "readyReplicas": 5,
        "leader": "kv-0",
        "leaderID": 1,
        "term": 7,
        "commitIndex": 12345,
        "members": [
            {"id": 1, "name": "kv-0", "peerURL": "http://kv-0.kv-peer:2380", "learner": False}
        ],
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "QuorumHealthy",
                "message": "5 of 5 voters healthy",
                "observedGeneration": 3,
                "lastTransitionTime": "2024-05-01T12:00:00Z",
            }
        ],
        "observedGeneration": 3,
        "selector": "app.kubernetes.io/instance=kv",
        "clusterID": "6b1f-uid",
        "nextMemberID": 6,
        "memberIDs": [{"ordinal": 0, "id": 1}],
        "inFlight": {
            "kind": "Add",
            "ordinal": 4,
            "memberID": 5,
            "caughtUpSince": "2024-05-01T12:00:00Z",
        },
        "kopf": {"progress": {"anything": {"goes": True}}},
    }
    assert errors(obj, crd) == []
    obj["status"]["inFlight"] = None  # cleared when no change is in progress
    assert errors(obj, crd) == []


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"replicas": 0}, "spec.replicas"),
        ({"replicas": "three"}, "spec.replicas"),
        ({"storage": {"size": "lots"}}, "spec.storage.size"),
        ({"raft": {"heartbeatTicks": 0}}, "spec.raft.heartbeatTicks"),
        ({"raft": {"electionTicks": 1}}, "spec.raft.electionTicks"),
        ({"image": ""}, "spec.image"),
        ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
        ({"nodeSelector": {"zone": 1}}, "spec.nodeSelector.zone"),
        ({"tolerations": ["not-an-object"]}, "spec.tolerations[0]"),
    ],
)
def test_invalid_specs_are_rejected(crd: dict[str, Any], spec: dict[str, Any], path: str) -> None:
    found = errors(example(**spec), crd)
    assert any(e.startswith(f"{path}:") for e in found), found


def test_a_raftkv_without_spec_is_rejected(crd: dict[str, Any]) -> None:
    obj = example()
    del obj["spec"]
    # The apiserver's wording: "<field>: Required value".
    assert "spec: Required value" in errors(obj, crd)
