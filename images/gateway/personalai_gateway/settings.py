"""Gateway settings, read once from PERSONALAI_GATEWAY_* variables (the Helm chart sets them).

Every variable is optional. A bad value fails at start with the variable's name in the error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "PERSONALAI_GATEWAY_"

# Training throughput (tokens/s) of the trainer by the class of the node it trains on; the estimate's divisor.
#   rtx-5090: Mistral-7B QLoRA, not yet measured on the card (README "Measured"): ~4 x 7.2e9 FLOPs per
#             trained token (forward and backward through frozen 4-bit weights; adapters are tiny) against
#             the 5090's ~209 dense bf16 TFLOPS at the ~35% utilization of a QLoRA step loop with NF4
#             dequantization gives ~2,500 tokens/s.
#   cpu:      measured: `make demo` (session 4) trained 1 epoch of Luke's 15,483 words (~18,000 tokens at
#             the factor below, 0.9 of them in the training split) of SmolLM2-135M in 3 m 28 s on 2 cores.
DEFAULT_THROUGHPUT = {"rtx-5090": 2500.0, "cpu": 90.0}


class GatewaySettings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    # Comma-separated; empty: every namespace (a cluster-wide watch). The chart names its watchNamespaces.
    watched: str = Field("", alias="NAMESPACES")
    port: int = Field(8080, ge=1, le=65535, alias="PORT")
    throughput_tokens_per_second: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THROUGHPUT),
                                                           alias="THROUGHPUT_TOKENS_PER_SECOND")
    # The class whose throughput estimates a run's time (the operator trains on RTX 5090 nodes).
    gpu_class: str = Field("rtx-5090", min_length=1, alias="GPU_CLASS")
    # A metrics stream ends after this long (an EventSource reconnects by itself), and one person may
    # hold this many at once: both bound what one token can hold open.
    stream_max_seconds: float = Field(3600.0, gt=0, alias="STREAM_MAX_SECONDS")
    streams_per_person: int = Field(3, ge=1, alias="STREAMS_PER_PERSON")
    heartbeat_seconds: float = Field(15.0, gt=0, alias="HEARTBEAT_SECONDS")
    # The chat server streams tokens as generated: a read waits at most this long for the next chunk.
    proxy_connect_seconds: float = Field(5.0, gt=0, alias="PROXY_CONNECT_SECONDS")
    proxy_read_seconds: float = Field(300.0, gt=0, alias="PROXY_READ_SECONDS")
    max_request_bytes: int = Field(1_048_576, ge=1024, alias="MAX_REQUEST_BYTES")
    # The audit stream (audit.py): "stderr" or a file (rotated each UTC day, AUDIT_KEEP_DAYS kept). 90 days:
    # long enough to look into an incident reported weeks later, as the chat servers' stream.
    audit_sink: str = Field("stderr", min_length=1, alias="AUDIT_SINK")
    audit_keep_days: int = Field(90, ge=1, le=3650, alias="AUDIT_KEEP_DAYS")
    # A token's successful authentication is recorded at most once in this long (not every chat poll).
    audit_success_interval_seconds: float = Field(300.0, ge=0, alias="AUDIT_SUCCESS_INTERVAL_SECONDS")

    @field_validator("throughput_tokens_per_second", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("throughput_tokens_per_second")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(tokens <= 0 for tokens in value.values()):
            raise ValueError("needs at least one GPU class, each with a throughput above 0 tokens/s")
        return value

    @model_validator(mode="after")
    def _class_has_a_throughput(self) -> GatewaySettings:
        if self.gpu_class not in self.throughput_tokens_per_second:
            raise ValueError(f"{ENV_PREFIX}GPU_CLASS {self.gpu_class!r} has no entry in "
                             f"{ENV_PREFIX}THROUGHPUT_TOKENS_PER_SECOND ({', '.join(self.throughput_tokens_per_second)})")
        return self

    @property
    def namespaces(self) -> list[str]:
        return [name.strip() for name in self.watched.split(",") if name.strip()]

    @property
    def throughput(self) -> float:
        return self.throughput_tokens_per_second[self.gpu_class]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        environ = os.environ if environ is None else environ
        return cls.model_validate({key[len(ENV_PREFIX):]: value for key, value in environ.items()
                                   if key.startswith(ENV_PREFIX)})
