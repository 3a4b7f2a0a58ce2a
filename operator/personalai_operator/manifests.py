"""Pure builders of everything a PersonalAI trains with: spec and settings in, manifest dict out.

No API calls here (kube.py makes them); every function is tested with literal inputs in
tests/unit/operator/. Serving objects (Deployment, Service) belong in a sibling module.
"""

from __future__ import annotations

import json
from typing import Any

from personalai_contracts.trainer_config import (
    MemoryConfig,
    PathsConfig,
    PersonaConfig,
    ReportingConfig,
    RunConfig,
    TrainerConfig,
)
from personalai_operator import artifact_retention, naming
from personalai_operator.models import API_VERSION, PersonalAISpec, TrainingRunSpec
from personalai_operator.run_status import EXIT_CODES_NOT_RETRIED
from personalai_operator.settings import OperatorSettings

CONFIG_DIR = "/etc/personalai"
CONFIG_KEY = "config.json"
REFLECTIONS_DIR = "/data/reflections"
MODEL_CACHE_DIR = "/models"
ARTIFACTS_DIR = "/artifacts"
TRAINER_METRICS_PORT = 9400
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # the Job controller puts it on the Job's pods
IMAGE_UID = 10001  # the non-root user of the trainer and server images


def build_training_run(personalai: dict[str, Any], spec: PersonalAISpec, name: str, data_version: str,
                       adapter_version: str) -> dict[str, Any]:
    """The TrainingRun a ready PersonalAI asks for, owned by it."""
    pai_name = personalai["metadata"]["name"]
    run_spec = TrainingRunSpec(
        personal_ai=pai_name, base_model=spec.base_model, training=spec.training, validation=spec.validation,
        reflections=spec.reflections, data_version=data_version, adapter_version=adapter_version,
    )
    return {
        "apiVersion": API_VERSION, "kind": "TrainingRun",
        "metadata": {
            "name": name, "namespace": personalai["metadata"]["namespace"],
            "labels": naming.personalai_labels(pai_name),
            "ownerReferences": [naming.owner_reference(personalai)],
        },
        "spec": run_spec.model_dump(by_alias=True, mode="json", exclude_none=True),
    }


def served_memory(personalai_spec: PersonalAISpec | None) -> dict[str, Any] | None:
    """The memory settings the default personality mode will chat with: validation scores that setup."""
    if personalai_spec is None:
        return None
    serving = personalai_spec.serving
    merged = serving.memory.model_dump(by_alias=True, mode="json")
    mode = serving.personality_modes.get(serving.default_mode or "") if serving.personality_modes else None
    if mode is not None and mode.memory is not None:
        merged.update(mode.memory.model_dump(by_alias=True, mode="json", exclude_none=True))
    return merged


def build_trainer_config(run_name: str, namespace: str, spec: TrainingRunSpec, display_name: str,
                         current_adapter: str | None = None, memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer's config file (docs/contracts.md, "Trainer config file").

    `current_adapter`, the version being served, is scored by the trainer on the new run's held-out
    set, so promotion can tell whether the new adapter is worse (promotion.regression); `memory` is
    how it will be served (served_memory), so validation scores what will be served.
    """
    paths = PathsConfig(
        reflections=f"{REFLECTIONS_DIR}/{spec.reflections.ref.key}",
        model_cache=MODEL_CACHE_DIR,
        output=f"{ARTIFACTS_DIR}/{spec.adapter_version}",
        checkpoints=f"{ARTIFACTS_DIR}/checkpoints/{run_name}",
        current_adapter=(f"{ARTIFACTS_DIR}/{current_adapter}"
                         if current_adapter and current_adapter != spec.adapter_version else None),
    )
    config = TrainerConfig(
        run=RunConfig(name=run_name, namespace=namespace, personal_ai=spec.personal_ai,
                      adapter_version=spec.adapter_version, data_version=spec.data_version or ""),
        persona=PersonaConfig(display_name=display_name),
        base_model=spec.base_model,
        paths=paths,
        training=spec.training,
        validation=spec.validation,
        reporting=ReportingConfig(kubernetes=True, metrics_port=TRAINER_METRICS_PORT, min_interval_seconds=5),
        **({"memory": MemoryConfig.model_validate(memory)} if memory is not None else {}),
    )
    # No memory given: the trainer's default (scored with memory) applies, so the key is left out.
    return config.model_dump(by_alias=True, mode="json", exclude_none=True,
                             exclude={"memory"} if memory is None else None)


def _run_metadata(run: dict[str, Any], name: str, personalai: str) -> dict[str, Any]:
    return {
        "name": name, "namespace": run["metadata"]["namespace"],
        "labels": naming.run_labels(personalai, run["metadata"]["name"]),
        "ownerReferences": [naming.owner_reference(run)],
    }


def build_config_map(run: dict[str, Any], trainer_config: dict[str, Any]) -> dict[str, Any]:
    """The trainer config as a ConfigMap (key config.json), owned by the run."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _run_metadata(run, naming.config_map_name(run["metadata"]["name"]), trainer_config["run"]["personalAI"]),
        "data": {CONFIG_KEY: json.dumps(trainer_config, indent=2, sort_keys=True)},
    }


def build_service_account(run: dict[str, Any], personalai: str) -> dict[str, Any]:
    """The trainer's identity. No token by default: only the trainer pod mounts one."""
    name = naming.service_account_name(run["metadata"]["name"])
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _run_metadata(run, name, personalai),
            "automountServiceAccountToken": False}


def build_role(run: dict[str, Any], personalai: str) -> dict[str, Any]:
    """May get and patch the status of this one TrainingRun, nothing else."""
    name = naming.service_account_name(run["metadata"]["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": _run_metadata(run, name, personalai),
        "rules": [{"apiGroups": [API_VERSION.split("/")[0]], "resources": ["trainingruns/status"],
                   "resourceNames": [run["metadata"]["name"]], "verbs": ["get", "patch"]}],
    }


def build_role_binding(run: dict[str, Any], personalai: str) -> dict[str, Any]:
    name = naming.service_account_name(run["metadata"]["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": _run_metadata(run, name, personalai),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": run["metadata"]["namespace"]}],
    }


def build_artifacts_claim(personalai: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The PersonalAI's adapters volume, owned by it (deleting the PersonalAI deletes its adapters)."""
    name = personalai["metadata"]["name"]
    return _claim(naming.artifacts_claim_name(name), personalai["metadata"]["namespace"],
                  naming.personalai_labels(name), settings.artifacts_size, "ReadWriteOnce", settings.storage_class,
                  owners=[naming.owner_reference(personalai)])


def build_model_cache_claim(namespace: str, settings: OperatorSettings) -> dict[str, Any]:
    """The namespace's shared cache of public base models; unowned, it outlives any one person."""
    return _claim(settings.model_cache_claim, namespace, {naming.LABEL_MANAGED_BY: naming.MANAGER,
                                                          naming.LABEL_COMPONENT: "model-cache"},
                  settings.model_cache_size, settings.model_cache_access_mode, settings.storage_class, owners=[])


def _claim(name: str, namespace: str, labels: dict[str, str], size: str, access_mode: str, storage_class: str,
           owners: list[dict[str, Any]]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owners:
        metadata["ownerReferences"] = owners
    spec: dict[str, Any] = {"accessModes": [access_mode], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def build_gpu_affinity(settings: OperatorSettings) -> dict[str, Any]:
    """Required node affinity on the GPU product label (RTX 5090 nodes only)."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
        "matchExpressions": [{"key": settings.gpu_product_label, "operator": "In", "values": [settings.gpu_product]}],
    }]}}}


def build_gpu_tolerations(settings: OperatorSettings) -> list[dict[str, Any]]:
    """GPU nodes carry a NoSchedule taint on the GPU resource name so only GPU pods land there."""
    return [{"key": settings.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]


def build_restricted_container_security() -> dict[str, Any]:
    """The `restricted` Pod Security profile, container part."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}


def build_restricted_pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def build_reflections_volume(spec: TrainingRunSpec) -> dict[str, Any]:
    """Only the one key, read-only for the owner and group (0440)."""
    ref = spec.reflections.ref
    items = [{"key": ref.key, "path": ref.key}]
    if spec.reflections.kind == "Secret":
        return {"name": "reflections", "secret": {"secretName": ref.name, "items": items, "defaultMode": 0o440}}
    return {"name": "reflections", "configMap": {"name": ref.name, "items": items, "defaultMode": 0o440}}


def model_download_env(settings: OperatorSettings) -> list[dict[str, str]]:
    """With a shared model cache, base models come from it only: nothing is fetched from outside the cluster."""
    if not settings.model_cache_claim:
        return []  # an emptyDir per run: the base model has to be downloaded into it
    return [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "TRANSFORMERS_OFFLINE", "value": "1"}]


def build_pod_failure_policy() -> dict[str, Any]:
    """Bad config or data fails the Job at once (a retry reads the same inputs); an evicted or preempted
    pod does not count against the backoff limit."""
    return {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                              "values": list(EXIT_CODES_NOT_RETRIED)}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]}


def build_training_job(run: dict[str, Any], spec: TrainingRunSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The trainer Job for a TrainingRun: one GPU on an RTX 5090 node, never two pods at once."""
    run_name = run["metadata"]["name"]
    labels = naming.run_labels(spec.personal_ai, run_name)
    model_cache = ({"persistentVolumeClaim": {"claimName": settings.model_cache_claim}}
                   if settings.model_cache_claim else {"emptyDir": {}})
    artifacts = ({"persistentVolumeClaim": {"claimName": naming.artifacts_claim_name(spec.personal_ai)}}
                 if settings.artifacts_volume == "pvc" else {"emptyDir": {}})
    container = {
        "name": "trainer",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "personalai_trainer", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "env": [
            {"name": "HF_HOME", "value": MODEL_CACHE_DIR},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *model_download_env(settings),
        ],
        "ports": [{"name": "metrics", "containerPort": TRAINER_METRICS_PORT}],
        "resources": {
            "requests": {"cpu": settings.trainer_cpu, "memory": settings.trainer_memory, settings.gpu_resource: "1"},
            "limits": {"memory": settings.trainer_memory, settings.gpu_resource: "1"},
        },
        "securityContext": build_restricted_container_security(),
        # The trainer writes only its error's category here (never logs: they may quote the reflections).
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "reflections", "mountPath": REFLECTIONS_DIR, "readOnly": True},
            {"name": "model-cache", "mountPath": MODEL_CACHE_DIR},
            {"name": "artifacts", "mountPath": ARTIFACTS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "serviceAccountName": naming.service_account_name(run_name),
        "automountServiceAccountToken": True,  # the trainer patches its own status; the SA mounts none elsewhere
        "securityContext": build_restricted_pod_security(),
        "affinity": build_gpu_affinity(settings),
        "tolerations": build_gpu_tolerations(settings),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map_name(run_name)}},
            build_reflections_volume(spec),
            {"name": "model-cache", **model_cache},
            {"name": "artifacts", **artifacts},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        ],
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _run_metadata(run, run_name, spec.personal_ai),
        "spec": {
            "backoffLimit": settings.training_backoff_limit,
            "activeDeadlineSeconds": settings.training_deadline_seconds,
            # A replacement pod starts only after the old one has fully failed: never two trainers at once.
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": build_pod_failure_policy(),
            "ttlSecondsAfterFinished": settings.finished_job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_trainer_metrics_service(run: dict[str, Any], personalai: str) -> dict[str, Any]:
    """A headless Service for Prometheus to find the trainer pod's metrics port, owned by the run.

    Named like the Job (a Service name may not grow past it: both are 63-character labels). It selects
    by the Job's own name label (set by the Job controller) as well as the run's, so it never picks up
    another run's trainer.
    """
    run_name = run["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _run_metadata(run, run_name, personalai),
        "spec": {
            "clusterIP": "None",
            "selector": {**naming.run_labels(personalai, run_name), JOB_NAME_LABEL: run_name},
            "ports": [{"name": "metrics", "port": TRAINER_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def build_run_children(run: dict[str, Any], spec: TrainingRunSpec, display_name: str,
                       settings: OperatorSettings, current_adapter: str | None = None,
                       memory: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Everything a run needs, in creation order (the Job last, when what it mounts exists)."""
    trainer_config = build_trainer_config(run["metadata"]["name"], run["metadata"]["namespace"], spec, display_name,
                                          current_adapter, memory)
    return [
        build_config_map(run, trainer_config),
        build_service_account(run, spec.personal_ai),
        build_role(run, spec.personal_ai),
        build_role_binding(run, spec.personal_ai),
        build_trainer_metrics_service(run, spec.personal_ai),
        build_training_job(run, spec, settings),
    ]


PRUNE_DEADLINE_SECONDS = 600  # removing a few directories takes seconds; a hung pod must not hold the volume


def build_prune_job(personalai: dict[str, Any], pruning: dict[str, str], settings: OperatorSettings,
                    node: str | None = None) -> dict[str, Any]:
    """The Job that removes expired artifacts (artifact_retention) from the PersonalAI's volume: the
    trainer image's prune module, told each relative path; no GPU, no API token, owned by the PersonalAI.

    `node`: where the chat server already mounts the ReadWriteOnce volume; the pod must run there
    (tolerating the GPU taint, asking for no GPU), since no other node can attach it meanwhile."""
    pai = personalai["metadata"]["name"]
    placement = ({"nodeSelector": {"kubernetes.io/hostname": node}, "tolerations": build_gpu_tolerations(settings)}
                 if node else {})
    labels = {**naming.personalai_labels(pai), naming.LABEL_COMPONENT: artifact_retention.PRUNE_COMPONENT}
    container = {
        "name": "prune",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "personalai_trainer.prune", "--root", ARTIFACTS_DIR, "--", *sorted(pruning)],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "securityContext": build_restricted_container_security(),
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS_DIR}],
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": f"{pai}-prune-{artifact_retention.pruning_digest(pruning)}",
            "namespace": personalai["metadata"]["namespace"], "labels": labels,
            "annotations": {artifact_retention.PRUNING_ANNOTATION: json.dumps(pruning, sort_keys=True)},
            "ownerReferences": [naming.owner_reference(personalai)],
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": PRUNE_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": settings.finished_job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": build_restricted_pod_security(),
                **placement,
                "containers": [container],
                "volumes": [{"name": "artifacts", "persistentVolumeClaim": {
                    "claimName": naming.artifacts_claim_name(pai)}}],
            }},
        },
    }


def build_retention_ledger(personalai: dict[str, Any], pruned: dict[str, str]) -> dict[str, Any]:
    """What artifact retention has removed (path -> run end), so no path is named twice; owned by the PersonalAI."""
    pai = personalai["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": artifact_retention.ledger_name(pai), "namespace": personalai["metadata"]["namespace"],
                     "labels": naming.personalai_labels(pai), "ownerReferences": [naming.owner_reference(personalai)]},
        "data": {artifact_retention.LEDGER_KEY: json.dumps(pruned, indent=1, sort_keys=True)},
    }
