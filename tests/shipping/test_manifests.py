"""manifests/ installs the same CRD, RBAC and operator as the chart, with
``kubectl apply -f manifests/`` or ``kubectl apply -k manifests/``, and is in sync."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import render_manifests

from .chart import CRD_FILE, NAMESPACE, REPO, Obj, one, render, validation_errors
from .chart import KUBERNETES_VERSIONS as VERSIONS

MANIFESTS = REPO / "manifests"
EXAMPLE = MANIFESTS / "examples" / "raftkv.yaml"


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def applied_by_dash_f() -> list[Path]:
    """What `kubectl apply -f manifests/` reads: *.yaml/*.yml/*.json, not recursive,
    in lexical order."""
    return sorted(
        p for p in MANIFESTS.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json")
    )


def test_generated_files_are_current() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in render_manifests.render_all().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"out of date, run `make manifests`: {stale}"


def test_crd_bytes_are_the_charts() -> None:
    assert (MANIFESTS / "crd.yaml").read_bytes() == CRD_FILE.read_bytes()


def _without_helm_labels(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _without_helm_labels(v)
            for k, v in obj.items()
            if k not in ("helm.sh/chart", "app.kubernetes.io/managed-by")
        }
    if isinstance(obj, list):
        return [_without_helm_labels(v) for v in obj]
    return obj


def test_same_rbac_and_operator_as_a_fresh_chart_render() -> None:
    chart = {(o["kind"], o["metadata"]["name"]): o for o in render({})}
    plain = {
        (o["kind"], o["metadata"]["name"]): o
        for path in (MANIFESTS / "operator-rbac.yaml", MANIFESTS / "operator.yaml")
        for o in load(path)
    }
    assert chart.keys() == plain.keys()
    assert (
        one(plain.values(), "ClusterRole")["rules"] == one(chart.values(), "ClusterRole")["rules"]
    )
    for key, obj in chart.items():
        assert _without_helm_labels(plain[key]) == _without_helm_labels(obj), key
    for obj in plain.values():
        labels = obj["metadata"]["labels"]
        assert "helm.sh/chart" not in labels
        assert labels["app.kubernetes.io/managed-by"] == "kubectl"


def test_dash_f_and_dash_k_install_the_same_objects(kubectl: Path) -> None:
    by_f = [o for path in applied_by_dash_f() for o in load(path)]
    done = subprocess.run(
        [str(kubectl), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    by_k = [o for o in yaml.safe_load_all(done.stdout) if o]
    # What `kubectl apply -k` sends goes through the apiserver's checks, CRD included.
    problems = [
        f"{version} {obj['kind']}/{obj['metadata']['name']}: {error}"
        for version in VERSIONS
        for obj in by_k
        for error in validation_errors(obj, version)
    ]
    assert not problems, "\n".join(problems)

    def key(o: Obj) -> tuple[str, str]:
        return (o["kind"], o["metadata"]["name"])

    assert sorted(map(key, by_f)) == sorted(map(key, by_k))
    assert sorted(map(key, by_f)) == sorted(
        [
            ("ClusterRole", "raftkv-operator"),
            ("ClusterRoleBinding", "raftkv-operator"),
            ("CustomResourceDefinition", "raftkvs.raftkv.dev"),
            ("Deployment", "raftkv-operator"),
            ("Namespace", NAMESPACE),
            ("Service", "raftkv-operator"),
            ("ServiceAccount", "raftkv-operator"),
        ]
    )
    # -f reads no kustomization file (it would fail on kind: Kustomization).
    assert not [p for p in applied_by_dash_f() if p.stem.lower() == "kustomization"]
    kustomization = yaml.safe_load((MANIFESTS / "Kustomization").read_text())
    assert kustomization["resources"] == [p.name for p in applied_by_dash_f()]


def test_dash_f_creates_namespace_crd_permissions_then_the_operator() -> None:
    kinds = [o["kind"] for path in applied_by_dash_f() for o in load(path)]
    assert kinds == [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    ]
    namespace = load(applied_by_dash_f()[0])[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("path", applied_by_dash_f(), ids=lambda p: p.name)
def test_every_manifest_validates(path: Path) -> None:
    problems = [
        f"{version} {obj['kind']}/{obj['metadata']['name']}: {error}"
        for version in VERSIONS
        for obj in load(path)
        for error in validation_errors(obj, version)
    ]
    assert not problems, "\n".join(problems)
    cluster_scoped = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    for obj in load(path):
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_example_is_a_valid_three_member_raftkv() -> None:
    (rkv,) = load(EXAMPLE)
    assert (rkv["apiVersion"], rkv["kind"]) == ("raftkv.dev/v1alpha1", "RaftKV")
    assert rkv["spec"]["replicas"] == 3
    assert "namespace" not in rkv["metadata"]  # lands in the namespace it is applied to
    assert validation_errors(rkv, VERSIONS[-1]) == []
    assert "examples" not in (MANIFESTS / "Kustomization").read_text()
