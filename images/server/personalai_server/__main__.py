"""Run the server: `python -m personalai_server --config /etc/personalai/server.yaml`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, ServerConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="personalai_server", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="server config file (JSON or YAML)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2

    import uvicorn

    from .app import build_app

    app = build_app(config, config_path=args.config)
    # The access log shows method, path and status only: never bodies, so never message text.
    # The dev node agent gives each pod its own loopback address to bind; a real pod uses the config's.
    host = os.environ.get("PERSONALAI_LISTEN_HOST", config.listen.host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=config.listen.port, log_level=args.log_level,
                                           **uvicorn_limits(config)))
    stop = server.handle_exit

    def handle_exit(sig, frame) -> None:
        # The service learns of SIGTERM first: replies still streaming get limits.shutdownGraceSeconds,
        # then end with a server_shutting_down error event, while uvicorn waits for them.
        app.state.service.begin_shutdown()
        stop(sig, frame)

    server.handle_exit = handle_exit
    server.run()
    return 0


def uvicorn_limits(config: ServerConfig) -> dict:
    """What uvicorn enforces for the server's limits: a WebSocket frame is read only up to
    limits.maxRequestBytes, and shutdown waits no longer than the streams' grace, plus a margin."""
    return {"ws": "websockets-sansio", "ws_max_size": config.limits.max_request_bytes,
            "timeout_graceful_shutdown": config.limits.shutdown_grace_seconds + 5}


if __name__ == "__main__":
    sys.exit(main())
