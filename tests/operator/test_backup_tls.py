"""Scheduled backups of a RaftKV with TLS: the CronJob's ``raftkv snapshot save`` dials
https, trusts the cluster CA and, with clientCertAuth, presents a client certificate;
during a TLS transition it follows the scheme of the phase. The rendering is checked
as data (and against the Kubernetes schemas), then through the real operator against
the API stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiException
from test_rolling_operator import Controller, RollingMembers, plain
from test_tls_operator import K8S_VERSION, TIMEOUT, Api, emulator

from raftkv_operator import backup as b
from raftkv_operator import tls
from raftkv_operator import tls_transition as TT
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import RaftKVObject
from raftkv_operator.reconcile import _reached_with
from support.fake_members import CONFIG
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread
from support.wait import wait_for

BACKUP = {"schedule": "0 3 * * *", "retention": 7, "pvc": {"claimName": "x", "path": "raftkv"}}


def _container(cron: dict[str, Any]) -> dict[str, Any]:
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def _env(cron: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in _container(cron)["env"]}


def _cron(spec_tls: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": 3, "backup": BACKUP}
    if spec_tls is not None:
        spec["tls"] = spec_tls
    cron = b.cronjob(RaftKVObject("kv", NS, "uid", spec=spec), **kw)
    assert cron is not None
    kubernetes_validate.validate(cron, K8S_VERSION, strict=True)
    return cron


def test_plain_backups_are_unchanged() -> None:
    env = _env(_cron(None))
    assert env["RAFTKV_BACKUP_ENDPOINTS"].startswith("http://")
    assert "RAFTKV_CACERT" not in env


@pytest.mark.parametrize("auth", [False, True])
def test_client_tls_backups_trust_the_ca_and_present_a_certificate(auth: bool) -> None:
    cron = _cron({"client": {"clientCertAuth": auth}})
    env = _env(cron)
    assert env["RAFTKV_BACKUP_ENDPOINTS"].startswith("https://")
    assert env["RAFTKV_CACERT"] == "/etc/raftkv/tls/ca.crt"
    assert ("RAFTKV_CERT" in env) == auth
    assert ("RAFTKV_KEY" in env) == auth
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"kv-server-tls"}
    mount = next(m for m in _container(cron)["volumeMounts"] if m["name"] == b.TLS_VOLUME)
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # a renewal must reach the next Job


def test_peer_only_tls_backs_up_over_plain_http() -> None:
    env = _env(_cron({"client": {"enabled": False}}))
    assert env["RAFTKV_BACKUP_ENDPOINTS"].startswith("http://")
    assert "RAFTKV_CACERT" not in env


@pytest.mark.parametrize(
    ("spec_tls", "record", "https"),
    [
        ({"mode": "managed"}, None, True),
        ({"mode": "managed"}, {"from": "", "to": "client-peer", "phase": TT.ACCEPT_BOTH}, False),
        ({"mode": "managed"}, {"from": "", "to": "client-peer", "phase": TT.ADVERTISE}, True),
        (None, {"from": "client-peer", "to": "", "phase": TT.ACCEPT_BOTH}, True),
        (None, {"from": "client-peer", "to": "", "phase": TT.ADVERTISE}, False),
        (None, {"from": "client-peer", "to": "", "phase": TT.FINAL}, False),
    ],
)
def test_backups_follow_the_phase_of_a_tls_transition(
    spec_tls: dict[str, Any] | None, record: dict[str, Any] | None, https: bool
) -> None:
    body: dict[str, Any] = {"spec": {"replicas": 3}, "status": {"tls": {"mode": "managed"}}}
    if spec_tls is not None:
        body["spec"]["tls"] = spec_tls
    if record is not None:
        body["status"]["tls"]["transition"] = record
    env = _env(_cron(spec_tls, secured=_reached_with(body)))
    assert env["RAFTKV_BACKUP_ENDPOINTS"].startswith("https://" if https else "http://")
    assert ("RAFTKV_CACERT" in env) == https


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with emulator(with_cert_manager=False) as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


def test_the_operator_writes_a_tls_backup_cronjob(server: EmulatorThread) -> None:
    api = Api(server.url)
    members = RollingMembers()
    batch: Any = kubernetes.client.BatchV1Api(api.client)
    try:
        with (
            OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members),
            Controller(api.client, members),
        ):
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaftKV",
                "metadata": {"name": "kv"},
                "spec": {
                    "replicas": 1,
                    "tls": {"client": {"clientCertAuth": True}},
                    "backup": BACKUP,
                },
            }
            api.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

            def cronjob() -> dict[str, Any] | None:
                try:
                    return plain(api.client, batch.read_namespaced_cron_job("kv-backup", NS))
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise

            cron = wait_for("the backup CronJob", cronjob, timeout=TIMEOUT)
            kubernetes_validate.validate(cron, K8S_VERSION, strict=True)
            env = _env(cron)
            assert env["RAFTKV_BACKUP_ENDPOINTS"] == f"https://kv-client.{NS}.svc:2379"
            assert env["RAFTKV_CACERT"] == "/etc/raftkv/tls/ca.crt"
            assert env["RAFTKV_CERT"] == "/etc/raftkv/tls/tls.crt"
            assert env["RAFTKV_KEY"] == "/etc/raftkv/tls/tls.key"
            pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            assert {
                "name": b.TLS_VOLUME,
                "secret": {"secretName": tls.server_secret("kv"), "defaultMode": 0o440},
            } in pod["volumes"]
            wait_for("the server certificate", lambda: api.secret("kv-server-tls"), timeout=TIMEOUT)
    finally:
        api.close()
