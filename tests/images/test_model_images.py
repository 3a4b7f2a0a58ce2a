"""The trainer image trains the tiny model from a config and writes an adapter, mounted as its Job
mounts them (manifests.build_training_job); the server image loads that adapter, mounted as its
Deployment mounts them (serving.build_server_deployment), and streams a chat reply over SSE."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from cluster_harness import free_port
from images_harness import Container, owned_dir

from devcluster.waiting import wait_for
from personalai_contracts.artifacts import verify_adapter_dir

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[2]
VERSION = "v1-images"
TOKEN = "token-images-0123456789abcdef"
# The first 24 of the example's reflections: enough for a real run, small enough for 2 shared cores.
REFLECTIONS = (REPO / "examples" / "reflections" / "luke.jsonl").read_text().splitlines()[:24]
THREADS = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict[str, Path]:
    """The pods' volumes as host folders: the model cache holds the tiny base model."""
    from personalai_trainer.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("volumes")
    build_tiny_model(root / "models" / "tiny", extra_texts=[json.loads(line)["answer"] for line in REFLECTIONS])
    (root / "reflections").mkdir()
    (root / "reflections" / "luke.jsonl").write_text("\n".join(REFLECTIONS) + "\n")
    return {"models": owned_dir(root / "models"), "reflections": root / "reflections",
            "artifacts": owned_dir(root / "artifacts"), "config": root / "config", "data": owned_dir(root / "data"),
            "auth": root / "auth", "logs": root / "logs"}


def trainer_config() -> dict:
    return {
        "run": {"name": "luke-images", "namespace": "default", "personalAI": "luke", "adapterVersion": VERSION,
                "dataVersion": "sha256:images"},
        "persona": {"displayName": "Luke"},
        "baseModel": "/models/tiny",
        "paths": {"reflections": "/data/reflections/luke.jsonl", "modelCache": "/models",
                  "output": f"/artifacts/{VERSION}", "checkpoints": "/artifacts/checkpoints/luke-images"},
        "training": {"epochs": 1, "batchSize": 2, "maxSeqLength": 256, "quantization": "nf4", "learningRate": 5e-3,
                     "warmupSteps": 2, "checkpointEverySteps": 50, "augmentPhrasings": 1},
        "validation": {"maxSamples": 2, "maxNewTokens": 8},
        "reporting": {"kubernetes": False, "metricsPort": 0, "minIntervalSeconds": 0},
    }


@pytest.fixture(scope="module")
def trained(image_of, volumes) -> Path:
    (volumes["config"] / "trainer").mkdir(parents=True)
    (volumes["config"] / "trainer" / "config.json").write_text(json.dumps(trainer_config()))
    trainer = Container(
        image_of("trainer"), ["--config", "/etc/personalai/config.json"],
        mounts={volumes["config"] / "trainer": "/etc/personalai", volumes["reflections"]: "/data/reflections"},
        writable={volumes["models"]: "/models", volumes["artifacts"]: "/artifacts"},
        env={"HF_HOME": "/models", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "POD_NAME": "luke-images-0",
             **THREADS})
    started = time.monotonic()
    done = trainer.run(timeout=600)
    print(f"trainer container: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    for line in REFLECTIONS:  # personal text never reaches the log
        assert json.loads(line)["answer"][:40] not in done.stdout + done.stderr
    return volumes["artifacts"] / VERSION


def test_trainer_container_writes_a_verifiable_adapter(trained):
    manifest = verify_adapter_dir(trained)
    assert manifest["adapterVersion"] == VERSION and manifest["dataVersion"] == "sha256:images"
    assert (trained / "adapter_model.safetensors").stat().st_size > 0


def server_config(port: int) -> dict:
    return {
        "persona": {"displayName": "Luke", "personalAI": "luke"},
        "engine": {"kind": "local", "baseModel": "/models/tiny", "maxLoadedAdapters": 1},
        "adapter": {"version": VERSION, "dir": "/artifacts"},
        "conversation": {"historyWindow": 4, "maxTokens": 12, "defaultMode": "wise"},
        "storage": {"dataDir": "/data"},
        "auth": {"tokensDir": "/etc/personalai/auth"},
        "limits": {"requestsPerMinute": 100, "concurrentStreams": 2},
        "listen": {"host": "127.0.0.1", "port": port},
    }


def ready(url: str) -> bool:
    response = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
    return response.status_code == 200 and response.json().get("adapterVersion") == VERSION


def test_server_container_loads_the_adapter_and_streams_a_reply(image_of, trained, volumes):
    port = free_port()
    (volumes["config"] / "server").mkdir(parents=True)
    (volumes["config"] / "server" / "server.json").write_text(json.dumps(server_config(port)))
    volumes["auth"].mkdir()
    (volumes["auth"] / "token").write_text(TOKEN + "\n")
    volumes["logs"].mkdir()
    server = Container(
        image_of("server"), ["--config", "/etc/personalai/config/server.json"],
        mounts={volumes["config"] / "server": "/etc/personalai/config", volumes["auth"]: "/etc/personalai/auth",
                volumes["artifacts"]: "/artifacts", volumes["models"]: "/models"},
        writable={volumes["data"]: "/data"}, env={"HF_HOME": "/models", "HOME": "/tmp", **THREADS})
    server.start(volumes["logs"] / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.running() and ready(url), timeout=180,
                 message=f"the server container to load {VERSION} (log: {volumes['logs'] / 'server.log'})")
        body = ""
        with httpx.stream("POST", f"{url}/api/ai-echo/stream", headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"message": "What did your grandfather teach you?"}, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for text in response.iter_text():
                body += text
        events = [json.loads(line[6:]) for line in body.split("\n")
                  if line.startswith("data: ") and line != "data: [DONE]"]
        chunks = [event["content"] for event in events if event["type"] == "chunk"]
        assert chunks and events[-1]["type"] == "complete"
        assert events[-1]["response"] == "".join(chunks)
        assert events[-1]["metadata"]["adapterVersion"] == VERSION
    finally:
        server.remove()
