"""Operator settings, read once from the environment (the Helm chart sets these variables).

Every variable is optional; `OperatorSettings.from_env()` applies the defaults below. Plain pydantic
(pydantic-settings is not a dependency): each field's alias is its environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "PERSONALAI_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    # Which nodes are RTX 5090 nodes: the GPU feature discovery label and its value.
    gpu_product_label: str = Field("nvidia.com/gpu.product", alias="GPU_PRODUCT_LABEL")
    gpu_product: str = Field("NVIDIA-GeForce-RTX-5090", alias="GPU_PRODUCT")
    gpu_resource: str = Field("nvidia.com/gpu", alias="GPU_RESOURCE")
    # Empty: every namespace (cluster-wide). Otherwise a comma-separated list.
    namespaces: list[str] = Field(default_factory=list, alias="NAMESPACES")
    trainer_image: str = Field("ghcr.io/personalai/trainer:0.1.0", alias="TRAINER_IMAGE")
    server_image: str = Field("ghcr.io/personalai/server:0.1.0", alias="SERVER_IMAGE")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", alias="IMAGE_PULL_POLICY")
    # Empty: the cluster's default StorageClass.
    storage_class: str = Field("", alias="STORAGE_CLASS")
    # Adapters live on a PVC per PersonalAI (the chat server mounts it later); emptyDir only for trials.
    artifacts_volume: Literal["pvc", "emptyDir"] = Field("pvc", alias="ARTIFACTS_VOLUME")
    artifacts_size: str = Field("20Gi", alias="ARTIFACTS_SIZE")
    # A shared PVC of public base models per namespace (never personal data); empty: an emptyDir per run.
    model_cache_claim: str = Field("personalai-model-cache", alias="MODEL_CACHE_CLAIM")
    model_cache_size: str = Field("100Gi", alias="MODEL_CACHE_SIZE")
    # Trainer pods on several nodes share the cache: ReadWriteMany unless there is one GPU node.
    model_cache_access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        "ReadWriteMany", alias="MODEL_CACHE_ACCESS_MODE")
    model_slots_per_node: int = Field(3, ge=0, alias="MODEL_SLOTS_PER_NODE")
    serving_engine: Literal["local", "tgi", "vllm"] = Field("local", alias="SERVING_ENGINE")
    # How serving pods share a node's GPU: a time-sliced nvidia.com/gpu each, or no GPU request at all.
    serving_gpu_sharing: Literal["timeSlicing", "shared"] = Field("timeSlicing", alias="SERVING_GPU_SHARING")
    # A 7B QLoRA run on one RTX 5090 takes well under an hour; 6h catches a hung pod.
    training_deadline_seconds: int = Field(6 * 3600, ge=60, alias="TRAINING_DEADLINE_SECONDS")
    # Retries resume from checkpoints; more than two usually means a real bug.
    training_backoff_limit: int = Field(2, ge=0, alias="TRAINING_BACKOFF_LIMIT")
    # A finished trainer Job (and its pods) is deleted this long after it ends; the run keeps its outcome.
    finished_job_ttl_seconds: int = Field(24 * 3600, ge=0, alias="FINISHED_JOB_TTL_SECONDS")
    # Level-based safety net: how often every object is re-read even without an event.
    resync_seconds: float = Field(30.0, gt=0, alias="RESYNC_SECONDS")
    # Client-side pacing of the handlers' API requests (client-go's QPS/burst; watches are not paced).
    # An idle pass reads the watch cache, so this bounds bursts: 1,000 PersonalAIs created at once
    # need about 10 requests each, and 100/s with a burst of 200 keeps that under a minute while
    # leaving the API server (default 400 in-flight reads, 200 writes) room for everyone else.
    api_qps: float = Field(100.0, gt=0, alias="API_QPS")
    api_burst: int = Field(200, ge=1, alias="API_BURST")
    # kopf's thread pool for the (synchronous) handlers: most of a handler's time is waiting on the API,
    # so more threads than cores; each has a pooled connection of its own (kube.api_client).
    workers: int = Field(16, ge=1, le=256, alias="WORKERS")
    metrics_port: int = Field(8000, ge=0, alias="METRICS_PORT")  # 0 turns the metrics server off
    liveness_port: int = Field(8080, ge=0, alias="LIVENESS_PORT")  # 0 turns the liveness endpoint off
    # Deleting a PersonalAI waits this long for its objects, pods and volumes to go before its
    # DataPurged condition says erasure is stuck (it keeps retrying, and the object stays Terminating).
    erasure_timeout_seconds: float = Field(600.0, gt=0, alias="ERASURE_TIMEOUT_SECONDS")
    # Where the audit records of erasures and promotions go: "stderr", or a file path.
    audit_log: str = Field("stderr", alias="AUDIT_LOG")
    # A file audit stream is rotated at midnight UTC; this many days of it are kept. 365: a year of
    # "who erased what and when" to answer a person's or an auditor's question about it.
    audit_keep_days: int = Field(365, ge=1, le=3650, alias="AUDIT_KEEP_DAYS")
    # A failed reconcile is retried after base * 2**retry seconds, jittered, never more than the cap
    # (nor less than an API's Retry-After): see backoff.py.
    backoff_base_seconds: float = Field(1.0, gt=0, alias="BACKOFF_BASE_SECONDS")
    backoff_cap_seconds: float = Field(30.0, gt=0, alias="BACKOFF_CAP_SECONDS")
    # TEST-ONLY fault injection; never set it in a deployment (the chart has no value for it).
    # "job-created": the process exits right after it creates a trainer Job, before the run's status
    # says so, as a crash there would (tests/cluster/operator/test_operator_faults.py).
    fault_crash_after: Literal["", "job-created"] = Field("", alias="FAULT_CRASH_AFTER")
    trainer_memory: str = Field("48Gi", alias="TRAINER_MEMORY")
    trainer_cpu: str = Field("8", alias="TRAINER_CPU")

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from PERSONALAI_* variables; unknown variables are ignored."""
        environ = os.environ if environ is None else environ
        values = {key[len(ENV_PREFIX):]: value for key, value in environ.items() if key.startswith(ENV_PREFIX)}
        return cls.model_validate(values)
