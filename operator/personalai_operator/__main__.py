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


if __name__ == "__main__":
    sys.exit(main())
