"""Prometheus metrics of the operator, served on /metrics (port from PERSONALAI_METRICS_PORT).

    curl localhost:8000/metrics | grep personalai_operator_
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("personalai_operator_reconciles_total", "Reconcile passes, by kind.", ["kind"])
RECONCILE_ERRORS = Counter("personalai_operator_reconcile_errors_total", "Reconcile passes that raised, by kind.",
                           ["kind"])
RUNS_BY_PHASE = Gauge("personalai_operator_training_runs", "TrainingRuns seen, by phase.", ["phase"])
TIME_QUEUED = Histogram("personalai_operator_training_queued_seconds",
                        "Seconds a trainer pod waited for an RTX 5090 node.",
                        buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600))
MODEL_SLOTS = Gauge("personalai_operator_model_slots", "personalai.dev/model-slot per GPU node, used and free.",
                    ["node", "state"])
API_REQUESTS = Counter("personalai_operator_api_requests_total",
                       "The handlers' API requests (the watch cache's lists and watches not included), by verb, "
                       "resource (plural or plural/subresource: never a name) and HTTP code.",
                       ["verb", "resource", "code"])
API_THROTTLED = Counter("personalai_operator_api_throttled_seconds_total",
                        "Seconds the handlers' requests waited for the client-side rate limit "
                        "(PERSONALAI_API_QPS, PERSONALAI_API_BURST).")
JOBS_CREATED = Counter("personalai_operator_training_jobs_created_total", "Trainer Jobs created.")

_lock = threading.Lock()
_phases: dict[str, str] = {}  # "namespace/name" -> phase
_queue_observed: set[str] = set()


def record_run_phase(key: str, phase: str | None) -> None:
    """Remember a run's phase and refresh the by-phase gauge (None: the run is gone)."""
    with _lock:
        if phase is None:
            _phases.pop(key, None)
            _queue_observed.discard(key)
        else:
            _phases[key] = phase
        counts: dict[str, int] = {}
        for value in _phases.values():
            counts[value] = counts.get(value, 0) + 1
        for value in ("Pending", "Queued", "Running", "Succeeded", "Failed"):
            RUNS_BY_PHASE.labels(phase=value).set(counts.get(value, 0))


def record_time_queued(key: str, seconds: float) -> None:
    """Observe a run's wait for a node once."""
    with _lock:
        if key in _queue_observed:
            return
        _queue_observed.add(key)
    TIME_QUEUED.observe(seconds)


def request_resource(path: str) -> str:
    """"secrets", "trainingruns/status" ... of an API path, positionally: names and namespaces stay out of
    the label (they are unbounded, and a name may be a person's)."""
    segments = [segment for segment in path.split("?")[0].split("/") if segment]
    if segments[:1] == ["api"]:
        segments = segments[2:]  # api/v1
    elif segments[:1] == ["apis"]:
        segments = segments[3:]  # apis/<group>/<version>
    else:
        return "other"
    if segments[:1] == ["namespaces"] and len(segments) > 2:
        segments = segments[2:]  # namespaces/<namespace>/<resource>...
    if not segments:
        return "discovery"
    return segments[0] + (f"/{segments[2]}" if len(segments) > 2 else "")


def serve(port: int) -> None:
    """Start the /metrics server in a background thread (port 0: off)."""
    if port:
        import os

        start_http_server(port, addr=os.environ.get("PERSONALAI_LISTEN_HOST", "0.0.0.0"))
