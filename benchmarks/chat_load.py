"""A bounded load test of the chat server on loopback: many concurrent SSE streams at once.

    .venv/bin/python benchmarks/chat_load.py --streams 100 --tokens 32            # fixed-token engine
    .venv/bin/python benchmarks/chat_load.py --streams 100 --engine tiny          # the tiny model

Starts `personalai_server` in a child process (with a fixed-token engine that yields --tokens
tokens, one every --token-delay-ms, or the tiny Mistral model), opens --streams streams of
/api/ai-echo/stream together, and reports p50/p99 time to first token (TTFT) and stream duration,
the same engine's TTFT alone in-process at the same concurrency (so the difference is what the
server adds: HTTP, auth, limits, SQLite, SSE), and the server's RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TOKEN = "benchmark-token-0123456789"


def fixed_engine_class():
    from personalai_server.engines.base import Engine
    from personalai_server.engines.tokenizers import EstimatingTokenizer

    class FixedTokenEngine(Engine):
        """Yields `tokens` words, one every `delay` seconds: the engine costs only the wait."""

        kind = "fixed"

        def __init__(self, tokens: int, delay: float):
            super().__init__()
            self.tokens, self.delay = tokens, delay
            self.tokenizer = EstimatingTokenizer(4096)

        async def start(self, adapter_version):
            self.active_adapter = adapter_version
            self.ready = True

        async def stream(self, messages, params, stats):
            stats.prompt_tokens = self.count_tokens(messages)
            for index in range(min(self.tokens, params.max_tokens)):
                await asyncio.sleep(self.delay)
                stats.mark_token()
                yield f" word{index}"
            stats.finish_reason = "length"
            stats.finished_at = time.perf_counter()

        async def ensure_adapter(self, version):
            return None

        def loaded_adapters(self):
            return []

    return FixedTokenEngine


def write_config(workdir: Path, model_dir: str, port: int, streams: int, tokens: int) -> Path:
    (workdir / "auth").mkdir(parents=True, exist_ok=True)
    (workdir / "auth" / "tokens").write_text(TOKEN + "\n")
    config = {
        "persona": {"displayName": "Bench", "personalAI": "bench"},
        "engine": {"kind": "local", "baseModel": model_dir, "maxConcurrentGenerations": 8},
        "conversation": {"maxTokens": tokens, "historyWindow": 10},
        "storage": {"dataDir": str(workdir / "data")},
        "auth": {"tokensDir": str(workdir / "auth")},
        "limits": {"concurrentStreams": streams, "requestsPerMinute": 100000, "maxTokens": max(tokens, 1024)},
        "listen": {"host": "127.0.0.1", "port": port},
    }
    path = workdir / "server.json"
    path.write_text(json.dumps(config))
    return path


def build_engine(args, config):
    if args.engine == "fixed":
        return fixed_engine_class()(args.tokens, args.token_delay_ms / 1000)
    from personalai_server.engines.local import LocalEngine

    return LocalEngine(config)


def serve(args) -> None:
    """The child process: the real app and uvicorn, with the chosen engine."""
    import uvicorn

    from personalai_server.app import build_app
    from personalai_server.config import load_config

    config = load_config(args.config)
    app = build_app(config, engine=build_engine(args, config))
    uvicorn.run(app, host="127.0.0.1", port=config.listen.port, log_level="warning", access_log=False)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_stream(client, session_id: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = None
    chunks = 0
    async with client.stream("POST", "/api/ai-echo/stream", json={"message": "How was your day?", "sessionId": session_id}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "chunk":
                    chunks += 1
                    first = first or time.perf_counter() - started
                elif event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
    return first, time.perf_counter() - started, chunks


async def load(url: str, streams: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        sessions = [(await client.post("/api/ai-echo/sessions", json={})).json()["sessionId"] for _ in range(streams)]
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, s) for s in sessions))
        wall = time.perf_counter() - started
    ttft = [r[0] for r in results]
    return {"ttft": ttft, "duration": [r[1] for r in results], "chunks": sum(r[2] for r in results), "wall": wall}


async def engine_alone(args, config, streams: int) -> list[float]:
    """The same engine, in this process, at the same concurrency: TTFT without the server."""
    from personalai_server.engines.base import GenerationParams, GenerationStats

    engine = build_engine(args, config)
    await engine.start(None)
    messages = [{"role": "system", "content": "You are Bench."}, {"role": "user", "content": "How was your day?"}]
    params = GenerationParams(max_tokens=args.tokens, temperature=0.7, top_p=0.9)

    async def one() -> float:
        stats = GenerationStats()
        async for _ in engine.stream(messages, params, stats):
            pass
        return stats.time_to_first_token

    times = await asyncio.gather(*(one() for _ in range(streams)))
    await engine.close()
    return list(times)


def wait_ready(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server not ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--engine", choices=["fixed", "tiny"], default="fixed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help="tiny model folder (built when absent)")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0

    from personalai_server.config import load_config

    with tempfile.TemporaryDirectory(prefix="chat-load-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir or str(workdir / "tiny")
        if args.engine == "tiny" and not Path(model_dir, "config.json").exists():
            from personalai_trainer.tiny_model import build_tiny_model

            build_tiny_model(model_dir)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config_path = write_config(workdir, model_dir, port, args.streams, args.tokens)
        url = f"http://127.0.0.1:{port}"
        child = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", "--config", str(config_path), "--engine", args.engine,
             "--tokens", str(args.tokens), "--token-delay-ms", str(args.token_delay_ms)],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        try:
            wait_ready(url)
            rss_before = rss_mib(child.pid)
            result = asyncio.run(load(url, args.streams))
            rss_after = rss_mib(child.pid)
        finally:
            child.terminate()
            child.wait(timeout=30)
        alone = asyncio.run(engine_alone(args, load_config(config_path), args.streams))

    server_p50, server_p99 = percentile(result["ttft"], 0.5), percentile(result["ttft"], 0.99)
    alone_p50, alone_p99 = percentile(alone, 0.5), percentile(alone, 0.99)
    report = {
        "engine": args.engine, "streams": args.streams, "tokensPerStream": args.tokens,
        "ttftMs": {"p50": round(server_p50 * 1000, 1), "p99": round(server_p99 * 1000, 1)},
        "engineAloneTtftMs": {"p50": round(alone_p50 * 1000, 1), "p99": round(alone_p99 * 1000, 1)},
        "serverAddedMs": {"p50": round((server_p50 - alone_p50) * 1000, 1), "p99": round((server_p99 - alone_p99) * 1000, 1)},
        "streamMs": {"p50": round(statistics.median(result["duration"]) * 1000, 1),
                     "p99": round(percentile(result["duration"], 0.99) * 1000, 1)},
        "chunks": result["chunks"], "wallSeconds": round(result["wall"], 2),
        "chunksPerSecond": round(result["chunks"] / result["wall"], 1),
        "serverRssMiB": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
