"""The CronJob controller, the Job controller and the kubelet of Job pods, for the
local end-to-end run (``kubelet.py`` calls :meth:`BatchControllers.sync` every pass).

What each plays, as far as the backup CronJob the operator renders needs it, through
the API only:

- CronJob controller: when the ``schedule`` (minute resolution, in ``timeZone`` or UTC)
  has a time due since ``status.lastScheduleTime`` (or the creation), it creates the Job
  ``<cronjob>-<minutes since the epoch>`` from ``jobTemplate``, owned by the CronJob;
  only the newest missed time runs (no ``startingDeadlineSeconds``, as the real one).
  ``suspend`` stops it; ``concurrencyPolicy: Forbid`` skips while a Job is active (the
  time is run once that one finished), ``Replace`` deletes the active one. Finished Jobs
  beyond ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are deleted, oldest
  first (their pods go with them: garbage collection by owner). ``status.active``,
  ``lastScheduleTime``, ``lastSuccessfulTime`` are written as the real one writes them.
- What the apiserver adds to a new Job: ``spec.selector`` on ``controller-uid`` and the
  labels ``controller-uid``, ``job-name`` and their ``batch.kubernetes.io/`` forms on
  the Job and its template.
- Job controller: one pod at a time (``generateName: <job>-``, owned by the Job, the
  template's labels); ``succeeded``/``failed``/``active`` counts, ``startTime``,
  ``completionTime``, the conditions ``SuccessCriteriaMet`` + ``Complete`` or
  ``FailureTarget`` + ``Failed`` (``BackoffLimitExceeded``, ``DeadlineExceeded``) with
  ``lastTransitionTime``; a failed pod is replaced (after 10 s, doubling) while
  ``failed <= backoffLimit``; past ``activeDeadlineSeconds`` the running pod is killed.
- kubelet: a Job pod is its single container's ``command`` run as a local process
  (``kubelet_containers.py``), with the client Service URL in its environment replaced
  by the loopback client URLs of that StatefulSet's Ready members, comma-joined (the
  CLI takes several ``--endpoints``), the way the Service would route it. Its end
  becomes the pod's ``phase`` and ``containerStatuses[0].state.terminated`` (exit code,
  termination message).

A Job pod whose object is gone (history limit, owner deleted) has its process stopped.
Every process is stopped and reaped by :meth:`BatchControllers.close`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import kubernetes
from croniter import croniter  # type: ignore[import-untyped]
from kubelet_containers import (
    ContainerRun,
    claim_dirs,
    now_rfc3339,
    start_container,
    volume_dirs,
)
from kubernetes.client import ApiException

from raftkv_operator import naming as n

if TYPE_CHECKING:
    from kubelet import Kubelet

log = logging.getLogger("e2e.kubelet.batch")

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
JOB_NAME = "job-name"
CONTROLLER_UID = "controller-uid"
BATCH_JOB_NAME = "batch.kubernetes.io/job-name"
BATCH_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
#: The real Job controller's back-off before replacing a failed pod, and its cap.
POD_BACKOFF = 10.0
POD_BACKOFF_MAX = 360.0
#: The real CronJob controller gives up on a schedule this far behind.
MAX_MISSED = 100


def due_time(
    schedule: str, since: datetime.datetime, now: datetime.datetime, tz: str | None
) -> datetime.datetime | None:
    """The newest time of ``schedule`` after ``since`` and not after ``now`` (None if
    none), evaluated in ``tz`` (an IANA name; UTC when None), to the minute."""
    zone = zoneinfo.ZoneInfo(tz) if tz else datetime.UTC
    it = croniter(schedule, since.astimezone(zone))
    found: datetime.datetime | None = None
    for _ in range(MAX_MISSED + 1):
        nxt = cast("datetime.datetime", it.get_next(datetime.datetime))
        if nxt > now:
            return found
        found = nxt
    return found  # too many missed: the newest we looked at, as good as any


def _time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _conditions(job: Mapping[str, Any]) -> dict[str, JSON]:
    status = job.get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}


def finished(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has finished, else None."""
    conds = _conditions(job)
    for kind in ("Complete", "Failed"):
        if kind in conds:
            return kind
    return None


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


@dataclass
class JobPod:
    """A Job pod the kubelet runs: its object's identity and the process."""

    name: str
    uid: str
    job: str
    run: ContainerRun
    reported: bool = False


class BatchControllers:
    """CronJob + Job controllers and the Job pods' kubelet (see the module docstring)."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self.namespace = kubelet.namespace
        # Any: the client's models are typed, the dicts we hand it are not.
        self.core: Any = kubelet.core
        self.batch: Any = kubernetes.client.BatchV1Api(kubelet.api)
        self.pods: dict[str, JobPod] = {}
        #: Job name -> when (monotonic) its next pod may be created after a failure.
        self._retry_at: dict[str, float] = {}
        #: Seconds between passes: the real CronJob controller looks every 10 s; a
        #: pass costs four list calls, too many to make on each of the kubelet's.
        self.period = 0.5
        self._synced_at = 0.0

    def _plain(self, obj: Any) -> JSON:
        api: Any = self.kubelet.api
        return cast("JSON", api.sanitize_for_serialization(obj))

    # ------------------------------------------------------------------ one pass

    def sync(self) -> None:
        if time.monotonic() - self._synced_at < self.period:
            return
        self._synced_at = time.monotonic()
        ns = self.namespace
        now = datetime.datetime.now(datetime.UTC)
        jobs = [self._plain(j) for j in self.batch.list_namespaced_job(ns).items]
        for cron in self.batch.list_namespaced_cron_job(ns).items:
            self._sync_cronjob(self._plain(cron), jobs, now)
        jobs = [self._plain(j) for j in self.batch.list_namespaced_job(ns).items]
        pods = [
            self._plain(p)
            for p in self.core.list_namespaced_pod(ns, label_selector=CONTROLLER_UID).items
        ]
        self._run_pods(pods)
        for job in jobs:
            uid = job["metadata"]["uid"]
            self._sync_job(job, [p for p in pods if _owned_by(p, uid)])

    def close(self) -> None:
        for pod in list(self.pods.values()):
            pod.run.stop()
        self.pods.clear()

    # ------------------------------------------------------------------ CronJob

    def _sync_cronjob(self, cron: JSON, jobs: list[JSON], now: datetime.datetime) -> None:
        meta, spec = cron["metadata"], cron["spec"]
        status = cron.get("status") or {}
        mine = [j for j in jobs if _owned_by(j, meta["uid"])]
        active = [j for j in mine if finished(j) is None]
        self._delete_history(spec, mine)
        patch: JSON = {}
        refs = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": j["metadata"]["name"],
                "namespace": self.namespace,
                "uid": j["metadata"]["uid"],
            }
            for j in active
        ]
        if refs != (status.get("active") or []):
            patch["active"] = refs or None
        done = [
            _time((j.get("status") or {}).get("completionTime"))
            for j in mine
            if finished(j) == "Complete"
        ]
        newest = max((t for t in done if t is not None), default=None)
        known = _time(status.get("lastSuccessfulTime"))
        if newest is not None and (known is None or newest > known):
            patch["lastSuccessfulTime"] = newest.strftime("%Y-%m-%dT%H:%M:%SZ")
        if not spec.get("suspend"):
            since = _time(status.get("lastScheduleTime")) or _time(meta["creationTimestamp"])
            assert since is not None
            due = due_time(spec["schedule"], since, now, spec.get("timeZone"))
            if due is not None and self._start_job(cron, due, active):
                patch["lastScheduleTime"] = due.astimezone(datetime.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
        if patch:
            self.batch.patch_namespaced_cron_job_status(
                meta["name"], self.namespace, {"status": patch}, _content_type=MERGE
            )

    def _start_job(self, cron: JSON, due: datetime.datetime, active: list[JSON]) -> bool:
        """Create the Job of the time ``due``; False when the policy says not now."""
        meta, spec = cron["metadata"], cron["spec"]
        policy = spec.get("concurrencyPolicy") or "Allow"
        if active and policy == "Forbid":
            return False  # run late, once the active one finished (lastScheduleTime kept)
        if active and policy == "Replace":
            for job in active:
                self._delete_job(job["metadata"]["name"])
        template = spec["jobTemplate"]
        name = f"{meta['name']}-{int(due.timestamp() // 60)}"
        annotations = {
            **((template.get("metadata") or {}).get("annotations") or {}),
            SCHEDULED_AT: due.isoformat(),
        }
        body: JSON = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        try:
            job = self._plain(self.batch.create_namespaced_job(self.namespace, body))
        except ApiException as exc:
            if exc.status != 409:
                raise
            return True  # made on an earlier pass whose status write was lost
        self._default_job(job)
        log.info("cronjob %s: created job %s for %s", meta["name"], name, due.isoformat())
        return True

    def _default_job(self, job: JSON) -> None:
        """What the apiserver adds to a Job created without a selector."""
        meta = job["metadata"]
        ids = {
            CONTROLLER_UID: meta["uid"],
            BATCH_CONTROLLER_UID: meta["uid"],
            JOB_NAME: meta["name"],
            BATCH_JOB_NAME: meta["name"],
        }
        template = job["spec"]["template"]
        template_meta = template.get("metadata") or {}
        self.batch.patch_namespaced_job(
            meta["name"],
            self.namespace,
            {
                "metadata": {"labels": {**(meta.get("labels") or {}), **ids}},
                "spec": {
                    "selector": {"matchLabels": {BATCH_CONTROLLER_UID: meta["uid"]}},
                    "template": {
                        "metadata": {"labels": {**(template_meta.get("labels") or {}), **ids}}
                    },
                },
            },
            _content_type=MERGE,
        )

    def _delete_history(self, spec: JSON, jobs: list[JSON]) -> None:
        for kind, key, default in (
            ("Complete", "successfulJobsHistoryLimit", 3),
            ("Failed", "failedJobsHistoryLimit", 1),
        ):
            limit = spec.get(key)
            limit = default if limit is None else int(limit)
            done = sorted(
                (j for j in jobs if finished(j) == kind),
                key=lambda j: (
                    _time((j.get("status") or {}).get("completionTime"))
                    or _time(j["metadata"]["creationTimestamp"]),
                    j["metadata"]["name"],
                ),
            )
            for job in done[: max(0, len(done) - limit)]:
                self._delete_job(job["metadata"]["name"])

    def _delete_job(self, name: str) -> None:
        log.info("deleting job %s", name)
        with contextlib.suppress(ApiException):
            self.batch.delete_namespaced_job(
                name, self.namespace, body={"propagationPolicy": "Background"}
            )

    # ------------------------------------------------------------------ Job

    def _sync_job(self, job: JSON, pods: list[JSON]) -> None:
        meta, spec = job["metadata"], job["spec"]
        if finished(job) is not None:
            return
        name = meta["name"]
        status = dict(job.get("status") or {})
        now = now_rfc3339()
        start = status.get("startTime") or now
        running = [p for p in pods if (p.get("status") or {}).get("phase") not in _DONE]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        new: JSON = {"startTime": start}
        deadline = spec.get("activeDeadlineSeconds")
        started = _time(start)
        assert started is not None
        elapsed = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        conditions: list[JSON] = []
        if succeeded >= int(spec.get("completions") or 1):
            new["completionTime"] = now
            conditions = [
                _condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ),
                _condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ),
            ]
        elif deadline is not None and elapsed > float(deadline):
            for pod in running:
                self._kill(pod["metadata"]["name"], "DeadlineExceeded")
            failed += len(running)
            running = []
            why = "Job was active longer than specified deadline"
            conditions = [
                _condition("FailureTarget", "DeadlineExceeded", why, now),
                _condition("Failed", "DeadlineExceeded", why, now),
            ]
        elif failed > int(spec.get("backoffLimit", 6)):
            why = "Job has reached the specified backoff limit"
            conditions = [
                _condition("FailureTarget", "BackoffLimitExceeded", why, now),
                _condition("Failed", "BackoffLimitExceeded", why, now),
            ]
        elif not running and time.monotonic() >= self._retry_at.get(name, 0.0):
            self._create_pod(job)
            running = [{}]
            if failed:
                delay = min(POD_BACKOFF * 2 ** (failed - 1), POD_BACKOFF_MAX)
                self._retry_at[name] = time.monotonic() + delay
        new.update({"active": len(running), "ready": 0, "succeeded": succeeded, "failed": failed})
        if conditions:
            new["conditions"] = conditions
            new["active"] = 0
            self._retry_at.pop(name, None)
        if any(new.get(k) != status.get(k) for k in new):
            self.batch.patch_namespaced_job_status(
                name, self.namespace, {"status": new}, _content_type=MERGE
            )

    def _create_pod(self, job: JSON) -> None:
        meta = job["metadata"]
        template = job["spec"]["template"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            CONTROLLER_UID: meta["uid"],
            BATCH_CONTROLLER_UID: meta["uid"],
            JOB_NAME: meta["name"],
            BATCH_JOB_NAME: meta["name"],
        }
        pod = self.core.create_namespaced_pod(
            self.namespace,
            {
                "metadata": {
                    "generateName": f"{meta['name']}-",
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": meta["name"],
                            "uid": meta["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": template["spec"],
            },
        )
        log.info("job %s: created pod %s", meta["name"], pod.metadata.name)

    # ------------------------------------------------------------------ kubelet

    def _run_pods(self, pods: list[JSON]) -> None:
        """Start the process of each new Job pod, report each that ended, and stop
        those whose pod object is gone."""
        live = {p["metadata"]["name"]: p for p in pods}
        for name, running in list(self.pods.items()):
            pod = live.get(name)
            if pod is None or pod["metadata"]["uid"] != running.uid:
                running.run.stop()
                del self.pods[name]
        for name, pod in live.items():
            phase = (pod.get("status") or {}).get("phase")
            if name not in self.pods and phase not in _DONE:
                self._start(pod)
        for name, running in list(self.pods.items()):
            if running.reported or running.run.poll() is None:
                continue
            terminated = running.run.terminated()
            self._patch_pod(
                name,
                "Succeeded" if terminated["exitCode"] == 0 else "Failed",
                live[name],
                {"terminated": terminated},
            )
            running.reported = True
            log.info("job pod %s exited with %s", name, terminated["exitCode"])

    def _start(self, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        name = meta["name"]
        (container,) = spec["containers"]
        workdir = self.kubelet.root / "jobs" / name
        try:
            env = self.kubelet._resolve_env(container.get("env") or [], name)
            env = {k: self._service_to_members(v) for k, v in env.items()}
            mounts = volume_dirs(
                self.core,
                self.namespace,
                self.kubelet.root,
                name,
                spec,
                container,
                claim_dirs(self.kubelet),
            )
            run = start_container(container, env, mounts, workdir)
        except (ApiException, KeyError, ValueError) as exc:
            # A real kubelet leaves such a pod Pending (CreateContainerConfigError) and
            # retries; here the pod fails at once so the Job reports it.
            log.warning("job pod %s cannot start: %s", name, exc)
            self._patch_pod(
                name,
                "Failed",
                pod,
                {
                    "terminated": {
                        "exitCode": 128,
                        "reason": "ContainerCannotRun",
                        "message": str(exc)[-4096:],
                        "startedAt": now_rfc3339(),
                        "finishedAt": now_rfc3339(),
                    }
                },
            )
            return
        self.pods[name] = JobPod(name, meta["uid"], meta["labels"].get(JOB_NAME, ""), run)
        self._patch_pod(name, "Running", pod, {"running": {"startedAt": run.started_at}})
        log.info("started job pod %s", name)

    def _kill(self, name: str, reason: str) -> None:
        running = self.pods.get(name)
        if running is not None:
            running.run.stop()
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                name,
                self.namespace,
                {"status": {"phase": "Failed", "reason": reason}},
                _content_type=MERGE,
            )
        if running is not None:
            running.reported = True

    def _patch_pod(self, name: str, phase: str, pod: JSON, state: JSON) -> None:
        (container,) = pod["spec"]["containers"]
        status: JSON = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False"}],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "started": phase == "Running",
                    "state": state,
                }
            ],
        }
        if not (pod.get("status") or {}).get("startTime"):
            status["startTime"] = now_rfc3339()
        try:
            self.core.patch_namespaced_pod_status(
                name, self.namespace, {"status": status}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ wiring

    def _service_to_members(self, value: str) -> str:
        """A RaftKV's client Service URL becomes the loopback client URLs of its Ready
        members (all its running members when none is Ready: a save then fails the
        way it would against a Service with no endpoint worth the name)."""
        if "://" not in value:
            return value
        scheme, rest = value.split("://", 1)
        for sts in {k.rsplit("-", 1)[0] for k in self.kubelet.procs}:
            if rest != n.client_service_url(sts, self.namespace).split("://", 1)[1]:
                continue
            procs = {k: p for k, p in self.kubelet.procs.items() if k.rsplit("-", 1)[0] == sts}
            ready = [p for k, p in procs.items() if self.kubelet._ready.get(k)]
            chosen = sorted(ready or procs.values(), key=lambda p: p.ordinal)
            urls = [
                self.kubelet.addressing.client_url(sts, self.namespace, p.ordinal) for p in chosen
            ]
            return ",".join(f"{scheme}://{u.split('://', 1)[1]}" for u in urls)
        return value


_DONE = ("Succeeded", "Failed")


def _condition(kind: str, reason: str, message: str, now: str) -> JSON:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }
