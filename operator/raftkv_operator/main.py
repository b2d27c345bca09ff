"""``raftkv operator``: build the Kubernetes client, register the handlers, run kopf.

Kept apart from the handlers so that tests (and the local e2e run) start the very same
operator against a stand-in API server: they pass their own ``ApiClient``, login
function and ``OperatorConfig`` and stop it through ``stop_flag``.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import kopf
import kubernetes
from kubernetes.client import ApiClient

from raftkv_operator import naming as n
from raftkv_operator.handlers import LoginFn, event_sink, register
from raftkv_operator.kube import Kube
from raftkv_operator.members import HttpAdmin, MemberAdmin, MemberProbe
from raftkv_operator.model import PlannerConfig
from raftkv_operator.objects import DEFAULT_IMAGE
from raftkv_operator.reconcile import OperatorConfig, Reconciler

log = logging.getLogger("raftkv.operator")


def kubernetes_client() -> ApiClient:
    """In-cluster credentials (the operator's ServiceAccount), else ``$KUBECONFIG``."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return ApiClient()


def run(
    config: OperatorConfig,
    *,
    api: ApiClient | None = None,
    login: LoginFn | None = None,
    namespaces: Sequence[str] = (),
    liveness_endpoint: str | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
    probe: MemberProbe | None = None,
    admin_for: Callable[[Sequence[str]], MemberAdmin] = HttpAdmin,
) -> None:
    """Run the operator until ``stop_flag`` (or SIGTERM). No namespaces = cluster-wide.

    ``probe`` and ``admin_for`` replace how members are reached (tests only)."""
    registry = kopf.OperatorRegistry()
    kube = Kube(api if api is not None else kubernetes_client())
    reconciler = Reconciler(kube, config, event_sink, probe=probe, admin_for=admin_for)
    register(registry, kube, config, login, reconciler)
    kopf.run(
        registry=registry,
        standalone=True,  # one replica (the Deployment's strategy is Recreate): no peering
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[x for x in env("RAFTKV_OPERATOR_NAMESPACES", "").split(",") if x],
        help="watch this namespace (repeatable; RAFTKV_OPERATOR_NAMESPACES=a,b)",
    )
    parser.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("RAFTKV_OPERATOR_METRICS_PORT", "8080")),
        help="Prometheus metrics port; 0 disables",
    )
    parser.add_argument(
        "--liveness",
        default=env("RAFTKV_OPERATOR_LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="kopf's liveness endpoint URL; empty disables",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=float(env("RAFTKV_OPERATOR_INTERVAL", "3")),
        help="seconds between reconcile passes per RaftKV",
    )
    parser.add_argument(
        "--stabilization-seconds",
        type=float,
        default=float(env("RAFTKV_OPERATOR_STABILIZATION_SECONDS", "10")),
        help="how long a caught-up learner must stay healthy before promotion",
    )
    parser.add_argument(
        "--member-image",
        default=env("RAFTKV_MEMBER_IMAGE", DEFAULT_IMAGE),
        help="member image when a RaftKV's spec.image is unset",
    )


def cli(argv: Sequence[str] | None = None) -> int:
    """``raftkv operator [flags]``."""
    parser = argparse.ArgumentParser(
        prog="raftkv operator", description="Run the RaftKV operator (kopf)."
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    config = OperatorConfig(
        addressing=n.Addressing(),
        planner=PlannerConfig(stabilization_seconds=args.stabilization_seconds),
        interval=args.interval,
        default_image=args.member_image,
    )
    namespaces = [] if args.all_namespaces else list(args.namespace)
    stop = threading.Event()
    run(config, namespaces=namespaces, liveness_endpoint=args.liveness or None, stop_flag=stop)
    return 0
