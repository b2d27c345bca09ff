"""The RaftKV CRD as data: load it, default an object and validate it like the API server.

The API server applies ``default`` values from the structural schema before
validation; ``jsonschema`` knows neither that nor OpenAPI's ``nullable``, so both
are done here. CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "raftkv" / "crds" / "raftkv.dev_raftkvs.yaml"
MANIFEST_CRD = REPO / "manifests" / "crd.yaml"

Schema = dict[str, Any]


def load_crd(path: Path = CHART_CRD) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    assert isinstance(crd, dict)
    return crd


def version_schema(crd: dict[str, Any], version: str = "v1alpha1") -> Schema:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = v["schema"]["openAPIV3Schema"]
            assert isinstance(schema, dict)
            return schema
    raise KeyError(version)


def apply_defaults(schema: Schema, value: Any) -> Any:
    """``value`` with the schema's defaults filled in, recursively, as the API server does."""
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
    return out


def validator(crd: dict[str, Any] | None = None) -> jsonschema.Draft7Validator:
    schema = to_json_schema(version_schema(crd or load_crd()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def errors(obj: dict[str, Any], crd: dict[str, Any] | None = None) -> list[str]:
    """Validation errors of ``obj`` after defaulting (empty when valid)."""
    crd = crd or load_crd()
    defaulted = apply_defaults(version_schema(crd), obj)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator(crd).iter_errors(defaulted)
    ]
