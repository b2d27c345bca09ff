"""The Helm chart, rendered by a real helm: it lints, renders for every value set,
every object validates for Kubernetes 1.28-1.33, bad values fail with a message that
names them, and what it renders agrees with the operator's own code (env vars, ports,
labels, metric names)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.registry import CollectorRegistry

import render_manifests
from raftkv.metrics import Metrics, RaftGauges
from raftkv_operator import naming as n
from raftkv_operator import objects as o
from support.structural import check_crd

from .chart import (
    CHART,
    CRD_FILE,
    EVERYTHING,
    NAMESPACE,
    REPO,
    VALUE_SETS,
    Obj,
    find,
    one,
    raftkv_errors,
    render,
    template_text,
    validation_errors,
    values_file,
)
from .chart import KUBERNETES_VERSIONS as VERSIONS

OPERATOR_MAIN = REPO / "operator" / "raftkv_operator" / "main.py"


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


# ------------------------------------------------------------------------ helm lint


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(helm: Path, value_set: str) -> None:
    path = values_file(VALUE_SETS[value_set])
    try:
        done = _helm(helm, "lint", "--strict", str(CHART), "-f", str(path), "-n", NAMESPACE)
    finally:
        path.unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout, done.stdout
    assert "[ERROR]" not in done.stdout, done.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"]) == ("v2", "raftkv")
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"
    # The floor of the validated range.
    assert chart["kubeVersion"] == f">={VERSIONS[0]}.0-0"


# ------------------------------------------------------------- validation by version


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_validates(value_set: str) -> None:
    objs = render(VALUE_SETS[value_set])
    assert objs
    problems = [
        f"{version} {obj['kind']}/{obj['metadata']['name']}: {error}"
        for version in VERSIONS
        for obj in objs
        for error in validation_errors(obj, version)
    ]
    assert not problems, "\n".join(problems)


def test_the_crd_validates_for_every_version() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    for version in VERSIONS:
        assert not validation_errors(crd, version), version


@pytest.mark.parametrize("value_set", ["defaults", "everything-on"])
def test_what_helm_install_sends_passes_the_apiserver_checks(value_set: str) -> None:
    """``helm install`` creates crds/ first, then the templates: the CRD must pass the
    apiextensions checks (structural schema, defaults against CEL rules) and every
    RaftKV the chart renders must be admitted in its defaulted form."""
    text = template_text(VALUE_SETS[value_set], "--include-crds")
    objs = [doc for doc in yaml.safe_load_all(text) if doc]
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 1
    assert check_crd(crds[0]) == []
    for obj in objs:
        if obj["kind"] == "RaftKV":
            assert raftkv_errors(obj) == [], obj["metadata"]["name"]


def test_validation_catches_a_bad_object() -> None:
    # The validators above are not vacuous.
    dep = one(render({}), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert validation_errors(dep, VERSIONS[0])
    monitor = one(render(EVERYTHING), "ServiceMonitor", "raftkv-members")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert validation_errors(monitor, VERSIONS[0])
    rkv = one(render(EVERYTHING), "RaftKV")
    rkv["spec"]["replicas"] = 0
    assert validation_errors(rkv, VERSIONS[0])
    rkv["spec"]["replicas"] = 3
    rkv["spec"]["raft"] = {"electionTicks": 2, "heartbeatTicks": 2}  # the CEL rule
    assert validation_errors(rkv, VERSIONS[0]) == [
        'spec.raft: Invalid value: "object": electionTicks must be greater than heartbeatTicks'
    ]
    rkv["spec"]["raft"] = {"tickMs": 100, "typo": 1}  # pruned by the apiserver
    assert validation_errors(rkv, VERSIONS[0])


# ------------------------------------------------------------------------ bad values

BAD_VALUES = [
    (["--set", "instance.replicas=0"], "instance.replicas: Must be greater than or equal to 1"),
    (["--set", "instance.replicas=-1"], "instance.replicas: Must be greater than or equal to 1"),
    (["--set", "instance.replicas=three"], "instance.replicas: Invalid type"),
    (["--set", "image.tag=2"], "image.tag: Invalid type. Expected: string"),
    (["--set", "rbac.scope=bogus"], 'rbac.scope must be one of the following: "cluster"'),
    (["--set", "instance.storage.size=lots"], "instance.storage.size: Does not match pattern"),
    (["--set", "operator.metricsPort=0"], "operator.metricsPort: Must be greater than or equal"),
    (["--set", "operator.interval=0"], "operator.interval: Must be greater than 0"),
    (["--set", "serviceMonitor.interval=30"], "serviceMonitor.interval: Invalid type"),
    (["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy must be one of"),
    (["--set", "instance.raft.electionTicks=1"], "instance.raft.electionTicks: Must be greater"),
    (["--set", "instance.name=Bad_Name"], "instance.name: Does not match pattern"),
    (["--set", "replicas=3"], "Additional property replicas is not allowed"),
    (["--set", "operator.replicas=2"], "Additional property replicas is not allowed"),
    (["--set", "operator.livenessPort=8080"], "metricsPort and operator.livenessPort must be"),
    (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_rejected_with_a_clear_message(
    helm: Path, args: list[str], message: str
) -> None:
    done = _helm(helm, "template", "raftkv", str(CHART), *args)
    assert done.returncode != 0, f"{args} was accepted"
    assert message in done.stderr, done.stderr


def test_a_number_where_the_tag_string_belongs_is_rejected() -> None:
    # A values file turns 0.1 into a float (--set keeps it a string).
    with pytest.raises(render_manifests.HelmError, match=r"image\.tag: Invalid type"):
        template_text({"image": {"tag": 0.1}})


# --------------------------------------------------------------- the operator's pod


def _operator(values: dict[str, Any]) -> Obj:
    return one(render(values), "Deployment", "raftkv-operator")


def _env(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_operator_deployment_defaults() -> None:
    dep = _operator({})
    spec = dep["spec"]
    # kopf runs standalone (no peering): one replica, and never two during a rollout.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == "operator"
    assert container["image"] == "ghcr.io/raftkv/raftkv:0.1.0"
    assert container["args"] == ["operator", "--all-namespaces"]
    env = _env(container)
    assert env["RAFTKV_MEMBER_IMAGE"] == container["image"]
    assert env["RAFTKV_OPERATOR_LIVENESS"] == "http://0.0.0.0:8081/healthz"
    assert env["RAFTKV_OPERATOR_METRICS_PORT"] == "8080"
    assert "RAFTKV_OPERATOR_NAMESPACES" not in env
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "healthz": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_operator_env_is_exactly_what_the_operator_reads() -> None:
    # Every RAFTKV_* variable the chart sets is one `raftkv operator` reads (main.py),
    # and the chart sets all of them except the ones scope decides.
    read = set(re.findall(r'env\("(RAFTKV_[A-Z_]+)"', OPERATOR_MAIN.read_text()))
    assert read, "main.py reads no RAFTKV_* variable?"
    cluster = set(_env(_operator({})["spec"]["template"]["spec"]["containers"][0]))
    namespaced = set(
        _env(
            _operator({"rbac": {"scope": "namespace"}})["spec"]["template"]["spec"]["containers"][0]
        )
    )
    assert cluster | namespaced == read
    assert namespaced - cluster == {"RAFTKV_OPERATOR_NAMESPACES"}


def test_namespace_scope_watches_only_the_release_namespace() -> None:
    dep = one(render({"rbac": {"scope": "namespace"}}, namespace="tenant-a"), "Deployment")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["operator"]
    assert _env(container)["RAFTKV_OPERATOR_NAMESPACES"] == "tenant-a"


def test_values_reach_the_operator_pod() -> None:
    dep = _operator(EVERYTHING)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert env["RAFTKV_MEMBER_IMAGE"] == "registry.example.com/raftkv:0.1.0-member"
    assert env["RAFTKV_OPERATOR_INTERVAL"] == "2.5"
    assert env["TZ"] == "UTC"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "infra-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "storage"


def test_restricted_pod_security() -> None:
    for values in ({}, EVERYTHING):
        pod = _operator(values)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsUser"] == o.MEMBER_UID  # the image's user
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
        assert not pod.get("hostNetwork")
        assert not pod.get("hostPID")


def test_operator_labels_never_select_members() -> None:
    # The member selector is {name: raftkv, instance: <RaftKV name>}; the release and a
    # RaftKV may share a name, so the operator's pods must differ in app.kubernetes.io/name.
    member_name = n.selector_labels("raftkv")[n.NAME_LABEL]
    for obj in render(EVERYTHING):
        if obj["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert obj["metadata"]["labels"][n.NAME_LABEL] != member_name, obj["kind"]
    pod_labels = _operator({})["spec"]["template"]["metadata"]["labels"]
    assert not set(n.selector_labels("raftkv").items()) <= set(pod_labels.items())


def test_operator_metrics_service_targets_the_operator() -> None:
    objs = render({})
    svc = one(objs, "Service", "raftkv-operator")
    pod_labels = _operator({})["spec"]["template"]["metadata"]["labels"]
    assert set(svc["spec"]["selector"].items()) <= set(pod_labels.items())
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_default_render_has_exactly_the_operator_and_its_permissions() -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in render({}))
    assert kinds == [
        ("ClusterRole", "raftkv-operator"),
        ("ClusterRoleBinding", "raftkv-operator"),
        ("Deployment", "raftkv-operator"),
        ("Service", "raftkv-operator"),
        ("ServiceAccount", "raftkv-operator"),
    ]
    for obj in render({}):
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_namespace_scope_creates_nothing_cluster_scoped() -> None:
    objs = render({**EVERYTHING, "rbac": {"scope": "namespace"}}, namespace="tenant-a")
    assert not find(objs, "ClusterRole")
    assert not find(objs, "ClusterRoleBinding")
    for obj in objs:
        assert obj["metadata"]["namespace"] == "tenant-a", obj["kind"]
    binding = one(objs, "RoleBinding")
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "raftkv-operator", "namespace": "tenant-a"}
    ]
    monitor = one(objs, "ServiceMonitor", "raftkv-members")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["tenant-a"]}


def test_existing_service_account() -> None:
    objs = render({"serviceAccount": {"create": False, "name": "ops"}})
    assert not find(objs, "ServiceAccount")
    assert one(objs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"
    assert (
        _operator({"serviceAccount": {"create": False, "name": "ops"}})["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        == "ops"
    )


def test_long_release_names_stay_within_kubernetes_limits(helm: Path) -> None:
    name = "a-rather-long-release-name-for-raftkv-that-goes-on-and-on"[:53]
    done = _helm(helm, "template", name, str(CHART), "--set", "instance.enabled=true")
    assert done.returncode == 0, done.stderr
    for obj in yaml.safe_load_all(done.stdout):
        if obj:
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


# ----------------------------------------------------------------- the RaftKV instance


def test_instance_is_optional_and_follows_values() -> None:
    assert not find(render({}), "RaftKV")
    rkv = one(render(EVERYTHING), "RaftKV", "kv")
    assert rkv["apiVersion"] == n.API_VERSION
    assert rkv["metadata"]["namespace"] == NAMESPACE
    spec = rkv["spec"]
    assert spec["replicas"] == 5
    assert spec["image"] == "registry.example.com/raftkv:0.1.0"
    assert spec["storage"] == {"size": "2Gi", "storageClassName": "fast-ssd"}
    assert spec["raft"]["electionTicks"] == 20
    assert spec["tolerations"][0]["key"] == "raftkv"
    assert "affinity" not in spec  # empty: the operator's own spreading applies


def test_default_instance_name_is_the_release_fullname() -> None:
    rkv = one(render({"instance": {"enabled": True}}), "RaftKV")
    assert rkv["metadata"]["name"] == "raftkv"
    assert rkv["spec"] == {"replicas": 3, "storage": {"size": "1Gi"}}


# ------------------------------------------------------------------------ monitoring


def _exposed_metric_names() -> set[str]:
    """Every sample name a member exports, from its own metrics module."""
    metrics = Metrics()
    metrics.watch_raft(lambda: RaftGauges(True, True, 1, 1, 1, 1, 0, 1, 0, 0))
    registry: CollectorRegistry = metrics.registry
    names: set[str] = set()
    for family in registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }[family.type]
        names.update(family.name + s for s in suffixes)
    return names


def _promql_metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(raftkv_[a-z0-9_]+)\s*\{", expr))


def _every_raftkv_token(expr: str) -> set[str]:
    return set(re.findall(r"\b(raftkv_[a-z0-9_]+)\b", expr))


#: Labels the members' ServiceMonitor adds; everything else raftkv_* in PromQL is a metric.
SCRAPE_LABELS = {"raftkv_cluster"}


def _contract_metric_names() -> set[str] | None:
    design = REPO.parent / "shared" / "DESIGN.md"
    if not design.exists():
        return None
    return set(re.findall(r"`(raftkv_[a-z0-9_]+)`", design.read_text()))


def _check_names(exprs: list[str]) -> None:
    exposed = _exposed_metric_names()
    contract = _contract_metric_names()
    for expr in exprs:
        used = _promql_metric_names(expr)
        assert _every_raftkv_token(expr) <= used | SCRAPE_LABELS, expr
        for name in used:
            assert name in exposed, f"{name} is not exported by a member ({expr})"
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if contract is not None:
                assert base in contract, f"{base} is not a contract name in DESIGN.md"


def test_alerts_use_real_metric_names_and_cover_the_failure_modes() -> None:
    rule = one(render(EVERYTHING), "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {r["alert"] for r in rules} == {
        "RaftKVNoLeader",
        "RaftKVFrequentLeaderChanges",
        "RaftKVMemberDown",
        "RaftKVWALFsyncSlow",
        "RaftKVProposalsFailing",
    }
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning")
        assert r["labels"]["team"] == "storage"  # alertLabels
        assert r["annotations"]["summary"]
        assert r["annotations"]["description"]
        assert 'job="raftkv-member"' in r["expr"]
        # Alert templates reach Prometheus unrendered by Helm.
        assert "{{ $labels." in r["annotations"]["description"]
    _check_names([r["expr"] for r in rules])
    fsync = next(r for r in rules if r["alert"] == "RaftKVWALFsyncSlow")
    assert "histogram_quantile(0.99," in fsync["expr"]
    assert fsync["expr"].rstrip().endswith("0.5")


def test_dashboard_is_valid_json_with_the_promised_panels() -> None:
    cm = one(render(EVERYTHING), "ConfigMap", "raftkv-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["raftkv.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "raftkv.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Leader",
        "Term",
        "Commit index per member",
        "Applied index per member",
        "Proposals/s",
        "WAL fsync latency",
    ):
        assert wanted in titles
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    _check_names(exprs)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_service_monitor_matches_the_services_the_operator_creates() -> None:
    rkv = o.RaftKVObject(name="kv", namespace="apps", uid="u")
    peer = o.peer_service(rkv)
    monitor = one(render(EVERYTHING), "ServiceMonitor", "raftkv-members")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert set(selector.items()) <= set(peer["metadata"]["labels"].items())
    assert not set(selector.items()) <= set(o.client_service(rkv)["metadata"]["labels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in peer["spec"]["ports"]}
    assert endpoint["port"] == "client"
    assert endpoint["path"] == "/metrics"
    # The label the alerts and the dashboard group by comes from the member pods' labels.
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["job"]["replacement"] == "raftkv-member"
    assert relabel["raftkv_cluster"]["sourceLabels"] == [
        "__meta_kubernetes_pod_label_" + re.sub(r"[./-]", "_", n.INSTANCE_LABEL)
    ]
    assert n.INSTANCE_LABEL in o.statefulset(rkv, 3)["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_network_policy_guards_the_peer_port() -> None:
    policy = one(render(EVERYTHING), "NetworkPolicy")
    members = o.statefulset(o.RaftKVObject(name="kv", namespace=NAMESPACE, uid="u"), 3)
    member_labels = set(members["spec"]["template"]["metadata"]["labels"].items())
    operator_labels = set(_operator({})["spec"]["template"]["metadata"]["labels"].items())
    spec = policy["spec"]
    assert set(spec["podSelector"]["matchLabels"].items()) <= member_labels
    assert spec["policyTypes"] == ["Ingress"]
    peer_rule, client_rule = spec["ingress"]
    assert peer_rule["ports"] == [{"port": n.PEER_PORT, "protocol": "TCP"}]
    (only_members,) = peer_rule["from"]
    assert set(only_members["podSelector"]["matchLabels"].items()) <= member_labels
    assert not set(only_members["podSelector"]["matchLabels"].items()) <= operator_labels
    # The client port and etcd's gRPC port (the member's default: client port + 10000).
    assert client_rule["ports"] == [
        {"port": n.CLIENT_PORT, "protocol": "TCP"},
        {"port": o.ETCD_PORT, "protocol": "TCP"},
    ]
    etcd = [p for p in members["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert {"name": "etcd", "containerPort": o.ETCD_PORT, "protocol": "TCP"} in etcd
    selected = [set(f["podSelector"]["matchLabels"].items()) for f in client_rule["from"][:2]]
    assert selected[0] <= member_labels
    assert selected[1] <= operator_labels
    assert client_rule["from"][2] == EVERYTHING["networkPolicy"]["clientFrom"][0]
    # By default the client port is open to anyone.
    default = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert "from" not in default["spec"]["ingress"][1]


def test_optional_parts_are_off_by_default() -> None:
    kinds = {obj["kind"] for obj in render({})}
    for kind in ("RaftKV", "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"):
        assert kind not in kinds


# --------------------------------------------------------------------- documentation


def test_every_value_is_documented_and_the_readme_table_is_current() -> None:
    values_yaml = (CHART / "values.yaml").read_text()
    assert render_manifests.undocumented_keys(values_yaml) == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    assert render_manifests.values_table(values_yaml, schema) in readme, (
        "charts/raftkv/README.md is out of date: run make manifests"
    )


def test_schema_knows_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, sub: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sub:
            return
        for key, value in node.items():
            assert key in sub["properties"], f"{path}{key} is missing from values.schema.json"
            walk(value, sub["properties"][key], f"{path}{key}.")

    walk(values, schema, "")
