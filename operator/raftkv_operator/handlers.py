"""The kopf handlers: thin adapters from kopf's triggers to :class:`Reconciler` passes.

Every trigger (creation, operator restart, spec change, timer) runs the same
level-triggered pass, so none of them carries logic of its own; the timer is what
makes progress while nothing changes on the RaftKV itself (pods becoming ready, a
learner catching up, the stabilization period running out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes.client import ApiException

from raftkv_operator import naming as n
from raftkv_operator.crd import CRD_NAME, crd_problem
from raftkv_operator.executor import EventSink
from raftkv_operator.kube import Kube
from raftkv_operator.reconcile import OperatorConfig, Reconciler

log = logging.getLogger("raftkv.operator")

LoginFn = Callable[..., kopf.ConnectionInfo | None]
FINALIZER = "raftkv.dev/operator"


def event_sink(body: Mapping[str, Any]) -> EventSink:
    """Events go through kopf's poster (kopf turns no log line into an Event)."""
    owner = kopf.Body(cast(kopf.RawBody, dict(body)))

    def post(event_type: str, reason: str, message: str) -> None:
        kopf.event(owner, type=event_type, reason=reason, message=message[:1024])

    return post


def register(
    registry: kopf.OperatorRegistry,
    kube: Kube,
    config: OperatorConfig,
    login: LoginFn | None = None,
    reconciler: Reconciler | None = None,
) -> Reconciler:
    """Register the RaftKV handlers on ``registry``; returns the reconciler they share."""
    rec = reconciler if reconciler is not None else Reconciler(kube, config, event_sink)
    resource = (n.GROUP, n.VERSION, n.PLURAL)

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a cluster: the same credentials the kubernetes client uses.
        return login(**kwargs) if login is not None else kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 60
        settings.watching.client_timeout = 90
        # A deletion waits for a running timer pass to exit; kopf re-checks only every
        # 60 s by default, so a delete that lands mid-reconcile would hang for a minute.
        settings.background.cancellation_polling = 1

    @kopf.on.startup(registry=registry)
    async def _check_crd(**_: Any) -> None:
        # Before any RaftKV handler runs: against an older CRD the apiserver would
        # silently prune what this operator writes (helm never upgrades crds/).
        try:
            crd = await kube.read_crd(CRD_NAME)
        except ApiException as exc:
            if exc.status != 403:
                raise  # kopf retries the startup handler
            log.warning(
                "cannot read CustomResourceDefinition %s (403: a namespace-scoped install); "
                "not checking that it is the revision this operator needs",
                CRD_NAME,
            )
            return
        problem = crd_problem(crd)
        if problem is not None:
            log.error("refusing to run: %s", problem)
            raise kopf.PermanentError(problem)

    @kopf.on.create(*resource, registry=registry)
    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    async def _changed(name: str, namespace: str | None, **_: Any) -> None:
        await rec.reconcile(namespace or "default", name)

    @kopf.timer(*resource, interval=config.interval, registry=registry)
    async def _tick(name: str, namespace: str | None, **_: Any) -> None:
        await rec.reconcile(namespace or "default", name)

    @kopf.on.delete(*resource, registry=registry)
    async def _deleted(name: str, namespace: str | None, **_: Any) -> None:
        # Owned objects go with the RaftKV (ownerReferences). Claims are not owned by
        # it but by the StatefulSet's retention policy, which older clusters ignore:
        # delete them here so a re-created RaftKV of the same name starts empty.
        ns = namespace or "default"
        rec.forget(ns, name)
        for pvc in await kube.list_pvcs(ns, name):
            await kube.delete_pvc(ns, pvc["metadata"]["name"])
        log.info("%s/%s deleted with its data volumes", ns, name)

    return rec
