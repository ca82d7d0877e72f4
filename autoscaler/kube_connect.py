"""Build the Kubernetes API client: --kubeconfig, else the in-cluster service account."""
from __future__ import annotations

import logging
from typing import Optional

import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)


class KubeConfigError(ValueError):
    """The kubeconfig or the in-cluster environment cannot give a usable client."""


def connect(kubeconfig: Optional[str]) -> kube_client.ApiClient:
    try:
        if kubeconfig:
            log.debug("Using kubeconfig %s", kubeconfig)
            return kube_config.new_client_from_config(config_file=kubeconfig, persist_config=False)
        log.debug("Using kube service account")
        configuration = kube_client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return kube_client.ApiClient(configuration)
    except ConfigException as error:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster service account (no --kubeconfig given)"
        raise KubeConfigError(f"{where}: {error}") from None
    except (yaml.YAMLError, OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        # A kubeconfig that is YAML but not a kubeconfig fails inside the loader in odd ways.
        detail = " ".join(str(error).split())  # YAML errors span lines; the operator gets one
        raise KubeConfigError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({type(error).__name__}: {detail})") from None
