"""The namespace's metrics-reader Secret (issue 15): its builder, its mount in the chat server pod, the
server config field that points at it, and why erasure of one PersonalAI leaves it."""

from __future__ import annotations

import base64

import pytest

from personalai_operator import erasure, naming, serving
from personalai_operator.models import PersonalAISpec
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

PAI = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
       "metadata": {"name": "luke", "namespace": "people", "uid": "u-1"}}
SPEC = PersonalAISpec.model_validate({"displayName": "Luke",
                                      "reflections": {"secretRef": {"name": "r", "key": "r.jsonl"}}})
SETTINGS = OperatorSettings()


def test_the_metrics_secret_is_the_namespaces_owned_by_no_personalai_and_holds_256_bits():
    token = serving.new_token()
    secret = serving.build_metrics_secret("people", token)
    assert (secret["kind"], secret["type"]) == ("Secret", "Opaque")
    assert secret["metadata"]["name"] == "personalai-metrics-reader"
    assert secret["metadata"]["namespace"] == "people"
    assert secret["stringData"] == {"token": token} and len(base64.urlsafe_b64decode(token + "=")) == 32
    assert "ownerReferences" not in secret["metadata"]
    labels = secret["metadata"]["labels"]
    assert labels[naming.LABEL_MANAGED_BY] == naming.MANAGER
    # Erasure lists what it deletes by the PersonalAI's label, and lists no Secrets at all.
    assert naming.LABEL_PERSONALAI not in labels
    assert "Secret" not in erasure.AWAITED_KINDS


def test_the_server_config_points_at_the_mounted_metrics_folder_and_validates():
    from personalai_server.config import ServerConfig

    config = serving.build_server_config(PAI, SPEC, SETTINGS, "v1-abc")
    parsed = ServerConfig.model_validate(config)
    assert parsed.auth.metrics_tokens_dir == serving.METRICS_AUTH_DIR == "/var/run/personalai/metrics-auth"
    assert parsed.auth.tokens_dir == serving.AUTH_DIR


def test_the_chat_server_pod_mounts_the_metrics_secret_read_only_beside_the_persons_token():
    config = serving.build_server_config(PAI, SPEC, SETTINGS, "v1-abc")
    pod = serving.build_server_deployment(PAI, SETTINGS, config)["spec"]["template"]["spec"]
    mounts = {mount["name"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts["metrics-auth"] == {"name": "metrics-auth", "mountPath": config["auth"]["metricsTokensDir"],
                                      "readOnly": True}
    assert volumes["metrics-auth"]["secret"]["secretName"] == serving.METRICS_SECRET_NAME
    assert volumes["metrics-auth"]["secret"]["defaultMode"] == volumes["auth"]["secret"]["defaultMode"] == 0o440
    # A scrape credential gone missing must not keep the person's chat server from starting.
    assert volumes["metrics-auth"]["secret"]["optional"] is True
    assert volumes["auth"]["secret"]["secretName"] == serving.auth_secret_name("luke")
    assert mounts["auth"]["mountPath"] != mounts["metrics-auth"]["mountPath"]
