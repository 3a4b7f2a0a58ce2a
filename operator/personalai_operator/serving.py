"""Pure builders of what serves a PersonalAI: the chat server's config, auth Secret, Deployment
and Service. Spec, settings and the adapter version in; manifest dicts out (kube.py applies them).

Each serving pod requests one `personalai.dev/model-slot`, an extended resource the operator
advertises on every GPU node (model_slots.py), so the scheduler itself keeps a node at its cap of
loaded models. The Deployment uses Recreate: an update never needs a spare slot, and a new adapter
version reaches the running pod through its config file (the server hot-loads it), not a new pod.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from personalai_contracts.names import chat_server_name
from personalai_operator import naming
from personalai_operator.manifests import (
    ARTIFACTS_DIR,
    MODEL_CACHE_DIR,
    build_gpu_affinity,
    build_gpu_tolerations,
    build_restricted_container_security,
    build_restricted_pod_security,
)
from personalai_operator.model_slots import MODEL_SLOT
from personalai_operator.models import PersonalAISpec, PersonalityMode
from personalai_operator.settings import OperatorSettings

# The Deployment's and Service's name; the gateway finds the Service by the same function.
server_name = chat_server_name

SERVER_PORT = 8080
SERVER_CONFIG_DIR = "/etc/personalai/config"
SERVER_CONFIG_KEY = "server.json"
AUTH_DIR = "/etc/personalai/auth"
AUTH_KEY = "token"
# The namespace's scrape credential (the chart's chat-server PodMonitor sends it): /metrics only.
METRICS_SECRET_NAME = "personalai-metrics-reader"
METRICS_AUTH_DIR = "/var/run/personalai/metrics-auth"
DATA_DIR = "/data"
# Config fields the server cannot change while running: a change to these rolls the pod.
RESTART_FIELDS = ("engine",)


def auth_secret_name(personalai: str) -> str:
    return f"{personalai}-chat-auth"


def data_claim_name(personalai: str) -> str:
    return f"{personalai}-chat-data"


def endpoint(personalai: str, namespace: str) -> str:
    return f"http://{server_name(personalai)}.{namespace}.svc:{SERVER_PORT}"


def _metadata(personalai: dict[str, Any], name: str) -> dict[str, Any]:
    pai = personalai["metadata"]["name"]
    return {"name": name, "namespace": personalai["metadata"]["namespace"],
            "labels": {**naming.personalai_labels(pai), naming.LABEL_COMPONENT: "server"},
            "ownerReferences": [naming.owner_reference(personalai)]}


def recorded_digest(version: str | None, current: dict[str, Any] | None,
                    history: list[dict[str, Any]]) -> str | None:
    """The manifest sha256 recorded for adapter `version` in the status (currentAdapter or history)."""
    records = ([current] if current else []) + history
    return next((record.get("manifestSha256") for record in records if record.get("version") == version), None)


def build_server_config(personalai: dict[str, Any], spec: PersonalAISpec, settings: OperatorSettings,
                        adapter_version: str | None, adapter_sha256: str | None = None,
                        candidate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The server's config file (personalai_server.config.ServerConfig; a unit test validates it).

    `adapter_sha256` is the served version's manifest sha256 as the trainer reported it: the server
    refuses an adapter folder whose manifest has another (a changed or swapped adapter). `candidate`
    ({version, manifestSha256, share}, ab_test.plan_ab_test) is served beside it by the same engine
    from the same adapter dir: no second model slot."""
    serving = spec.serving
    modes = {name: server_mode(mode) for name, mode in serving.personality_modes.items()}
    conversation: dict[str, Any] = {
        "historyWindow": serving.history_window, "defaultTemperature": serving.temperature,
        "maxTokens": serving.max_tokens,
        # 0: keep sessions until the PersonalAI is deleted, as the spec documents (the server never purges at 0).
        "retentionDays": spec.retention.session_days,
        "memory": serving.memory.model_dump(by_alias=True),
    }
    conversation["modesPolicy"] = serving.modes_policy
    if modes:
        conversation["personalityModes"] = modes
        conversation["defaultMode"] = serving.default_mode or next(iter(modes))
    elif serving.default_mode:
        conversation["defaultMode"] = serving.default_mode
    engine: dict[str, Any] = {"kind": serving.engine or settings.serving_engine, "baseModel": spec.base_model,
                              "modelCache": MODEL_CACHE_DIR, "quantization": spec.training.quantization}
    if serving.engine_url:
        engine["url"] = serving.engine_url
    adapter: dict[str, Any] = {"version": adapter_version, "dir": ARTIFACTS_DIR}
    if adapter_version and adapter_sha256:
        adapter["manifestSha256"] = adapter_sha256
    config = {
        "persona": {"displayName": spec.display_name, "personalAI": personalai["metadata"]["name"]},
        "engine": engine,
        "adapter": adapter,
        "conversation": conversation,
        "storage": {"dataDir": DATA_DIR},
        "auth": {"tokensDir": AUTH_DIR, "metricsTokensDir": METRICS_AUTH_DIR},
        "listen": {"host": "0.0.0.0", "port": SERVER_PORT},
        "reloadIntervalSeconds": 5,
    }
    if adapter_version and candidate:
        config["candidate"] = candidate
    return config


def server_mode(mode: PersonalityMode) -> dict[str, Any]:
    """A spec personality mode as the server's config has it (its description is for people only)."""
    out: dict[str, Any] = {"systemPrompt": mode.system_prompt, "temperature": mode.temperature}
    if mode.top_p is not None:
        out["topP"] = mode.top_p
    if mode.memory is not None:
        out["memory"] = mode.memory.model_dump(by_alias=True, exclude_none=True)
    return out


def build_server_config_map(personalai: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(personalai, f"{server_name(personalai['metadata']['name'])}-config"),
            "data": {SERVER_CONFIG_KEY: json.dumps(config, indent=2, sort_keys=True)}}


def new_token() -> str:
    """A bearer token (a person's, the namespace's metrics reader's): 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def build_auth_secret(personalai: dict[str, Any], token: str) -> dict[str, Any]:
    """The person's bearer token, for the gateway and their chat server alike; made at the first
    reconcile (the caller makes the token), never rewritten: deleting it makes a new one (rotation)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(personalai, auth_secret_name(personalai["metadata"]["name"])),
            "stringData": {AUTH_KEY: token}}


def build_metrics_secret(namespace: str, token: str) -> dict[str, Any]:
    """The token every chat server of `namespace` accepts for GET /metrics and nothing else, so one
    Prometheus scrapes them all. Shared by the namespace's servers, so owned by no PersonalAI and without
    its label (erasure leaves it: it is no one's data); made once (the caller makes the token), never
    rewritten: deleting it makes a new one at the next reconcile, and the kubelet swaps it into each pod."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": METRICS_SECRET_NAME, "namespace": namespace,
                         "labels": {naming.LABEL_MANAGED_BY: naming.MANAGER, naming.LABEL_COMPONENT: "metrics-reader"}},
            "stringData": {AUTH_KEY: token}}


def access_status(secret: dict[str, Any]) -> dict[str, str] | None:
    """status.access for the token Secret as the API returned it; None when it holds no token."""
    encoded = (secret.get("data") or {}).get(AUTH_KEY)
    if not encoded:
        return None
    token = base64.b64decode(encoded).decode("utf-8").strip()
    return {"tokenSecret": secret["metadata"]["name"],
            "tokenSha256": hashlib.sha256(token.encode("utf-8")).hexdigest()} if token else None


def build_data_claim(personalai: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """Chat sessions live here, owned by the PersonalAI: deleting it deletes every session."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(personalai, data_claim_name(personalai["metadata"]["name"])), "spec": spec}


def restart_hash(config: dict[str, Any]) -> str:
    """Hash of the config fields a running server cannot reload; the adapter version is not one."""
    fields = {name: config[name] for name in RESTART_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def build_server_deployment(personalai: dict[str, Any], settings: OperatorSettings, config: dict[str, Any],
                            replicas: int = 1) -> dict[str, Any]:
    """One chat server pod on an RTX 5090 node, holding one model slot there."""
    pai = personalai["metadata"]["name"]
    name = server_name(pai)
    labels = {**naming.personalai_labels(pai), naming.LABEL_COMPONENT: "server"}
    resources = {"requests": {"cpu": "1", "memory": "8Gi", MODEL_SLOT: "1"},
                 "limits": {"memory": "24Gi", MODEL_SLOT: "1"}}
    if settings.serving_gpu_sharing == "timeSlicing":
        # One time-sliced replica of the card (the device plugin advertises several per GPU).
        resources["requests"][settings.gpu_resource] = "1"
        resources["limits"][settings.gpu_resource] = "1"
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "server", "image": settings.server_image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "personalai_server", "--config", f"{SERVER_CONFIG_DIR}/{SERVER_CONFIG_KEY}"],
        "env": [{"name": "HF_HOME", "value": MODEL_CACHE_DIR}, {"name": "HF_HUB_OFFLINE", "value": "1"},
                {"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "http", "containerPort": SERVER_PORT}],
        "readinessProbe": probe,
        # Loading a 7B model takes minutes: liveness waits for startup, then watches /healthz.
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 60},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        "resources": resources,
        "securityContext": build_restricted_container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": SERVER_CONFIG_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "metrics-auth", "mountPath": METRICS_AUTH_DIR, "readOnly": True},
            {"name": "artifacts", "mountPath": ARTIFACTS_DIR, "readOnly": True},
            {"name": "model-cache", "mountPath": MODEL_CACHE_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec = {
        "automountServiceAccountToken": False,  # the server never calls the Kubernetes API
        "securityContext": build_restricted_pod_security(),
        "affinity": build_gpu_affinity(settings),
        "tolerations": build_gpu_tolerations(settings),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{name}-config"}},
            {"name": "auth", "secret": {"secretName": auth_secret_name(pai), "defaultMode": 0o440}},
            # optional: a scrape credential gone missing must not keep the person's chat from starting.
            {"name": "metrics-auth", "secret": {"secretName": METRICS_SECRET_NAME, "defaultMode": 0o440,
                                                "optional": True}},
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": naming.artifacts_claim_name(pai),
                                                            "readOnly": True}},
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": settings.model_cache_claim,
                                                              "readOnly": True}},
            {"name": "data", "persistentVolumeClaim": {"claimName": data_claim_name(pai)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(personalai, name),
        "spec": {
            "replicas": replicas,
            # Recreate: the old pod frees its model slot before the new one asks for one.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels,
                                      "annotations": {"personalai.dev/restart-hash": restart_hash(config)}},
                         "spec": pod_spec},
        },
    }


def build_server_service(personalai: dict[str, Any]) -> dict[str, Any]:
    pai = personalai["metadata"]["name"]
    labels = {**naming.personalai_labels(pai), naming.LABEL_COMPONENT: "server"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(personalai, server_name(pai)),
            "spec": {"selector": labels, "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http"}]}}
