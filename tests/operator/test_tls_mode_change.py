"""``spec.tls.mode`` cannot change while TLS is on: the CRD's transition rule, checked
by the schema stand-in (unit) and by the API stand-in answering a real client (422)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.crd_schema import errors
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, start_emulator

MANAGED: dict[str, Any] = {"mode": "managed"}
CERT_MANAGER: dict[str, Any] = {"mode": "certManager", "certManager": {"issuerRef": {"name": "ca"}}}
OFF = {"client": {"enabled": False}, "peer": {"enabled": False}}
REFUSED = "tls.mode cannot change while TLS is on"


def raftkv(tls: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": 3}
    if tls is not None:
        spec["tls"] = tls
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (MANAGED, CERT_MANAGER),
        ({}, CERT_MANAGER),  # the defaulted mode is managed
        (CERT_MANAGER, {"mode": "managed"}),
        ({**MANAGED, "peer": {"enabled": False}}, {**CERT_MANAGER, "peer": {"enabled": False}}),
        ({**MANAGED, "client": {"enabled": False}}, CERT_MANAGER),
    ],
)
def test_changing_the_mode_with_tls_on_is_refused(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    found = errors(raftkv(after), old=raftkv(before))
    assert any(REFUSED in e for e in found), found


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (MANAGED, None),  # TLS off: the first of the two transitions
        (None, CERT_MANAGER),  # TLS on again, with the new mode
        ({**MANAGED, **OFF}, {**CERT_MANAGER, **OFF}),  # no port uses TLS
        (MANAGED, {**MANAGED, "duration": "720h"}),  # anything else still changes
        (CERT_MANAGER, {**CERT_MANAGER, "certManager": {"issuerRef": {"name": "other"}}}),
    ],
)
def test_other_tls_changes_are_accepted(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    assert errors(raftkv(after), old=raftkv(before)) == []


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as s:
        yield s


def test_the_api_answers_422_with_the_way_out(server: EmulatorThread) -> None:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as api:
        custom: Any = kubernetes.client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, raftkv(MANAGED))
        with pytest.raises(ApiException) as refused:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"tls": CERT_MANAGER}}
            )
        assert refused.value.status == 422
        assert REFUSED in str(refused.value.body)
        assert "remove spec.tls" in str(refused.value.body)
        stored = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        assert stored["spec"]["tls"]["mode"] == "managed"
        # The way out: off, then on with the new mode.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"tls": None}}
        )
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"tls": CERT_MANAGER}}
        )
