"""Run the operator: `python -m personalai_operator` (settings from PERSONALAI_* variables).

Runs kopf standalone (one replica, no peering), in the namespaces of PERSONALAI_NAMESPACES or in
all of them, with a liveness endpoint on PERSONALAI_LIVENESS_PORT (/healthz) and Prometheus
metrics on PERSONALAI_METRICS_PORT (/metrics).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The personalai Kubernetes operator.")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kopf logs every timer tick at INFO; keep its warnings and errors
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    import os

    import kopf

    import personalai_operator.handlers  # noqa: F401  (registers the handlers)
    from personalai_operator.handlers.common import SETTINGS

    keep_watching_namespaces_being_deleted()
    # The dev node agent gives each pod its own loopback address to bind; a real pod binds all.
    host = os.environ.get("PERSONALAI_LISTEN_HOST", "0.0.0.0")
    liveness = f"http://{host}:{SETTINGS.liveness_port}/healthz" if SETTINGS.liveness_port else None
    kopf.run(
        standalone=True,
        clusterwide=not SETTINGS.namespaces,
        namespaces=SETTINGS.namespaces,
        liveness_endpoint=liveness,
    )
    return 0


def keep_watching_namespaces_being_deleted() -> None:
    """Serve a watched namespace until it is gone, not only until its deletion starts.

    kopf (1.45, issue nolar/kopf#1088) stops watching a namespace as soon as it is marked for
    deletion and its controller reports progress, while the PersonalAIs and TrainingRuns in it still
    carry kopf's finalizer: nobody lifts it, and `kubectl delete namespace` hangs forever. A
    namespace counts as deleted here only on its DELETED event; by then nothing of ours is in it.
    """
    from kopf._core.reactor import observation

    observation.is_deleted = lambda raw_event: raw_event["type"] == "DELETED"


if __name__ == "__main__":
    sys.exit(main())
