"""kubernetes-ec2-autoscaler: scale EC2 Auto Scaling Groups to the pending pods of a Kubernetes cluster."""

# The one version: pyproject.toml reads it, and so do --version, the build_info metric and the image labels.
__version__ = "1.0.0"
