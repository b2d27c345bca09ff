"""Kubernetes reads and writes for the operator, through the official ``kubernetes`` client.

The client is synchronous; every call runs in a worker thread so kopf's event loop
(watches, timers, other RaftKVs) never blocks on the API server. Expected answers are
folded into return values here, once: 404 on read → None, 409 on create → "already
there", 404 on delete → "already gone". Everything else raises ``ApiException``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import kubernetes
from kubernetes.client import ApiClient, ApiException

from raftkv_operator import naming as n
from raftkv_operator.backup import selector_string as backup_selector

JSON = dict[str, Any]
T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class StatusConflict(Exception):
    """The RaftKV changed since it was read: its status must be read again before the
    operator may write its bookkeeping (409/422 on the resourceVersion precondition)."""


class KubeReader(Protocol):
    async def read_raftkv(self, namespace: str, name: str) -> JSON | None: ...
    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...
    async def list_pods(self, namespace: str, name: str) -> list[JSON]: ...
    async def list_pvcs(self, namespace: str, name: str) -> list[JSON]: ...


class BackupKube(Protocol):
    """The calls of scheduled backups (``backup.py``): the CronJob and its Jobs."""

    async def list_backup_jobs(self, namespace: str, name: str) -> list[JSON]: ...
    async def list_backup_pods(self, namespace: str, name: str) -> list[JSON]: ...
    async def replace_cronjob(self, namespace: str, name: str, obj: JSON) -> None: ...
    async def delete_cronjob(self, namespace: str, name: str) -> bool: ...


class KubeWriter(Protocol):
    async def create(self, obj: JSON) -> bool: ...
    async def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None: ...
    async def update_statefulset_template(
        self, namespace: str, name: str, template: JSON, update_strategy: JSON
    ) -> None: ...
    async def delete_pod(self, namespace: str, name: str, uid: str) -> bool: ...
    async def delete_pvc(self, namespace: str, name: str) -> bool: ...
    async def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None: ...
    async def patch_raftkv_status(
        self, namespace: str, name: str, status: JSON, resource_version: str | None
    ) -> str: ...
    async def remove_raftkv_annotation(self, namespace: str, name: str, key: str) -> None: ...


class Kube:
    """:class:`KubeReader` and :class:`KubeWriter` over a ``kubernetes.client.ApiClient``."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.extensions = kubernetes.client.ApiextensionsV1Api(api)
        #: cert-manager.io Certificates (spec.tls certManager): a client of its own so
        #: the RBAC tables can tell its calls from the RaftKV ones.
        self.certmanager = kubernetes.client.CustomObjectsApi(api)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _plain(self, obj: Any) -> JSON:
        out = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        assert isinstance(out, dict)
        return out

    # ------------------------------------------------------------------ reads

    async def read_raftkv(self, namespace: str, name: str) -> JSON | None:
        def get() -> Any:
            return self.custom.get_namespaced_custom_object(
                n.GROUP, n.VERSION, namespace, n.PLURAL, name
            )

        try:
            return dict(await self._call(get))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def read_crd(self, name: str) -> JSON | None:
        """A CustomResourceDefinition (cluster-scoped), None when not installed."""
        try:
            return self._plain(
                await self._call(lambda: self.extensions.read_custom_resource_definition(name))
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        readers: dict[str, Callable[[], Any]] = {
            "Service": lambda: self.core.read_namespaced_service(name, namespace),
            "Secret": lambda: self.core.read_namespaced_secret(name, namespace),
            "ConfigMap": lambda: self.core.read_namespaced_config_map(name, namespace),
            "StatefulSet": lambda: self.apps.read_namespaced_stateful_set(name, namespace),
            "PodDisruptionBudget": lambda: self.policy.read_namespaced_pod_disruption_budget(
                name, namespace
            ),
            "CronJob": lambda: self.batch.read_namespaced_cron_job(name, namespace),
        }
        try:
            return self._plain(await self._call(readers[kind]))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list_pods(self, namespace: str, name: str) -> list[JSON]:
        selector = n.selector_string(name)
        found = await self._call(
            lambda: self.core.list_namespaced_pod(namespace, label_selector=selector)
        )
        return [self._plain(p) for p in found.items]

    async def list_pvcs(self, namespace: str, name: str) -> list[JSON]:
        selector = n.selector_string(name)
        found = await self._call(
            lambda: self.core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            )
        )
        return [self._plain(p) for p in found.items]

    async def list_backup_jobs(self, namespace: str, name: str) -> list[JSON]:
        """The Jobs the backup CronJob of RaftKV ``name`` made (by its labels)."""
        selector = backup_selector(name)
        found = await self._call(
            lambda: self.batch.list_namespaced_job(namespace, label_selector=selector)
        )
        return [self._plain(j) for j in found.items]

    async def list_backup_pods(self, namespace: str, name: str) -> list[JSON]:
        """The pods of those Jobs: their termination messages hold the results."""
        selector = backup_selector(name)
        found = await self._call(
            lambda: self.core.list_namespaced_pod(namespace, label_selector=selector)
        )
        return [self._plain(p) for p in found.items]

    # ------------------------------------------------------------------ writes

    async def replace_cronjob(self, namespace: str, name: str, obj: JSON) -> None:
        """Rewrite the CronJob's spec and annotations in one JSON patch (a merge patch
        would keep fields the new spec no longer has, a removed time zone)."""
        body: Any = [
            {"op": "replace", "path": "/spec", "value": obj["spec"]},
            {
                "op": "replace",
                "path": "/metadata/annotations",
                "value": obj["metadata"]["annotations"],
            },
        ]
        await self._call(
            lambda: self.batch.patch_namespaced_cron_job(
                name, namespace, body, _content_type=JSON_PATCH
            )
        )

    async def delete_cronjob(self, namespace: str, name: str) -> bool:
        """Delete the backup CronJob (backups turned off); its Jobs go with it."""
        body: Any = {"propagationPolicy": "Background"}
        try:
            await self._call(
                lambda: self.batch.delete_namespaced_cron_job(name, namespace, body=body)
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def create(self, obj: JSON) -> bool:
        namespace = obj["metadata"]["namespace"]
        body: Any = obj  # the client accepts plain dicts as well as its models
        creators: dict[str, Callable[[], Any]] = {
            "Service": lambda: self.core.create_namespaced_service(namespace, body),
            "Secret": lambda: self.core.create_namespaced_secret(namespace, body),
            "ConfigMap": lambda: self.core.create_namespaced_config_map(namespace, body),
            "StatefulSet": lambda: self.apps.create_namespaced_stateful_set(namespace, body),
            "PodDisruptionBudget": lambda: self.policy.create_namespaced_pod_disruption_budget(
                namespace, body
            ),
            "CronJob": lambda: self.batch.create_namespaced_cron_job(namespace, body),
        }
        try:
            await self._call(creators[obj["kind"]])
        except ApiException as exc:
            if exc.status == 409:  # a re-run after a crash, or a watch that lagged
                return False
            raise
        return True

    # ------------------------------------------------------------------ spec.tls (tls.py)

    async def replace_secret(self, namespace: str, name: str, obj: JSON) -> None:
        """Rewrite a certificate Secret in place (a renewal): the kubelet updates the
        mounted files and the members reload them, no pod restarts."""
        body: Any = obj
        await self._call(lambda: self.core.replace_namespaced_secret(name, namespace, body))

    async def crd_exists(self, name: str) -> bool:
        """Whether cert-manager's Certificate CRD (``name``) is installed. A
        namespace-scoped Role cannot read CRDs (403): then it is taken as installed, and
        if it is not, creating the Certificate fails (404) and the pass is retried
        without touching any pod."""
        try:
            return await self.read_crd(name) is not None
        except ApiException as exc:
            if exc.status != 403:
                raise
        return True

    async def read_certificate(self, namespace: str, name: str) -> JSON | None:
        def get() -> Any:
            return self.certmanager.get_namespaced_custom_object(
                "cert-manager.io", "v1", namespace, "certificates", name
            )

        try:
            return dict(await self._call(get))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_certificate(self, obj: JSON) -> bool:
        namespace = obj["metadata"]["namespace"]
        try:
            await self._call(
                lambda: self.certmanager.create_namespaced_custom_object(
                    "cert-manager.io", "v1", namespace, "certificates", obj
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_certificate(self, namespace: str, name: str, obj: JSON) -> None:
        """Merge-patch the Certificate's spec (cert-manager reissues when it changes)."""
        body: Any = {"spec": obj["spec"]}
        await self._call(
            lambda: self.certmanager.patch_namespaced_custom_object(
                "cert-manager.io",
                "v1",
                namespace,
                "certificates",
                name,
                body,
                _content_type=MERGE_PATCH,
            )
        )

    async def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        await self._call(
            lambda: self.apps.patch_namespaced_stateful_set(
                name, namespace, body, _content_type=MERGE_PATCH
            )
        )

    async def update_statefulset_template(
        self, namespace: str, name: str, template: JSON, update_strategy: JSON
    ) -> None:
        """Replace the pod template and the update strategy in one write. A JSON patch,
        not a merge patch: a merge patch would keep pod-level fields the new template
        no longer has (tolerations, nodeSelector taken out of the spec)."""
        body: Any = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/spec/updateStrategy", "value": update_strategy},
        ]
        await self._call(
            lambda: self.apps.patch_namespaced_stateful_set(
                name, namespace, body, _content_type=JSON_PATCH
            )
        )

    async def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the pod ``name`` only if it is still the one with ``uid`` (False when
        it is gone or already replaced: a repeated delete must not hit the new pod)."""
        body: Any = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self._call(lambda: self.core.delete_namespaced_pod(name, namespace, body=body))
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def delete_pvc(self, namespace: str, name: str) -> bool:
        try:
            await self._call(
                lambda: self.core.delete_namespaced_persistent_volume_claim(name, namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"data": data}
        await self._call(
            lambda: self.core.patch_namespaced_config_map(
                name, namespace, body, _content_type=MERGE_PATCH
            )
        )

    async def patch_raftkv_status(
        self, namespace: str, name: str, status: JSON, resource_version: str | None
    ) -> str:
        """Merge-patch ``status``; with ``resource_version``, only if nothing changed since."""
        body: JSON = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            result = await self._call(
                lambda: self.custom.patch_namespaced_custom_object_status(
                    n.GROUP, n.VERSION, namespace, n.PLURAL, name, body
                )
            )
        except ApiException as exc:
            if exc.status in (409, 422) and resource_version is not None:
                raise StatusConflict(f"{namespace}/{name} changed since it was read") from exc
            raise
        return str(cast(JSON, result)["metadata"]["resourceVersion"])

    async def remove_raftkv_annotation(self, namespace: str, name: str, key: str) -> None:
        """Drop one annotation of the RaftKV (a merge patch with null; absent is fine)."""
        body: Any = {"metadata": {"annotations": {key: None}}}
        try:
            await self._call(
                lambda: self.custom.patch_namespaced_custom_object(
                    n.GROUP,
                    n.VERSION,
                    namespace,
                    n.PLURAL,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
