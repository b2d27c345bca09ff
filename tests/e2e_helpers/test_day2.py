"""The day-2 steps' pure rules and their TLS plumbing, without a cluster.

The rules (:mod:`raftkv_e2e.day2`) on hand-built objects; the settings from the
environment; and HTTPS through the port-forward helper against a real TLS server on
loopback (behind ``support/fake_kubectl.py``) with certificates from the operator's own
issuer: the server name is verified, a plain-first client moves to HTTPS when the
member takes TLS only, and a renewed certificate is seen by the next handshake.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import celpy
import httpx
import kubernetes_validate
import pytest
from celpy.adapter import json_to_cel
from raftkv_e2e import day2
from raftkv_e2e.config import ConfigError, E2EConfig, broken_image_for
from raftkv_e2e.portforward import (
    ForwardTLS,
    ForwardTransport,
    PortForward,
    served_certificate,
    tls_context,
)

from raftkv_operator import tls as optls

JSON = dict[str, Any]
LABEL = "raftkv.dev/member-revision"
NS = "ns"


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("image", "broken"),
    [
        ("raftkv:e2e", "raftkv:raftkv-e2e-no-such-tag"),
        ("raftkv", "raftkv:raftkv-e2e-no-such-tag"),
        ("localhost:5000/raftkv:e2e", "localhost:5000/raftkv:raftkv-e2e-no-such-tag"),
        ("localhost:5000/raftkv", "localhost:5000/raftkv:raftkv-e2e-no-such-tag"),
        ("reg.io/a/raftkv@sha256:" + "0" * 64, "reg.io/a/raftkv:raftkv-e2e-no-such-tag"),
    ],
)
def test_broken_image_is_the_image_under_test_with_a_missing_tag(image: str, broken: str) -> None:
    assert broken_image_for(image) == broken


def test_day2_settings_from_the_environment() -> None:
    config = E2EConfig.from_env({"RAFTKV_E2E_IMAGE": "reg.io/raftkv:1"})
    assert config.broken_image == "reg.io/raftkv:raftkv-e2e-no-such-tag"
    assert (config.tls_duration, config.tls_seconds) == ("9m", 540.0)
    assert config.s3 is None
    config = E2EConfig.from_env(
        {
            "RAFTKV_E2E_BROKEN_IMAGE": "reg.io/nope:0",
            "RAFTKV_E2E_TLS_DURATION": "2m30s",
            "RAFTKV_E2E_S3_ENDPOINT": "http://minio.minio.svc:9000",
            "RAFTKV_E2E_S3_BUCKET": "backups",
            "RAFTKV_E2E_S3_ACCESS_KEY_ID": "id",
            "RAFTKV_E2E_S3_SECRET_ACCESS_KEY": "secret",
            "RAFTKV_E2E_S3_PREFIX": "/ci/",
        }
    )
    assert config.broken_image == "reg.io/nope:0"
    assert config.tls_seconds == 150.0
    assert config.s3 is not None
    assert (config.s3.endpoint, config.s3.bucket, config.s3.prefix) == (
        "http://minio.minio.svc:9000",
        "backups",
        "ci",
    )
    assert config.s3.region == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAFTKV_E2E_TLS_DURATION": "30s"}, "1m..1h"),
        ({"RAFTKV_E2E_TLS_DURATION": "2h"}, "1m..1h"),
        ({"RAFTKV_E2E_TLS_DURATION": "6 minutes"}, "duration like"),
        ({"RAFTKV_E2E_S3_BUCKET": "b"}, "RAFTKV_E2E_S3_ENDPOINT"),
        (
            {
                "RAFTKV_E2E_S3_ENDPOINT": "minio:9000",
                "RAFTKV_E2E_S3_BUCKET": "b",
                "RAFTKV_E2E_S3_ACCESS_KEY_ID": "i",
                "RAFTKV_E2E_S3_SECRET_ACCESS_KEY": "s",
            },
            "http(s)://",
        ),
    ],
)
def test_bad_day2_settings_are_usage_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        E2EConfig.from_env(env)


# --------------------------------------------------------------------------- rolls


def pod(name: str, uid: str, revision: str | None = None, tls: str | None = None) -> JSON:
    labels = {LABEL: revision} if revision else {}
    if tls:
        labels[day2.TLS_LABEL] = tls
    return {"metadata": {"name": name, "uid": uid, "labels": labels}}


def rkv(rollout: JSON | None = None, conds: list[JSON] | None = None, **status: Any) -> JSON:
    return {"status": {"rollout": rollout or {}, "conditions": conds or [], **status}}


STOPPED = rkv(
    {"phase": "Stopped", "targetRevision": "bad"},
    [
        {
            "type": "Degraded",
            "status": "True",
            "reason": "RolloutStopped",
            "message": "member 3 (pod 2) is not back at revision bad 120s after its "
            "restart (ImagePullBackOff: Back-off pulling image)",
        }
    ],
)


def test_rollout_stopped_needs_the_condition_and_the_phase() -> None:
    degraded = day2.rollout_stopped(STOPPED)
    assert degraded is not None
    assert "ImagePullBackOff" in degraded["message"]
    assert day2.names_pod(degraded["message"], "kv-2")
    assert not day2.names_pod(degraded["message"], "kv-1")
    assert day2.names_pod("pod kv-restored-1 is down", "kv-restored-1")
    rolling = rkv({"phase": "Rolling"}, STOPPED["status"]["conditions"])
    assert day2.rollout_stopped(rolling) is None
    not_degraded = rkv({"phase": "Stopped"}, [{"type": "Degraded", "status": "False"}])
    assert day2.rollout_stopped(not_degraded) is None
    other = rkv({"phase": "Stopped"}, [{**STOPPED["status"]["conditions"][0], "reason": "X"}])
    assert day2.rollout_stopped(other) is None


def test_replaced_pods_are_new_uids_or_gone() -> None:
    before = {"kv-0": "a", "kv-1": "b", "kv-2": "c"}
    assert day2.replaced_pods(before, [pod("kv-0", "a"), pod("kv-1", "b"), pod("kv-2", "c")]) == []
    now = [pod("kv-0", "a"), pod("kv-2", "z")]
    assert day2.replaced_pods(before, now) == ["kv-1", "kv-2"]


def test_image_patch_removes_an_unset_image() -> None:
    assert day2.image_patch(None) == {"spec": {"image": None}}
    assert json.dumps(day2.image_patch("r:1")) == '{"spec": {"image": "r:1"}}'


def test_roll_back_is_done_only_at_the_original_revision_everywhere() -> None:
    good = rkv({"phase": "Complete", "targetRevision": "good"})
    pods = [pod(f"kv-{k}", str(k), "good") for k in range(3)]
    assert day2.roll_back_not_done(good, pods, LABEL, "good") is None
    assert "target revision bad" in str(day2.roll_back_not_done(STOPPED, pods, LABEL, "good"))
    rolling = rkv({"phase": "Rolling", "targetRevision": "good"})
    assert "rollout" in str(day2.roll_back_not_done(rolling, pods, LABEL, "good"))
    stale = [*pods[:2], pod("kv-2", "9", "bad")]
    assert day2.roll_back_not_done(good, stale, LABEL, "good") == (
        "pods ['kv-2'] not at revision good"
    )
    degraded = rkv(
        {"phase": "Complete", "targetRevision": "good"},
        [{"type": "Degraded", "status": "True", "reason": "MembersNotReady"}],
    )
    assert "MembersNotReady" in str(day2.roll_back_not_done(degraded, pods, LABEL, "good"))


# --------------------------------------------------------------------------- TLS rules


def test_tls_on_waits_for_every_phase_and_fails_on_a_stopped_one() -> None:
    ready = [{"type": "CertificatesReady", "status": "True", "reason": "CertificatesIssued"}]
    pods = [pod(f"kv-{k}", str(k), "r", "client-peer") for k in range(3)]
    done = rkv({"phase": "Complete"}, ready, tls={"mode": "managed"})
    assert day2.tls_on_not_done(done, pods) is None
    moving = rkv(
        {"phase": "Rolling", "progress": "1/3"},
        ready,
        tls={"transition": {"from": "", "to": "client-peer", "phase": "Advertise"}},
    )
    assert "Advertise" in str(day2.tls_on_not_done(moving, pods))
    stuck = rkv({"phase": "Stopped"}, ready, tls=moving["status"]["tls"])
    with pytest.raises(AssertionError, match="stopped"):
        day2.tls_on_not_done(stuck, pods)
    plain = [*pods[:2], pod("kv-2", "2", "r")]
    assert "['kv-2']" in str(day2.tls_on_not_done(done, plain))
    pending = rkv({"phase": "Complete"}, [{**ready[0], "status": "False"}])
    assert "CertificatesReady=False" in str(day2.tls_on_not_done(pending, pods))


def test_renewed_lists_changed_serials_only() -> None:
    before = {"kv-server-tls": 1, "kv-peer-tls": 2}
    assert day2.renewed(before, {"kv-server-tls": 1, "kv-peer-tls": 2}) == []
    assert day2.renewed(before, {"kv-server-tls": 3, "kv-peer-tls": 2}) == ["kv-server-tls"]
    assert day2.renewed(before, {"kv-server-tls": 3}) == ["kv-server-tls"]


def secret_of(name: str, **values: bytes) -> JSON:
    data = {k.replace("_", "."): base64.b64encode(v).decode() for k, v in values.items()}
    return {"metadata": {"name": name}, "data": data}


def test_certificates_from_a_secret_as_the_operator_issues_them() -> None:
    now = time.time()
    ca = optls.new_ca("kv", now)
    sans = optls.dns_names("kv", NS, 3)
    leaf = optls.issue(ca, "kv", sans, now, 360)
    secret = secret_of("kv-server-tls", tls_crt=leaf.cert_pem, ca_crt=ca.cert_pem)
    cert = day2.secret_bytes(secret, "tls.crt")
    assert day2.serial(cert) == day2.load_certificate(leaf.cert_pem).serial_number
    names = day2.dns_names(cert)
    for k in range(3):
        assert day2.pod_dns_name(f"kv-{k}", "kv", NS) in names
    assert day2.client_service_dns_name("kv", NS) in names
    assert day2.dns_names(ca.cert_pem) == []
    with pytest.raises(ValueError, match=r"no tls\.key"):
        day2.secret_bytes(secret, "tls.key")
    with pytest.raises(ValueError, match="not base64"):
        day2.secret_bytes({"data": {"ca.crt": "***"}}, "ca.crt")


# --------------------------------------------------------------------------- backups


def test_backup_done_needs_a_new_successful_job_and_fails_on_a_failed_one() -> None:
    ok = {"lastSuccessfulJob": "kv-backup-1", "object": "/backup/raftkv/raftkv-x.snapshot"}
    assert day2.backup_done(rkv(backup=ok)) == ok
    assert day2.backup_done(rkv(backup=ok), previous="kv-backup-1") is None
    assert day2.backup_done(rkv(backup={})) is None
    assert day2.backup_done(rkv(backup={"lastSuccessfulJob": "j"})) is None
    failing = rkv(
        conds=[{"type": "BackupFailing", "status": "True", "message": "no route to host"}],
        backup={"lastFailedJob": "kv-backup-2"},
    )
    with pytest.raises(AssertionError, match="no route to host"):
        day2.backup_done(failing)


@pytest.mark.parametrize(
    ("obj", "source"),
    [
        (
            "/backup/raftkv/raftkv-20270101T030000Z.snapshot",
            "raftkv/raftkv-20270101T030000Z.snapshot",
        ),
        ("s3://b/p/raftkv-20270101T030000Z-000000000042.snapshot", None),
    ],
)
def test_restore_source_from_the_backup_object(obj: str, source: str | None) -> None:
    assert day2.restore_source(obj) == (source or obj)


@pytest.mark.parametrize("obj", ["/elsewhere/x.snapshot", "/backup/", "/backup/a/../b", "x"])
def test_restore_source_refuses_what_is_not_on_the_claim(obj: str) -> None:
    with pytest.raises(ValueError, match="backup object"):
        day2.restore_source(obj)


def test_restored_waits_and_fails_on_restore_failed() -> None:
    assert day2.restored_not_done(rkv(conds=[{"type": "Restored", "status": "True"}])) is None
    waiting = rkv(conds=[{"type": "Restored", "status": "False", "reason": "Restoring"}])
    assert "Restoring" in str(day2.restored_not_done(waiting))
    assert "None" in str(day2.restored_not_done(rkv()))
    failed = rkv(
        conds=[
            {
                "type": "Restored",
                "status": "False",
                "reason": "RestoreFailed",
                "message": "error: /restore/raftkv/x.snapshot: no such file",
            }
        ]
    )
    with pytest.raises(AssertionError, match="no such file"):
        day2.restored_not_done(failed)


def test_listing_differences() -> None:
    a = {"k1": b"1", "k2": b"2", "k3": b"3"}
    assert day2.listing_differences(a, dict(a)) == []
    got = day2.listing_differences(a, {"k1": b"1", "k2": b"x", "k4": b"4"})
    assert got == [
        "k2: b'2' before, b'x' restored",
        "k3: missing from the restored cluster",
        "k4: only in the restored cluster",
    ]
    many = {f"k{i}": b"" for i in range(50)}
    assert len(day2.listing_differences(many, {}, limit=5)) == 5


# --------------------------------------------------------------------------- HTTPS


class TLSBackend:
    """A member-shaped HTTPS server on loopback: GET answers its path. The server
    certificate can be swapped in place (as a member reloads a renewed Secret)."""

    def __init__(self, tmp: Path, ca: optls.KeyPair, *, tls: bool = True) -> None:
        self.tmp = tmp
        self.ca = ca
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.serial = self.renew()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def renew(self) -> int:
        leaf = optls.issue(self.ca, "kv", optls.dns_names("kv", NS, 3), time.time(), 360)
        cert, key = self.tmp / "tls.crt", self.tmp / "tls.key"
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        self.context.load_cert_chain(cert, key)
        self.serial = day2.serial(leaf.cert_pem)
        return self.serial

    def __enter__(self) -> TLSBackend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca() -> optls.KeyPair:
    return optls.new_ca("kv", time.time())


@pytest.fixture
def tls_backend(
    tmp_path: Path, ca: optls.KeyPair, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TLSBackend]:
    with TLSBackend(tmp_path, ca) as b:
        monkeypatch.setenv("FAKE_BACKEND", f"127.0.0.1:{b.port}")
        yield b


def _get(transport: ForwardTransport, path: str) -> httpx.Response:
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"http://placeholder.invalid{path}")


def test_https_through_a_forward_verifies_the_server_name(
    fake_kubectl: str, tls_backend: TLSBackend, ca: optls.KeyPair
) -> None:
    context = tls_context(ca.cert_pem)
    with PortForward(fake_kubectl, NS, "svc/kv-client", 2379, start_timeout=20) as forward:
        good = ForwardTLS(context, day2.client_service_dns_name("kv", NS))
        response = _get(ForwardTransport(forward, tls=good), "/v1/status")
        assert (response.status_code, response.text) == (200, "/v1/status")
        assert response.request.url.scheme == "https"

        wrong = ForwardTLS(context, "kv-client.other-namespace.svc")
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            _get(ForwardTransport(forward, tls=wrong), "/x")

        stranger = ForwardTLS(
            tls_context(optls.new_ca("other", time.time()).cert_pem), good.server_name
        )
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            _get(ForwardTransport(forward, tls=stranger), "/x")


def test_plain_first_moves_to_https_on_a_tls_only_member(
    fake_kubectl: str, tls_backend: TLSBackend, ca: optls.KeyPair
) -> None:
    tls = ForwardTLS(tls_context(ca.cert_pem), "kv-client.ns.svc", plain_first=True)
    with PortForward(fake_kubectl, NS, "svc/kv-client", 2379, start_timeout=20) as forward:
        transport = ForwardTransport(forward, tls=tls)
        for k in range(3):
            response = _get(transport, f"/k{k}")
            assert (response.status_code, response.text) == (200, f"/k{k}")
        assert transport.tls_fallbacks == 3


def test_plain_first_stays_plain_on_a_member_without_tls(
    fake_kubectl: str, tmp_path: Path, ca: optls.KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = ForwardTLS(tls_context(ca.cert_pem), "kv-client.ns.svc", plain_first=True)
    with TLSBackend(tmp_path, ca, tls=False) as plain:
        monkeypatch.setenv("FAKE_BACKEND", f"127.0.0.1:{plain.port}")
        with PortForward(fake_kubectl, NS, "svc/kv-client", 2379, start_timeout=20) as forward:
            transport = ForwardTransport(forward, tls=tls)
            response = _get(transport, "/k")
            assert (response.status_code, response.text) == (200, "/k")
            assert response.request.url.scheme == "http"
            assert transport.tls_fallbacks == 0


def test_a_renewed_certificate_is_served_to_the_next_handshake(
    fake_kubectl: str, tls_backend: TLSBackend, ca: optls.KeyPair
) -> None:
    context = tls_context(ca.cert_pem)
    tls = ForwardTLS(context, day2.pod_dns_name("kv-1", "kv", NS), fresh_connections=True)
    with PortForward(fake_kubectl, NS, "pod/kv-1", 2379, start_timeout=20) as forward:
        port = forward.ensure()
        first = tls_backend.serial
        assert day2.serial(served_certificate(port, tls)) == first
        transport = ForwardTransport(forward, tls=tls)
        assert _get(transport, "/before").status_code == 200
        second = tls_backend.renew()
        assert second != first
        assert day2.serial(served_certificate(port, tls)) == second
        assert _get(transport, "/after").status_code == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            served_certificate(port, ForwardTLS(context, "kv-9.kv-peer.elsewhere.svc"))


# --------------------------------------------------------------------------- lost nodes


def _admits(expression: str, pod_name: str) -> bool:
    """The policy's CEL validation on a pod named ``pod_name`` (cel-python, a real CEL
    implementation): True when the pod may be created."""
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    result = program.evaluate({"object": json_to_cel({"metadata": {"name": pod_name}})})
    return bool(result)


def test_lost_nodes_policy_refuses_only_the_lost_members_pods() -> None:
    objs = day2.lost_nodes_policy("raftkv-e2e-lost-nodes-ns", NS, ["kv-2", "kv-1"])
    for obj in [*objs, day2.probe_pod("kv-1", NS, "raftkv:e2e")]:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    policy, binding = objs
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    assert selector == {"kubernetes.io/metadata.name": NS}
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["pods"], ["CREATE"])
    (validation,) = policy["spec"]["validations"]
    assert validation["message"] == day2.LOST_NODE_MESSAGE
    expression = validation["expression"]
    assert [_admits(expression, f"kv-{k}") for k in range(4)] == [True, False, False, True]
    assert _admits(expression, "kv-restored-1")
    env = celpy.Environment()
    unnamed = json_to_cel({"metadata": {"generateName": "kv-backup-"}})
    assert env.program(env.compile(expression)).evaluate({"object": unnamed})
    # Nothing lost any more: the same objects refuse nothing.
    (empty, _) = day2.lost_nodes_policy("p", NS, [])
    assert _admits(empty["spec"]["validations"][0]["expression"], "kv-1")


def test_volume_replaced_once_the_original_claim_is_gone() -> None:
    claim = {"metadata": {"name": "data-kv-1", "uid": "old"}}
    assert not day2.volume_replaced("old", claim)
    assert day2.volume_replaced("old", None)
    assert day2.volume_replaced("old", {"metadata": {"name": "data-kv-1", "uid": "new"}})
    # Terminating is not gone: a pod made now would hold the old claim forever.
    going = {"metadata": {**claim["metadata"], "deletionTimestamp": "2026-12-07T22:00:00Z"}}
    assert not day2.volume_replaced("old", going)


def test_recovery_phase_and_an_aborted_recovery() -> None:
    assert day2.recovery_phase(rkv()) is None
    assert day2.recovery_phase(rkv(recovery={"phase": "GrowingBack"})) == "GrowingBack"
    with pytest.raises(AssertionError, match="gave the recovery up"):
        day2.recovery_phase(rkv(recovery={"phase": "Aborted", "ordinal": 0}))
