"""Operator-wide kopf settings and the metrics server, applied once at startup."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from personalai_operator import incluster, kube, metrics, watch_cache
from personalai_operator.handlers.common import SETTINGS
from personalai_operator.models import GROUP
from personalai_operator.naming import LABEL_TRAINING_RUN

CACHE_READY_SECONDS = 30.0


@kopf.on.login()
def login(logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """In a pod: its ServiceAccount (through the path prefix); elsewhere: $KUBECONFIG as kopf reads it."""
    if incluster.in_cluster():
        return incluster.connection_info()
    return kopf.login_via_client(logger=logger, settings=settings)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # One replica by design: no peering objects to install or leases to wait for.
    settings.peering.standalone = True
    # Keep kopf's bookkeeping in annotations: the CRD status schema has no room for it (pruned).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    # Watch only the Jobs and pods that run trainers, filtered by the API server.
    settings.watching.label_selectors["batch", "jobs"] = LABEL_TRAINING_RUN
    settings.watching.label_selectors["v1", "pods"] = LABEL_TRAINING_RUN
    settings.execution.max_workers = SETTINGS.workers
    metrics.serve(SETTINGS.metrics_port)
    # Reads from the watch cache from now on; the first passes after a restart wait (bounded) for its
    # first lists rather than all asking the API at once. A kind it may not watch is read from the API.
    cache = watch_cache.WatchCache(SETTINGS.namespaces, kube.watch_client)
    cache.start()
    watch_cache.install(cache)
    if not cache.wait_ready(CACHE_READY_SECONDS):
        logging.getLogger(__name__).warning("watch cache not filled after %s s; reading from the API meanwhile",
                                            CACHE_READY_SECONDS)


@kopf.on.cleanup()
def stop_watch_cache(**_: Any) -> None:
    cache = watch_cache.install(None)
    if cache is not None:
        cache.stop()
