"""Render the chart with a real helm and check what comes out: value sets, objects,
and validation against the official Kubernetes schemas (kubernetes-validate) or,
for objects those do not cover, against the schema that defines them."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

import render_manifests
from support.crd_schema import ObjectSchema, prune
from support.structural import check_crd

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "raftkv"
CRD_FILE = CHART / "crds" / "raftkv.dev_raftkvs.yaml"
RELEASE = "raftkv"
NAMESPACE = "raftkv-system"

#: The Kubernetes range every object is validated for (and the chart's kubeVersion
#: floor: member StatefulSets use persistentVolumeClaimRetentionPolicy).
KUBERNETES_VERSIONS = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33")

Obj = dict[str, Any]

DEFAULTS: dict[str, Any] = {}
NAMESPACE_SCOPE: dict[str, Any] = {"rbac": {"scope": "namespace"}}
#: Every optional part on, and most knobs turned.
EVERYTHING: dict[str, Any] = {
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"example.com/role": "raftkv"}},
    "operator": {
        "interval": 2.5,
        "memberImage": "registry.example.com/raftkv:0.1.0-member",
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "podAnnotations": {"example.com/scrape": "true"},
        "podLabels": {"team": "storage"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [
                                {"key": "infra", "operator": "Exists"},
                            ]
                        },
                    }
                ]
            }
        },
        "priorityClassName": "infra-critical",
    },
    "instance": {
        "enabled": True,
        "name": "kv",
        "replicas": 5,
        "image": "registry.example.com/raftkv:0.1.0",
        "storage": {"size": "2Gi", "storageClassName": "fast-ssd"},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "raft": {"snapshotCount": 5000, "tickMs": 50, "electionTicks": 20, "heartbeatTicks": 2},
        "tolerations": [{"key": "raftkv", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"disk": "ssd"},
        "affinity": {},
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "alertLabels": {"team": "storage"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "raftkv"}},
    "networkPolicy": {
        "enabled": True,
        "clientFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": DEFAULTS,
    "namespace-scope": NAMESPACE_SCOPE,
    "everything-on": EVERYTHING,
    "everything-on-namespace-scope": {**EVERYTHING, **NAMESPACE_SCOPE},
}


def values_file(values: dict[str, Any]) -> Path:
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", prefix="raftkv-values-", delete=False
    ) as handle:
        yaml.safe_dump(values, handle)
    return Path(handle.name)


def template_text(values: dict[str, Any], *extra: str, namespace: str = NAMESPACE) -> str:
    path = values_file(values)
    try:
        return render_manifests.helm_template("-f", str(path), *extra, namespace=namespace)
    finally:
        path.unlink()


@functools.cache
def _render_cached(values_json: str, namespace: str) -> str:
    values: dict[str, Any] = json.loads(values_json)
    return template_text(values, namespace=namespace)


def render(values: dict[str, Any], namespace: str = NAMESPACE) -> list[Obj]:
    """The objects ``helm template`` renders (without the CRD, which is in crds/)."""
    text = _render_cached(json.dumps(values, sort_keys=True), namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objs: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# ------------------------------------------------------------------- validation


def crd() -> Obj:
    loaded = yaml.safe_load(CRD_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def raftkv_errors(obj: Obj) -> list[str]:
    """A RaftKV as the apiserver takes it: defaults, then OpenAPI and CEL validation,
    with the apiserver's messages. A field the schema does not know is an error here
    (the apiserver would drop it without a word, and the setting with it)."""
    (version,) = crd()["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    problems = [str(cause) for cause in ObjectSchema(schema).admit(obj)[1]]
    if prune(schema, obj) != obj:
        problems.append("fields the CRD's schema does not know (the apiserver prunes them)")
    return problems


_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string", "minLength": 1}, "labels": _LABELS},
}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}},
}
#: The fields of monitoring.coreos.com/v1 that the chart uses, with the Prometheus
#: Operator's types (its CRDs are not in the official Kubernetes schemas). Unknown
#: fields are rejected so a typo cannot pass.
MONITORING_SCHEMAS: dict[str, Obj] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": _SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                                "relabelings": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "action": {
                                                "enum": [
                                                    "replace",
                                                    "keep",
                                                    "drop",
                                                    "labelmap",
                                                    "labeldrop",
                                                    "labelkeep",
                                                ]
                                            },
                                            "sourceLabels": {
                                                "type": "array",
                                                "items": {
                                                    "type": "string",
                                                    "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
                                                },
                                            },
                                            "targetLabel": {"type": "string"},
                                            "replacement": {"type": "string"},
                                            "regex": {"type": "string"},
                                            "separator": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["alert", "expr"],
                                        "properties": {
                                            "alert": {
                                                "type": "string",
                                                "pattern": "^[A-Za-z][A-Za-z0-9]*$",
                                            },
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": _LABELS,
                                            "annotations": _LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def validation_errors(obj: Obj, version: str) -> list[str]:
    """Everything wrong with one rendered object for one Kubernetes version."""
    kind = obj["kind"]
    if kind == "RaftKV":
        return raftkv_errors(obj)
    problems = check_crd(obj) if kind == "CustomResourceDefinition" else []
    if kind in MONITORING_SCHEMAS:
        validator = jsonschema.Draft7Validator(MONITORING_SCHEMAS[kind])
        return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        # strict: fields the official schema does not know are errors too.
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"{'.'.join(map(str, exc.path))}: {exc.message}")
    return problems
