"""The chart's RBAC against the running operator, kopf included.

test_rbac.py derives the operator's calls from its code and reads kopf's from kopf's
source; this test watches them happen. The real operator runs against the Kubernetes
stand-in of tests/support (with the fake members of the operator's emulator test) through
create → bootstrap → scale up → scale down → delete, every request it makes is
recorded (told apart from the test's own requests by user agent), and each must be
granted by the chart's ClusterRole. Also checks that the tables in rbac.py list
every call seen here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import kubernetes
import pytest
import yaml
from cryptography import x509
from kubernetes.client import ApiClient, ApiException

from raftkv_operator import tls
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.crd_schema import load_crd
from support.fake_members import CONFIG, FakeMembers, ready_pod
from support.kube_emulator import EmulatorThread, KubeEmulator
from support.operator_harness import NS, OperatorThread, crd_schema
from support.structural import check_crd
from support.wait import wait_for

from .chart import render
from .rbac import (
    KOPF_CALLS,
    KOPF_CLUSTER_CALLS,
    OPERATOR_CALLS,
    OPERATOR_CLUSTER_CALLS,
    Call,
    granted,
)

pytestmark = pytest.mark.timeout(120)

CERTMANAGER_CRD = Path(__file__).parents[1] / "support" / "certmanager_crd.yaml"

OPERATOR_AGENT = "raftkv-operator-under-test"
_VERBS = {
    "fetch": "get",
    "list": "list",
    "watch": "watch",
    "create": "create",
    "delete": "delete",
}


def _call(request: Any) -> Call | None:
    resource = request.resource
    if resource is None or resource.plural is None:
        return None  # discovery (/api, /apis/...), which every account may read
    action = str(request.action.value if request.action is not None else "").lower()
    if str(request.method.value).upper() == "PUT":
        verb = "update"  # a replace (kmock names no action for it)
    elif action == "update":
        verb = "patch" if str(request.method.value).upper() == "PATCH" else "update"
    else:
        verb = _VERBS[action]
    plural = resource.plural
    if request.subresource:
        plural = f"{plural}/{request.subresource}"
    return Call(resource.group or "", plural, verb)


@pytest.fixture
def recorded() -> Iterator[tuple[EmulatorThread, list[Call]]]:
    calls: list[Call] = []

    class Recording(KubeEmulator):
        async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
            agent = request.headers.get("User-Agent", "")
            if agent.startswith(("kopf/", OPERATOR_AGENT)):
                call = _call(request)
                if call is not None:
                    calls.append(call)
            return await super()._handle(request)

    emulator = Recording()
    emulator.register_crd(load_crd(), crd_schema, check_crd)
    # spec.tls with mode certManager needs cert-manager's Certificate CRD.
    emulator.register_crd(yaml.safe_load(CERTMANAGER_CRD.read_text()), crd_schema, check_crd)
    with EmulatorThread(emulator) as server:
        yield server, calls


def _body(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {"replicas": replicas, "image": "raftkv:test"},
    }


def _status(custom: Any) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
    return dict(obj.get("status") or {})


def _in_sync(custom: Any) -> bool:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
    status = obj.get("status") or {}
    progressing = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
    return bool(
        progressing
        and progressing[0]["reason"] == "InSync"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
        and not status.get("inFlight")
    )


def _tls_body(name: str, spec_tls: dict[str, Any]) -> dict[str, Any]:
    body = _body(1)
    body["metadata"]["name"] = name
    body["spec"]["tls"] = spec_tls
    return body


def _exercise_tls(api: ApiClient) -> None:
    """spec.tls (no pod is ever made ready, so no fake member gets involved): a managed
    CA and certificates, one of them renewed in place; cert-manager Certificates,
    created and then updated."""
    core: Any = kubernetes.client.CoreV1Api(api)
    custom: Any = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, _tls_body("tls", {}))

    def secret(name: str) -> Any:
        return core.read_namespaced_secret(name, NS)

    ca = wait_for("the managed CA", lambda: secret("tls-ca"), timeout=30, ignore=ApiException)
    wait_for("the server Secret", lambda: secret("tls-server-tls"), timeout=30, ignore=ApiException)
    pair = tls.KeyPair(base64.b64decode(ca.data["tls.crt"]), base64.b64decode(ca.data["tls.key"]))
    old = tls.issue(pair, "old", ["old"], 0.0, 90 * 86400.0)  # expired long ago
    aged = tls.tls_secret_object("tls", NS, "tls-server-tls", "server-tls", old, pair.cert_pem)
    core.replace_namespaced_secret("tls-server-tls", NS, aged)
    serial = x509.load_pem_x509_certificate(old.cert_pem).serial_number

    def renewed() -> bool:
        pem = base64.b64decode(secret("tls-server-tls").data["tls.crt"])
        return x509.load_pem_x509_certificate(pem).serial_number != serial

    wait_for("the renewal", renewed, timeout=30, ignore=ApiException)

    issuer = {"issuerRef": {"name": "ca"}}
    custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, _tls_body("cm", {"mode": "certManager", "certManager": issuer})
    )

    def certificate_duration() -> str | None:
        try:
            cert = custom.get_namespaced_custom_object(
                "cert-manager.io", "v1", NS, "certificates", "cm-server"
            )
        except ApiException:
            return None
        return str(cert["spec"]["duration"])

    wait_for("the Certificate", certificate_duration, timeout=30)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "cm", {"spec": {"tls": {"duration": "720h"}}}
    )
    wait_for("the Certificate updated", lambda: certificate_duration() == "720h", timeout=30)
    for name in ("tls", "cm"):
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


def test_every_request_the_operator_makes_is_granted(
    recorded: tuple[EmulatorThread, list[Call]],
) -> None:
    server, calls = recorded
    fake = FakeMembers()
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom = kubernetes.client.CustomObjectsApi(api)
        operator = OperatorThread(server.url, CONFIG, probe=fake, admin_for=lambda _: fake)
        operator.api.user_agent = OPERATOR_AGENT
        with operator:
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, _body(1))
            wait_for(
                "the StatefulSet", lambda: _status(custom).get("memberIDs"), ignore=ApiException
            )
            ready_pod(api, 0)
            fake.start(0, 1)
            wait_for("bootstrap", lambda: _in_sync(custom), timeout=30, ignore=ApiException)

            # A rolling change: the template is rewritten and the member's pod deleted;
            # the StatefulSet controller's part is to recreate it from the template.
            core = kubernetes.client.CoreV1Api(api)
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"image": "raftkv:rolled"}}
            )
            wait_for(
                "the pod to be deleted",
                lambda: not core.list_namespaced_pod(NS).items,
                timeout=30,
                ignore=ApiException,
            )
            ready_pod(api, 0)
            wait_for("the roll", lambda: _in_sync(custom), timeout=30, ignore=ApiException)

            # Scheduled backups: the CronJob is created, rewritten when the schedule
            # changes (its Jobs listed on every pass), and deleted with spec.backup.
            batch = kubernetes.client.BatchV1Api(api)

            def schedule() -> str | None:
                found = batch.list_namespaced_cron_job(NS).items
                return str(found[0].spec.schedule) if found else None

            for cron in ("0 3 * * *", "0 4 * * *"):
                backup = {"schedule": cron, "s3": {"bucket": "bkp", "credentialsSecret": "s3"}}
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"backup": backup}}
                )
                wait_for(
                    f"the CronJob at {cron}",
                    lambda cron=cron: schedule() == cron,  # type: ignore[misc]
                    timeout=30,
                    ignore=ApiException,
                )
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"backup": None}}
            )
            wait_for("the CronJob to go", lambda: schedule() is None, timeout=30)

            custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 2}}
            )
            wait_for(
                "the learner",
                lambda: ("add_learner", 2) in fake.calls,
                timeout=30,
                ignore=ApiException,
            )
            ready_pod(api, 1)
            fake.start(1, 2)
            wait_for("scale-up", lambda: _in_sync(custom), timeout=30, ignore=ApiException)

            custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"replicas": 1}}
            )
            wait_for(
                "the removal", lambda: ("remove", 2) in fake.calls, timeout=30, ignore=ApiException
            )
            apps = kubernetes.client.AppsV1Api(api)
            wait_for(
                "the StatefulSet to shrink",
                lambda: apps.read_namespaced_stateful_set("kv", NS).spec.replicas == 1,
                timeout=30,
                ignore=ApiException,
            )
            # The StatefulSet controller's part: the pod of the removed ordinal goes.
            core.delete_namespaced_pod("kv-1", NS)
            wait_for(
                "the removed member's claim to go",
                lambda: len(core.list_namespaced_persistent_volume_claim(NS).items) == 1,
                timeout=30,
                ignore=ApiException,
            )

            custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
            wait_for(
                "the PVCs to be deleted",
                lambda: not core.list_namespaced_persistent_volume_claim(NS).items,
                timeout=30,
                ignore=ApiException,
            )
            with ApiClient(kubernetes.client.Configuration(host=server.url)) as own:
                own.user_agent = "raftkv-rbac-test"  # not recorded as the operator's
                _exercise_tls(own)
        assert not server.emulator.errors, server.emulator.errors

    (role,) = [o for o in render({}) if o["kind"] == "ClusterRole"]
    allowed = granted(role)
    seen = set(calls)
    assert seen - allowed == set(), "the operator made requests its ClusterRole forbids"
    # The tables behind the RBAC test list exactly the calls that happened: this cycle
    # exercises every one of them. The exception is update on raftkvs/finalizers, which
    # no request makes: an admission plugin checks it when a child carrying an
    # ownerReference with blockOwnerDeletion is created.
    tables = (
        set(OPERATOR_CALLS)
        | set(OPERATOR_CLUSTER_CALLS)
        | set(KOPF_CALLS)
        | set(KOPF_CLUSTER_CALLS)
    )
    admission_only = {Call(GROUP, f"{PLURAL}/finalizers", "update")}
    assert seen == tables - admission_only
