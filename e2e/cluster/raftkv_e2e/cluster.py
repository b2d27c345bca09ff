"""One run of the suite against a cluster: the operator installation, the RaftKV under
test, the traffic, the observations and the cleanup."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx

from raftkv.client import Client, ListPage
from raftkv_e2e import day2, printer, state
from raftkv_e2e.config import CRD_NAME, OPERATOR_CONTAINER, RAFTKV_NAME, E2EConfig
from raftkv_e2e.install import Installer
from raftkv_e2e.kubectl import Kubectl, ToolError
from raftkv_e2e.metrics import MemberMetrics, parse_metrics
from raftkv_e2e.portforward import ForwardTLS, PortForward, tls_context
from raftkv_e2e.wait import NotYet, wait_for
from raftkv_e2e.workload import KV, Writer
from raftkv_e2e.writelog import WriteLog

log = logging.getLogger("e2e.cluster")

JSON = dict[str, Any]
GROUP = "raftkv.dev"
RKV = f"raftkvs.{GROUP}"
CLIENT_PORT = 2379
#: What the operator owns (see operator/raftkv_operator/objects.py), plus what the
#: built-in controllers derive from it; all must be gone after the RaftKV is deleted.
CHILD_KINDS = ",".join(
    (
        "statefulsets.apps",
        "controllerrevisions.apps",
        "services",
        "endpointslices.discovery.k8s.io",
        "secrets",
        "configmaps",
        "poddisruptionbudgets.policy",
        "pods",
        "persistentvolumeclaims",
    )
)


class Scenario:
    def __init__(
        self,
        config: E2EConfig,
        kubectl: Kubectl,
        name: str = RAFTKV_NAME,
        installer: Installer | None = None,
    ) -> None:
        self.config = config
        self.kubectl = kubectl
        self.name = name
        self.ns = config.namespace
        self.installer = installer if installer is not None else Installer(config, kubectl)
        self.writes = WriteLog()
        self.forward = PortForward(
            kubectl.binary, self.ns, f"svc/{self.name}-client", CLIENT_PORT, start_timeout=60
        )
        self.kv = KV(self.forward, self.writes, config.timeout)
        self.tls: ForwardTLS | None = None
        self.writer: Writer | None = None
        self.writers: list[Writer] = []
        self.created_namespace = False
        self.uid = ""
        self.owner_uids: set[str] = set()
        #: Other RaftKVs a step created in the namespace (a restore target), and other
        #: objects (a backup claim, a Secret): the cleanup deletes them, RaftKVs first
        #: while the operator still runs to remove their finalizers.
        self.siblings: list[Scenario] = []
        self.extra_objects: list[tuple[str, str]] = []

    def sibling(self, name: str) -> Scenario:
        """Another RaftKV in the same namespace, under the same installation; removed
        by this scenario's cleanup."""
        other = Scenario(self.config, self.kubectl, name, self.installer)
        other.created_namespace = False
        self.siblings.append(other)
        return other

    def track(self, kind: str, name: str) -> None:
        """An object a step created in the namespace, for the cleanup to delete."""
        if (kind, name) not in self.extra_objects:
            self.extra_objects.append((kind, name))

    def use_tls(self, ca_pem: bytes, *, plain_first: bool = False) -> ForwardTLS:
        """From now on the suite's own calls go over HTTPS to the client Service,
        trusting ``ca_pem`` and checking the Service's DNS name (``plain_first``
        while TLS is being turned on); returns the settings for writers."""
        tls = ForwardTLS(
            tls_context(ca_pem),
            day2.client_service_dns_name(self.name, self.ns),
            plain_first=plain_first,
        )
        self.kv.close()
        self.kv = KV(self.forward, self.writes, self.config.timeout, tls=tls)
        self.tls = tls
        return tls

    # ------------------------------------------------------------------ objects

    def raftkv(self) -> JSON:
        obj = self.kubectl.get(RKV, self.name, self.ns)
        if obj is None:
            raise AssertionError(f"RaftKV {self.ns}/{self.name} does not exist")
        return obj

    def manifest(self, replicas: int, extra: JSON | None = None) -> JSON:
        spec: JSON = {"replicas": replicas, "imagePullPolicy": self.config.pull_policy}
        if self.config.storage_class:
            spec["storage"] = {"storageClassName": self.config.storage_class}
        spec.update(extra or {})
        return {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "RaftKV",
            "metadata": {"name": self.name, "namespace": self.ns},
            "spec": spec,
        }

    def pods(self) -> list[JSON]:
        """The member pods (the members' selector: not the backup Jobs' pods, which
        share the instance label)."""
        return self.kubectl.list(
            "pods", self.ns, f"app.kubernetes.io/name=raftkv,app.kubernetes.io/instance={self.name}"
        )

    def statefulset(self) -> JSON | None:
        return self.kubectl.get("statefulsets.apps", self.name, self.ns)

    def pvc_names(self) -> list[str]:
        items = self.kubectl.list(
            "persistentvolumeclaims", self.ns, f"app.kubernetes.io/instance={self.name}"
        )
        return sorted(p["metadata"]["name"] for p in items)

    def event_reasons(self) -> list[str]:
        return state.event_reasons(self.kubectl.list("events", self.ns), self.uid)

    def member_ids(self) -> dict[int, int]:
        return state.member_ids(self.raftkv())

    # ------------------------------------------------------------------ steps

    def prepare_namespace(self) -> None:
        if self.kubectl.get("namespace", self.ns) is None:
            self.kubectl.api("create", "namespace", self.ns)
            self.created_namespace = True
            self.kubectl.api(
                "label", "namespace", self.ns, "app.kubernetes.io/created-by=raftkv-e2e"
            )
        log.info("RaftKV namespace %s (created: %s)", self.ns, self.created_namespace)

    def preflight(self) -> None:
        """Problems that would only show up as a long wait: an operator that does not
        watch our namespace, no StorageClass for the claims."""
        dep = self.installer.operator_deployment()
        problem = state.operator_watch_problem(dep, self.ns, OPERATOR_CONTAINER)
        if problem:
            raise AssertionError(problem)
        if self.config.storage_class is None:
            try:
                classes = self.kubectl.list("storageclasses.storage.k8s.io")
            except ToolError as exc:
                log.info("cannot list StorageClasses (%s); trusting the cluster default", exc)
                return
            if state.default_storage_class(classes) is None:
                names = [c["metadata"]["name"] for c in classes]
                raise AssertionError(
                    f"the cluster has no default StorageClass (it has {names}): "
                    "set RAFTKV_E2E_STORAGE_CLASS"
                )

    def create(self, replicas: int, extra: JSON | None = None) -> None:
        """Create the RaftKV (``extra``: more spec fields, e.g. ``restore``)."""
        self.kubectl.apply(self.manifest(replicas, extra))
        self.uid = self.raftkv()["metadata"]["uid"]
        self.owner_uids.add(self.uid)

    def wait_statefulset_image(self) -> JSON:
        """The StatefulSet exists and runs the image under test; fails fast otherwise
        (members on a wrong image would only show up as an image pull error later)."""
        sts: JSON = wait_for(
            "the operator to create the StatefulSet",
            self.statefulset,
            self.config.timeout,
        )
        self.owner_uids.add(sts["metadata"]["uid"])
        containers = sts["spec"]["template"]["spec"]["containers"]
        images = {c["name"]: c.get("image") for c in containers}
        if set(images.values()) != {self.config.image}:
            raise AssertionError(
                f"the members run {images}, not {self.config.image}: the operator's member "
                "image (RAFTKV_MEMBER_IMAGE, the chart's image values) is not wired up"
            )
        return sts

    def scale(self, replicas: int) -> None:
        log.info("kubectl scale rkv/%s --replicas=%d", self.name, replicas)
        self.kubectl.api("scale", f"rkv/{self.name}", f"--replicas={replicas}", "-n", self.ns)

    def in_sync(self, replicas: int) -> JSON:
        """The RaftKV, the StatefulSet, the pods and Raft itself all agree on
        ``replicas`` healthy voters; raises :class:`NotYet` with the first gap."""
        pods = self.pods()
        problems = state.pod_problems(pods)
        if problems:
            raise AssertionError(f"members cannot start: {problems}")
        obj = self.raftkv()
        why = (
            state.raftkv_not_in_sync(obj, replicas)
            or state.statefulset_not_in_sync(self.statefulset(), replicas)
            or state.pods_not_in_sync(pods, self.name, replicas)
        )
        if why:
            raise NotYet(why)
        members = self.kv.client.members()
        names = sorted(m.name for m in members)
        want = sorted(f"{self.name}-{k}" for k in range(replicas))
        if names != want or any(m.learner for m in members):
            raise NotYet(f"Raft members are {[(m.name, m.learner) for m in members]}")
        ids = {m.id for m in members}
        if ids != set(state.member_ids(obj).values()):
            raise NotYet(f"Raft member ids {ids} differ from status.memberIDs")
        return obj

    def wait_in_sync(self, replicas: int, timeout: float | None = None) -> JSON:
        limit = self.config.timeout if timeout is None else timeout
        obj: JSON = wait_for(
            f"{replicas} members in sync", lambda: self.in_sync(replicas), limit, interval=3
        )
        return obj

    def leader(self) -> tuple[int, str, int]:
        """(member id, pod name, term) of the current leader, as the members see it."""

        def known() -> tuple[int, str, int] | None:
            st = self.kv.client.status()
            if not st.leader:
                raise NotYet("no leader")
            names = {m.id: m.name for m in st.members}
            if st.leader not in names:
                raise NotYet(f"leader {st.leader} not among {names}")
            return st.leader, names[st.leader], st.term

        found: tuple[int, str, int] = wait_for("a leader", known, self.config.timeout, 1)
        return found

    def printer_row(self) -> printer.RaftKVRow:
        out = self.kubectl.api("get", "rkv", self.name, "-n", self.ns).stdout
        rows = printer.raftkv_rows(out)
        if len(rows) != 1:
            raise AssertionError(f"`kubectl get rkv {self.name}` printed {out!r}")
        return rows[0]

    def scrape(self, pod: str) -> MemberMetrics:
        with PortForward(self.kubectl.binary, self.ns, f"pod/{pod}", CLIENT_PORT) as fwd:
            response = httpx.get(f"{fwd.url()}/metrics", timeout=10)
            response.raise_for_status()
            return parse_metrics(response.text)

    def start_writer(
        self, prefix: str = "e2e/w/", *, tls: ForwardTLS | None = None, retries: int = 3
    ) -> Writer:
        """The running background writer, or a new one (through its own forward) when
        none runs. Keys are ``<prefix>NNNNNNN``: give each writer its own prefix."""
        if self.writer is None or self.writer.stopped:
            forward = PortForward(
                self.kubectl.binary, self.ns, f"svc/{self.name}-client", CLIENT_PORT
            )
            rate = self.config.write_rate
            self.writer = Writer(forward, self.writes, prefix, rate, tls=tls, retries=retries)
            self.writers.append(self.writer.start())
        return self.writer

    def list_all(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its value (linearizable, paged)."""
        listed: dict[str, bytes] = {}
        start_after: str | None = None
        while True:

            def page_after(client: Client, after: str | None = start_after) -> ListPage:
                return client.list_page(prefix, 1000, start_after=after)

            page = self.kv.retrying(f"list {prefix}", page_after)
            listed.update((item.key, item.value) for item in page.items)
            if not page.more or not page.items:
                return listed
            start_after = page.items[-1].key

    def stop_writer(self) -> Writer:
        writer = self.writer
        if writer is None:
            raise AssertionError("the background writer was never started")
        writer.stop()
        return writer

    # ------------------------------------------------------------------ teardown

    def delete_raftkv(self) -> list[str]:
        """Delete the RaftKV and wait until every object it owned is gone; returns the
        PVCs left behind (tolerated: a retention policy may keep data)."""
        self.kubectl.delete(RKV, self.name, self.ns)
        wait_for(
            "the RaftKV to be deleted (the operator removes its finalizer)",
            lambda: self.kubectl.get(RKV, self.name, self.ns) is None,
            self.config.timeout,
        )

        def no_orphans() -> tuple[list[str]]:
            items = self.kubectl.list(CHILD_KINDS, self.ns)
            orphans, retained = state.find_orphans(items, self.name, self.owner_uids)
            if orphans:
                raise NotYet(f"still present: {orphans}")
            return (retained,)  # truthy even when nothing was retained

        retained: tuple[list[str]] = wait_for(
            "the RaftKV's objects to be garbage-collected", no_orphans, self.config.timeout
        )
        return retained[0]

    def delete_namespace(self) -> None:
        if not self.created_namespace:
            return
        self.kubectl.delete("namespace", self.ns)
        wait_for(
            f"namespace {self.ns} to be deleted",
            lambda: self.kubectl.get("namespace", self.ns) is None,
            self.config.timeout,
        )
        self.created_namespace = False

    def uninstall(self) -> None:
        """The uninstall the suite checks: RaftKV, then the operator, then leftovers."""
        self.installer.uninstall()

        def nothing_left() -> bool:
            left = self.installer.remaining()
            if left:
                raise NotYet(f"still present: {[str(r) for r in left]}")
            return True

        wait_for("the operator's objects to be gone", nothing_left, self.config.timeout)

    def close(self) -> None:
        """Stop traffic and forwards (always), then, unless RAFTKV_E2E_KEEP, remove
        whatever the run created and is still there. Raises if cleanup failed, after
        trying every step."""
        errors: list[str] = []
        for writer in self.writers:
            try:
                writer.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        self.kv.close()
        self.forward.close()
        for other in self.siblings:
            other.kv.close()
            other.forward.close()
        if self.config.keep:
            log.warning(
                "RAFTKV_E2E_KEEP=1: left RaftKV %s/%s and the operator installed; clean up "
                "with `kubectl delete rkv -n %s --all` and `kubectl delete -k manifests/` "
                "(or helm uninstall + kubectl delete crd raftkvs.raftkv.dev)",
                self.ns,
                self.name,
                self.ns,
            )
            return
        steps = []
        if self.installer.installed:
            for other in self.siblings:
                steps.append((f"delete RaftKV {other.name}", other._force_delete_raftkv))
            steps.append(("delete the RaftKV", self._force_delete_raftkv))
        steps.append(("delete the objects the steps created", self.delete_extra_objects))
        steps.append(("delete the namespace", self.delete_namespace))
        if self.installer.installed:
            steps.append(("uninstall the operator", self.uninstall))
        for what, step in steps:
            try:
                step()
            except (AssertionError, ToolError) as exc:
                log.error("cleanup: %s failed: %s", what, exc)
                errors.append(f"{what}: {exc}")
        if errors:
            raise AssertionError(f"cleanup left the cluster dirty: {errors}")

    def delete_extra_objects(self) -> None:
        """Delete what :meth:`track` recorded and wait until it is gone (a claim stays
        while a pod still mounts it)."""
        for kind, name in self.extra_objects:
            self.kubectl.delete(kind, name, self.ns)

        def gone() -> bool:
            left = [f"{k}/{n}" for k, n in self.extra_objects if self.kubectl.get(k, n, self.ns)]
            if left:
                raise NotYet(f"still present: {left}")
            return True

        if self.extra_objects:
            wait_for("the objects the steps created to be gone", gone, self.config.timeout)
        self.extra_objects.clear()

    def _force_delete_raftkv(self) -> None:
        if self.kubectl.get("customresourcedefinitions.apiextensions.k8s.io", CRD_NAME) is None:
            return  # the install failed before the CRD existed: no RaftKV either
        try:
            self.delete_raftkv()
        except AssertionError:
            # An operator that no longer runs cannot remove its finalizer.
            self.kubectl.api(
                "patch",
                RKV,
                self.name,
                "-n",
                self.ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
            raise

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> str:
        """What a person would look at first; bounded, never raises."""
        k = dataclasses.replace(self.kubectl, request_timeout=10)
        ns = self.ns
        parts = [
            (
                "objects",
                k.text(
                    "get",
                    f"{RKV},statefulsets,pods,pvc,services,pdb,cronjobs,jobs",
                    "-n",
                    ns,
                    "-o",
                    "wide",
                ),
            ),
            ("RaftKV status", k.text("get", RKV, self.name, "-n", ns, "-o", "jsonpath={.status}")),
            *(
                (
                    f"RaftKV {other.name} status",
                    k.text("get", RKV, other.name, "-n", ns, "-o", "jsonpath={.status}"),
                )
                for other in self.siblings
            ),
            ("events", _tail(k.text("get", "events", "-n", ns, "--sort-by=.lastTimestamp"), 40)),
            ("operator log", _tail(self.installer.operator_logs(), 60)),
        ]
        try:
            pods = [p["metadata"]["name"] for p in self.pods()]
        except ToolError as exc:
            pods = []
            parts.append(("pods", str(exc)))
        for pod in pods:
            parts.append((f"log {pod}", _tail(k.text("logs", pod, "-n", ns, "--tail=25"), 25)))
        parts.append(("client forward", self.forward.describe()))
        if self.writer is not None:
            parts.append(("writer", self.writer.summary()))
        return "\n".join(f"--- {title}\n{body.rstrip()}" for title, body in parts)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])
