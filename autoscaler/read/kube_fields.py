"""READ: typed reads of the fields of raw Kubernetes objects (JSON dicts), shared by the readers of
pods, nodes, budgets, DaemonSets and volumes.

A field that is missing or null takes its empty value; one of the wrong type raises TypeError,
and the object is skipped (convert_all) rather than let a list where a name belongs reach the
decisions.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Optional

from ..model.objects import HOSTNAME_LABEL, LabelSelector, Requirement, Toleration

log = logging.getLogger("autoscaler.read.kube_reader")  # the readers' one logger: what operators filter on


def convert_all(items, convert, kind: str) -> tuple:
    converted = []
    for item in items:
        try:
            converted.append(convert(item))
        except Exception as error:  # noqa: BLE001 - any malformed field of one object: skip that object
            log.warning("skipping %s %s: cannot read it (%s: %s)", kind, name_of(item), type(error).__name__,
                        " ".join(str(error).split())[:200])
    return tuple(converted)


def name_of(item) -> str:
    """namespace/name of a raw object, as far as it can be read; "?" when it cannot."""
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict):
        return "?"
    parts = [meta.get("namespace"), meta.get("name")]
    return "/".join(part for part in parts if isinstance(part, str) and part) or "?"


def mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} is {type(value).__name__}, not a mapping")
    return value


def sequence(value, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, not a list")
    return value


def text(value, what: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__}, not a string")
    return value


def text_map(value, what: str) -> dict:
    """labels, annotations, selectors: strings to strings."""
    entries = mapping(value, what)
    for key, item in entries.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{what} has {key!r}: {item!r}, not a string to a string")
    return entries


def object_name(meta: dict) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name is missing or not a name")
    return name


def metadata_of(item) -> dict:
    if not isinstance(item, dict):
        raise TypeError(f"the object is {type(item).__name__}, not a mapping")
    return mapping(item.get("metadata"), "metadata")


def parse_time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    if not isinstance(value, str):
        raise TypeError(f"time {value!r} is not a string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def toleration(raw: dict) -> Toleration:
    raw = mapping(raw, "a toleration")
    return Toleration(
        key=text(raw.get("key"), "a toleration's key"),
        operator=text(raw.get("operator"), "a toleration's operator") or "Equal",
        value=text(raw.get("value"), "a toleration's value"),
        effect=text(raw.get("effect"), "a toleration's effect"),
    )


def requirements(expressions) -> tuple[Requirement, ...]:
    requirements = []
    for expression in sequence(expressions, "matchExpressions"):
        expression = mapping(expression, "a match expression")
        values = sequence(expression.get("values"), "a match expression's values")
        requirements.append(Requirement(name_text(expression.get("key"), "a match expression's key"),
                                        name_text(expression.get("operator"), "a match expression's operator"),
                                        tuple(scalar_text(v) for v in values)))
    return tuple(requirements)


def name_text(value, what: str) -> str:
    found = text(value, what)
    if not found:
        raise ValueError(f"{what} is missing")
    return found


def scalar_text(value) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise TypeError(f"value {value!r} is not a string")
    return str(value)


def field_requirements(fields) -> tuple[Requirement, ...]:
    """A term's ``matchFields``. The API server accepts only ``metadata.name``; it becomes a
    requirement on the node's ``kubernetes.io/hostname`` label, which the kubelet sets to the node
    name (on EC2 both are the private DNS name), so the model needs no field selectors of its own.
    Without this, a term with only ``matchFields`` (what the DaemonSet controller writes) would be
    an empty term, which matches no node."""
    requirements = []
    for field in sequence(fields, "matchFields"):
        field = mapping(field, "a match field")
        if field.get("key") == "metadata.name":
            values = sequence(field.get("values"), "a match field's values")
            requirements.append(Requirement(HOSTNAME_LABEL, name_text(field.get("operator"), "a match field's operator"),
                                            tuple(scalar_text(v) for v in values)))
    return tuple(requirements)


def node_selector_terms(selector) -> tuple[tuple[Requirement, ...], ...]:
    """A NodeSelector (``{nodeSelectorTerms: [...]}``): required node affinity, a PersistentVolume's
    node affinity. Terms are ORed, the requirements inside one ANDed."""
    terms = [mapping(term, "a node selector term")
             for term in sequence(mapping(selector, "a node selector").get("nodeSelectorTerms"), "nodeSelectorTerms")]
    return tuple(requirements(term.get("matchExpressions")) + field_requirements(term.get("matchFields"))
                 for term in terms)


def label_selector(raw: Optional[dict]) -> LabelSelector:
    raw = mapping(raw, "a label selector")
    return LabelSelector(
        match_labels=tuple(sorted(text_map(raw.get("matchLabels"), "matchLabels").items())),
        match_expressions=requirements(raw.get("matchExpressions")),
    )


def whole(value, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{what} {value!r} is not a whole number of at least {least}")
    return value
