"""CEL validation rules (``x-kubernetes-validations``) evaluated as the API server does.

A real apiserver refused our CRD because a rule read a key that a schema default did
not have; nothing here had ever run the rules. This module runs them with
``cel-python`` (a real CEL implementation) under the variables Kubernetes binds:
``self`` for the value at the rule's node and, for transition rules, ``oldSelf`` for
the same node in the stored object.

What Kubernetes adds that cel-python lacks (its quantity/url/ip libraries, the type
checker that knows the schema) is not emulated; the rules we ship stay within the
standard library plus ``has()``, which both implement. cel-python parses without
declarations, so an unknown variable shows up at evaluation, which every rule gets
(the tests evaluate each against the schema's defaults).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]

#: The apiserver's per-expression estimated cost limit (``PerCallLimit``).
PER_CALL_COST_LIMIT = 1_000_000
#: The budget of all rules of one CRD version together (``StaticEstimatedCRDCostLimit``).
CRD_COST_LIMIT = 100_000_000
#: Request bodies are at most 3 MiB; unbounded strings and lists are sized from it.
MAX_REQUEST_BYTES = 3 * 1024 * 1024

_OLD_SELF = re.compile(r"\boldSelf\b")
_ENV = celpy.Environment()


@dataclass(frozen=True)
class Rule:
    """One entry of a node's ``x-kubernetes-validations``, with where it sits."""

    path: tuple[str, ...]  # schema path: property names, "[*]" for items, "{*}" for maps
    rule: str
    message: str | None
    field_path: str | None
    reason: str | None

    @property
    def is_transition(self) -> bool:
        """Transition rules read ``oldSelf`` and run only when an old value exists."""
        return bool(_OLD_SELF.search(self.rule))

    def describe(self) -> str:
        return self.message or f"failed rule: {self.rule}"


class RuleError(Exception):
    """A rule that does not compile or cannot be evaluated (the apiserver's message)."""


@functools.cache
def _program(rule: str) -> celpy.Runner:
    try:
        return _ENV.program(_ENV.compile(rule))
    except CELParseError as exc:
        raise RuleError(f"compilation failed: {exc}") from exc


def compile_rule(rule: str) -> None:
    """Raise :class:`RuleError` when ``rule`` is not valid CEL."""
    _program(rule)


def evaluate(rule: str, self_value: Any, old_value: Any = None) -> bool:
    """Run ``rule`` with ``self`` (and ``oldSelf``) bound; True when it holds.

    Raises :class:`RuleError` with the apiserver's wording when evaluation fails
    (for example "no such key"), which on a real cluster rejects the object.
    """
    activation: dict[str, Any] = {"self": json_to_cel(self_value)}
    if old_value is not None:
        activation["oldSelf"] = json_to_cel(old_value)
    try:
        result = _program(rule).evaluate(activation)
    except CELEvalError as exc:
        raise RuleError(_eval_message(exc)) from exc
    if isinstance(result, CELEvalError):
        raise RuleError(_eval_message(result))
    if not isinstance(result, celtypes.BoolType):
        raise RuleError(f"rule must evaluate to a bool, got {type(result).__name__}")
    return bool(result)


def _eval_message(exc: CELEvalError) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    missing = re.search(r"no such member in mapping: '([^']+)'", text)
    if missing:
        return f"no such key: {missing.group(1)}"
    return text


def rules(schema: Schema, path: tuple[str, ...] = ()) -> Iterator[Rule]:
    """Every rule in ``schema``, depth first, with its schema path."""
    for entry in schema.get("x-kubernetes-validations", []):
        yield Rule(
            path=path,
            rule=entry["rule"],
            message=entry.get("message"),
            field_path=entry.get("fieldPath"),
            reason=entry.get("reason"),
        )
    for name, sub in schema.get("properties", {}).items():
        yield from rules(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from rules(schema["items"], (*path, "[*]"))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from rules(schema["additionalProperties"], (*path, "{*}"))


def node_at(schema: Schema, path: tuple[str, ...]) -> Schema:
    node = schema
    for part in path:
        if part == "[*]":
            node = node["items"]
        elif part == "{*}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


# --------------------------------------------------------------------------- cost


def max_cardinality(schema: Schema, path: tuple[str, ...]) -> float:
    """How many times a rule at ``path`` can run in one object (the apiserver's bound).

    Each list or map on the way multiplies by its ``maxItems``/``maxProperties``, or,
    when unbounded, by how many of its smallest elements fit in a request body.
    """
    total = 1.0
    node = schema
    for part in path:
        if part == "[*]":
            item = node["items"]
            total *= node.get("maxItems", MAX_REQUEST_BYTES // (_min_size(item) + 1))
            node = item
        elif part == "{*}":
            item = node["additionalProperties"]
            total *= node.get("maxProperties", MAX_REQUEST_BYTES // (_min_size(item) + 4))
            node = item
        else:
            node = node["properties"][part]
    return total


def _min_size(schema: Schema) -> int:
    """Smallest serialized size of a value of this schema, in bytes."""
    kind = schema.get("type")
    if kind == "string":
        return 2 + int(schema.get("minLength", 0))
    if kind == "object":
        return 2
    if kind == "array":
        return 2
    return 1


def estimated_cost(schema: Schema, rule: Rule) -> float:
    """A conservative estimate of one evaluation's cost, in the apiserver's units.

    Not the apiserver's checker: it charges one unit per token plus, for every string
    field the rule names, a tenth of its maximum length (the cost of comparing or
    matching it), and for every list it names, its maximum size. That
    over-approximates the rules we write (field reads, comparisons, has()), which is
    what a budget check needs.
    """
    node = node_at(schema, rule.path)
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\S", rule.rule)
    names = set(tokens)
    cost = float(len(tokens))
    for name, sub in _reachable(node, "self"):
        if name not in names:
            continue  # the rule never reads this field
        kind = sub.get("type")
        if kind == "string":
            cost += math.ceil(sub.get("maxLength", MAX_REQUEST_BYTES) * 0.1)
        elif kind == "array":
            cost += sub.get("maxItems", MAX_REQUEST_BYTES // 2)
    return cost


def _reachable(node: Schema, name: str) -> Iterator[tuple[str, Schema]]:
    yield name, node
    for child, sub in node.get("properties", {}).items():
        yield from _reachable(sub, child)
