"""The RaftKV CRD as data: default, prune and validate an object like the API server.

On every write of a custom resource the apiserver, in this order, applies the
structural schema's ``default`` values, prunes fields the schema does not know
(except under ``x-kubernetes-preserve-unknown-fields``), validates the result
against the OpenAPI schema, runs the CEL rules (``x-kubernetes-validations``, with
``oldSelf`` on updates) and answers 422 with one cause per failed field.
``jsonschema`` knows none of the Kubernetes extensions (``nullable``, list types,
int-or-string), so those are done here, and its errors are reworded into the
apiserver's ``field: Invalid value: ...`` shape so tests can match real messages.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from support.cel_rules import RuleError, evaluate

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "raftkv" / "crds" / "raftkv.dev_raftkvs.yaml"
MANIFEST_CRD = REPO / "manifests" / "crd.yaml"

Schema = dict[str, Any]
JSON = dict[str, Any]


@dataclass(frozen=True)
class Cause:
    """One entry of a 422's ``details.causes``, as the apiserver writes it."""

    reason: str  # FieldValueInvalid, FieldValueRequired, ...
    field: str  # spec.raft, spec.tolerations[0], ...
    message: str  # "Invalid value: ...: ...", without the field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def as_json(self) -> JSON:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def load_crd(path: Path = CHART_CRD) -> JSON:
    crd = yaml.safe_load(path.read_text())
    assert isinstance(crd, dict)
    return crd


def version_schema(crd: JSON, version: str = "v1alpha1") -> Schema:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = v["schema"]["openAPIV3Schema"]
            assert isinstance(schema, dict)
            return schema
    raise KeyError(version)


# --------------------------------------------------------------------------- defaulting


def apply_defaults(schema: Schema, value: Any) -> Any:
    """``value`` with the schema's defaults filled in, recursively, as the API server does.

    A default that is filled in is itself defaulted further (its nested fields get
    their defaults), as the apiserver's structural defaulting does.
    """
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in schema.get("properties", {}):
                    _default(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(schema["items"], item)


# --------------------------------------------------------------------------- pruning


def prune(schema: Schema, value: Any, *, root: bool = True) -> Any:
    """``value`` without the fields the schema does not specify (a copy).

    The apiserver drops them silently, so an operator that writes a field the schema
    lacks loses it on a real cluster; the stand-in drops it too. At the root,
    ``apiVersion``, ``kind`` and ``metadata`` (an ObjectMeta) are always kept.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(value)
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: JSON = {}
        for name, item in value.items():
            if root and name in ("apiVersion", "kind", "metadata"):
                out[name] = copy.deepcopy(item)
            elif name in props:
                out[name] = prune(props[name], item, root=False)
            elif isinstance(extra, dict):
                out[name] = prune(extra, item, root=False)
            elif extra is True:
                out[name] = copy.deepcopy(item)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item, root=False) for item in value]
    return copy.deepcopy(value)


# --------------------------------------------------------------------------- OpenAPI


def to_json_schema(schema: Schema) -> Schema:
    """OpenAPI v3 (Kubernetes flavour) → JSON Schema: ``nullable: true`` allows null."""
    out: Schema = {}
    for key, val in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v) for k, v in val.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(val, dict):
            out[key] = to_json_schema(val)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in val]
        else:
            out[key] = val
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    return out


def validator(crd: JSON | None = None, version: str = "v1alpha1") -> jsonschema.Draft7Validator:
    schema = to_json_schema(version_schema(crd or load_crd(), version))
    return schema_validator(schema)


def schema_validator(schema: Schema) -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def field_path(parts: Any) -> str:
    """``spec``, ``tolerations``, 0 → ``spec.tolerations[0]`` (the apiserver's notation)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _value(value: Any) -> str:
    """A value as the apiserver quotes it in ``Invalid value: ...``."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return "null"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def openapi_causes(
    v: jsonschema.Draft7Validator, obj: Any, prefix: tuple[Any, ...] = ()
) -> list[Cause]:
    """``obj``'s schema violations, worded as kube-openapi's validator words them."""
    causes: list[Cause] = []
    seen: set[str] = set()
    for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        parts = (*prefix, *e.absolute_path)
        path = field_path(parts)
        kind = e.validator
        if kind == "required":
            for name in e.validator_value:
                if isinstance(e.instance, dict) and name not in e.instance:
                    causes.append(
                        Cause("FieldValueRequired", field_path((*parts, name)), "Required value")
                    )
            continue
        if kind == "type":
            want = e.validator_value
            want = " or ".join(want) if isinstance(want, list) else want
            msg = f'{path} in body must be of type {want}: "{_type_name(e.instance)}"'
            cause = Cause("FieldValueInvalid", path, f"Invalid value: {_value(e.instance)}: {msg}")
        elif kind == "enum":
            allowed = ", ".join(json.dumps(x) for x in e.validator_value)
            cause = Cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_value(e.instance)}: supported values: {allowed}",
            )
        elif kind == "maxLength":
            cause = Cause(
                "FieldValueTooLong",
                path,
                f"Too long: may not be more than {e.validator_value} bytes",
            )
        elif kind == "maxItems":
            cause = Cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(e.instance)}: must have at most {e.validator_value} items",
            )
        else:
            wording = {
                "minimum": f"should be greater than or equal to {e.validator_value}",
                "maximum": f"should be less than or equal to {e.validator_value}",
                "minLength": f"should be at least {e.validator_value} chars long",
                "pattern": f"should match '{e.validator_value}'",
                "format": f"must be of type {e.validator_value}",
                "minItems": f"should have at least {e.validator_value} items",
            }.get(kind, e.message)
            cause = Cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_value(e.instance)}: {path} in body {wording}",
            )
        if str(cause) not in seen:
            seen.add(str(cause))
            causes.append(cause)
    return causes


def list_type_causes(schema: Schema, value: Any, parts: tuple[Any, ...] = ()) -> list[Cause]:
    """Duplicates in ``x-kubernetes-list-type: map`` and ``set`` lists (not JSON Schema)."""
    causes: list[Cause] = []
    if isinstance(value, dict):
        for name, item in value.items():
            sub = schema.get("properties", {}).get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                causes += list_type_causes(sub, item, (*parts, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        kind = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: list[Any] = []
        for index, item in enumerate(value):
            if kind == "map" and isinstance(item, dict):
                key: Any = {k: item.get(k) for k in keys}
            elif kind == "set":
                key = item
            else:
                key = None
            if key is not None:
                if key in seen:
                    shown = json.dumps(key, sort_keys=True)
                    causes.append(
                        Cause(
                            "FieldValueDuplicate",
                            field_path((*parts, index)),
                            f"Duplicate value: {shown}",
                        )
                    )
                seen.append(key)
            causes += list_type_causes(schema["items"], item, (*parts, index))
    return causes


# --------------------------------------------------------------------------- CEL


def cel_causes(
    schema: Schema, value: Any, old: Any = None, parts: tuple[Any, ...] = ()
) -> list[Cause]:
    """Run every rule where its node has a value, depth first, as the apiserver does.

    Transition rules run only where the old object has a value at the same place:
    object properties and additionalProperties correlate by name, map-type list
    items by their keys; items of other lists never do (so a transition rule there
    never runs, which is why the apiserver forbids writing one).
    """
    causes: list[Cause] = []
    kind = _type_name(value)
    for entry in schema.get("x-kubernetes-validations", []):
        rule = entry["rule"]
        transition = "oldSelf" in rule
        if transition and old is None:
            continue
        where = field_path(parts)
        if entry.get("fieldPath"):
            where = where + entry["fieldPath"]
        reason = {
            "FieldValueForbidden": "FieldValueForbidden",
            "FieldValueRequired": "FieldValueRequired",
            "FieldValueDuplicate": "FieldValueDuplicate",
        }.get(entry.get("reason", ""), "FieldValueInvalid")
        message = entry.get("message") or f"failed rule: {rule}"
        try:
            holds = evaluate(rule, value, old if transition else None)
        except RuleError as exc:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    where,
                    f'Invalid value: "{kind}": {exc} evaluating rule: {message}',
                )
            )
            continue
        if not holds:
            if reason == "FieldValueInvalid":
                causes.append(Cause(reason, where, f'Invalid value: "{kind}": {message}'))
            else:
                causes.append(Cause(reason, where, message))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            before = old.get(name) if isinstance(old, dict) else None
            causes += cel_causes(sub, item, before, (*parts, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        olds: dict[str, Any] = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            for item in old:
                if isinstance(item, dict):
                    olds[json.dumps({k: item.get(k) for k in keys}, sort_keys=True)] = item
        for index, item in enumerate(value):
            before = None
            if olds and isinstance(item, dict):
                before = olds.get(json.dumps({k: item.get(k) for k in keys}, sort_keys=True))
            causes += cel_causes(schema["items"], item, before, (*parts, index))
    return causes


# --------------------------------------------------------------------------- together


class ObjectSchema:
    """What the apiserver does to a custom resource on a write, for one CRD version."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._validator = schema_validator(to_json_schema(schema))

    def admit(self, obj: JSON, old: JSON | None = None) -> tuple[JSON, list[Cause]]:
        """Default and prune ``obj``, then validate it (``old``: the stored object)."""
        shaped = prune(self.schema, apply_defaults(self.schema, obj))
        return shaped, self.causes(shaped, old)

    def causes(self, obj: JSON, old: JSON | None = None) -> list[Cause]:
        found = openapi_causes(self._validator, obj)
        found += list_type_causes(self.schema, obj)
        found += cel_causes(self.schema, obj, old)
        return found


def invalid_message(kind: str, group: str, name: str | None, causes: list[Cause]) -> str:
    """The 422 message: ``RaftKV.raftkv.dev "kv" is invalid: ...``, causes in brackets."""
    qualified = f"{kind}.{group}" if group else kind
    listed = ", ".join(str(c) for c in causes)
    return f'{qualified} "{name}" is invalid: {listed if len(causes) == 1 else f"[{listed}]"}'


def errors(obj: JSON, crd: JSON | None = None, old: JSON | None = None) -> list[str]:
    """Validation errors of ``obj`` after defaulting and pruning (empty when valid)."""
    crd = crd or load_crd()
    schema = ObjectSchema(version_schema(crd))
    old_shaped = schema.admit(old)[0] if old is not None else None
    return [str(c) for c in schema.admit(obj, old_shaped)[1]]
