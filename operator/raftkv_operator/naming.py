"""Names, labels and addresses of everything one RaftKV owns.

Every other module derives object names from here, so the StatefulSet, the Services,
the PVCs the StatefulSet controller creates and the URLs the members advertise can
never disagree. Addresses are the one part a test harness replaces: in a cluster a
member is reached by its stable DNS name behind the headless peer Service; outside
one, :class:`Addressing` is swapped for loopback ports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raftkv_operator.model import DEFAULT_PEER_URL_TEMPLATE

GROUP = "raftkv.dev"
VERSION = "v1alpha1"
PLURAL = "raftkvs"
KIND = "RaftKV"
API_VERSION = f"{GROUP}/{VERSION}"

CLIENT_PORT = 2379
PEER_PORT = 2380
#: The volumeClaimTemplate's name; the StatefulSet controller names claims
#: ``<template>-<statefulset>-<ordinal>``.
DATA_VOLUME = "data"
DATA_DIR = "/var/lib/raftkv"
#: The ConfigMap key the pods read RAFTKV_INITIAL_CLUSTER_STATE from.
BOOTSTRAP_KEY = "initial-cluster-state"
SECRET_KEY = "peer-secret"

INSTANCE_LABEL = "app.kubernetes.io/instance"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

DEFAULT_CLIENT_URL_TEMPLATE = "http://{name}-{ordinal}.{name}-peer.{namespace}.svc:2379"


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select one RaftKV's pods (and PVCs); immutable once the
    StatefulSet exists, so they carry nothing that could ever change."""
    return {NAME_LABEL: "raftkv", INSTANCE_LABEL: name}


def common_labels(name: str, component: str = "member") -> dict[str, str]:
    return {
        **selector_labels(name),
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: "raftkv-operator",
    }


def selector_string(name: str) -> str:
    """status.selector, the string form the scale subresource (and HPAs) expect."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def peer_service(name: str) -> str:
    return f"{name}-peer"


def client_service(name: str) -> str:
    return f"{name}-client"


def secret_name(name: str) -> str:
    return f"{name}-peer-secret"


def bootstrap_configmap(name: str) -> str:
    return f"{name}-bootstrap"


def pdb_name(name: str) -> str:
    return name


def statefulset_name(name: str) -> str:
    return name


def pod_name(name: str, ordinal: int) -> str:
    return f"{name}-{ordinal}"


def pvc_name(name: str, ordinal: int) -> str:
    return f"{DATA_VOLUME}-{statefulset_name(name)}-{ordinal}"


def ordinal_of(object_name: str, prefix: str) -> int | None:
    """The ordinal of ``<prefix>-<k>``, or None for a name of some other object."""
    match = re.fullmatch(re.escape(prefix) + r"-(0|[1-9][0-9]*)", object_name)
    return int(match.group(1)) if match else None


def client_service_url(name: str, namespace: str) -> str:
    return f"http://{client_service(name)}.{namespace}.svc:{CLIENT_PORT}"


@dataclass(frozen=True)
class Addressing:
    """Where member ``ordinal`` of RaftKV ``name`` listens, as URL templates formatted
    with ``name``, ``namespace`` and ``ordinal``.

    The peer URL is what the member advertises and the operator registers in Raft; the
    client URL is how the operator (and other members) reach its HTTP API. The
    defaults are the headless Service's DNS names, matching the env the StatefulSet
    gives its pods; a harness outside a cluster uses e.g. ``http://127.0.0.1:4170{ordinal}``.
    """

    peer_url_template: str = DEFAULT_PEER_URL_TEMPLATE
    client_url_template: str = DEFAULT_CLIENT_URL_TEMPLATE

    def peer_url(self, name: str, namespace: str, ordinal: int) -> str:
        return self.peer_url_template.format(name=name, namespace=namespace, ordinal=ordinal)

    def client_url(self, name: str, namespace: str, ordinal: int) -> str:
        return self.client_url_template.format(name=name, namespace=namespace, ordinal=ordinal)
