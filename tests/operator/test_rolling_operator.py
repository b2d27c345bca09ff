"""Rolling changes through the real operator against the Kubernetes API stand-in.

The operator runs as ``raftkv operator`` does (kopf in a thread). What Kubernetes'
controllers would do is played by :class:`Controller`, through the API only: it
recreates each deleted pod from the StatefulSet's *current* template (what the
StatefulSet controller does under ``OnDelete``), and plays the kubelet: a pod whose
image is in ``broken`` never starts (``ImagePullBackOff``), any other becomes Ready and
its member (in :class:`RollingMembers`) answers. Objects the operator writes are
validated against the official Kubernetes schemas.

One scenario, in order: a 3-member RaftKV; an image change rolls followers first and
the leader last after one leadership transfer, with the progress in ``status.rollout``
(the UPDATED printer column), the ``Rolling`` condition and Events; a broken image
stops the roll after the first member (``Degraded``/``RolloutStopped``, a Warning
Event, no other pod touched); reverting the image replaces that member although it is
unhealthy, and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import kubernetes
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, ApiException

from raftkv.client import StatusInfo
from raftkv_operator import metrics
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import REVISION_LABEL
from support.crd_schema import load_crd
from support.fake_members import CONFIG, FakeMembers
from support.kube_emulator import EmulatorThread
from support.operator_harness import NS, OperatorThread, start_emulator
from support.wait import wait_for

K8S_VERSION = "1.30"
MERGE = "application/merge-patch+json"
LABELS = {"app.kubernetes.io/name": "raftkv", "app.kubernetes.io/instance": "kv"}
TIMEOUT = 240.0  # a deadline for each wait, not a duration (coverage slows kopf 3x)


class RollingMembers(FakeMembers):
    """:class:`FakeMembers` whose leader moves when asked to (a transfer)."""

    def __init__(self) -> None:
        super().__init__()
        self.leader = 1

    async def status(self, url: str) -> StatusInfo | None:
        info = await super().status(url)
        if info is None:
            return None
        role = "leader" if info.id == self.leader else "follower"
        return replace(info, role=role, leader=self.leader)

    async def transfer(self, to_id: int) -> None:
        await super().transfer(to_id)
        self.leader = to_id


class Controller:
    """The StatefulSet controller and kubelet, polling the API (see module docstring)."""

    def __init__(self, api: ApiClient, members: RollingMembers) -> None:
        self.api = api
        # Any: the client's models type every field Optional; these are test reads.
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.apps: Any = kubernetes.client.AppsV1Api(api)
        self.custom: Any = kubernetes.client.CustomObjectsApi(api)
        self.members = members
        self.broken: set[str] = set()
        #: Ordinals whose pod went away (deleted by the operator), in order.
        self.recreated: list[int] = []
        self.errors: list[str] = []
        self._seen: dict[int, str] = {}  # ordinal → uid of the pod we made
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller", daemon=True)

    def __enter__(self) -> Controller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except ApiException as exc:  # a race with the operator; the next round retries
                if exc.status >= 500:
                    self.errors.append(repr(exc))
            self._stop.wait(0.1)

    def sync(self) -> None:
        try:
            sts = self.apps.read_namespaced_stateful_set("kv", NS)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        template = plain(self.api, sts.spec.template)
        pods = {p.metadata.name: p for p in self.core.list_namespaced_pod(NS).items}
        pvcs = {
            p.metadata.name for p in self.core.list_namespaced_persistent_volume_claim(NS).items
        }
        for k in range(sts.spec.replicas):
            name = f"kv-{k}"
            if f"data-{name}" not in pvcs:
                self.core.create_namespaced_persistent_volume_claim(
                    NS,
                    {
                        "metadata": {"name": f"data-{name}", "labels": LABELS},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    },
                )
            if name in pods:
                continue
            if k in self._seen:  # our pod was deleted: its member stops with it
                self.members.running.pop(k, None)
                self.recreated.append(k)
                del self._seen[k]
            self._start(k, name, template)

    def _start(self, k: int, name: str, template: dict[str, Any]) -> None:
        pod = self.core.create_namespaced_pod(
            NS, {"metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}
        )
        self._seen[k] = pod.metadata.uid
        (container,) = template["spec"]["containers"]
        if container["image"] in self.broken:
            status: dict[str, Any] = {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "raftkv",
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ImagePullBackOff"}},
                    }
                ],
            }
        else:
            status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        self.core.patch_namespaced_pod_status(name, NS, {"status": status}, _content_type=MERGE)
        if container["image"] not in self.broken:
            member_id = self._member_id(k)
            if member_id is not None:
                self.members.start(k, member_id)

    def _member_id(self, k: int) -> int | None:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        ids = (cast("dict[str, Any]", obj).get("status") or {}).get("memberIDs") or []
        found = [m["id"] for m in ids if m["ordinal"] == k]
        return int(found[0]) if found else None


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with start_emulator() as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


@pytest.fixture
def api(server: EmulatorThread) -> Iterator[ApiClient]:
    with ApiClient(kubernetes.client.Configuration(host=server.url)) as client:
        yield client


def raftkv(image: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {
            "replicas": 3,
            "image": image,
            "upgrade": {"stabilizationSeconds": 0, "timeoutSeconds": 20},
        },
    }


def plain(api: ApiClient, obj: Any) -> dict[str, Any]:
    out = api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return cast("dict[str, Any]", out)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status.get("conditions", []) if c["type"] == kind]
    return dict(found)


def printer_cell(obj: dict[str, Any], column: str) -> Any:
    """What ``kubectl get rkv`` prints in ``column``: the CRD's jsonPath, resolved."""
    (version,) = load_crd()["spec"]["versions"]
    (col,) = [c for c in version["additionalPrinterColumns"] if c["name"] == column]
    node: Any = obj
    for part in col["jsonPath"].strip(".").split("."):
        node = (node or {}).get(part)
    return node


def test_rolling_image_change_stop_on_a_broken_image_and_revert(
    server: EmulatorThread, api: ApiClient
) -> None:
    core: Any = kubernetes.client.CoreV1Api(api)
    apps: Any = kubernetes.client.AppsV1Api(api)
    custom: Any = kubernetes.client.CustomObjectsApi(api)
    members = RollingMembers()

    def rkv() -> dict[str, Any]:
        return cast(
            "dict[str, Any]", custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv")
        )

    def status() -> dict[str, Any]:
        return dict(rkv().get("status") or {})

    def set_image(image: str) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "kv", {"spec": {"image": image}}
        )

    def settled(image: str) -> dict[str, Any] | None:
        """Every pod at the template of ``image``, the report of this generation."""
        obj = rkv()
        s = dict(obj.get("status") or {})
        sts = apps.read_namespaced_stateful_set("kv", NS)
        if sts.spec.template.spec.containers[0].image != image:
            return None
        revision = sts.spec.template.metadata.labels[REVISION_LABEL]
        pods = core.list_namespaced_pod(NS).items
        ok = (
            len(pods) == 3
            and all(p.metadata.labels.get(REVISION_LABEL) == revision for p in pods)
            and s.get("observedGeneration") == obj["metadata"]["generation"]
            and s.get("conditions")
            and condition(s, "Ready")["status"] == "True"
            and (s.get("rollout") or {}).get("phase") == "Complete"
        )
        return s if ok else None

    def events_with(
        uid: str, wanted: tuple[str, str]
    ) -> list[tuple[str | None, str | None]] | None:
        """(reason, type) of the RaftKV's Events, once ``wanted`` is among them."""
        found = [
            (e.reason, e.type)
            for e in core.list_namespaced_event(NS).items
            if e.involved_object.uid == uid
        ]
        return found if wanted in found else None

    with (
        OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members),
        Controller(api, members) as controller,
    ):
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, raftkv("raftkv:1")
        )
        uid = created["metadata"]["uid"]
        first = wait_for(
            "3 members at raftkv:1",
            lambda: settled("raftkv:1"),
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        assert first["rollout"]["progress"] == "3/3"
        assert condition(first, "Rolling")["status"] == "False"
        assert condition(first, "Rolling")["reason"] == "UpToDate"
        sts = apps.read_namespaced_stateful_set("kv", NS)
        assert sts.spec.update_strategy.type == "OnDelete"
        kubernetes_validate.validate(plain(api, sts), K8S_VERSION, strict=True)
        old_revision = first["rollout"]["targetRevision"]
        assert controller.recreated == []

        # --- an image change rolls: followers first (highest ordinal), the leader last
        seen_progress: set[str] = set()

        def rolled() -> dict[str, Any] | None:
            obj = rkv()
            cell = printer_cell(obj, "Updated")
            if cell:
                seen_progress.add(cell)
            return settled("raftkv:2")

        set_image("raftkv:2")
        second = wait_for("the roll to raftkv:2", rolled, timeout=TIMEOUT, ignore=ApiException)
        assert controller.recreated == [2, 1, 0], "followers first, the leader last"
        assert [c for c in members.calls if c[0] == "transfer"] == [("transfer", 2)]
        assert members.leader == 2
        assert second["rollout"]["targetRevision"] != old_revision
        assert second["rollout"]["current"] == ""
        # The report is written once per pass (several steps), so not every value shows.
        assert "3/3" in seen_progress
        assert seen_progress <= {"0/3", "1/3", "2/3", "3/3"}, seen_progress
        assert printer_cell(rkv(), "Updated") == "3/3"
        assert second.get("restartInFlight") is None
        sts = apps.read_namespaced_stateful_set("kv", NS)
        kubernetes_validate.validate(plain(api, sts), K8S_VERSION, strict=True)
        reasons = wait_for(
            "the roll's Events",
            lambda: events_with(uid, ("RolloutComplete", "Normal")),
            timeout=TIMEOUT,
            ignore=ApiException,
        )
        for reason in (
            "StatefulSetUpdated",
            "RestartingMember",
            "MemberPodDeleted",
            "MemberBack",
            "MemberUpdated",
            "LeadershipTransferred",
            "RolloutComplete",
        ):
            assert (reason, "Normal") in reasons, (reason, reasons)

        # --- a broken image: the first member does not come back, the roll stops
        controller.broken.add("raftkv:broken")
        controller.recreated.clear()
        set_image("raftkv:broken")

        def stopped() -> dict[str, Any] | None:
            s = status()
            if not s.get("conditions") or condition(s, "Degraded")["reason"] != "RolloutStopped":
                return None
            return s

        third = wait_for("the roll to stop", stopped, timeout=TIMEOUT, ignore=ApiException)
        degraded = condition(third, "Degraded")
        assert degraded["status"] == "True"
        assert "ImagePullBackOff" in degraded["message"], degraded
        assert condition(third, "Rolling")["status"] == "False"
        assert condition(third, "Rolling")["reason"] == "RolloutStopped"
        assert third["rollout"]["phase"] == "Stopped"
        assert third["rollout"]["progress"] == "1/3"
        assert printer_cell(rkv(), "Updated") == "1/3"
        assert third["restartInFlight"]["ordinal"] == 2
        assert third["restartInFlight"]["failed"]
        # Many more passes, and still nothing else is touched.
        passes = metrics.count(metrics.RECONCILES, "wait")
        wait_for(
            "20 more passes",
            lambda: metrics.count(metrics.RECONCILES, "wait") >= passes + 20,
            timeout=TIMEOUT,
        )
        assert controller.recreated == [2], "no pod beyond the first is touched"
        wait_for(
            "the Warning Event",
            lambda: events_with(uid, ("RolloutStopped", "Warning")),
            timeout=TIMEOUT,
            ignore=ApiException,
        )

        # --- reverting replaces the member that never came back, and only it
        controller.recreated.clear()
        set_image("raftkv:2")
        fourth = wait_for(
            "the revert", lambda: settled("raftkv:2"), timeout=TIMEOUT, ignore=ApiException
        )
        assert controller.recreated == [2]
        assert fourth["rollout"]["targetRevision"] == second["rollout"]["targetRevision"]
        assert condition(fourth, "Degraded")["status"] == "False"
        assert fourth.get("restartInFlight") is None
        assert not controller.errors, controller.errors
