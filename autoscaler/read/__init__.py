"""READ: the Kubernetes and AWS readers, the capacity catalog, quantity parsing, one snapshot per loop (World).
May import: model/ and clients/; never decide/, act/ or run/.
"""
