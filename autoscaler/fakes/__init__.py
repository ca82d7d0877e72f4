"""Simulated AWS and Kubernetes endpoints on 127.0.0.1, for the tests and the sandbox.

Never imported by the production path (main.py -> loop -> readers/actuators).
"""
