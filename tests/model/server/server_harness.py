"""Helpers and fixtures for the server model tier: the tiny model, adapters with manifests, real servers.

`start_server` runs the real app under uvicorn on 127.0.0.1 in a thread of the test process (so a
test can look at the engine it drives); `ServerProcess` runs `python -m personalai_server` as the
pod does, for restart and hot-reload tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

TOKEN_A = "token-a-0123456789abcdef"
TOKEN_B = "token-b-0123456789abcdef"
REPO = Path(__file__).resolve().parents[3]


def auth(token: str = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from personalai_trainer.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-mistral"))


def make_adapter(model_dir: Path, artifacts: Path, version: str, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights and the trainer's manifest, as training leaves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from personalai_contracts.artifacts import write_manifest

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    # init_lora_weights=False: B is random too, so the adapter visibly changes what the model says.
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.mul_(4.0)
    out = artifacts / version
    model.save_pretrained(out)
    write_manifest(out, adapter_version=version, base_model=str(model_dir), data_version="sha256:test",
                   config={"lora": {"rank": 4}}, metrics={})
    return out


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """Adapters v1 and v2 of the tiny model, made once."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    make_adapter(tiny_model_dir, artifacts, "v1-aaaa", seed=1)
    make_adapter(tiny_model_dir, artifacts, "v2-bbbb", seed=2)
    return artifacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_tokens(directory: Path, *tokens: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokens").write_text("\n".join(tokens) + "\n")
    return directory


def server_config(tmp_path: Path, model_dir: Path, artifacts: Path, **overrides) -> dict:
    config = {
        "persona": {"displayName": "Luke", "personalAI": "luke"},
        "engine": {"kind": "local", "baseModel": str(model_dir), "maxLoadedAdapters": 3},
        "adapter": {"version": None, "dir": str(artifacts)},
        "conversation": {"historyWindow": 4, "maxTokens": 12, "defaultMode": "wise"},
        "storage": {"dataDir": str(tmp_path / "data")},
        "auth": {"tokensDir": str(write_tokens(tmp_path / "auth", TOKEN_A, TOKEN_B))},
        "limits": {"requestsPerMinute": 1000, "concurrentStreams": 8},
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "reloadIntervalSeconds": 0.5,
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def wait_ready(base_url: str, timeout: float = 60.0, adapter: str | None = "any") -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/readyz", headers=auth(), timeout=2.0)
            last = response.json()
            if response.status_code == 200 and (adapter == "any" or last.get("adapterVersion") == adapter):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {base_url} not ready in {timeout}s (last: {last})")


class ThreadServer:
    """The app under a real uvicorn on loopback, in a thread of this process."""

    def __init__(self, config_dict: dict, config_path: Path | None = None, engine=None):
        import uvicorn

        from personalai_server.__main__ import uvicorn_limits
        from personalai_server.app import build_app
        from personalai_server.config import parse_config

        self.config = parse_config(config_dict)
        self.app = build_app(self.config, config_path=str(config_path) if config_path else None, engine=engine)
        self.service = self.app.state.service
        port = self.config.listen.port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                                    **uvicorn_limits(self.config)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def start_server():
    """start_server(config_dict, engine=None) -> a running ThreadServer, stopped after the test."""
    running = []

    def start(config_dict: dict, config_path: Path | None = None, engine=None) -> ThreadServer:
        server = ThreadServer(config_dict, config_path, engine).__enter__()
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        server.__exit__(None, None, None)


class ServerProcess:
    """`python -m personalai_server --config <file>`, as the container runs it."""

    def __init__(self, config_path: Path, log_path: Path):
        self.config_path = config_path
        self.log_path = log_path
        config = yaml.safe_load(config_path.read_text())
        self.url = f"http://127.0.0.1:{config['listen']['port']}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0, adapter: str | None = "any") -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "personalai_server", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            )
        return wait_ready(self.url, timeout, adapter)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def write_config(self, config: dict) -> None:
        # Written whole then renamed, as a ConfigMap update lands: the reader never sees half a file.
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(config))
        temporary.replace(self.config_path)


def sse_events(body: str) -> list[dict]:
    """Parse a stream the way the chat page does: split on "\\n", `data: ` lines are JSON."""
    return [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]


def websocket_chat(base_url: str, message: str, token: str = TOKEN_A, timeout: float = 30.0) -> list[dict]:
    """Say `message` over /api/ai-echo/ws as the chat page does (authenticate, wait for `ready`, send)
    and read the events that follow up to the reply's `complete` or an `error`, each within `timeout`."""
    import websockets

    async def talk() -> list[dict]:
        async with websockets.connect(base_url.replace("http://", "ws://") + "/api/ai-echo/ws", open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            ready = json.loads(await ws.recv())
            assert ready["type"] == "ready", ready
            await ws.send(json.dumps({"message": message}))
            events: list[dict] = []
            while not events or events[-1]["type"] not in ("complete", "error"):
                events.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
            return events

    return asyncio.run(talk())


@dataclass
class OpenAIStreamRead:
    pieces: list[str]  # the non-empty content deltas, in order
    finish_reason: str | None
    usage: Any  # the usage chunk, when the request asked for one (stream_options.include_usage)


def read_openai_stream(stream) -> OpenAIStreamRead:
    """Drain a streamed chat completion of the openai client."""
    read = OpenAIStreamRead(pieces=[], finish_reason=None, usage=None)
    for chunk in stream:
        read.usage = chunk.usage or read.usage
        for choice in chunk.choices:
            if choice.delta.content:
                read.pieces.append(choice.delta.content)
            read.finish_reason = choice.finish_reason or read.finish_reason
    return read
