"""The checks the apiextensions apiserver runs on a CustomResourceDefinition before it
stores one, as far as they can be written down without the apiserver.

A real apiserver refused our CRD (a rule that could not be evaluated against a schema
default) while every test passed: the stand-in stored CRDs as sent. ``check_crd``
returns the apiserver's complaints, worded and placed as it words and places them
(``spec.validation.openAPIV3Schema.properties[spec]...``), so that tests, the API
stand-in and the shipping checks refuse what a real cluster refuses:

- names: ``<plural>.<group>``, DNS labels for plural/singular/short names, a group
  with a dot, one storage version, served versions;
- the structural-schema rules: every node typed (except under
  ``x-kubernetes-int-or-string`` / ``x-kubernetes-preserve-unknown-fields``),
  ``properties`` only on objects and ``items`` only on arrays, no ``properties``
  beside ``additionalProperties``, nothing but ``type: object`` for the root's
  ``metadata``, value validations (``anyOf``...) that carry no types or defaults;
- defaults: pruned (no field the schema would drop), valid against their node's
  schema, and every CEL rule at or below the node holding for them, evaluated as the
  apiserver does: on the default as written, nested defaults not applied, with
  ``oldSelf`` bound to the same value;
- list types: ``map`` lists with object items and required-or-defaulted scalar keys;
- CEL: every rule compiles, transition rules only where an old value can be
  correlated, ``reason`` from the allowed set, and the estimated cost within the
  per-rule and per-CRD budgets;
- subresources: the scale paths name integer / string fields of the schema;
- printer columns: known types, JSON paths that start with a dot.

What only a real apiserver does is listed in docs/crd.md.
"""

from __future__ import annotations

import re
from typing import Any

from support.cel_rules import (
    CRD_COST_LIMIT,
    PER_CALL_COST_LIMIT,
    Rule,
    RuleError,
    compile_rule,
    estimated_cost,
    max_cardinality,
)
from support.crd_schema import (
    cel_causes,
    list_type_causes,
    openapi_causes,
    prune,
    schema_validator,
    to_json_schema,
)

Schema = dict[str, Any]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}
_RULE_REASONS = {
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
}
# Keywords a value validation (inside anyOf/allOf/oneOf/not) may not carry.
_NOT_IN_JUNCTORS = {
    "type",
    "default",
    "description",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}


def check_crd(crd: dict[str, Any]) -> list[str]:
    """The apiserver's objections to ``crd``, one string each (empty: it is stored)."""
    problems: list[str] = []
    problems += _check_names(crd)
    versions = crd.get("spec", {}).get("versions", [])
    storage = [v for v in versions if v.get("storage")]
    if len(storage) != 1:
        problems.append(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
        )
    if not any(v.get("served") for v in versions):
        problems.append("spec.versions: Invalid value: must serve at least one version")
    for i, version in enumerate(versions):
        where = (
            "spec.validation.openAPIV3Schema"
            if len(versions) == 1
            else (f"spec.versions[{i}].schema.openAPIV3Schema")
        )
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            problems.append(f"spec.versions[{i}].schema.openAPIV3Schema: Required value")
            continue
        problems += check_schema(schema, where)
        problems += _check_columns(version, f"spec.versions[{i}].additionalPrinterColumns")
        problems += _check_scale(version, schema, f"spec.versions[{i}].subresources.scale")
    return problems


def check_schema(schema: Schema, where: str = "spec.validation.openAPIV3Schema") -> list[str]:
    """The structural-schema, default, list-type and CEL checks of one version's schema."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append(f"{where}.type: Invalid value: must be object at the root")
    props = schema.get("properties", {})
    meta = props.get("metadata")
    if meta is not None and {k: v for k, v in meta.items() if k != "description"} != {
        "type": "object"
    }:
        problems.append(
            f"{where}.properties[metadata]: Forbidden: must not specify anything other than "
            "type and description for metadata at the root"
        )
    problems += _walk(schema, where, root=schema, path=(), under_preserve=False)
    total = 0.0
    from support.cel_rules import rules

    for rule in rules(schema):
        cost = estimated_cost(schema, rule) * max_cardinality(schema, rule.path)
        total += cost
        if estimated_cost(schema, rule) > PER_CALL_COST_LIMIT:
            problems.append(
                f"{_schema_path(where, rule.path)}.x-kubernetes-validations: Forbidden: estimated "
                f"rule cost exceeds budget by factor of "
                f"{estimated_cost(schema, rule) / PER_CALL_COST_LIMIT:.1f}x"
            )
        problems += _check_rule(schema, rule, where)
    if total > CRD_COST_LIMIT:
        problems.append(
            f"{where}: Forbidden: x-kubernetes-validations estimated rule cost total for entire "
            f"OpenAPIv3 schema exceeds budget by factor of {total / CRD_COST_LIMIT:.1f}x"
        )
    return problems


def _schema_path(where: str, path: tuple[str, ...]) -> str:
    out = where
    for part in path:
        out += {"[*]": ".items", "{*}": ".additionalProperties"}.get(part, f".properties[{part}]")
    return out


def _walk(
    node: Schema, where: str, *, root: Schema, path: tuple[str, ...], under_preserve: bool
) -> list[str]:
    problems: list[str] = []
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    int_or_string = bool(node.get("x-kubernetes-int-or-string"))
    kind = node.get("type")
    if kind is None and not (preserve or int_or_string):
        problems.append(
            f"{where}.type: Required value: must not be empty for specified object fields"
        )
    elif kind is not None and kind not in _TYPES:
        problems.append(f'{where}.type: Unsupported value: "{kind}"')
    if int_or_string and kind is not None:
        problems.append(
            f"{where}.type: Invalid value: must be empty if x-kubernetes-int-or-string is true"
        )
    if "properties" in node and kind not in (None, "object"):
        problems.append(f"{where}.properties: Forbidden: must be empty for types other than object")
    if "items" in node and kind not in (None, "array"):
        problems.append(f"{where}.items: Forbidden: must be empty for types other than array")
    if kind == "array" and "items" not in node:
        problems.append(f"{where}.items: Required value: must be specified")
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        problems.append(
            f"{where}.additionalProperties: Forbidden: additionalProperties and properties "
            "are mutual exclusive"
        )
    for junctor in ("anyOf", "allOf", "oneOf"):
        for j, sub in enumerate(node.get(junctor, [])):
            problems += _check_value_validation(sub, f"{where}.{junctor}[{j}]", int_or_string)
    if isinstance(node.get("not"), dict):
        problems += _check_value_validation(node["not"], f"{where}.not", False)
    if "enum" in node and kind in _TYPES:
        for value in node["enum"]:
            if not _has_type(value, kind):
                problems.append(f"{where}.enum: Invalid value: {value!r}: must be of type {kind}")
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            problems.append(f"{where}.pattern: Invalid value: {node['pattern']!r}: {exc}")
    problems += _check_list_type(node, where)
    if "default" in node:
        problems += _check_default(node, where, under_preserve, path)
    for name, sub in node.get("properties", {}).items():
        if not path and name == "metadata":
            continue  # ObjectMeta: checked at the root
        problems += _walk(
            sub,
            f"{where}.properties[{name}]",
            root=root,
            path=(*path, name),
            under_preserve=under_preserve or preserve,
        )
    if isinstance(node.get("items"), dict):
        problems += _walk(
            node["items"],
            f"{where}.items",
            root=root,
            path=(*path, "[*]"),
            under_preserve=under_preserve or preserve,
        )
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(
            node["additionalProperties"],
            f"{where}.additionalProperties",
            root=root,
            path=(*path, "{*}"),
            under_preserve=under_preserve or preserve,
        )
    return problems


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "boolean": bool, "object": dict, "array": list}[kind])


def _check_value_validation(sub: Schema, where: str, int_or_string: bool) -> list[str]:
    problems = []
    for key in sorted(_NOT_IN_JUNCTORS & set(sub)):
        if int_or_string and key == "type" and sub.get("type") in ("integer", "string"):
            continue  # the one allowed shape: anyOf [{type: integer}, {type: string}]
        problems.append(f"{where}.{key}: Forbidden: must be empty to be structural")
    return problems


def _check_list_type(node: Schema, where: str) -> list[str]:
    problems: list[str] = []
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is None:
        if keys is not None:
            problems.append(
                f"{where}.x-kubernetes-list-map-keys: Forbidden: must only be set if "
                "x-kubernetes-list-type is map"
            )
        return problems
    if node.get("type") != "array":
        problems.append(
            f"{where}.x-kubernetes-list-type: Invalid value: must only be used on type array"
        )
        return problems
    if list_type not in ("atomic", "set", "map"):
        problems.append(f'{where}.x-kubernetes-list-type: Unsupported value: "{list_type}"')
    items = node.get("items", {})
    if list_type == "map":
        if not keys:
            problems.append(
                f"{where}.x-kubernetes-list-map-keys: Required value: must not be empty if "
                "x-kubernetes-list-type is map"
            )
        if items.get("type") != "object":
            problems.append(
                f"{where}.items.type: Invalid value: must be object if x-kubernetes-list-type "
                "is map"
            )
        required = set(items.get("required", []))
        for key in keys or []:
            field = items.get("properties", {}).get(key)
            if field is None:
                problems.append(
                    f"{where}.items.properties[{key}]: Required value: list map key must be a "
                    "property"
                )
                continue
            if field.get("type") not in ("string", "integer", "number", "boolean"):
                problems.append(
                    f"{where}.items.properties[{key}].type: Invalid value: list map keys must "
                    "be scalars"
                )
            if key not in required and "default" not in field:
                problems.append(
                    f"{where}.items.properties[{key}]: Required value: this property is in "
                    "x-kubernetes-list-map-keys, so it must have a default or be a required "
                    "property"
                )
    if (
        list_type == "set"
        and items.get("type") in ("object", "array")
        and items.get("x-kubernetes-map-type") != "atomic"
    ):
        problems.append(f"{where}.items: Invalid value: set items must be scalars or atomic")
    return problems


def _check_default(
    node: Schema, where: str, under_preserve: bool, path: tuple[str, ...]
) -> list[str]:
    """A default must survive pruning, validate, and satisfy the rules at or below it.

    The apiserver validates the default exactly as written: nested defaults are not
    applied first, and transition rules see ``oldSelf`` equal to ``self``. A rule that
    reads a key the default leaves out fails with "no such key" and refuses the CRD.
    """
    problems: list[str] = []
    default = node["default"]
    if path and path[0] == "metadata":
        return [f"{where}.default: Forbidden: must not be set inside metadata"]
    if not under_preserve and prune(node, default, root=False) != default:
        problems.append(
            f"{where}.default: Invalid value: {default!r}: must not have unknown fields"
        )
    v = schema_validator(to_json_schema({k: val for k, val in node.items() if k != "default"}))
    for cause in openapi_causes(v, default) + list_type_causes(node, default):
        problems.append(f"{where}.default: {cause.message}")
    for cause in cel_causes(node, default, default):
        problems.append(f"{where}.default: {cause.message}")
    return problems


def _check_rule(schema: Schema, rule: Rule, where: str) -> list[str]:
    at = f"{_schema_path(where, rule.path)}.x-kubernetes-validations"
    problems: list[str] = []
    try:
        compile_rule(rule.rule)
    except RuleError as exc:
        problems.append(f"{at}: Invalid value: {rule.rule!r}: {exc}")
    if rule.reason is not None and rule.reason not in _RULE_REASONS:
        problems.append(f'{at}.reason: Unsupported value: "{rule.reason}"')
    if rule.is_transition and not _correlatable(schema, rule.path):
        problems.append(
            f"{at}: Invalid value: {rule.rule!r}: oldSelf cannot be used on the uncorrelatable "
            "portion of the schema within a list (only map-type lists correlate)"
        )
    if rule.field_path is not None and not rule.field_path.startswith("."):
        problems.append(
            f"{at}.fieldPath: Invalid value: {rule.field_path!r}: must start with a dot"
        )
    return problems


def _correlatable(schema: Schema, path: tuple[str, ...]) -> bool:
    node = schema
    for part in path:
        if part == "[*]":
            if node.get("x-kubernetes-list-type") != "map":
                return False
            node = node["items"]
        elif part == "{*}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return True


def _check_names(crd: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    plural = names.get("plural", "")
    if "." not in group or not _DNS_SUBDOMAIN.match(group):
        problems.append(
            f'spec.group: Invalid value: "{group}": should be a domain with at least one dot'
        )
    if crd.get("metadata", {}).get("name") != f"{plural}.{group}":
        problems.append(
            f'metadata.name: Invalid value: "{crd.get("metadata", {}).get("name")}": '
            'must be spec.names.plural+"."+spec.group'
        )
    for key in ("plural", "singular", "listKind", "kind"):
        if key in ("plural", "singular") and names.get(key) and not _DNS_LABEL.match(names[key]):
            problems.append(
                f'spec.names.{key}: Invalid value: "{names[key]}": a lowercase RFC 1123 label'
            )
    if not names.get("kind"):
        problems.append("spec.names.kind: Required value")
    for short in names.get("shortNames", []):
        if not _DNS_LABEL.match(short):
            problems.append(
                f'spec.names.shortNames: Invalid value: "{short}": a lowercase RFC 1123 label'
            )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append(f'spec.scope: Unsupported value: "{spec.get("scope")}"')
    meta = crd.get("metadata", {})
    for kind in ("labels", "annotations"):
        for key, value in (meta.get(kind) or {}).items():
            if not isinstance(value, str):
                problems.append(f"metadata.{kind}: Invalid value: {key}: values must be strings")
            elif kind == "labels" and len(value) > 63:
                problems.append(
                    f"metadata.labels: Invalid value: {value!r}: must be no more than 63 characters"
                )
    size = sum(len(k) + len(str(v)) for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        problems.append("metadata.annotations: Too long: must have at most 262144 bytes")
    return problems


def _check_columns(version: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, column in enumerate(version.get("additionalPrinterColumns", [])):
        if column.get("type") not in _COLUMN_TYPES:
            problems.append(f'{where}[{i}].type: Unsupported value: "{column.get("type")}"')
        if not str(column.get("jsonPath", "")).startswith("."):
            problems.append(
                f"{where}[{i}].jsonPath: Invalid value: must be a simple json path starting with ."
            )
        if column.get("name") in seen:
            problems.append(f'{where}[{i}].name: Duplicate value: "{column.get("name")}"')
        seen.add(column.get("name", ""))
    return problems


def _check_scale(version: dict[str, Any], schema: Schema, where: str) -> list[str]:
    scale = version.get("subresources", {}).get("scale")
    if not scale:
        return []
    problems: list[str] = []
    for key, top, kind in (
        ("specReplicasPath", "spec", "integer"),
        ("statusReplicasPath", "status", "integer"),
        ("labelSelectorPath", None, "string"),
    ):
        value = scale.get(key)
        if value is None:
            if key != "labelSelectorPath":
                problems.append(f"{where}.{key}: Required value")
            continue
        parts = value.lstrip(".").split(".")
        if top is not None and parts[0] != top:
            problems.append(
                f'{where}.{key}: Invalid value: "{value}": should be a json path under .{top}'
            )
        if top is None and parts[0] not in ("spec", "status"):
            problems.append(
                f'{where}.{key}: Invalid value: "{value}": should be a json path under .spec '
                "or .status"
            )
        node: Schema | None = schema
        for part in parts:
            node = (node or {}).get("properties", {}).get(part)
        if node is None or node.get("type") != kind:
            problems.append(
                f'{where}.{key}: Invalid value: "{value}": must point to a field of type {kind}'
            )
    return problems
