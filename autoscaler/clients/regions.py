"""The AWS regions botocore knows for both EC2 and Auto Scaling, from its bundled endpoint data."""
from __future__ import annotations

import functools
from typing import Optional


@functools.lru_cache(maxsize=None)
def known_regions(partition: Optional[str] = None) -> frozenset:
    """In ``partition`` ("aws", "aws-cn", ...), or in every partition when None. No network, and
    no session: a session reads AWS_PROFILE and the config files, whose errors belong to the AWS
    clients' setup (aws_reader), not to --regions."""
    from botocore.loaders import create_loader  # deferred: --help and flag errors stay fast
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    partitions = [partition] if partition else resolver.get_available_partitions()
    return frozenset(region for name in partitions
                     for region in set(resolver.get_available_endpoints("ec2", name))
                     & set(resolver.get_available_endpoints("autoscaling", name)))
