"""A faithful-enough Kubernetes API server for operator tests, on top of kmock 0.8.

kmock's ``KubernetesEmulator`` stores objects and streams watch events, but lacks the
server-side semantics kopf and the kubernetes client rely on (see
``../shared/notes/operator-testing.md``). This subclass replaces its write path and
adds them:

- a strictly increasing ``resourceVersion`` on every write (no-op patches keep it);
  JSON-patch ``test`` failures answer 422, stale ``resourceVersion`` preconditions 409;
- ``uid``, ``creationTimestamp``, ``generation`` (bumped on spec changes only),
  ``generateName``, ``apiVersion``/``kind`` filled in, namespace taken from the URL;
- status subresource isolation: ``/status`` writes change only ``.status``, the main
  endpoint never changes ``.status`` (and create drops it);
- the scale subresource (``autoscaling/v1`` Scale) for StatefulSets and for custom
  resources registered from their CRD (``register_crd``), which also brings what the
  apiserver does to every custom resource it stores: the schema's defaults, pruning
  of unknown fields, OpenAPI and CEL validation (``oldSelf`` on updates), answered
  with a 422 in the apiserver's shape (``RaftKV.raftkv.dev "kv" is invalid: ...``,
  one ``details.causes`` entry per field); the CRD itself is checked first (the
  apiextensions apiserver's refusals) and then served under
  ``apiextensions.k8s.io/v1``;
- PUT (replace), merge and JSON patches (strategic merge is treated as a merge
  patch: lists are replaced, not merged by key);
- deletion with finalizers and ``deletionTimestamp``, DeleteOptions preconditions,
  and garbage collection of dependents whose owners are all gone;
- list/watch with label and field selectors, a list ``resourceVersion`` to resume
  from, watch resume from any retained ``resourceVersion`` (410 Gone when too old),
  bookmarks, ``timeoutSeconds``, and no events lost between the replay and the
  live stream;
- ``/api/v1/namespaces[/name]``, which kmock's path parser cannot handle.

Expected API errors (404, 409, 422...) are answered directly instead of being
recorded as server errors, so ``emulator.errors`` lists only real faults (5xx).

It relies on kmock internals: pin ``kmock==0.8``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import importlib.metadata
import json
import random
import string
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import apps, parsing, references, rendering
from kmock._internal.k8s import KubernetesError, KubernetesObjectNotFoundError

# This module subclasses kmock internals that change between releases.
KMOCK_PINNED = "0.8"
KMOCK_FOUND = importlib.metadata.version("kmock")
if KMOCK_FOUND != KMOCK_PINNED:
    raise ImportError(f"the Kubernetes stand-in needs kmock=={KMOCK_PINNED}, found {KMOCK_FOUND}")

JSON = dict[str, Any]
Resource = references.resource
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")

# ----------------------------------------------------------------------------- path parsing


_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock reads ``/api/v1/namespaces/x`` as namespace x with no resource and crashes on
    ``/api/v1/namespaces``; namespaces are a cluster-scoped resource of their own."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"]:
        if len(parts) == 3:
            return parsing.ParsedPath("", "v1", "namespaces")
        if len(parts) == 4 or (len(parts) == 5 and parts[4] in ("status", "finalize")):
            sub = parts[4] if len(parts) == 5 else None
            return parsing.ParsedPath("", "v1", "namespaces", None, parts[3], sub)
    return _original_parse_path(path)


parsing.parse_path = _parse_path  # rendering.Request._parse looks it up at call time


# ----------------------------------------------------------------------------- errors


def _error(status: int, reason: str, message: str, **details: Any) -> KubernetesError:
    return KubernetesError(status=status, reason=reason, message=message, details=details or None)


def _not_found(resource: Resource, name: str | None) -> KubernetesError:
    return _error(404, "NotFound", f'{resource.plural} "{name}" not found', name=name)


def _conflict(resource: Resource, name: str, why: str) -> KubernetesError:
    return _error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.plural} "{name}": {why}',
        name=name,
    )


def _invalid(resource: Resource, name: str | None, why: str) -> KubernetesError:
    return _error(422, "Invalid", f'{resource.plural} "{name}" is invalid: {why}', name=name)


def _invalid_custom(
    kind: str, resource: Resource, name: str | None, causes: list[Any]
) -> KubernetesError:
    """The apiserver's 422 for a custom resource: qualified kind, causes in details."""
    listed = ", ".join(f"{c.field}: {c.message}" for c in causes)
    why = listed if len(causes) == 1 else f"[{listed}]"
    return _error(
        422,
        "Invalid",
        f'{kind}.{resource.group} "{name}" is invalid: {why}',
        name=name,
        group=resource.group,
        kind=kind,
        causes=[{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
    )


# ----------------------------------------------------------------------------- selectors


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _split_terms(selector: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(selector):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            yield selector[start:i].strip()
            start = i + 1
    if selector[start:].strip():
        yield selector[start:].strip()


def _label_check(op: str, key: str, values: frozenset[str]) -> Callable[[dict[str, str]], bool]:
    def check(labels: dict[str, str]) -> bool:
        match op:
            case "in":
                return labels.get(key) in values
            case "notin":
                return labels.get(key) not in values
            case "exists":
                return key in labels
            case _:  # "!exists"
                return key not in labels

    return check


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """Equality- and set-based label selectors, as in ``kubectl get -l``."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector or ""):
        if " notin " in term or " in " in term:
            op = "notin" if " notin " in term else "in"
            key, _, rest = term.partition(f" {op} ")
            values = frozenset(v.strip() for v in rest.strip().strip("()").split(","))
            checks.append(_label_check(op, key.strip(), values))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            checks.append(_label_check("notin", key.strip(), frozenset({value.strip()})))
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            checks.append(_label_check("in", key.strip(), frozenset({value.strip()})))
        elif term.startswith("!"):
            checks.append(_label_check("!exists", term[1:].strip(), frozenset()))
        else:
            checks.append(_label_check("exists", term, frozenset()))
    return lambda labels: all(check(labels) for check in checks)


def field_matcher(selector: str | None) -> Callable[[JSON], bool]:
    """``metadata.name=x,status.phase!=Running`` and the like (any dotted path)."""
    checks: list[Callable[[JSON], bool]] = []
    for term in _split_terms(selector or ""):
        negate = "!=" in term
        path, _, value = term.replace("==", "=").partition("!=" if negate else "=")
        path, value = path.strip(), value.strip()

        def check(obj: JSON, p: str = path, v: str = value, neg: bool = negate) -> bool:
            actual = _get_path(obj, p)
            return (str(actual) if actual is not None else "") != v if neg else str(actual) == v

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# ----------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ----------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class ScalePaths:
    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    #: None: derive "k=v,..." from .spec.selector.matchLabels (as apps/v1 does).
    label_selector: str | None = None


@dataclass
class CustomSchema:
    """What the apiserver does to a custom resource on a write, from a CRD version's schema.

    ``admit(new, old)`` returns the defaulted, pruned object and its causes (objects
    with ``reason``, ``field`` and ``message``; none when valid). ``old`` is the stored
    object on updates (for transition rules), None on create.
    """

    admit: Callable[[JSON, JSON | None], tuple[JSON, list[Any]]]


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_rv(obj: JSON) -> JSON:
    clone = copy.deepcopy(obj)
    clone.get("metadata", {}).pop("resourceVersion", None)
    return clone


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server semantics listed in the module docstring."""

    #: How many watch events are kept for resuming watches; older ones answer 410 Gone.
    event_log_size: int = 10_000
    #: Seconds between BOOKMARK events on watches that allow them.
    bookmark_interval: float = 5.0
    #: Delete dependents whose owners are all gone (the garbage collector's job).
    garbage_collection: bool = True

    # Starts at 1: a list answering resourceVersion "0" would mean "any version" to a watch.
    _rv: int = attrs.field(default=1, init=False)
    _log: list[tuple[int, Resource, JSON]] = attrs.field(factory=list, init=False)
    _watchers: set[asyncio.Queue[tuple[int, Resource, JSON]]] = attrs.field(factory=set, init=False)
    _results: dict[int, JSON] = attrs.field(factory=dict, init=False)
    _scale: dict[Resource, ScalePaths] = attrs.field(factory=dict, init=False)
    _schemas: dict[Resource, CustomSchema] = attrs.field(factory=dict, init=False)
    _rng: random.Random = attrs.field(factory=lambda: random.Random(0), init=False)
    #: Builds a custom resource's defaulting and validation from a CRD version's schema.
    crd_schema: Callable[[JSON], CustomSchema] | None = None
    #: The apiextensions apiserver's refusals of a CRD (empty list: accepted).
    crd_check: Callable[[JSON], list[str]] | None = None
    #: What ``/version`` reports (helm checks a chart's kubeVersion against it).
    server_version: tuple[int, int] = (1, 33)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        self._scale[Resource("apps", "v1", "statefulsets")] = ScalePaths()
        self._scale[Resource("apps", "v1", "deployments")] = ScalePaths()
        self._scale[Resource("apps", "v1", "replicasets")] = ScalePaths()
        self.fallback[kmock.method.PUT] << self._serve_replace

    # ------------------------------------------------------------------ configuration

    def register_crd(
        self,
        crd: JSON,
        schema: Callable[[JSON], CustomSchema] | None = None,
        check: Callable[[JSON], list[str]] | None = None,
    ) -> JSON:
        """Create ``crd`` as ``kubectl apply`` would, and serve its custom resource.

        ``schema`` and ``check`` become the emulator's ``crd_schema`` and ``crd_check``,
        which apply to every CRD created through the API too (``helm install``).
        A refused CRD raises the apiserver's 422 (a :class:`KubernetesError`).
        """
        if schema is not None:
            self.crd_schema = schema
        if check is not None:
            self.crd_check = check
        return self._create(CRDS, None, copy.deepcopy(crd))

    def _serve_crd(self, crd: JSON) -> None:
        """What the apiextensions apiserver does with a new CRD: check it, then serve it.

        ``crd_schema`` builds defaulting/validation from a version's openAPIV3Schema;
        the tests pass one based on ``crd_schema``. Without it, objects are stored as
        sent. ``crd_check`` lists what the apiserver would refuse in the CRD
        (``structural.check_crd``); any refusal is a 422 and nothing is served.
        """
        name = crd.get("metadata", {}).get("name")
        problems = self.crd_check(crd) if self.crd_check is not None else []
        if problems:
            listed = ", ".join(problems)
            raise _error(
                422,
                "Invalid",
                f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
                + (listed if len(problems) == 1 else f"[{listed}]"),
                name=name,
                group="apiextensions.k8s.io",
                kind="CustomResourceDefinition",
            )
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            resource = Resource(spec["group"], version["name"], names["plural"])
            subresources = set(version.get("subresources", {}))
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular"),
                namespaced=spec["scope"] == "Namespaced",
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                subresources=subresources,
            )
            scale = version.get("subresources", {}).get("scale")
            if scale:
                self._scale[resource] = ScalePaths(
                    scale["specReplicasPath"],
                    scale["statusReplicasPath"],
                    scale.get("labelSelectorPath"),
                )
            if self.crd_schema is not None:
                self._schemas[resource] = self.crd_schema(version["schema"]["openAPIV3Schema"])
        now = _now()
        crd["status"] = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
            "conditions": [
                {"type": kind, "status": "True", "reason": reason, "lastTransitionTime": now}
                for kind, reason in (
                    ("NamesAccepted", "NoConflicts"),
                    ("Established", "InitialNamesAccepted"),
                )
            ],
        }

    def seed(self, resource: str | Resource, body: JSON) -> JSON:
        """Create an object as the API would (fields, events), from the server's loop
        thread or before it serves. Returns the stored object."""
        res = resource if isinstance(resource, Resource) else Resource(resource)
        namespace = body.get("metadata", {}).get("namespace")
        return self._create(res, namespace, copy.deepcopy(body))

    @property
    def resource_version(self) -> int:
        return self._rv

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        major, minor = self.server_version
        return {
            "major": str(major),
            "minor": str(minor),
            "gitVersion": f"v{major}.{minor}.0",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    # ------------------------------------------------------------------ request entry

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if (
            resource is not None
            and resource.plural is not None
            and request.name is not None
            and request.subresource not in (None, "status", "scale")
        ):
            # Subresources we do not emulate (eviction, log, exec...) fall to kmock.
            return await apps.RawHandler._handle(self, request)
        try:
            if resource is not None and resource.plural is not None:
                async with self._lock:
                    result = self._mutate(request, resource)
                if result is not None:
                    self._results[request.id] = result
        except KubernetesError as exc:
            return await self._render_error(exc)
        # Skip KubernetesEmulator._handle (its own, semantics-free write path), keep the
        # DSL: user reactions first, then our fallbacks below.
        try:
            return await apps.RawHandler._handle(self, request)
        except KubernetesError as exc:
            return await self._render_error(exc)
        finally:
            self._results.pop(request.id, None)

    def _mutate(self, request: rendering.Request, resource: Resource) -> JSON | None:
        method = request.method
        if method == kmock.method.POST and request.name is None:
            return self._create(resource, request.namespace, self._body(request, resource))
        if request.name is None:
            return None
        if method == kmock.method.PATCH:
            return self._patch(request, resource)
        if method == kmock.method.PUT:
            return self._replace(request, resource, self._body(request, resource))
        if method == kmock.method.DELETE:
            return self._delete(resource, request.namespace, request.name, request.data)
        return None

    def _body(self, request: rendering.Request, resource: Resource) -> JSON:
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        return copy.deepcopy(request.data)

    # ------------------------------------------------------------------ store helpers

    def _info(self, resource: Resource) -> kmock.ResourceInfo:
        for known in self.resources:
            if known == resource:
                return self.resources[known]
        raise _error(404, "NotFound", f"the server could not find the resource {resource}")

    def _stored(self, resource: Resource, namespace: str | None, name: str) -> JSON | None:
        key = (resource, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _store(self, resource: Resource, namespace: str | None, name: str, obj: JSON) -> None:
        key = (resource, namespace, name)
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key] = copy.deepcopy(obj)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, resource: Resource, kind: str, obj: JSON) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._log.append((rv, resource, event))
        del self._log[: -self.event_log_size]
        for queue in self._watchers:
            queue.put_nowait((rv, resource, event))

    def _default_and_validate(self, resource: Resource, obj: JSON, old: JSON | None = None) -> JSON:
        schema = self._schemas.get(resource)
        if schema is None:
            return obj
        obj, causes = schema.admit(obj, old)
        if causes:
            kind = self._info(resource).kind or resource.plural or ""
            raise _invalid_custom(kind, resource, obj.get("metadata", {}).get("name"), causes)
        return obj

    # ------------------------------------------------------------------ create

    def _create(self, resource: Resource, namespace: str | None, obj: JSON) -> JSON:
        info = self._info(resource)
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            body_ns = meta.get("namespace")
            if namespace is None:
                namespace = body_ns
            if namespace is None:
                raise _error(400, "BadRequest", "a namespaced object needs a namespace")
            if body_ns is not None and body_ns != namespace:
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request",
                )
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise _invalid(resource, None, "metadata.name: Required value")
            while True:
                suffix = "".join(self._rng.choices(string.ascii_lowercase + string.digits, k=5))
                name = prefix + suffix
                if self._stored(resource, namespace, name) is None:
                    break
            meta["name"] = name
        if self._stored(resource, namespace, name) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{resource.plural} "{name}" already exists',
                name=name,
                kind=resource.plural,
            )
        obj["apiVersion"] = f"{resource.group}/{resource.version}".lstrip("/")
        obj["kind"] = info.kind or resource.plural
        if "status" in info.subresources:
            obj.pop("status", None)  # status is written through /status only
        for server_side in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(server_side, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        obj = self._default_and_validate(resource, obj)
        if resource == CRDS:
            self._serve_crd(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._store(resource, namespace, name, obj)
        self._emit(resource, "ADDED", obj)
        return obj

    # ------------------------------------------------------------------ update (patch/put)

    def _patch(self, request: rendering.Request, resource: Resource) -> JSON:
        name = request.name
        assert name is not None
        old = self._stored(resource, request.namespace, name)
        if old is None:
            raise _not_found(resource, name)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        patch = request.data
        source = self._scale_view(resource, old) if request.subresource == "scale" else old
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                patched = jsonpatch.apply_patch(source, patch, in_place=False)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise _invalid(resource, name, f"the test operation failed: {exc}") from exc
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise _invalid(resource, name, str(exc)) from exc
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if not isinstance(patch, dict):
                raise _error(400, "BadRequest", "a merge patch must be a JSON object")
            wanted_rv = patch.get("metadata", {}).get("resourceVersion")
            if wanted_rv is not None and wanted_rv != old["metadata"]["resourceVersion"]:
                raise _conflict(resource, name, "the object has been modified")
            patched = merge_patch(source, patch)
        else:
            raise _error(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        return self._update(resource, request.namespace, name, old, patched, request.subresource)

    def _replace(self, request: rendering.Request, resource: Resource, body: JSON) -> JSON:
        name = request.name
        assert name is not None
        old = self._stored(resource, request.namespace, name)
        if old is None:
            raise _not_found(resource, name)
        wanted_rv = body.get("metadata", {}).get("resourceVersion")
        if wanted_rv not in (None, "", old["metadata"]["resourceVersion"]):
            raise _conflict(resource, name, "the object has been modified")
        if body.get("metadata", {}).get("name", name) != name:
            raise _error(400, "BadRequest", "the name in the body does not match the URL")
        return self._update(resource, request.namespace, name, old, body, request.subresource)

    def _update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        old: JSON,
        new: JSON,
        subresource: str | None,
    ) -> JSON:
        info = self._info(resource)
        if subresource == "scale":
            new = self._from_scale(resource, old, new)
        elif subresource == "status":
            if "status" not in info.subresources:
                raise _not_found(resource, name)
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif "status" in info.subresources:
            new = copy.deepcopy(new)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)

        # Fields only the server writes.
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for field in (
            "uid",
            "name",
            "namespace",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers", [])) - set(old_meta.get("finalizers", []))
            if added:
                raise _invalid(resource, name, "no new finalizers can be added while deleting")
        new = self._default_and_validate(resource, new, old)
        meta = new["metadata"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion

        def spec_part(o: JSON) -> JSON:
            return {k: v for k, v in o.items() if k not in ("metadata", "status")}

        if spec_part(new) != spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[(resource, namespace, name)].history.append(copy.deepcopy(new))
            self._objects[(resource, namespace, name)].delete()
            self._emit(resource, "DELETED", new)
            self._collect_garbage()
            return new
        self._store(resource, namespace, name, new)
        self._emit(resource, "MODIFIED", new)
        return new

    # ------------------------------------------------------------------ scale subresource

    def _scale_paths(self, resource: Resource, name: str) -> ScalePaths:
        paths = self._scale.get(resource)
        if paths is None:
            raise _not_found(resource, name)
        return paths

    def _scale_view(self, resource: Resource, obj: JSON) -> JSON:
        meta = obj["metadata"]
        paths = self._scale_paths(resource, meta["name"])
        if paths.label_selector is None:
            labels = _get_path(obj, ".spec.selector.matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        else:
            selector = _get_path(obj, paths.label_selector) or ""
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": _get_path(obj, paths.spec_replicas) or 0},
            "status": {
                "replicas": _get_path(obj, paths.status_replicas) or 0,
                "selector": selector,
            },
        }

    def _from_scale(self, resource: Resource, old: JSON, scale: JSON) -> JSON:
        paths = self._scale_paths(resource, old["metadata"]["name"])
        replicas = _get_path(scale, ".spec.replicas")
        if not isinstance(replicas, int):
            raise _invalid(resource, old["metadata"]["name"], "spec.replicas must be an integer")
        new = copy.deepcopy(old)
        *parents, leaf = paths.spec_replicas.strip(".").split(".")
        node = new
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = replicas
        return new

    # ------------------------------------------------------------------ delete

    def _delete(self, resource: Resource, namespace: str | None, name: str, options: Any) -> JSON:
        obj = self._stored(resource, namespace, name)
        if obj is None:
            raise _not_found(resource, name)
        meta = obj["metadata"]
        preconditions = (options or {}).get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta["uid"]):
            raise _conflict(resource, name, "the UID in the precondition does not match")
        wanted_rv = preconditions.get("resourceVersion")
        if wanted_rv not in (None, meta["resourceVersion"]):
            raise _conflict(
                resource, name, "the ResourceVersion in the precondition does not match"
            )
        if meta.get("deletionTimestamp"):
            return obj
        if meta.get("finalizers"):
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            meta["resourceVersion"] = self._next_rv()
            self._store(resource, namespace, name, obj)
            self._emit(resource, "MODIFIED", obj)
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._objects[(resource, namespace, name)].delete()
        self._emit(resource, "DELETED", obj)
        if (options or {}).get("propagationPolicy") != "Orphan":
            self._collect_garbage()
        return obj

    def _collect_garbage(self) -> None:
        """Delete objects all of whose owners are gone (background propagation)."""
        if not self.garbage_collection:
            return
        while True:
            uids = {o.raw["metadata"].get("uid") for o in self._objects.values() if not o.deleted}
            orphans = [
                (resource, namespace, name)
                for (resource, namespace, name), o in self._objects.items()
                if not o.deleted
                and not o.raw["metadata"].get("deletionTimestamp")
                and (refs := o.raw["metadata"].get("ownerReferences"))
                and not any(ref.get("uid") in uids for ref in refs)
            ]
            if not orphans:
                return
            for resource, namespace, name in orphans:
                self._delete(resource, namespace, name, {"propagationPolicy": "Orphan"})

    # ------------------------------------------------------------------ reads

    def _matching(self, request: rendering.Request) -> Callable[[JSON], bool]:
        labels = label_matcher(request.params.get("labelSelector"))
        fields = field_matcher(request.params.get("fieldSelector"))
        namespace, name = request.namespace, request.name

        def match(obj: JSON) -> bool:
            meta = obj.get("metadata", {})
            return (
                (namespace is None or meta.get("namespace") == namespace)
                and (name is None or meta.get("name") == name)
                and labels(meta.get("labels") or {})
                and fields(obj)
            )

        return match

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        info = self._info(request.resource)
        match = self._matching(request)
        async with self._lock:
            items = [
                copy.deepcopy(o.raw)
                for (res, _, _), o in sorted(
                    self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
                )
                if res == request.resource and not o.deleted and match(o.raw)
            ]
            rv = str(self._rv)
        return {
            "apiVersion": f"{request.resource.group}/{request.resource.version}".lstrip("/"),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        assert request.name is not None
        async with self._lock:
            obj = self._stored(request.resource, request.namespace, request.name)
        if obj is None:
            raise _not_found(request.resource, request.name)
        if request.subresource == "scale":
            return self._scale_view(request.resource, obj)
        return obj

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        # 201 as the API server answers: kubernetes>=31 only deserializes declared codes,
        # and declares create as 201, so a 200 would come back as None.
        return rendering.Response(status=201, payload=self._results[request.id])

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        result = self._results[request.id]
        if request.subresource == "scale" and request.resource is not None:
            return self._scale_view(request.resource, result)
        return result

    async def _serve_replace(self, request: rendering.Request) -> rendering.Payload:
        if request.id not in self._results:
            raise KubernetesObjectNotFoundError()
        return await self._serve_update(request)

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self._results[request.id]

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now: the stream exists even while nothing happens
        resource = request.resource
        assert resource is not None
        match = self._matching(request)
        params = request.params
        bookmarks = params.get("allowWatchBookmarks") == "true"
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        since_param = params.get("resourceVersion") or "0"
        queue: asyncio.Queue[tuple[int, Resource, JSON]] = asyncio.Queue()

        async with self._lock:
            # Registered under the lock, together with the replay: no event falls between.
            self._watchers.add(queue)
            start = self._rv
            since = int(since_param) if since_param.isdigit() else 0
            oldest = self._log[0][0] if self._log else self._rv + 1
            if since == 0 or params.get("sendInitialEvents") == "true":
                replay = [
                    {"type": "ADDED", "object": copy.deepcopy(o.raw)}
                    for (res, _, _), o in self._objects.items()
                    if res == resource and not o.deleted and match(o.raw)
                ]
            elif since < oldest - 1 and since < self._rv:
                replay = None
            else:
                replay = [
                    copy.deepcopy(event)
                    for rv, res, event in self._log
                    if rv > since and res == resource and match(event["object"])
                ]
        try:
            if replay is None:
                yield {
                    "type": "ERROR",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Status",
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                        "message": f"too old resource version: {since} ({oldest})",
                    },
                }
                return
            for event in replay:
                yield event
            if bookmarks and params.get("sendInitialEvents") == "true":
                yield self._bookmark(resource, start, initial_events_end=True)
            while True:
                wait = self.bookmark_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        return
                try:
                    rv, res, live = await asyncio.wait_for(queue.get(), timeout=wait)
                except TimeoutError:
                    if bookmarks:
                        yield self._bookmark(resource, self._rv)
                    continue
                if rv > start and res == resource and match(live["object"]):
                    yield live
        finally:
            self._watchers.discard(queue)

    def _bookmark(self, resource: Resource, rv: int, initial_events_end: bool = False) -> JSON:
        kind = self._info(resource).kind or resource.plural
        meta: JSON = {"resourceVersion": str(rv)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {
                "apiVersion": f"{resource.group}/{resource.version}".lstrip("/"),
                "kind": kind,
                "metadata": meta,
            },
        }


# ----------------------------------------------------------------------------- running it


class EmulatorThread:
    """Runs a KubeEmulator on its own event loop in a daemon thread.

    Synchronous clients (the kubernetes package) and kopf (its own loop and thread)
    can then talk to it over HTTP while the test body stays synchronous.
    """

    def __init__(self, emulator: KubeEmulator | None = None) -> None:
        # Not `emulator or ...`: a kmock handler with no requests yet is falsy (it has __len__).
        self.emulator = emulator if emulator is not None else KubeEmulator()
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise TimeoutError("the emulator did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise TimeoutError("the emulator did not stop")

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (for ``seed`` and direct inspection)."""

        async def run() -> Any:
            async with self.emulator._lock:
                return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to __enter__ when it fails to start
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
