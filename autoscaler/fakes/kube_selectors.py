"""Label and field selectors with the API server's semantics, parsed once into predicates.

``parse_label_selector("app in (a,b),!canary")`` and ``parse_field_selector("spec.nodeName=n1")``
return a function ``obj -> bool``; malformed input raises SelectorError (the server's 400).
``match_label_selector`` evaluates the structured form (matchLabels/matchExpressions) of PDBs.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

ObjectPredicate = Callable[[dict], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"^({_KEY})$")
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")

# Field labels the real server accepts, per kind, besides metadata.name and metadata.namespace.
FIELD_LABELS = {
    "Pod": ("spec.nodeName", "status.phase", "spec.schedulerName", "spec.restartPolicy",
            "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
}
# What the server compares against when a field is absent.
FIELD_DEFAULTS = {"spec.unschedulable": "false"}


class SelectorError(ValueError):
    """A selector the API server would reject with 400 BadRequest."""


def _split_top_level(selector: str) -> list[str]:
    """Split on commas outside parentheses, so ``k in (a,b),x=y`` gives two requirements."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _label_requirement(term: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _NOT_EXISTS.match(term):
        key = match.group(1)
        return lambda labels: key not in labels
    if match := _SET.match(term):
        key, operator, raw_values = match.groups()
        values = frozenset(v.strip() for v in raw_values.split(",") if v.strip())
        if operator == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.match(term):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(term):
        key = match.group(1)
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {term!r}")


def parse_label_selector(selector: Optional[str]) -> Optional[ObjectPredicate]:
    """A predicate on an object's labels, or None for an empty selector (matches everything)."""
    if not selector or not selector.strip():
        return None
    requirements = [_label_requirement(term) for term in _split_top_level(selector)]

    def matches(obj: dict) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def field_value(obj: dict, path: str) -> str:
    """A field as the server compares it: strings as-is, booleans lower-case, absent as ''."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return FIELD_DEFAULTS.get(path, "")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(selector: Optional[str], kind: str) -> Optional[ObjectPredicate]:
    """A predicate for ``field=value,field!=value``; fields the kind does not index are a 400."""
    if not selector or not selector.strip():
        return None
    allowed = {"metadata.name", "metadata.namespace", *FIELD_LABELS.get(kind, ())}
    requirements = []
    for term in _split_top_level(selector):
        match = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not match:
            raise SelectorError(f"invalid selector: {term!r}; can't understand it")
        path, operator, value = match.groups()
        if path not in allowed:
            raise SelectorError(f'field label not supported: {path}')
        requirements.append((path, operator == "!=", value.strip()))

    def matches(obj: dict) -> bool:
        return all((field_value(obj, path) == value) != negated for path, negated, value in requirements)

    return matches


def match_label_selector(selector: Optional[Mapping], labels: Mapping[str, str]) -> bool:
    """The structured selector of PDBs and workloads; a missing selector matches nothing and an
    empty one everything (policy/v1 semantics)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or ()
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SelectorError(f"{operator!r} is not a valid label selector operator")
    return True
