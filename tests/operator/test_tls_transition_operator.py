"""Turning TLS on, then off again, for a running cluster, through the real operator
against the Kubernetes API stand-in (``tls_transition.py``).

The StatefulSet controller and kubelet are ``test_rolling_operator.Controller``; its
members, like real ones (docs/tls.md), publish their own peer URL in the new scheme
when restarted with one, which is what lets the last phase start. The test follows
``status.tls.transition`` and the StatefulSet's template through the three rolls and
checks what each phase renders, that every member was restarted once per phase (never
two at once), and the Events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from test_rolling_operator import Controller, RollingMembers, plain
from test_tls_operator import K8S_VERSION, Api, condition, emulator

from raftkv_operator import tls
from raftkv_operator import tls_transition as TT
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import REVISION_LABEL
from support.fake_members import CONFIG
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread
from support.wait import wait_for

TIMEOUT = 600.0  # a deadline for each wait, not a duration

# Nine pod restarts each way take minutes against the stand-in, longer under CI's
# coverage tracer than a wait should allow; `make test` covers the transition with
# the planner properties and with real members (e2e/local/test_tls_e2e.py), and this
# run is in `make soak`.
pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(
        not os.environ.get("RAFTKV_SOAK"), reason="slow: run with `make soak` or RAFTKV_SOAK=1"
    ),
]


class PublishingController(Controller):
    """Members started from a template whose advertised peer URL has another scheme
    than the one registered publish the new URL (the member does it through Raft)."""

    def _start(self, k: int, name: str, template: dict[str, Any]) -> None:
        super()._start(k, name, template)
        member_id = self.members.running.get(k)
        if not member_id or member_id not in self.members.config:
            return
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        scheme = str(env["RAFTKV_ADVERTISE_PEER_URL"]).split("://", 1)[0]
        member, url, learner = self.members.config[member_id]
        self.members.config[member_id] = (member, f"{scheme}://{url.split('://', 1)[1]}", learner)


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with emulator(with_cert_manager=False) as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


def create_plain(api: Api) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {
            "replicas": 3,
            "image": "raftkv:1",
            "upgrade": {"stabilizationSeconds": 0, "timeoutSeconds": 20},
        },
    }
    api.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)


def template(api: Api) -> dict[str, Any]:
    sts = plain(api.client, api.apps.read_namespaced_stateful_set("kv", NS))
    return dict(sts["spec"]["template"])


def env_of(tpl: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in tpl["spec"]["containers"][0]["env"]}


def settled_at(api: Api, label: str) -> dict[str, Any] | None:
    """No transition, the template on ``label``, every pod at its revision, Ready."""
    s = api.status()
    ready = condition(s, "Ready")
    if (s.get("tls") or {}).get("transition") or ready is None or ready["status"] != "True":
        return None
    tpl = template(api)
    if tpl["metadata"]["labels"].get(tls.TLS_LABEL, "") != label:
        return None
    revision = tpl["metadata"]["labels"][REVISION_LABEL]
    pods = api.core.list_namespaced_pod(NS).items
    if len(pods) != 3 or any(p.metadata.labels.get(REVISION_LABEL) != revision for p in pods):
        return None
    return s


def follow(
    api: Api, members: RollingMembers, label: str
) -> tuple[list[str], dict[str, dict[str, Any]], int]:
    """Watch a transition to ``label`` until it is done: the phases status showed, in
    order, the template of each phase, and the fewest members running at any look."""
    phases: list[str] = []
    templates: dict[str, dict[str, Any]] = {}
    fewest = 3

    def look() -> bool | None:
        nonlocal fewest
        fewest = min(fewest, len(members.running))
        record = (api.status().get("tls") or {}).get("transition")
        if record:
            if not phases or phases[-1] != record["phase"]:
                phases.append(record["phase"])
            tpl = template(api)
            if tpl["metadata"]["labels"].get(TT.TRANSITION_LABEL, "").endswith(record["phase"]):
                templates.setdefault(record["phase"], tpl)
            return None
        return True if phases and settled_at(api, label) is not None else None

    wait_for(f"the transition to [{label}]", look, timeout=TIMEOUT, interval=0.05)
    return phases, templates, fewest


def test_tls_turned_on_then_off_on_a_running_cluster(server: EmulatorThread) -> None:
    api = Api(server.url)
    members = RollingMembers()
    try:
        with (
            OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members),
            PublishingController(api.client, members) as controller,
        ):
            create_plain(api)
            wait_for("3 plain members", lambda: settled_at(api, ""), timeout=TIMEOUT)
            uid = api.rkv()["metadata"]["uid"]
            assert api.secret("kv-server-tls") is None

            # --- on: three rolls, in order
            api.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"tls": {"mode": "managed"}}}
            )
            phases, templates, fewest = follow(api, members, "client-peer")
            assert phases == [TT.ACCEPT_BOTH, TT.ADVERTISE, TT.FINAL]
            assert fewest >= 2, "never more than one member down"
            assert sorted(controller.recreated) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
            assert api.secret("kv-server-tls") is not None
            assert api.secret("kv-peer-tls") is not None

            one = env_of(templates[TT.ACCEPT_BOTH])
            assert one["RAFTKV_PEER_ACCEPT_PLAIN"] == one["RAFTKV_CLIENT_ACCEPT_PLAIN"] == "true"
            assert one["RAFTKV_ADVERTISE_PEER_URL"].startswith("http://")
            assert one["RAFTKV_PEER_CERT_FILE"] == "/etc/raftkv/peer/tls.crt"
            mounted = {v["name"] for v in templates[TT.ACCEPT_BOTH]["spec"]["volumes"]}
            assert {tls.SERVER_VOLUME, tls.PEER_VOLUME} <= mounted
            two = env_of(templates[TT.ADVERTISE])
            assert two["RAFTKV_PEER_ACCEPT_PLAIN"] == "true"
            assert two["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
            assert two["RAFTKV_DISCOVERY_ENDPOINTS"].startswith("https://")
            final = template(api)
            kubernetes_validate.validate(
                plain(api.client, api.apps.read_namespaced_stateful_set("kv", NS)),
                K8S_VERSION,
                strict=True,
            )
            three = env_of(final)
            assert "RAFTKV_PEER_ACCEPT_PLAIN" not in three
            assert "RAFTKV_CLIENT_ACCEPT_PLAIN" not in three
            assert three["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
            assert TT.TRANSITION_LABEL not in final["metadata"]["labels"]
            assert all(url.startswith("https://") for _, url, _ in members.config.values())
            done = wait_for(
                "CertificatesIssued",
                lambda: (
                    s
                    if (c := condition(s := api.status(), tls.CERTIFICATES_READY))
                    and c["reason"] == "CertificatesIssued"
                    else None
                ),
                timeout=TIMEOUT,
            )
            assert "transition" not in done["tls"]
            reasons = [r for r, _ in api.events(uid) if r and r.startswith("TLSTransition")]
            assert set(reasons) == {
                "TLSTransitionStarted",
                "TLSTransitionPhase",
                "TLSTransitionDone",
            }

            # --- off again: the same three rolls in reverse
            controller.recreated.clear()
            api.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"tls": None}}
            )
            phases, templates, fewest = follow(api, members, "")
            assert phases == [TT.ACCEPT_BOTH, TT.ADVERTISE, TT.FINAL]
            assert fewest >= 2
            assert sorted(controller.recreated) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
            one = env_of(templates[TT.ACCEPT_BOTH])
            assert one["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
            assert one["RAFTKV_PEER_ACCEPT_PLAIN"] == "true"
            two = env_of(templates[TT.ADVERTISE])
            assert two["RAFTKV_ADVERTISE_PEER_URL"].startswith("http://")
            assert two["RAFTKV_PEER_CERT_FILE"] == "/etc/raftkv/peer/tls.crt"
            final = template(api)
            assert "volumes" not in final["spec"] or not any(
                v["name"] in (tls.SERVER_VOLUME, tls.PEER_VOLUME) for v in final["spec"]["volumes"]
            )
            three = env_of(final)
            assert "RAFTKV_PEER_CERT_FILE" not in three
            assert three["RAFTKV_ADVERTISE_PEER_URL"].startswith("http://")
            assert all(url.startswith("http://") for _, url, _ in members.config.values())
            assert not controller.errors, controller.errors
    finally:
        api.close()
