"""A resource's EC2 tags read from moto's own index by resource id, instead of a scan of the region.

moto 5.2 looks up one resource's tags (``TaggedEC2Resource.get_tags``: every instance that
DescribeInstances renders, every ``tag:`` filter) through ``TagBackend.describe_tags`` filtered by
resource id, which matches a regex against every tag of every resource in the region. Rendering
N instances thus costs N x (all tags in the region): about a quarter of DescribeInstances' time at
2,000 instances, and growing with the square of the fleet. ``TagBackend.tags`` is already a dict
from resource id to that resource's tags, so the lookup here reads that entry: the same rows, in
the same order, always current after CreateTags/DeleteTags because it is moto's own state.

``install`` while a FakeAws runs, ``remove`` when it stops (moto's classes are global to the process).
"""

from __future__ import annotations

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

__all__ = ["install", "remove", "indexed_get_tags"]

_moto_get_tags = TaggedEC2Resource.get_tags
# moto turns the resource-id filter into an fnmatch pattern: an id with these would be a pattern.
_PATTERN_CHARACTERS = frozenset("*?[")


def indexed_get_tags(resource: TaggedEC2Resource) -> list[dict[str, str]]:
    """What moto's get_tags returns for ``resource``, read by id instead of by scanning."""
    resource_id = resource.id  # type: ignore[attr-defined]
    if not resource_id:
        return []
    if not _PATTERN_CHARACTERS.isdisjoint(resource_id):
        return _moto_get_tags(resource)
    # .get, not [ ]: TagBackend.tags is a defaultdict, and a lookup must not add an entry.
    tags = resource.ec2_backend.tags.get(resource_id)  # type: ignore[attr-defined]
    if not tags:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    # list(...) copies in one step, so a CreateTags on another request thread cannot change the
    # dict while it is being read.
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in list(tags.items())
    ]


def install() -> None:
    TaggedEC2Resource.get_tags = indexed_get_tags  # type: ignore[method-assign, assignment]


def remove() -> None:
    TaggedEC2Resource.get_tags = _moto_get_tags  # type: ignore[method-assign]
