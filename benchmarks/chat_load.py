"""The chat server's SSE streams against their floor: a bare ASGI app streaming the same bytes.

    .venv/bin/python benchmarks/chat_load.py                      # 100 and 500 streams, both stacks
    .venv/bin/python benchmarks/chat_load.py --sizes 100 --stacks uvloop+httptools

For each stack (uvicorn's asyncio+h11, then uvloop+httptools) and each size, it runs two servers, one
at a time and each in its own process: ours (the real app, a fixed-token engine yielding --tokens
tokens, one every --token-delay-ms) and the floor (a raw ASGI callable, no framework, that replays the
SSE events ours sent for one recorded reply, byte for byte, with the same pacing). The load client runs
in a third process, so neither server shares its CPU with the measurement. After --warmup streams that
are not measured, it opens --sizes streams at once and reports time to first token (TTFT) p50/p95/p99,
wall time, tokens/s, streams that failed, the server's RSS before, after and at peak (sampled), and
ours/floor. Ours and the floor run in turns, --repeat times; the table shows medians. The recorded
reply is synthetic text, never personal data.
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
STREAM_PATH = "/api/ai-echo/stream"
STACKS = {"asyncio+h11": ("asyncio", "h11"), "uvloop+httptools": ("uvloop", "httptools")}


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


def write_config(workdir: Path, port: int, streams: int, tokens: int) -> Path:
    (workdir / "auth").mkdir(parents=True, exist_ok=True)
    (workdir / "auth" / "tokens").write_text(TOKEN + "\n")
    config = {
        "persona": {"displayName": "Bench", "personalAI": "bench"},
        "engine": {"kind": "local", "baseModel": str(workdir / "unused-model")},
        "conversation": {"maxTokens": tokens, "historyWindow": 10},
        "storage": {"dataDir": str(workdir / "data")},
        "auth": {"tokensDir": str(workdir / "auth")},
        "limits": {"concurrentStreams": streams, "requestsPerMinute": 1000000, "maxTokens": max(tokens, 1024)},
        "listen": {"host": "127.0.0.1", "port": port},
    }
    path = workdir / "server.json"
    path.write_text(json.dumps(config))
    return path


# --- the servers, each run as `--role serve-ours` or `--role serve-floor` in its own process ---

def serve_ours(args) -> None:
    import uvicorn

    from personalai_server.app import build_app
    from personalai_server.config import load_config

    config = load_config(args.config)
    app = build_app(config, engine=fixed_engine_class()(args.tokens, args.token_delay_ms / 1000))
    uvicorn.run(app, host="127.0.0.1", port=config.listen.port, loop=args.loop, http=args.http,
                log_level="warning", access_log=False)


def is_chunk(event: bytes) -> bool:
    return event.startswith(b"data: ") and json.loads(event[6:]).get("type") == "chunk"


def floor_app(events: list[bytes], delay: float):
    """The least an ASGI server can do for one reply: read the request, then send the recorded events,
    waiting `delay` before each chunk as the fixed-token engine waits before each token."""
    sse_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    paced = [(is_chunk(event), event) for event in events]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] != STREAM_PATH:
            body = b'{"sessionId": "floor"}' if scope["path"].endswith("/sessions") else b"{}"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
        for chunk, event in paced:
            if chunk:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve_floor(args) -> None:
    import uvicorn

    events = [bytes.fromhex(event) for event in json.loads(Path(args.events).read_text())]
    uvicorn.run(floor_app(events, args.token_delay_ms / 1000), host="127.0.0.1", port=args.port,
                loop=args.loop, http=args.http, log_level="warning", access_log=False)


# --- the load client, run as `--role client` in its own process ---

async def one_stream(client, session_id: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = None
    chunks = 0
    async with client.stream("POST", STREAM_PATH, json={"message": "How was your day?", "sessionId": session_id}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "chunk":
                    chunks += 1
                    first = first or time.perf_counter() - started
                elif event["type"] == "error":
                    raise RuntimeError(f"stream error event: {event['error'].get('code')}")
    return first, time.perf_counter() - started, chunks


async def load(url: str, streams: int, warmup: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        sessions = []
        for _ in range(streams + warmup):
            created = await client.post("/api/ai-echo/sessions", json={})
            created.raise_for_status()
            sessions.append(created.json()["sessionId"])
    # Not measured: a server that has answered before (its first request builds FastAPI's route
    # state and pydantic's validators, once), as a serving one has.
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        await asyncio.gather(*(one_stream(client, s) for s in sessions[streams:]))
    # Fresh connections for the streams: a kept-alive one the server is closing for idleness
    # (uvicorn's 5 s keep-alive) would fail the request; and each stream opens its own, as a browser's would.
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, s) for s in sessions[:streams]), return_exceptions=True)
        wall = time.perf_counter() - started
    done = [r for r in results if not isinstance(r, BaseException)]
    failed = sorted({f"{type(r).__name__}: {r}"[:120] for r in results if isinstance(r, BaseException)})
    return {"ttft": [r[0] for r in done], "chunks": sum(r[2] for r in done), "wall": wall,
            "failed": len(results) - len(done), "failures": failed}


async def record_reply(url: str) -> list[bytes]:
    """One reply from ours, as the SSE events it sent: the floor replays exactly these bytes."""
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        session = (await client.post("/api/ai-echo/sessions", json={})).json()["sessionId"]
        raw = b""
        async with client.stream("POST", STREAM_PATH, json={"message": "How was your day?", "sessionId": session}) as response:
            response.raise_for_status()
            async for part in response.aiter_raw():
                raw += part
    return [event + b"\n\n" for event in raw.split(b"\n\n") if event]


# --- the driver ---

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server at {url} not ready after {timeout:.0f}s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarize(result: dict, rss: dict) -> dict:
    ttft = result["ttft"]
    return {
        "ttftMs": {name: round(percentile(ttft, q) * 1000, 1) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "wallSeconds": round(result["wall"], 3),
        "tokensPerSecond": round(result["chunks"] / result["wall"], 1),
        "tokens": result["chunks"],
        "serverRssMiB": {name: round(value, 1) for name, value in rss.items()},
        "failedStreams": result["failed"],
        "failures": result["failures"],
    }


def measure(server_argv: list[str], url: str, streams: int, warmup: int, timeout: float) -> dict:
    """Start one server, load it from a client process, sample the server's RSS meanwhile, stop both."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The server's stderr is its audit log (one line per request): not part of the report.
    server = subprocess.Popen([sys.executable, str(HERE), *server_argv], stderr=subprocess.DEVNULL, env=env)
    try:
        wait_ready(url)
        before = peak = rss_mib(server.pid)
        client = subprocess.Popen([sys.executable, str(HERE), "--role", "client", "--url", url, "--streams", str(streams),
                                   "--warmup", str(warmup)],
                                  stdout=subprocess.PIPE, env=env)
        deadline = time.monotonic() + timeout
        while client.poll() is None:
            if time.monotonic() > deadline:
                client.kill()
                raise TimeoutError(f"client at {streams} streams ran past {timeout:.0f}s")
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.02)
        output = client.stdout.read()
        if client.returncode != 0:
            raise RuntimeError(f"client exited {client.returncode}")
        after = rss_mib(server.pid)
        return summarize(json.loads(output), {"before": before, "after": after, "peak": max(peak, after)})
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_all(args) -> list[dict]:
    rows = []
    pacing = ["--tokens", str(args.tokens), "--token-delay-ms", str(args.token_delay_ms)]
    with tempfile.TemporaryDirectory(prefix="chat-load-") as tmp:
        workdir = Path(tmp)
        events_path = workdir / "events.json"
        for stack in args.stacks:
            loop, http = STACKS[stack]
            for streams in args.sizes:
                port = free_port()
                url = f"http://127.0.0.1:{port}"

                # A fresh data folder for each run of ours: earlier runs' sessions would count against its limits.
                ours_argv = [["--role", "serve-ours", "--loop", loop, "--http", http, *pacing, "--config",
                              str(write_config(workdir / f"{stack}-{streams}-{run}", port, streams + 1, args.tokens))]
                             for run in range(args.repeat + 1)]
                if not events_path.exists():
                    events_path.write_text(json.dumps([event.hex() for event in record_once(ours_argv[0], url)]))
                floor_argv = ["--role", "serve-floor", "--events", str(events_path), "--port", str(port),
                              "--loop", loop, "--http", http, *pacing]
                # Ours and the floor in turns, --repeat times: on a shared machine a run's noise is
                # mostly the moment's, so each ratio is of two neighbouring runs, and the median is shown.
                pairs = [(measure(ours_argv[run + 1], url, streams, args.warmup, args.timeout),
                          measure(floor_argv, url, streams, args.warmup, args.timeout)) for run in range(args.repeat)]
                rows.append({"stack": stack, "streams": streams, "runs": args.repeat,
                             "ours": median_run([ours for ours, _ in pairs]),
                             "floor": median_run([floor for _, floor in pairs]),
                             "oursOverFloor": {name: round(statistics.median(
                                 ours["ttftMs"][name] / floor["ttftMs"][name] for ours, floor in pairs), 2)
                                 for name in ("p50", "p95", "p99")}})
    return rows


def median_run(runs: list[dict]) -> dict:
    """One summary of several runs of a server: the median of each figure, RSS peak the highest, failures summed."""
    def median_of(pick):
        return round(statistics.median(pick(run) for run in runs), 1)

    return {
        "ttftMs": {name: median_of(lambda run, n=name: run["ttftMs"][n]) for name in ("p50", "p95", "p99")},
        "wallSeconds": median_of(lambda run: run["wallSeconds"]),
        "tokensPerSecond": median_of(lambda run: run["tokensPerSecond"]),
        "serverRssMiB": {"before": median_of(lambda run: run["serverRssMiB"]["before"]),
                         "after": median_of(lambda run: run["serverRssMiB"]["after"]),
                         "peak": max(run["serverRssMiB"]["peak"] for run in runs)},
        "failedStreams": sum(run["failedStreams"] for run in runs),
        "failures": sorted({failure for run in runs for failure in run["failures"]}),
    }


def record_once(server_argv: list[str], url: str) -> list[bytes]:
    server = subprocess.Popen([sys.executable, str(HERE), *server_argv], stderr=subprocess.DEVNULL)
    try:
        wait_ready(url)
        return asyncio.run(record_reply(url))
    finally:
        server.terminate()
        server.wait(timeout=30)


def table(rows: list[dict]) -> str:
    lines = [f"{'stack':<17}{'streams':>8} {'server':<6}{'p50':>8}{'p95':>8}{'p99':>8}{'wall s':>8}{'tok/s':>9}"
             f"{'rss MiB before/after/peak':>28}"]
    for row in rows:
        for name in ("ours", "floor"):
            r = row[name]
            rss = r["serverRssMiB"]
            lines.append(f"{row['stack']:<17}{row['streams']:>8} {name:<6}{r['ttftMs']['p50']:>8}{r['ttftMs']['p95']:>8}"
                         f"{r['ttftMs']['p99']:>8}{r['wallSeconds']:>8}{r['tokensPerSecond']:>9}"
                         f"{rss['before']:>12}/{rss['after']}/{rss['peak']}")
            if r["failedStreams"]:
                lines.append(f"{'':<26}{r['failedStreams']} streams failed: {'; '.join(r['failures'])}")
        ratio = row["oursOverFloor"]
        lines.append(f"{'':<26}ours/floor TTFT (median of {row['runs']} paired runs) p50 {ratio['p50']}x  p95 {ratio['p95']}x  p99 {ratio['p99']}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500], help="concurrent streams, one run each")
    parser.add_argument("--stacks", nargs="+", choices=list(STACKS), default=list(STACKS))
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--token-delay-ms", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each server, in turns; medians are shown")
    parser.add_argument("--warmup", type=int, default=10, help="streams each server answers, unmeasured, first")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one client run may take")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    # The child processes' arguments.
    parser.add_argument("--role", choices=["serve-ours", "serve-floor", "client"], help=argparse.SUPPRESS)
    for hidden in ("--config", "--events", "--url", "--loop", "--http"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "serve-ours":
        serve_ours(args)
    elif args.role == "serve-floor":
        serve_floor(args)
    elif args.role == "client":
        print(json.dumps(asyncio.run(load(args.url, args.streams, args.warmup))))
    else:
        rows = run_all(args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
