"""``raftkv operator``: build the Kubernetes client, register the handlers, run kopf.

Kept apart from the handlers so that tests (and the local e2e run) start the very same
operator against a stand-in API server: they pass their own ``ApiClient``, login
function and ``OperatorConfig`` and stop it through ``stop_flag``. The command line
passes no ``stop_flag``: kopf then stops on SIGTERM/SIGINT itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence

import kopf
import kubernetes
from kopf._core.engines import activities as kopf_errors
from kubernetes.client import ApiClient

from raftkv_operator import naming as n
from raftkv_operator.handlers import LoginFn, event_sink, register
from raftkv_operator.kube import Kube
from raftkv_operator.members import HttpAdmin, MemberAdmin, MemberProbe
from raftkv_operator.model import PlannerConfig
from raftkv_operator.objects import DEFAULT_IMAGE
from raftkv_operator.reconcile import OperatorConfig, Reconciler

log = logging.getLogger("raftkv.operator")

#: Exit code of a start refused by a check (an older CRD): a configuration error, not a
#: crash, so the pod's restarts say "fix the installation" rather than "retry".
EXIT_REFUSED = 2

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: Libraries that log one INFO line per request: every liveness probe (aiohttp.access),
#: every member probe (httpx, httpcore) and, at DEBUG, every API call. On a cluster they
#: drowned the operator's own lines (1,045 of 1,454 lines in three minutes were probes).
CHATTY_LOGGERS = ("httpx", "httpcore", "urllib3", "kubernetes.client.rest", "aiohttp.access")


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
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    probe: MemberProbe | None = None,
    admin_for: Callable[[Sequence[str]], MemberAdmin] = HttpAdmin,
) -> None:
    """Run the operator until ``stop_flag`` is set. No namespaces = cluster-wide.

    Without a ``stop_flag`` (the command line), kopf installs its own SIGTERM/SIGINT
    handlers (only possible in the main thread) and returns once they fire. A
    ``stop_flag`` (tests, the local e2e) is relayed to kopf as a future of its own
    loop (see :func:`_operate`). Raises :class:`StartupRefused` when a start-up check
    fails (an older CRD). ``probe`` and ``admin_for`` replace how members are reached
    (tests only)."""
    registry = kopf.OperatorRegistry()
    kube = Kube(api if api is not None else kubernetes_client())
    reconciler = Reconciler(kube, config, event_sink, probe=probe, admin_for=admin_for)
    register(registry, kube, config, login, reconciler)
    try:
        asyncio.run(
            _operate(
                registry,
                namespaces=namespaces,
                liveness_endpoint=liveness_endpoint,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        )
    except kopf_errors.ActivityError as exc:
        # kopf's message is "One or more handlers failed."; the handler's own is the cause.
        raise StartupRefused(str(exc.__cause__ or exc)) from exc


class StartupRefused(Exception):
    """A start-up handler refused to let the operator run (the message says why)."""


async def _operate(
    registry: kopf.OperatorRegistry,
    *,
    namespaces: Sequence[str],
    liveness_endpoint: str | None,
    stop_flag: threading.Event | None,
    ready_flag: threading.Event | None,
) -> None:
    """kopf, with ``stop_flag`` turned into a future of this loop.

    kopf would wait for a ``threading.Event`` in a thread of asyncio's default
    executor, and ``asyncio.run`` joins that thread at shutdown: when kopf stops for
    any other reason than the flag (a start-up handler failing, say), the process
    hangs until somebody sets the flag, and with a flag nobody sets (how the command
    line once called it) until SIGKILL. A daemon thread relays the flag instead; it is
    never joined."""
    stop: asyncio.Future[None] | None = None
    if stop_flag is not None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()

        def settle() -> None:
            if not stop.done():
                stop.set_result(None)

        def relay() -> None:
            stop_flag.wait()
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(settle)

        threading.Thread(target=relay, name="raftkv-operator-stop", daemon=True).start()
    await kopf.operator(
        registry=registry,
        standalone=True,  # one replica (the Deployment's strategy is Recreate): no peering
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop,
        ready_flag=ready_flag,
    )


def configure_logging(level: int | str = logging.INFO) -> None:
    """Log the operator's and kopf's lines at ``level``; per-request library lines only
    at DEBUG (else WARNING), so that probes do not bury what the operator did."""
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=numeric, format=LOG_FORMAT)
    logging.getLogger().setLevel(numeric)  # also when something configured logging before
    libraries = logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(libraries)


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
        "--recovery-quorum-loss-seconds",
        type=float,
        default=float(env("RAFTKV_OPERATOR_RECOVERY_QUORUM_LOSS_SECONDS", "30")),
        help="how long quorum must have been lost before a raftkv.dev/force-new-cluster "
        "annotation is acted on",
    )
    parser.add_argument(
        "--member-image",
        default=env("RAFTKV_MEMBER_IMAGE", DEFAULT_IMAGE),
        help="member image when a RaftKV's spec.image is unset",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=env("RAFTKV_OPERATOR_LOG_LEVEL", "INFO").upper(),
        help="operator and kopf log level; DEBUG also shows every HTTP request "
        "(RAFTKV_OPERATOR_LOG_LEVEL)",
    )


def cli(argv: Sequence[str] | None = None) -> int:
    """``raftkv operator [flags]``."""
    parser = argparse.ArgumentParser(
        prog="raftkv operator", description="Run the RaftKV operator (kopf)."
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


def main(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT, then return 0 (exit code 0 for the Deployment).

    No ``stop_flag``: kopf's own signal handlers stop it (see :func:`run`). The metrics
    server runs in a daemon thread, so it never holds the process up at exit."""
    configure_logging(args.log_level)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    config = OperatorConfig(
        addressing=n.Addressing(),
        planner=PlannerConfig(
            stabilization_seconds=args.stabilization_seconds,
            recovery_quorum_loss_seconds=args.recovery_quorum_loss_seconds,
        ),
        interval=args.interval,
        default_image=args.member_image,
    )
    namespaces = [] if args.all_namespaces else list(args.namespace)
    try:
        run(config, namespaces=namespaces, liveness_endpoint=args.liveness or None)
    except StartupRefused as exc:
        log.error("the operator cannot run: %s", exc)
        return EXIT_REFUSED
    return 0
