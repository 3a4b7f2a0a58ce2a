"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640, 1280)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "personalai_server_requests", "HTTP requests by route and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "personalai_server_time_to_first_token_seconds", "Time from request to the first generated token",
            ["engine"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "personalai_server_tokens_per_second", "Decoding speed of each reply",
            ["engine"], buckets=RATE_BUCKETS, registry=self.registry,
        )
        self.generated_tokens = Counter(
            "personalai_server_generated_tokens", "Tokens generated", ["engine"], registry=self.registry,
        )
        self.active_streams = Gauge(
            "personalai_server_active_streams", "Replies being generated now", registry=self.registry,
        )
        self.loaded_adapters = Gauge(
            "personalai_server_loaded_adapters", "Adapters held by the engine", registry=self.registry,
        )
        self.adapter_active = Gauge(
            "personalai_server_adapter_active", "1 for the adapter version served by default",
            ["version"], registry=self.registry,
        )
        self.rejections = Counter(
            "personalai_server_rejected_requests", "Requests refused by a limit", ["limit"], registry=self.registry,
        )
        self.cancelled = Counter(
            "personalai_server_cancelled_generations", "Generations stopped because the client left",
            registry=self.registry,
        )
        self.adapter_refusals = Counter(
            "personalai_server_adapter_refusals", "Adapter versions refused before loading, by reason",
            ["version", "reason"], registry=self.registry,
        )
        # Labels are versions and fixed words only, never text.
        self.replies = Counter(
            "personalai_server_replies", "Replies by adapter version and outcome (ok, error, cancelled)",
            ["version", "outcome"], registry=self.registry,
        )
        self.ratings = Counter(
            "personalai_server_ratings", "Ratings given to replies, by adapter version and rating (up, down)",
            ["version", "rating"], registry=self.registry,
        )
        self.sessions_assigned = Counter(
            "personalai_server_sessions_assigned", "New sessions by the adapter version and A/B variant they got",
            ["version", "variant"], registry=self.registry,
        )
        self.model_ready = Gauge("personalai_server_model_ready", "1 once the model is loaded", registry=self.registry)

    def observe_adapters(self, loaded: list[str], active: str | None) -> None:
        self.loaded_adapters.set(len(loaded))
        self.adapter_active.clear()
        self.adapter_active.labels(version=active or "base").set(1)
