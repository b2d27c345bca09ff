"""The RaftKV CRD meets what a real apiserver checks before it stores a CRD, and its CEL
rules hold where a real apiserver runs them.

A Kubernetes 1.36 apiserver refused the CRD we shipped (issue #13): the object defaults
``{}`` of ``spec.storage`` and ``spec.raft`` lacked the keys their CEL rules read, and
the apiserver evaluates every rule against every default. These tests run the rules
with a real CEL implementation (cel-python) against every default, every example and
test object in its defaulted form, and pairs of old and new objects for the transition
rule; and they check that the checker refuses what the apiserver refuses, starting
with the exact two errors that apiserver printed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cel_rules import RuleError, evaluate, node_at, rules
from support.crd_schema import (
    CHART_CRD,
    MANIFEST_CRD,
    ObjectSchema,
    apply_defaults,
    errors,
    load_crd,
    version_schema,
)
from support.structural import check_crd, check_schema

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "examples" / "raftkv.yaml"
WHERE = "spec.validation.openAPIV3Schema"

JSON = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> JSON:
    return load_crd()


@pytest.fixture(scope="module")
def schema(crd: JSON) -> JSON:
    return version_schema(crd)


def raftkv(**spec: Any) -> JSON:
    return {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftKV",
        "metadata": {"name": "kv", "namespace": "default"},
        "spec": spec,
    }


# ------------------------------------------------------------------ the CRD itself


@pytest.mark.parametrize("path", [CHART_CRD, MANIFEST_CRD], ids=["chart", "manifests"])
def test_the_shipped_crd_passes_every_apiserver_check(path: Path) -> None:
    assert check_crd(load_crd(path)) == []


def test_the_crd_a_real_apiserver_refused_is_refused_with_its_words() -> None:
    """The CRD of 0.1.0, rebuilt: defaults ``{}`` under unguarded rules. The expected
    lines are the two the Kubernetes 1.36 apiserver printed, word for word."""
    old = load_crd()
    spec = version_schema(old)["properties"]["spec"]["properties"]
    spec["storage"]["default"] = {}
    spec["storage"]["x-kubernetes-validations"][0]["rule"] = "self.size == oldSelf.size"
    spec["raft"]["default"] = {}
    spec["raft"]["x-kubernetes-validations"][0]["rule"] = "self.electionTicks > self.heartbeatTicks"
    assert check_crd(old) == [
        f'{WHERE}.properties[spec].properties[storage].default: Invalid value: "object": '
        "no such key: size evaluating rule: storage.size cannot change once members have claims",
        f'{WHERE}.properties[spec].properties[raft].default: Invalid value: "object": '
        "no such key: electionTicks evaluating rule: electionTicks must be greater than "
        "heartbeatTicks",
    ]


def test_the_crd_carries_a_revision_the_operator_can_check(crd: JSON) -> None:
    revision = crd["metadata"]["annotations"]["raftkv.dev/crd-revision"]
    assert revision.isdigit()
    assert int(revision) >= 2


# ------------------------------------------------------------------ CEL rules


def _rule_ids(crd: JSON) -> list[str]:
    return [f"{'.'.join(r.path)}: {r.rule}" for r in rules(version_schema(crd))]


RULES = list(rules(version_schema(load_crd())))


def test_the_crd_has_the_rules_these_tests_expect(schema: JSON) -> None:
    assert {".".join(r.path) for r in rules(schema)} == {
        "spec",
        "spec.storage",
        "spec.raft",
        "spec.restore",
        "spec.backup",
        "spec.backup.pvc",
        "spec.tls",
    }


@pytest.mark.parametrize("rule", RULES, ids=_rule_ids(load_crd()))
def test_every_rule_holds_for_the_defaults_at_and_below_its_node(rule: Any, schema: JSON) -> None:
    node = node_at(schema, rule.path)
    # As the apiserver checks the CRD: the default as written, oldSelf = self ...
    if "default" in node:
        assert evaluate(rule.rule, node["default"], node["default"])
    # ... and as it checks objects: a node that is absent, or present but empty,
    # gets its nested defaults first.
    written: JSON
    for written in ({}, node.get("default", {})):
        value = apply_defaults(node, copy.deepcopy(written))
        assert evaluate(rule.rule, value, value if rule.is_transition else None)


def _example_objects() -> list[tuple[str, JSON]]:
    from_file = yaml.safe_load(EXAMPLE.read_text())
    return [
        ("manifests/examples/raftkv.yaml", from_file),
        ("empty spec", raftkv()),
        ("replicas only", raftkv(replicas=5)),
        ("storage without size", raftkv(storage={"storageClassName": "fast"})),
        ("raft with ticks only", raftkv(raft={"electionTicks": 20})),
        ("raft with heartbeat only", raftkv(raft={"heartbeatTicks": 5})),
        (
            "everything",
            raftkv(
                replicas=5,
                image="registry.example.com/raftkv:0.1.0",
                imagePullPolicy="IfNotPresent",
                storage={"size": "10Gi", "storageClassName": "fast-ssd"},
                raft={
                    "snapshotCount": 5000,
                    "tickMs": 50,
                    "electionTicks": 20,
                    "heartbeatTicks": 2,
                },
                tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                nodeSelector={"disk": "ssd"},
            ),
        ),
    ]


@pytest.mark.parametrize(("name", "obj"), _example_objects(), ids=lambda x: x)
def test_examples_are_admitted_in_their_defaulted_form(name: str, obj: JSON, schema: JSON) -> None:
    shaped, causes = ObjectSchema(schema).admit(obj)
    assert causes == [], name
    # Every rule, evaluated directly on the node the apiserver would give it.
    for rule in rules(schema):
        value: Any = shaped
        for part in rule.path:
            if not isinstance(value, dict) or part not in value:
                break  # an optional node left out (spec.backup...): no rule runs there
            value = value[part]
        else:
            assert evaluate(rule.rule, value, value if rule.is_transition else None), rule.rule


STORAGE_MSG = (
    'spec.storage: Invalid value: "object": storage.size cannot change once members have claims'
)
RAFT_MSG = 'spec.raft: Invalid value: "object": electionTicks must be greater than heartbeatTicks'

TRANSITIONS: list[tuple[str, JSON | None, JSON, list[str]]] = [
    ("create", None, {"storage": {"size": "5Gi"}}, []),
    ("no-op update", {"storage": {"size": "5Gi"}}, {"storage": {"size": "5Gi"}}, []),
    ("update that leaves storage alone", {}, {"replicas": 5}, []),
    (
        "storage class may change",
        {"storage": {"size": "5Gi"}},
        {"storage": {"size": "5Gi", "storageClassName": "fast"}},
        [],
    ),
    ("size spelled as its default", {}, {"storage": {"size": "1Gi"}}, []),
    ("size changes", {"storage": {"size": "5Gi"}}, {"storage": {"size": "10Gi"}}, [STORAGE_MSG]),
    ("size set where the default stood", {}, {"storage": {"size": "2Gi"}}, [STORAGE_MSG]),
    ("size dropped falls back to the default", {"storage": {"size": "5Gi"}}, {}, [STORAGE_MSG]),
    ("ticks in order", None, {"raft": {"electionTicks": 4, "heartbeatTicks": 3}}, []),
    ("ticks out of order", None, {"raft": {"electionTicks": 3, "heartbeatTicks": 3}}, [RAFT_MSG]),
    ("heartbeat above the default election", None, {"raft": {"heartbeatTicks": 10}}, [RAFT_MSG]),
]


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS]
)
def test_rules_on_create_and_update(
    case: str, old: JSON | None, new: JSON, expected: list[str], crd: JSON
) -> None:
    found = errors(raftkv(**new), crd, old=None if old is None else raftkv(**old))
    assert found == expected, case


def test_a_rule_that_reads_a_missing_key_fails_as_the_apiserver_says() -> None:
    with pytest.raises(RuleError, match="no such key: size"):
        evaluate("self.size == oldSelf.size", {}, {})


# ------------------------------------------------------------------ the checker refuses


def _with(schema_change: Any) -> JSON:
    crd = load_crd()
    schema_change(version_schema(crd))
    return crd


def _spec(schema: JSON) -> JSON:
    props: JSON = schema["properties"]["spec"]["properties"]
    return props


def _set(path: list[str], key: str, value: Any) -> Any:
    def change(schema: JSON) -> None:
        node = schema
        for part in path:
            node = node["properties"][part]
        node[key] = value

    return change


SPEC = f"{WHERE}.properties[spec]"
REFUSALS: list[tuple[str, Any, str]] = [
    (
        "an untyped node",
        lambda s: _spec(s)["image"].pop("type"),
        f"{SPEC}.properties[image].type: Required value",
    ),
    (
        "properties on a string",
        _set(["spec", "image"], "properties", {"x": {"type": "string"}}),
        f"{SPEC}.properties[image].properties: Forbidden",
    ),
    (
        "a default with a field the schema prunes",
        _set(["spec", "raft"], "default", {"tickMs": 100, "typo": 1}),
        f"{SPEC}.properties[raft].default: Invalid value",
    ),
    (
        "a default that fails its own pattern",
        _set(["spec", "storage", "size"], "default", "lots"),
        f"{SPEC}.properties[storage].properties[size].default: Invalid value",
    ),
    (
        "a default that breaks a rule",
        _set(["spec", "raft"], "default", {"electionTicks": 1, "heartbeatTicks": 1}),
        "electionTicks must be greater than heartbeatTicks",
    ),
    (
        "a rule that does not compile",
        lambda s: _spec(s)["raft"]["x-kubernetes-validations"][0].update(rule="self.(("),
        f"{SPEC}.properties[raft].x-kubernetes-validations: Invalid value",
    ),
    (
        "a transition rule inside an uncorrelatable list",
        lambda s: _spec(s)["tolerations"]["items"].update(
            {"x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
        ),
        "oldSelf cannot be used on the uncorrelatable portion",
    ),
    (
        "an unknown rule reason",
        lambda s: _spec(s)["raft"]["x-kubernetes-validations"][0].update(reason="Nope"),
        'x-kubernetes-validations.reason: Unsupported value: "Nope"',
    ),
    (
        "metadata with properties",
        _set(["metadata"], "properties", {"name": {"type": "string"}}),
        f"{WHERE}.properties[metadata]: Forbidden",
    ),
]


@pytest.mark.parametrize(("case", "change", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_the_checker_refuses_what_the_apiserver_refuses(
    case: str, change: Any, expected: str
) -> None:
    problems = check_crd(_with(change))
    assert any(expected in p for p in problems), (case, problems)


def test_a_map_list_key_needs_a_default_or_required() -> None:
    schema: JSON = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            }
        },
    }
    problems = check_schema(schema)
    assert any("must have a default or be a required property" in p for p in problems), problems
    schema["properties"]["items"]["items"]["required"] = ["name"]
    assert check_schema(schema) == []
