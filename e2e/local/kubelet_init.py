"""Init containers of member pods, as the kubelet runs them (``kubelet.py`` asks
:meth:`InitContainers.done` before it starts a member process).

Each init container of the pod template runs to completion, in order, as a local
process (``kubelet_containers.py``); only when all succeeded does the member start. A
failed one is run again after a back-off (10 s, doubling, at most 5 minutes: the
kubelet's CrashLoopBackOff), and ``status.initContainerStatuses`` says what happened
as a real kubelet says it (``waiting``/``running``/``terminated`` with the exit code and
the termination message, ``lastState`` while it waits to be retried), which is what the
operator's restore-failure path reads. Each runs in the background: :meth:`done`
only starts or checks a process, so the sync loop keeps serving the other pods.

The environment is the container's own, resolved as for the members, with the same
loopback addresses the kubelet gives the member (advertised and listen URLs, discovery
endpoints) for the variables the init container has; the member's data volume (the
claim template's name) is the pod's claim directory, so ``RAFTKV_DATA_DIR`` and the
data volume's mount path both lead there. The runs are per Pod object (uid): a new Pod
runs its init containers again, a restarted member process does not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelet_containers import ContainerRun, claim_dirs, start_container, volume_dirs
from kubernetes.client import ApiException

if TYPE_CHECKING:
    from kubelet import Kubelet

log = logging.getLogger("e2e.kubelet.init")

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
BACKOFF = 10.0
BACKOFF_MAX = 300.0


@dataclass
class PodInit:
    """The init containers of one Pod object."""

    uid: str
    #: Index of the init container running or next to run.
    index: int = 0
    run: ContainerRun | None = None
    restarts: int = 0
    retry_at: float = 0.0
    last: JSON | None = None
    done: bool = False
    statuses: list[JSON] = field(default_factory=list)
    attempts: int = 0


class InitContainers:
    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self.pods: dict[str, PodInit] = {}

    def done(self, sts: JSON, ordinal: int, pod_name: str, pvc_uid: str, urls: JSON) -> bool:
        """Whether the member of ``pod_name`` may start: all init containers succeeded.
        ``urls``: the loopback variables the kubelet gives the member (name -> value)."""
        template = sts["spec"]["template"]["spec"]
        inits = template.get("initContainers") or []
        if not inits:
            return True
        kubelet = self.kubelet
        try:
            pod: Any = kubelet.core.read_namespaced_pod(pod_name, kubelet.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        uid = str(pod.metadata.uid)
        state = self.pods.get(pod_name)
        if state is None or state.uid != uid:
            if state is not None and state.run is not None:
                state.run.stop()
            state = self.pods[pod_name] = PodInit(uid)
        if state.done:
            return True
        if state.run is not None:
            if state.run.poll() is None:
                return False
            terminated = state.run.terminated()
            state.run = None
            if terminated["exitCode"] != 0:
                state.last = terminated
                state.restarts += 1
                delay = min(BACKOFF * 2 ** (state.restarts - 1), BACKOFF_MAX)
                state.retry_at = time.monotonic() + delay
                log.info("%s: init container %d failed: %s", pod_name, state.index, terminated)
                self._report(pod_name, inits, state, {"waiting": {"reason": "CrashLoopBackOff"}})
                return False
            ended = self._status(inits[state.index], state, {"terminated": terminated})
            state.statuses.append(ended)
            state.index, state.restarts, state.last = state.index + 1, 0, None
            if state.index == len(inits):
                state.done = True
                self._report(pod_name, inits, state, None)
                return True
        if time.monotonic() < state.retry_at:
            return False
        container = inits[state.index]
        claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        data_dir = kubelet._dir(pvc_uid)
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            env = kubelet._resolve_env(container.get("env") or [], pod_name)
            env.update({k: v for k, v in urls.items() if k in env})
            mounts = volume_dirs(
                kubelet.core,
                kubelet.namespace,
                kubelet.root,
                pod_name,
                template,
                container,
                claim_dirs(kubelet),
                named={claim: data_dir},
            )
        except (ApiException, KeyError, ValueError) as exc:
            # A missing Secret, key or claim: the kubelet waits and tries again.
            why = {"reason": "CreateContainerConfigError", "message": str(exc)[-4096:]}
            state.retry_at = time.monotonic() + BACKOFF
            self._report(pod_name, inits, state, {"waiting": why})
            return False
        state.attempts += 1
        workdir = kubelet.root / "init" / pod_name / f"{state.index}-{state.attempts}"
        state.run = start_container(container, env, mounts, workdir)
        log.info("%s: started init container %s", pod_name, container.get("name"))
        self._report(pod_name, inits, state, {"running": {"startedAt": state.run.started_at}})
        return False

    def _status(self, container: JSON, state: PodInit, now: JSON) -> JSON:
        out: JSON = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": "terminated" in now and now["terminated"]["exitCode"] == 0,
            "restartCount": state.restarts,
            "state": now,
        }
        if state.last is not None:
            out["lastState"] = {"terminated": state.last}
        return out

    def _report(self, pod_name: str, inits: list[JSON], state: PodInit, now: JSON | None) -> None:
        statuses = list(state.statuses)
        if now is not None:
            statuses.append(self._status(inits[state.index], state, now))
        for waiting in inits[len(statuses) :]:
            statuses.append(
                {
                    "name": waiting["name"],
                    "image": waiting.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                }
            )
        status: JSON = {"initContainerStatuses": statuses}
        if not state.done:
            status["phase"] = "Pending"
            status["conditions"] = [
                {"type": "Initialized", "status": "False"},
                {"type": "Ready", "status": "False"},
            ]
        try:
            self.kubelet.core.patch_namespaced_pod_status(
                pod_name, self.kubelet.namespace, {"status": status}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def forget(self, live: set[str]) -> None:
        """Stop the init containers of pods that are gone (``live``: pod names)."""
        for pod_name in [p for p in self.pods if p not in live]:
            state = self.pods.pop(pod_name)
            if state.run is not None:
                state.run.stop()

    def close(self) -> None:
        for state in self.pods.values():
            if state.run is not None:
                state.run.stop()
        self.pods.clear()
