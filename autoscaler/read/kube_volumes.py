"""READ: what a pending pod's PersistentVolumeClaims ask of the node it lands on, as the scheduler's
volume plugins judge it.

- A claim bound to a PersistentVolume (``spec.volumeName``, and the volume exists): the volume's
  required node affinity (a zonal EBS volume: its zone), or, for an old volume without one, its
  legacy zone labels. The pod may only run where every such volume can be attached.
- An unbound claim whose StorageClass binds ``WaitForFirstConsumer``: the volume is made where the
  pod is scheduled, so it asks nothing (but the class's ``allowedTopologies``, where the volume
  can be made at all). Unless the class provisions nothing (``kubernetes.io/no-provisioner``:
  statically made volumes, local or zonal): then the claim binds to one of the class's available
  volumes, and the pod may only run where one of them can be attached; with none available it
  waits, as for an unbound Immediate claim.
- An unbound claim that binds ``Immediate``, one of a class that does not exist or of no class,
  one bound to a volume that does not exist, a missing claim: the scheduler does not place the pod
  until the claim binds, whatever nodes there are. The pod is not demand (Pod.unbound_claims).

A claim, volume or class that cannot be read (a malformed object) asks nothing: the pod stays
demand, as it was before claims were read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Optional

from ..model.objects import ZONE_LABEL, Pod, Requirement
from .kube_fields import log, mapping, metadata_of, name_of, node_selector_terms, object_name, sequence, text

LEGACY_ZONE_LABELS = (ZONE_LABEL, "failure-domain.beta.kubernetes.io/zone")
MULTI_ZONE_DELIMITER = "__"  # a volume labelled us-east-1a__us-east-1b may attach in either zone
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
NO_PROVISIONER = "kubernetes.io/no-provisioner"  # a class of volumes made by hand: claims bind to existing ones

NodeTerms = tuple[tuple[Requirement, ...], ...]  # ORed terms of ANDed requirements


def claim_names(spec: dict, pod_name: str) -> tuple[str, ...]:
    """The claims a pod spec uses: each ``persistentVolumeClaim`` volume's, and the one the
    ephemeral-volume controller makes for each generic ``ephemeral`` volume (``<pod>-<volume>``)."""
    names = []
    for volume in sequence(spec.get("volumes"), "spec.volumes"):
        volume = mapping(volume, "a volume")
        if volume.get("persistentVolumeClaim") is not None:
            claim = mapping(volume.get("persistentVolumeClaim"), "a persistentVolumeClaim volume")
            names.append(text(claim.get("claimName"), "a volume's claimName"))
        elif volume.get("ephemeral") is not None:
            names.append(f"{pod_name}-{text(volume.get('name'), 'a volume name')}")
    return tuple(name for name in names if name)


@dataclass(frozen=True)
class Claim:
    volume_name: str  # "" while unbound
    storage_class: Optional[str]  # None: no class named


@dataclass(frozen=True)
class StorageClass:
    waits_for_first_consumer: bool
    allowed_topologies: NodeTerms = ()
    static: bool = False  # provisions nothing: its claims bind to volumes that exist


@dataclass(frozen=True)
class PersistentVolume:
    node_terms: NodeTerms  # where it can be attached; () anywhere
    storage_class: str = ""
    available: bool = False  # not bound to a claim yet


@dataclass
class Volumes:
    """The claims, volumes and classes read this loop. ``None`` for a kind that could not be read
    (no permission): claims that need it ask nothing."""

    claims: Optional[Mapping[tuple[str, str], Claim]] = field(default_factory=dict)  # (namespace, name)
    volumes: Optional[Mapping[str, PersistentVolume]] = field(default_factory=dict)  # by name
    classes: Optional[Mapping[str, StorageClass]] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  # "namespace/name" or "name" of malformed objects


def read_claims(items: Iterable[dict], volumes: Volumes) -> dict[tuple[str, str], Claim]:
    claims = {}
    for item in items:
        try:
            meta = metadata_of(item)
            spec = mapping(item.get("spec"), "spec")
            class_name = spec.get("storageClassName")
            claims[(text(meta.get("namespace"), "metadata.namespace") or "default", object_name(meta))] = Claim(
                volume_name=text(spec.get("volumeName"), "spec.volumeName"),
                storage_class=None if class_name is None else text(class_name, "spec.storageClassName"))
        except (TypeError, ValueError) as error:
            _skip(volumes, "persistentvolumeclaim", item, error)
    return claims


def read_volumes(items: Iterable[dict], volumes: Volumes) -> dict[str, PersistentVolume]:
    found = {}
    for item in items:
        try:
            meta = metadata_of(item)
            spec = mapping(item.get("spec"), "spec")
            status = mapping(item.get("status"), "status")
            found[object_name(meta)] = PersistentVolume(
                volume_node_terms(item), text(spec.get("storageClassName"), "spec.storageClassName"),
                available=spec.get("claimRef") is None and text(status.get("phase"), "status.phase") in ("", "Available"))
        except (TypeError, ValueError) as error:
            _skip(volumes, "persistentvolume", item, error)
    return found


def volume_node_terms(item: dict) -> NodeTerms:
    """A PersistentVolume's required node affinity; for one without, its legacy zone labels (the
    scheduler's VolumeZone: the node's zone must be one of them); else nothing."""
    spec = mapping(item.get("spec"), "spec")
    affinity = mapping(spec.get("nodeAffinity"), "spec.nodeAffinity")
    if affinity.get("required") is not None:
        return node_selector_terms(affinity.get("required"))
    labels = mapping(metadata_of(item).get("labels"), "metadata.labels")
    for key in LEGACY_ZONE_LABELS:
        value = labels.get(key)
        if value:
            zones = tuple(sorted(set(text(value, f"the {key} label").split(MULTI_ZONE_DELIMITER)) - {""}))
            return ((Requirement(ZONE_LABEL, "In", zones),),)
    return ()


def read_classes(items: Iterable[dict], volumes: Volumes) -> dict[str, StorageClass]:
    classes = {}
    for item in items:
        try:
            meta = metadata_of(item)
            topologies = []
            for term in sequence(item.get("allowedTopologies"), "allowedTopologies"):
                expressions = sequence(mapping(term, "a topology term").get("matchLabelExpressions"),
                                       "matchLabelExpressions")
                topologies.append(tuple(_topology_requirement(expression) for expression in expressions))
            classes[object_name(meta)] = StorageClass(
                waits_for_first_consumer=item.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER,
                allowed_topologies=tuple(topologies),
                static=text(item.get("provisioner"), "provisioner") == NO_PROVISIONER)
        except (TypeError, ValueError) as error:
            _skip(volumes, "storageclass", item, error)
    return classes


def _topology_requirement(expression) -> Requirement:
    expression = mapping(expression, "a topology selector requirement")
    values = sequence(expression.get("values"), "a topology requirement's values")
    return Requirement(text(expression.get("key"), "a topology requirement's key"), "In",
                       tuple(text(value, "a topology value") for value in values))


def _skip(volumes: Volumes, kind: str, item, error: Exception) -> None:
    volumes.unreadable.add(name_of(item))
    log.warning("skipping %s %s: cannot read it (%s: %s); pods using it are read as if it asked nothing", kind,
                name_of(item), type(error).__name__, " ".join(str(error).split())[:200])


def with_claims(pod: Pod, claims: tuple[str, ...], volumes: Volumes) -> Pod:
    """The pod with the node affinity of its volumes and the claims it waits for."""
    affinity: list[NodeTerms] = []
    unbound: list[str] = []
    for name in claims:
        terms, waits = claim_effect(pod.namespace, name, volumes)
        if waits:
            unbound.append(name)
        elif terms and terms not in affinity:
            affinity.append(terms)
    if not affinity and not unbound:
        return pod
    return replace(pod, placement=replace(pod.placement, volume_affinity=tuple(affinity)),
                   unbound_claims=tuple(unbound))


def claim_effect(namespace: str, name: str, volumes: Volumes) -> tuple[NodeTerms, bool]:
    """(node terms the claim's volume needs, whether the pod waits for the claim to bind)."""
    if volumes.claims is None or f"{namespace}/{name}" in volumes.unreadable:
        return (), False
    claim = volumes.claims.get((namespace, name))
    if claim is None:
        return (), True
    if claim.volume_name:
        if volumes.volumes is None or claim.volume_name in volumes.unreadable:
            return (), False
        volume = volumes.volumes.get(claim.volume_name)
        return (volume.node_terms, False) if volume is not None else ((), True)
    if not claim.storage_class:
        return (), True  # no class: bound by the volume controller (or a default class) as it can, not by placement
    if volumes.classes is None or claim.storage_class in volumes.unreadable:
        return (), False
    storage_class = volumes.classes.get(claim.storage_class)
    if storage_class is None or not storage_class.waits_for_first_consumer:
        return (), True
    if storage_class.static and volumes.volumes is not None:
        return _static_volumes(claim.storage_class, volumes.volumes, storage_class.allowed_topologies)
    return storage_class.allowed_topologies, False


def _static_volumes(class_name: str, volumes: Mapping[str, PersistentVolume], allowed: NodeTerms) -> tuple[NodeTerms, bool]:
    """A claim of a class of volumes made by hand binds to one of its available volumes: the pod
    may run wherever one of them can be attached (their terms ORed), or waits when there is none.
    (Their sizes and access modes are not compared: a volume too small is counted as a place.)"""
    candidates = [volume for _, volume in sorted(volumes.items()) if volume.available and volume.storage_class == class_name]
    if not candidates:
        return (), True
    if any(not volume.node_terms for volume in candidates):
        return allowed, False  # one can be attached anywhere
    terms: list[tuple[Requirement, ...]] = []
    for volume in candidates:
        terms.extend(term for term in volume.node_terms if term not in terms)
    return tuple(terms), False
