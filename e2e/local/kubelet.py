"""A tiny StatefulSet controller + kubelet for the local end-to-end run.

The Kubernetes stand-in stores objects but runs no controllers, so this harness plays
them, against the API only (never the emulator's store), polling every ``period``:

- StatefulSet controller: for each ordinal below ``spec.replicas`` it creates the PVC
  ``data-<sts>-<k>`` (with the ``kubernetes.io/pvc-protection`` finalizer) and the Pod;
  Pods at or above it are terminated.
- kubelet: a Pod is a real ``raftkv serve`` process on 127.0.0.1 whose environment is
  the StatefulSet's container env with ``valueFrom`` resolved (Secret, ConfigMap,
  downward API) and ``$(VAR)`` expanded, except the addresses, which come from the
  same :class:`~raftkv_operator.naming.Addressing` the operator uses. Its data dir is
  one directory per PVC uid; a process that exits is restarted (restartPolicy
  Always); a deleted Pod gets SIGTERM; Pod status (phase, Ready from ``/readyz``) is
  patched back.
- PVC protection: a deleted PVC disappears (and its directory is wiped) only once no
  process uses it.
- Secret volumes: written in the kubelet's AtomicWriter layout and refreshed in place
  every ``secret_sync_period`` (a renewed certificate reaches running members).
- Images: every image runs ``raftkv serve`` from this checkout, except those a test
  lists in ``broken_images``: a pod of one gets no process and reports
  ``ImagePullBackOff``, as a real kubelet does for an image it cannot pull.
- Init containers of member pods run to completion before the member starts
  (``kubelet_init.py``); CronJobs, Jobs and Job pods (the backups) are played by
  ``kubelet_batch.py``; a deleted StatefulSet's members are stopped and its pods deleted.

Every process is reaped by :meth:`Kubelet.close`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes
from kubelet_batch import BatchControllers
from kubelet_init import InitContainers
from kubernetes.client import ApiClient, ApiException

from raftkv_operator import naming as n
from support.members import serve_command, spawn_member

log = logging.getLogger("e2e.kubelet")

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
#: Ordinals the loopback addressing can serve (one port digit).
MAX_ORDINALS = 10


@dataclass
class Proc:
    pod: str
    ordinal: int
    pvc_uid: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    args: list[str]
    env: dict[str, str]
    terminating_since: float | None = None
    restarts: int = 0


@dataclass
class Kubelet:
    api_url: str
    root: Path
    addressing: n.Addressing
    namespace: str = "default"
    period: float = 0.1
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: dict[str, bool] = field(default_factory=dict)
    _exited_at: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: PVC uids whose node is gone (:meth:`lose`): nothing runs on them again.
    lost: set[str] = field(default_factory=set)
    #: Images that "cannot be pulled": their pods never run (see the module docstring).
    broken_images: set[str] = field(default_factory=set)
    #: Pods waiting on an image in ``broken_images``, with that image.
    _unpullable: dict[str, str] = field(default_factory=dict)
    #: Seconds between refreshes of mounted Secret volumes (the real kubelet's sync
    #: period is about a minute; a test wants the rotation sooner).
    secret_sync_period: float = 1.0
    #: Per pod, its Secret volumes: (Secret name, local directory).
    _secret_volumes: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    #: Per local volume directory, the Secret data (base64) last written there.
    _secret_payloads: dict[Path, dict[str, str]] = field(default_factory=dict)
    _secrets_synced_at: float = 0.0

    def __post_init__(self) -> None:
        self.api = ApiClient(kubernetes.client.Configuration(host=self.api_url))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        # Like the kubelet's HTTPS probes: the certificate is not verified.
        self.http = httpx.Client(timeout=0.5, verify=False)
        # CronJobs, Jobs and their pods; init containers of member pods.
        self.batch = BatchControllers(self)
        self.init = InitContainers(self)
        #: StatefulSets seen on the last pass: name -> (uid, member selector).
        self._sts_seen: dict[str, tuple[str, str]] = {}
        self._sts_seen_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Kubelet:
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self.batch.close()
            self.init.close()
            for proc in self.procs.values():
                if proc.popen.poll() is None:
                    proc.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 8
            for proc in self.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                if proc.popen.poll() is None:
                    proc.popen.kill()
                    proc.popen.wait(timeout=5)
            self.procs.clear()
        self.http.close()
        self.api.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # the test asserts on these
                log.exception("kubelet sync failed")
                self.errors.append(repr(exc))
            self._stop.wait(self.period)

    # ------------------------------------------------------------------ test hooks

    def kill(self, pod: str) -> None:
        """SIGKILL the member process (a crash); the kubelet restarts it."""
        with self._lock:
            self.procs[pod].popen.kill()

    def wipe(self, pod: str) -> None:
        """Lose the pod's data: kill it and empty its volume; it restarts on nothing."""
        with self._lock:
            proc = self.procs[pod]
            proc.popen.kill()
            proc.popen.wait(timeout=5)
            shutil.rmtree(self._dir(proc.pvc_uid), ignore_errors=True)

    def lose(self, pod: str) -> None:
        """The pod's node is gone, with its volume: the member is killed and never
        restarted on that volume; a new volume (after its PVC is deleted) works."""
        with self._lock:
            proc = self.procs[pod]
            self.lost.add(proc.pvc_uid)
            proc.popen.kill()
            proc.popen.wait(timeout=5)

    def pid(self, pod: str) -> int | None:
        proc = self.procs.get(pod)
        return proc.popen.pid if proc is not None else None

    def logs(self, pod: str) -> str:
        proc = self.procs.get(pod)
        if proc is None:
            return ""
        return proc.log_path.read_text(errors="replace")[-4000:]

    # ------------------------------------------------------------------ one round

    def sync(self) -> None:
        ns = self.namespace
        for sts in self.apps.list_namespaced_stateful_set(ns).items:
            self._sync_statefulset(self.api.sanitize_for_serialization(sts))
        with self._lock:
            self._reap()
            self._sync_pvcs()
            self._report()
            self._sync_deleted_statefulsets()
            self.batch.sync()
        self._refresh_secrets()

    def _sync_statefulset(self, sts: JSON) -> None:
        ns, name = self.namespace, sts["metadata"]["name"]
        replicas = int(sts["spec"].get("replicas") or 0)
        labels = sts["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = {
            p.metadata.name: p
            for p in self.core.list_namespaced_pod(ns, label_selector=selector).items
        }
        pvcs = {
            p.metadata.name: p
            for p in self.core.list_namespaced_persistent_volume_claim(
                ns, label_selector=selector
            ).items
        }
        claim = sts["spec"]["volumeClaimTemplates"][0]
        for k in range(replicas):
            pod_name, pvc_name = f"{name}-{k}", f"{claim['metadata']['name']}-{name}-{k}"
            pvc = pvcs.get(pvc_name)
            if pvc is None:
                pvc = self.core.create_namespaced_persistent_volume_claim(
                    ns,
                    {
                        "metadata": {
                            "name": pvc_name,
                            "labels": labels,
                            "finalizers": [PVC_PROTECTION],
                        },
                        "spec": claim["spec"],
                    },
                )
                self.core.patch_namespaced_persistent_volume_claim_status(
                    pvc_name, ns, {"status": {"phase": "Bound"}}, _content_type=MERGE
                )
            if pvc.metadata.deletion_timestamp:
                continue  # the real controller also waits for a deleted claim to go
            if pod_name not in pods:
                pods[pod_name] = self.core.create_namespaced_pod(
                    ns,
                    {
                        "metadata": {
                            "name": pod_name,
                            "labels": sts["spec"]["template"]["metadata"]["labels"],
                        },
                        "spec": sts["spec"]["template"]["spec"],
                    },
                )
                with self._lock:
                    self._ready.pop(pod_name, None)  # a new Pod object has no status yet
                    self._unpullable.pop(pod_name, None)
                    old = self.procs.get(pod_name)
                    if old is not None and old.popen.poll() is None:
                        # The Pod was deleted under a running member: stop it first
                        # (SIGTERM, grace period); the new Pod starts once it exited.
                        if old.terminating_since is None:
                            old.terminating_since = time.monotonic()
                            old.popen.send_signal(signal.SIGTERM)
                        continue
                    self.procs.pop(pod_name, None)
            with self._lock:
                if pod_name not in self.procs:
                    self._start(sts, k, pod_name, pvc.metadata.uid)
        with self._lock:
            for pod_name, proc in self.procs.items():
                gone = pod_name not in pods and proc.popen.poll() is None
                if (proc.ordinal >= replicas or gone) and proc.terminating_since is None:
                    proc.terminating_since = time.monotonic()
                    proc.popen.send_signal(signal.SIGTERM)
            for listed in list(pods):
                ordinal = n.ordinal_of(listed, name)
                running = self.procs.get(listed)
                if (
                    ordinal is not None
                    and ordinal >= replicas
                    and (running is None or running.popen.poll() is not None)
                ):
                    with contextlib.suppress(ApiException):
                        self.core.delete_namespaced_pod(listed, ns)
                    self.procs.pop(listed, None)

    def _reap(self) -> None:
        """Restart exited members (restartPolicy Always), with a short back-off; finish
        terminations that overran the grace period."""
        now = time.monotonic()
        for pod_name, proc in list(self.procs.items()):
            code = proc.popen.poll()
            if proc.terminating_since is not None:
                if code is None and now - proc.terminating_since > 30:
                    proc.popen.kill()
                elif code is not None:
                    self.procs.pop(pod_name)
                    self._ready.pop(pod_name, None)
                continue
            if code is None or proc.pvc_uid in self.lost:
                continue
            exited = self._exited_at.setdefault(pod_name, now)
            if now - exited < 0.5:
                continue
            del self._exited_at[pod_name]
            log.info("%s exited with %s; restarting", pod_name, code)
            proc.popen = self._spawn(proc.args, proc.env, proc.log_path)
            proc.restarts += 1

    def _sync_pvcs(self) -> None:
        for pvc in self.core.list_namespaced_persistent_volume_claim(self.namespace).items:
            meta = pvc.metadata
            if not meta.deletion_timestamp:
                continue
            in_use = any(
                p.pvc_uid == meta.uid and p.popen.poll() is None for p in self.procs.values()
            )
            if in_use:
                continue
            for pod_name in [p for p, proc in self.procs.items() if proc.pvc_uid == meta.uid]:
                self.procs.pop(pod_name)
            shutil.rmtree(self._dir(meta.uid), ignore_errors=True)
            with contextlib.suppress(ApiException):
                self.core.patch_namespaced_persistent_volume_claim(
                    meta.name,
                    self.namespace,
                    {"metadata": {"finalizers": None}},
                    _content_type=MERGE,
                )

    def _sync_deleted_statefulsets(self) -> None:
        """A StatefulSet that is gone (its RaftKV was deleted): its member processes get
        SIGTERM (``_reap`` drops them once they exited) and its pods are deleted, as
        the garbage collector deletes the pods a real StatefulSet owns. Its claims are
        the operator's to delete; they go once no process uses them (``_sync_pvcs``).
        Init containers of pods that are gone are stopped. Every half second: two
        list calls are too many for each pass."""
        if time.monotonic() - self._sts_seen_at < 0.5:
            return
        self._sts_seen_at = time.monotonic()
        live = {
            str(s.metadata.name): s
            for s in self.apps.list_namespaced_stateful_set(self.namespace).items
        }
        for name, (uid, selector) in list(self._sts_seen.items()):
            if name in live and live[name].metadata.uid == uid:
                continue
            log.info("statefulset %s is gone: stopping its members", name)
            for pod_name, proc in self.procs.items():
                if self._owner(pod_name) == name and proc.terminating_since is None:
                    proc.terminating_since = time.monotonic()
                    if proc.popen.poll() is None:
                        proc.popen.send_signal(signal.SIGTERM)
            for pod in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items:
                self._unpullable.pop(str(pod.metadata.name), None)
                if not pod.metadata.owner_references:
                    with contextlib.suppress(ApiException):
                        self.core.delete_namespaced_pod(pod.metadata.name, self.namespace)
            del self._sts_seen[name]
        for name, sts in live.items():
            labels = sts.spec.selector.match_labels or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            self._sts_seen[name] = (str(sts.metadata.uid), selector)
        pods = {str(p.metadata.name) for p in self.core.list_namespaced_pod(self.namespace).items}
        self.init.forget(pods)

    def _report(self) -> None:
        self._report_unpullable()
        for pod_name, proc in self.procs.items():
            ready = False
            if proc.popen.poll() is None and proc.terminating_since is None:
                url = self.addressing.client_url(
                    self._owner(pod_name), self.namespace, proc.ordinal
                )
                if proc.env.get("RAFTKV_ADVERTISE_CLIENT_URL", "").startswith("https://"):
                    url = "https://" + url.split("://", 1)[1]  # spec.tls: HTTPS probes
                try:
                    ready = self.http.get(url + "/readyz").status_code == 200
                except httpx.HTTPError:
                    ready = False
            if self._ready.get(pod_name) == ready:
                continue
            status = {
                "phase": "Running" if proc.popen.poll() is None else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            }
            if self._patch_pod_status(pod_name, status):
                self._ready[pod_name] = ready

    def _report_unpullable(self) -> None:
        """Pods of a broken image: Pending, not Ready, the container waiting in
        ``ImagePullBackOff`` (what the operator reads as "does not run")."""
        for pod_name, image in list(self._unpullable.items()):
            if self._ready.get(pod_name) is False:
                continue
            status = {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "raftkv",
                        "image": image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": "ImagePullBackOff",
                                "message": f'Back-off pulling image "{image}"',
                            }
                        },
                    }
                ],
            }
            if self._patch_pod_status(pod_name, status):
                self._ready[pod_name] = False
            else:
                self._unpullable.pop(pod_name, None)

    def _patch_pod_status(self, pod_name: str, status: JSON) -> bool:
        """Write a pod's status; False when the pod is gone meanwhile."""
        try:
            self.core.patch_namespaced_pod_status(
                pod_name, self.namespace, {"status": status}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return False
        return True

    # ------------------------------------------------------------------ processes

    def _owner(self, pod_name: str) -> str:
        return pod_name.rsplit("-", 1)[0]

    def _dir(self, pvc_uid: str) -> Path:
        return self.root / "volumes" / pvc_uid

    def _start(self, sts: JSON, ordinal: int, pod_name: str, pvc_uid: str) -> None:
        name = sts["metadata"]["name"]
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        if container.get("image") in self.broken_images:
            if pod_name not in self._unpullable:
                log.info("%s: image %s cannot be pulled", pod_name, container["image"])
            self._unpullable[pod_name] = container["image"]
            return
        env = self._resolve_env(container.get("env") or [], pod_name)
        env = self._mount_secrets(sts, container, pod_name, env)
        data_dir = self._dir(pvc_uid)
        data_dir.mkdir(parents=True, exist_ok=True)
        # spec.tls: the ports the member serves over TLS get https:// addresses; during
        # a TLS transition (accept-plain) the template's advertised scheme says which.
        client_scheme = _scheme(env, "RAFTKV_ADVERTISE_CLIENT_URL", "RAFTKV_CERT_FILE")
        peer_scheme = _scheme(env, "RAFTKV_ADVERTISE_PEER_URL", "RAFTKV_PEER_CERT_FILE")

        def at(url: str, scheme: str) -> str:
            return f"{scheme}://{url.split('://', 1)[1]}"

        peer_url = at(self.addressing.peer_url(name, self.namespace, ordinal), peer_scheme)
        client_url = at(self.addressing.client_url(name, self.namespace, ordinal), client_scheme)
        env.update(
            {
                "RAFTKV_DATA_DIR": str(data_dir),
                "RAFTKV_LISTEN_CLIENT": client_url.split("://", 1)[1],
                "RAFTKV_LISTEN_PEER": peer_url.split("://", 1)[1],
                "RAFTKV_ADVERTISE_CLIENT_URL": client_url,
                "RAFTKV_ADVERTISE_PEER_URL": peer_url,
                "RAFTKV_DISCOVERY_ENDPOINTS": ",".join(
                    at(self.addressing.client_url(name, self.namespace, k), client_scheme)
                    for k in range(MAX_ORDINALS)
                ),
                **self.extra_env,
            }
        )
        if not self.init.done(sts, ordinal, pod_name, pvc_uid, env):
            return  # the member starts once its init containers succeeded
        args = serve_command()
        # Quorum-loss recovery: the template's start command adds the flag on the pod
        # RAFTKV_FORCE_NEW_CLUSTER_POD names (objects.FORCE_COMMAND); this kubelet runs
        # `raftkv serve` itself, so it does the same.
        if env.get("RAFTKV_FORCE_NEW_CLUSTER_POD") == pod_name:
            args = [*args, "--force-new-cluster"]
        log_path = self.root / "logs" / f"{pod_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        popen = self._spawn(args, env, log_path)
        self.procs[pod_name] = Proc(pod_name, ordinal, pvc_uid, popen, log_path, args, env)
        self._ready.pop(pod_name, None)
        log.info("started %s (ordinal %d) on %s", pod_name, ordinal, client_url)

    def _spawn(
        self, args: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        return spawn_member(args, log_path, env=env, cwd=self.root, banner=True)

    def _mount_secrets(
        self, sts: JSON, container: JSON, pod_name: str, env: dict[str, str]
    ) -> dict[str, str]:
        """Secret volumes (spec.tls): each Secret's keys written as files under the
        pod's own directory, and env values under a mountPath pointed there. Written
        at pod start in the real kubelet's layout (:func:`write_secret_volume`) and
        refreshed in place by :meth:`_refresh_secrets`, so a renewed certificate
        reaches a running member as it does on a real node."""
        secrets = {
            v["name"]: v["secret"]["secretName"]
            for v in sts["spec"]["template"]["spec"].get("volumes") or []
            if "secret" in v
        }
        moved: dict[str, str] = {}
        volumes: list[tuple[str, Path]] = []
        for mount in container.get("volumeMounts") or []:
            secret_name = secrets.get(mount["name"])
            if secret_name is None:
                continue
            secret = self.core.read_namespaced_secret(secret_name, self.namespace)
            local = self.root / "secrets" / pod_name / mount["name"]
            data = {str(k): str(v) for k, v in (secret.data or {}).items()}
            write_secret_volume(local, {k: base64.b64decode(v) for k, v in data.items()})
            self._secret_payloads[local] = data
            volumes.append((secret_name, local))
            moved[mount["mountPath"]] = str(local)
        self._secret_volumes[pod_name] = volumes
        out = dict(env)
        for key, value in env.items():
            for mount_path, local_dir in moved.items():
                if value.startswith(mount_path + "/"):
                    out[key] = local_dir + value[len(mount_path) :]
        return out

    def _refresh_secrets(self) -> None:
        """Every ``secret_sync_period``: rewrite the Secret volumes of running pods
        whose Secret changed (a renewal), atomically, as the kubelet does. A Secret
        that is gone keeps its last content (the real kubelet does the same)."""
        now = time.monotonic()
        if now - self._secrets_synced_at < self.secret_sync_period:
            return
        self._secrets_synced_at = now
        with self._lock:
            volumes = [
                (pod_name, secret_name, local)
                for pod_name, mounted in self._secret_volumes.items()
                if pod_name in self.procs
                for secret_name, local in mounted
            ]
        current: dict[str, dict[str, str] | None] = {}
        for _, secret_name, _ in volumes:
            if secret_name in current:
                continue
            try:
                secret = self.core.read_namespaced_secret(secret_name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                current[secret_name] = None
                continue
            current[secret_name] = {str(k): str(v) for k, v in (secret.data or {}).items()}
        with self._lock:
            for pod_name, secret_name, local in volumes:
                data = current[secret_name]
                if data is None or self._secret_payloads.get(local) == data:
                    continue
                write_secret_volume(local, {k: base64.b64decode(v) for k, v in data.items()})
                self._secret_payloads[local] = data
                log.info("%s: refreshed the volume of Secret %s", pod_name, secret_name)

    def _resolve_env(self, entries: list[JSON], pod_name: str) -> dict[str, str]:
        """The container env as the kubelet computes it (valueFrom, then $(VAR))."""
        out: dict[str, str] = {}
        for entry in entries:
            if "value" in entry:
                value = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                    lambda m: out.get(m.group(1), m.group(0)),
                    str(entry["value"]),
                )
            else:
                source = entry["valueFrom"]
                if "fieldRef" in source:
                    assert source["fieldRef"]["fieldPath"] == "metadata.name"
                    value = pod_name
                elif "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    secret = self.core.read_namespaced_secret(ref["name"], self.namespace)
                    value = base64.b64decode(secret.data[ref["key"]]).decode()
                else:
                    ref = source["configMapKeyRef"]
                    cm = self.core.read_namespaced_config_map(ref["name"], self.namespace)
                    value = cm.data[ref["key"]]
            out[entry["name"]] = value
        return out


def _scheme(env: dict[str, str], advertised: str, cert: str) -> str:
    """The scheme a member's port is reached with: the template's advertised URL's,
    else https exactly when the port has a certificate."""
    url = env.get(advertised, "")
    if "://" in url:
        return url.split("://", 1)[0]
    return "https" if cert in env else "http"


def write_secret_volume(target: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``target`` as the kubelet's AtomicWriter does
    (pkg/volume/util/atomic_writer.go): the payload goes into a fresh timestamped
    directory, the ``..data`` symlink is swapped to it with one rename, and each
    visible file is a symlink ``key -> ..data/key``. A reader of ``target/key`` thus
    sees the whole old payload or the whole new one, never a mix, and the resolved
    file (inode) changes on every update."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    fresh = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    for key, value in files.items():
        path = fresh / key
        path.write_bytes(value)
        path.chmod(0o600)
    fresh.chmod(0o755)
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(fresh.name, tmp)
    os.rename(tmp, data_link)
    for key in files:
        link = target / key
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            os.symlink(f"..data/{key}", link)
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
            entry.unlink()
    if old is not None and old != fresh.name:
        shutil.rmtree(target / old, ignore_errors=True)
