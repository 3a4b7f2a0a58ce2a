"""Progress out of the trainer: TrainingRun status (bounded rate), Prometheus metrics, a JSON log.

Nothing here carries personal text: only counts, losses, rates and names from the config.

- `build_progress` makes the status.progress object (docs/contracts.md, "TrainingRun status").
- `RateLimiter` lets a patch through at most every `minIntervalSeconds` (final patches are forced).
- `patch_training_run_status(host, token_file, ca_file, ...)` is the one call to the Kubernetes API:
  a JSON merge patch on the status subresource with the pod's own service-account token.
- `StatusReporter` ties them together; with reporting.kubernetes false it only logs.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from personalai_contracts.paths import resolve
from personalai_contracts.run_report import RunReport

log = logging.getLogger("personalai_trainer")

GROUP_VERSION = "personalai.dev/v1alpha1"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, event, and the `fields` passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes warns at import about optional CPU kernels we do not use.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def log_event(event: str, **fields) -> None:
    log.info(event, extra={"fields": fields})


def format_eta(seconds: float) -> str:
    """Like kubectl ages: 45s, 3m20s, 1h05m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_progress(
    *, step: int, total_steps: int, steps_per_epoch: int, total_epochs: int, loss: float | None,
    eval_loss: float | None, tokens_per_second: float, seconds_per_step: float | None, micro_batch: int,
    gpu: dict | None = None, updated_at: str | None = None,
) -> dict:
    """status.progress for `step` optimizer steps done of `total_steps`."""
    remaining = max(0, total_steps - step)
    eta_seconds = int(round(remaining * seconds_per_step)) if seconds_per_step else 0
    progress = {
        "epoch": round(step / steps_per_epoch, 2) if steps_per_epoch else 0.0,
        "totalEpochs": total_epochs,
        "step": step,
        "totalSteps": total_steps,
        "percent": min(100, int(100 * step / total_steps)) if total_steps else 0,
        "tokensPerSecond": round(tokens_per_second, 1),
        "eta": format_eta(eta_seconds),
        "etaSeconds": eta_seconds,
        "microBatchSize": micro_batch,
        "updatedAt": updated_at or now_rfc3339(),
    }
    if loss is not None:
        progress["loss"] = round(loss, 4)
    if eval_loss is not None:
        progress["evalLoss"] = round(eval_loss, 4)
    progress.update(gpu or {})
    return progress


@dataclass
class RateLimiter:
    min_interval: float
    clock: callable = time.monotonic
    last: float | None = None

    def allow(self, force: bool = False) -> bool:
        now = self.clock()
        if force or self.last is None or now - self.last >= self.min_interval:
            self.last = now
            return True
        return False


def status_url(host: str, namespace: str, name: str) -> str:
    return f"https://{host}/apis/{GROUP_VERSION}/namespaces/{namespace}/trainingruns/{name}/status"


def in_cluster_host() -> str | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def patch_training_run_status(
    host: str, token_file: str | Path, ca_file: str | Path, namespace: str, name: str, status: dict,
    timeout: float = 10.0,
) -> dict:
    """JSON merge patch `{"status": status}` onto the TrainingRun's status subresource; returns the object."""
    token = Path(token_file).read_text().strip()  # re-read each time: projected tokens rotate
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(
        status_url(host, namespace, name), method="PATCH", data=json.dumps({"status": status}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json",
                 "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class StatusReporter:
    """Sends status to the TrainingRun when enabled (rate-limited); always logs the same numbers."""

    namespace: str
    name: str
    enabled: bool
    min_interval: float
    limiter: RateLimiter = field(init=False)
    failures: int = 0

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.min_interval)
        self.host = in_cluster_host() if self.enabled else None
        if self.enabled and not self.host:
            log.warning("reporting.kubernetes is on but KUBERNETES_SERVICE_HOST is not set; status goes to the log only")

    def send(self, status: dict, force: bool = False) -> bool:
        """Patch when the rate allows (or `force`); a failed patch is logged, never fatal to training."""
        if not self.limiter.allow(force):
            return False
        log_event("status", **{key: value for key, value in status.get("progress", {}).items()
                               if key in ("step", "totalSteps", "loss", "evalLoss", "tokensPerSecond", "eta",
                                          "microBatchSize")})
        if not self.host:
            return False
        try:  # the contract's bounds, here as well as at the API server: a bad field is named in our own log
            report = RunReport.model_validate(status).to_status()
        except ValidationError as error:
            self.failures += 1
            log.error("status report out of its schema", extra={"fields": {
                "fields": sorted({".".join(str(part) for part in e["loc"]) for e in error.errors()})}})
            return False
        try:
            patch_training_run_status(self.host, resolve(f"{SERVICE_ACCOUNT_DIR}/token"),
                                      resolve(f"{SERVICE_ACCOUNT_DIR}/ca.crt"), self.namespace, self.name, report)
            return True
        except (OSError, urllib.error.URLError, ValueError) as error:
            self.failures += 1
            code = getattr(error, "code", None)
            log.warning("status patch failed", extra={"fields": {"error": type(error).__name__, "httpStatus": code}})
            return False


class TrainerMetrics:
    """Prometheus gauges on `port` (0: none). Lives in its own registry so tests can make several."""

    def __init__(self, port: int, run_name: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        labels = {"run": run_name}

        def gauge(name: str, help_text: str) -> Gauge:
            return Gauge(name, help_text, labelnames=list(labels), registry=self.registry).labels(**labels)

        self.step = gauge("personalai_trainer_step", "Optimizer steps done")
        self.total_steps = gauge("personalai_trainer_total_steps", "Optimizer steps in the run")
        self.loss = gauge("personalai_trainer_loss", "Training loss of the last step")
        self.eval_loss = gauge("personalai_trainer_eval_loss", "Held-out loss")
        self.tokens_per_second = gauge("personalai_trainer_tokens_per_second", "Trained tokens per second")
        self.micro_batch = gauge("personalai_trainer_micro_batch_rows", "Packed rows per forward pass")
        self.vram = gauge("personalai_trainer_vram_used_mib", "GPU memory used (MiB)")
        self.gpu_utilization = gauge("personalai_trainer_gpu_utilization_percent", "GPU utilization")
        self.gpu_temperature = gauge("personalai_trainer_gpu_temperature_celsius", "GPU temperature (C)")
        self.eta = gauge("personalai_trainer_eta_seconds", "Estimated seconds until the run's last step")
        self.oom_recoveries = Counter("personalai_trainer_oom_recoveries", "Steps retried after out-of-memory",
                                      labelnames=list(labels), registry=self.registry).labels(**labels)
        # Exposed as personalai_trainer_thermal_paused_seconds_total (the client adds the suffix).
        self.thermal_paused_seconds = Counter(
            "personalai_trainer_thermal_paused_seconds", "Seconds training paused for the GPU temperature limit",
            labelnames=list(labels), registry=self.registry).labels(**labels)
        self.server = None
        if port:
            # The dev node agent gives each pod its own loopback address; in a real pod this is 0.0.0.0.
            self.server = start_http_server(port, addr=os.environ.get("PERSONALAI_LISTEN_HOST", "0.0.0.0"),
                                            registry=self.registry)

    def observe(self, progress: dict) -> None:
        self.step.set(progress["step"])
        self.total_steps.set(progress["totalSteps"])
        self.tokens_per_second.set(progress["tokensPerSecond"])
        self.micro_batch.set(progress["microBatchSize"])
        for key, metric in (("loss", self.loss), ("evalLoss", self.eval_loss), ("vramUsedMiB", self.vram),
                            ("gpuUtilization", self.gpu_utilization), ("gpuTemperatureC", self.gpu_temperature),
                            ("etaSeconds", self.eta)):
            if key in progress:
                metric.set(progress[key])

    def close(self) -> None:
        if self.server:
            server, thread = self.server
            server.shutdown()
            thread.join(timeout=5)
