"""Least privilege: the chart grants exactly the API calls the operator and kopf make.

The operator's own calls are a table (``OPERATOR_CALLS`` in rbac.py) and are also derived
from the code: every Kubernetes API call goes through ``raftkv_operator/kube.py``
(checked below), and each client method it calls is mapped to its HTTP method and
path by reading the ``kubernetes`` client's own source. The table and the derivation
must agree, and the rendered Role/ClusterRole must equal the table plus what kopf
needs (``KOPF_CALLS``, read from kopf 1.45's source) - nothing more, no wildcards.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import kubernetes
import pytest

from raftkv_operator import naming as n

from .chart import EVERYTHING, REPO, find, render
from .rbac import (
    KOPF_CALLS,
    KOPF_CLUSTER_CALLS,
    OPERATOR_CALLS,
    OPERATOR_CLUSTER_CALLS,
    Call,
    granted,
)

OPERATOR_PKG = REPO / "operator" / "raftkv_operator"
KUBE_PY = OPERATOR_PKG / "kube.py"


_VERB_OF_METHOD = {"POST": "create", "PATCH": "patch", "PUT": "update"}


# ------------------------------------------------------------- deriving from the code


def _api_classes(tree: ast.Module) -> dict[str, type]:
    """``self.<attr> = kubernetes.client.<Class>(api)`` in ``Kube.__init__``."""
    found: dict[str, type] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        (target,) = node.targets
        func = node.value.func
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and isinstance(func, ast.Attribute)
            and func.attr.endswith("Api")
        ):
            found[target.attr] = getattr(kubernetes.client, func.attr)
    return found


#: CustomObjectsApi attributes of kube.py that serve another group than RaftKV's:
#: attribute → (group, plural) their ``{group}``/``{plural}`` paths stand for.
_OTHER_CUSTOM = {"certmanager": ("cert-manager.io", "certificates")}


def _client_calls(tree: ast.Module, apis: dict[str, type]) -> set[tuple[str, type, str]]:
    """Every ``self.<api attr>.<method>(...)`` call, with the attribute."""
    calls = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if (
            isinstance(owner, ast.Attribute)
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "self"
            and owner.attr in apis
        ):
            calls.add((owner.attr, apis[owner.attr], node.func.attr))
    return calls


def _http_of(api: type, method: str) -> tuple[str, str]:
    """(HTTP method, path template) of a client method, from the client's source
    (both the current generator's and the older ``call_api`` style)."""
    for helper in (f"_{method}_serialize", f"{method}_with_http_info"):
        fn = getattr(api, helper, None)
        if fn is None:
            continue
        src = inspect.getsource(fn)
        new = re.search(r"method='(\w+)',\s*resource_path='([^']+)'", src)
        if new:
            return new.group(1), new.group(2)
        old = re.search(r"call_api\(\s*'([^']+)',\s*'(\w+)'", src)
        if old:
            return old.group(2), old.group(1)
    raise AssertionError(f"cannot tell what {api.__name__}.{method} requests")


def _call_of(http_method: str, path: str) -> Call:
    segments = path.strip("/").split("/")
    if segments[0] == "api":  # /api/v1/...
        group, rest = "", segments[2:]
    else:  # /apis/<group>/<version>/...
        group, rest = segments[1], segments[3:]
    if group == "{group}":
        group = n.GROUP
    if rest[:2] == ["namespaces", "{namespace}"]:
        rest = rest[2:]
    resource = n.PLURAL if rest[0] == "{plural}" else rest[0]
    named = len(rest) >= 2 and rest[1] == "{name}"
    if len(rest) == 3:
        resource = f"{resource}/{rest[2]}"
    if http_method == "GET":
        verb = "get" if named else "list"
    elif http_method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = _VERB_OF_METHOD[http_method]
    return Call(group, resource, verb)


def derived_operator_calls() -> set[Call]:
    tree = ast.parse(KUBE_PY.read_text())
    apis = _api_classes(tree)
    assert set(apis) == {
        "core",
        "apps",
        "policy",
        "custom",
        "extensions",
        "batch",
        *_OTHER_CUSTOM,
    }, apis
    out = set()
    for attr, api, method in _client_calls(tree, apis):
        call = _call_of(*_http_of(api, method))
        if attr in _OTHER_CUSTOM:
            group, plural = _OTHER_CUSTOM[attr]
            call = Call(group, call.resource.replace(n.PLURAL, plural, 1), call.verb)
        out.add(call)
    return out


def test_the_table_is_what_kube_py_calls() -> None:
    derived = derived_operator_calls()
    table = set(OPERATOR_CALLS) | set(OPERATOR_CLUSTER_CALLS)
    assert derived - table == set(), "kube.py makes calls the table (and RBAC) lacks"
    assert table - derived == set(), "the table lists calls kube.py no longer makes"


def test_only_kube_py_talks_to_the_api() -> None:
    for module in sorted(OPERATOR_PKG.glob("*.py")):
        if module.name == "kube.py":
            continue
        text = module.read_text()
        assert not re.search(r"\b\w+V\d\w*Api\(|CustomObjectsApi|\.call_api\(", text), module


def test_kopf_handlers_only_watch_raftkvs() -> None:
    # Handlers on any other resource would need list/watch on it: KOPF_CALLS assumes
    # the handlers are all keyed by the (group, version, plural) tuple `resource`.
    tree = ast.parse((OPERATOR_PKG / "handlers.py").read_text())
    resource_handlers = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name.startswith(("kopf.on.", "kopf.timer", "kopf.daemon", "kopf.index")):
            if name in ("kopf.on.login", "kopf.on.startup", "kopf.on.cleanup", "kopf.on.probe"):
                continue
            resource_handlers += 1
            assert [ast.unparse(a) for a in node.args] == ["*resource"], ast.unparse(node)
    assert resource_handlers >= 5
    assert "resource = (n.GROUP, n.VERSION, n.PLURAL)" in ast.unparse(tree)
    # What the events and finalizers rules are for.
    code = "".join(p.read_text() for p in OPERATOR_PKG.glob("*.py"))
    assert "kopf.event(" in code
    assert "kopf.adopt(" in code


# ------------------------------------------------------------------ the rendered rules


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_rbac_grants_exactly_what_is_called(scope: str) -> None:
    objs = render({**EVERYTHING, "rbac": {"scope": scope}})
    kind = "ClusterRole" if scope == "cluster" else "Role"
    (role,) = find(objs, kind)
    wanted = set(OPERATOR_CALLS) | set(KOPF_CALLS)
    if scope == "cluster":
        wanted |= set(KOPF_CLUSTER_CALLS) | set(OPERATOR_CLUSTER_CALLS)
    have = granted(role)
    assert wanted - have == set(), "the operator would be forbidden these calls"
    assert have - wanted == set(), "granted but never called"


def test_binding_gives_the_role_to_the_operator_service_account() -> None:
    objs = render({})
    (binding,) = find(objs, "ClusterRoleBinding")
    (account,) = find(objs, "ServiceAccount")
    (deployment,) = find(objs, "Deployment")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": find(objs, "ClusterRole")[0]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_call_mapping_itself() -> None:
    assert _call_of("GET", "/api/v1/namespaces/{namespace}/pods") == Call("", "pods", "list")
    assert _call_of(
        "PATCH", "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"
    ) == Call(n.GROUP, f"{n.PLURAL}/status", "patch")
    assert _call_of(
        "DELETE", "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
    ) == Call("", "persistentvolumeclaims", "delete")
    assert _http_of(kubernetes.client.AppsV1Api, "patch_namespaced_stateful_set") == (
        "PATCH",
        "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    )


def test_the_analysed_code_is_the_code_that_runs() -> None:
    import raftkv_operator.kube

    assert Path(inspect.getfile(raftkv_operator.kube)).read_text() == KUBE_PY.read_text()
