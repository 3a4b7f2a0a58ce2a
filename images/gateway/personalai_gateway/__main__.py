"""Run the gateway: `python -m personalai_gateway` (settings from PERSONALAI_GATEWAY_* variables)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from .settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="personalai_gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request's URL at INFO: the API calls and the chat paths are not a log's business.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = GatewaySettings.from_env()
    except ValidationError as error:
        print(f"gateway settings: {error}", file=sys.stderr)
        return 2

    import uvicorn

    from .app import build_app

    # The dev node agent gives each pod its own loopback address to bind; a real pod binds all.
    host = os.environ.get("PERSONALAI_LISTEN_HOST", "0.0.0.0")
    # No access log: chat paths and queries name sessions; /metrics counts requests by route instead.
    uvicorn.run(build_app(settings), host=host, port=settings.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
