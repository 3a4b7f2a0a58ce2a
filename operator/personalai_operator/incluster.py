"""In-cluster credentials that honour the path prefix.

In a pod the ServiceAccount token and CA are at /var/run/secrets/kubernetes.io/serviceaccount.
The development node agent runs the operator's pod as a local process and lays those files under
$PERSONALAI_PATH_PREFIX; kubernetes' own `load_incluster_config` and kopf's default login only
know the fixed path, so both go through here.
"""

from __future__ import annotations

import os

import kubernetes

from personalai_contracts.paths import resolve

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and resolve(f"{SERVICE_ACCOUNT_DIR}/token").exists()


def load_config(configuration: kubernetes.client.Configuration | None = None) -> None:
    """Load the pod's own credentials (token re-read on expiry by the client) into `configuration`."""
    loader = kubernetes.config.incluster_config.InClusterConfigLoader(
        token_filename=str(resolve(f"{SERVICE_ACCOUNT_DIR}/token")),
        cert_filename=str(resolve(f"{SERVICE_ACCOUNT_DIR}/ca.crt")))
    loader.load_and_set(configuration)


def connection_info():
    """kopf's login for the same credentials: kopf calls it again when the token is rejected."""
    import kopf

    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    namespace_file = resolve(f"{SERVICE_ACCOUNT_DIR}/namespace")
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(resolve(f"{SERVICE_ACCOUNT_DIR}/ca.crt")),
        scheme="Bearer",
        token=resolve(f"{SERVICE_ACCOUNT_DIR}/token").read_text().strip(),
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )
