"""A real server refuses an adapter folder whose manifest is not the one the operator recorded
(adapter.manifestSha256): another person's adapter put in its place, or one rewritten together with
its manifest, either of which passes the manifest's own check. Nothing of it is loaded; the refusal
is in /readyz, the log and /metrics by version, never by content."""

from __future__ import annotations

import logging
import shutil
import time

import httpx
import pytest
import yaml
from server_harness import ThreadServer, auth, make_adapter, server_config, wait_ready

from personalai_contracts.artifacts import manifest_digest, write_manifest

pytestmark = pytest.mark.model


def refusals(url: str, version: str) -> float:
    prefix = f'personalai_server_adapter_refusals_total{{reason="digest_mismatch",version="{version}"}} '
    lines = [line for line in httpx.get(f"{url}/metrics", headers=auth(), timeout=10).text.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix):]) if lines else 0.0


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} not met in {timeout}s")


def write_config(path, config: dict) -> None:
    # Whole, then renamed, as a ConfigMap update lands.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config))
    temporary.replace(path)


def test_another_persons_adapter_under_the_served_version_is_never_loaded(
    tmp_path, tiny_model_dir, artifacts_dir, caplog
):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir / "v1-aaaa", artifacts / "v1-aaaa")
    recorded = manifest_digest(artifacts / "v1-aaaa")  # what the operator recorded for Luke's v1
    # Someone else's adapter, trained under the same version name, with a manifest of its own that checks out.
    shutil.rmtree(artifacts / "v1-aaaa")
    make_adapter(tiny_model_dir, artifacts, "v1-aaaa", seed=7)
    config = server_config(tmp_path, tiny_model_dir, artifacts,
                           adapter={"version": "v1-aaaa", "dir": str(artifacts), "manifestSha256": recorded})
    server = ThreadServer(config)
    server.thread.start()
    try:
        ready = wait_for(lambda: (r := httpx.get(f"{server.url}/readyz", headers=auth(), timeout=2)).json()["status"] == "failed" and r,
                         what="/readyz failed")
        assert ready.status_code == 503
        body = ready.json()
        assert body["reason"].startswith("adapter digest mismatch: adapter v1-aaaa ") and recorded in body["reason"]
        assert body["loadedAdapters"] == [] and body["adapterVersion"] is None
        chat = httpx.post(f"{server.url}/api/ai-echo/chat", headers=auth(), json={"message": "Hello"}, timeout=10)
        assert chat.status_code == 503 and chat.json()["error"]["code"] == "model_loading"
        assert refusals(server.url, "v1-aaaa") == 1
        assert server.service.memories.indexes == {} and server.service.engine.model is None
    finally:
        server.__exit__(None, None, None)
    refused = [r.getMessage() for r in caplog.records if "adapter digest mismatch" in r.getMessage()]
    assert refused and all("v1-aaaa" in line for line in refused)


def test_a_rewritten_adapter_is_not_switched_to_on_reload_nor_loaded_by_request(
    tmp_path, tiny_model_dir, artifacts_dir, start_server, caplog
):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, artifacts)
    digests = {version: manifest_digest(artifacts / version) for version in ("v1-aaaa", "v2-bbbb")}
    config = server_config(tmp_path, tiny_model_dir, artifacts, adapter={
        "version": "v1-aaaa", "dir": str(artifacts), "manifestSha256": digests["v1-aaaa"]})
    config_path = tmp_path / "server.yaml"
    write_config(config_path, config)
    server = start_server(config, config_path)
    assert wait_ready(server.url, adapter="v1-aaaa")["loadedAdapters"] == ["v1-aaaa"]

    # v2's weights changed after training and its manifest was written again to match them.
    with (artifacts / "v2-bbbb" / "adapter_model.safetensors").open("r+b") as weights:
        weights.seek(-8, 2)
        weights.write(b"\x00" * 8)
    write_manifest(artifacts / "v2-bbbb", adapter_version="v2-bbbb", base_model=str(tiny_model_dir),
                   data_version="sha256:test", config={"lora": {"rank": 4}}, metrics={})
    config["adapter"] = {**config["adapter"], "version": "v2-bbbb", "manifestSha256": digests["v2-bbbb"]}
    write_config(config_path, config)
    wait_for(lambda: refusals(server.url, "v2-bbbb") >= 2, what="two reload ticks refusing v2-bbbb")
    ready = wait_ready(server.url, timeout=5, adapter="v1-aaaa")
    assert ready["loadedAdapters"] == ["v1-aaaa"] and "v2-bbbb" not in server.service.memories.indexes

    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        # Bound to its recorded digest, the version cannot be loaded by naming it either.
        tgi = client.post("/generate", json={"inputs": "[INST] Hi [/INST]", "parameters": {"adapter_id": "v2-bbbb"}})
        assert tgi.status_code == 422 and tgi.json()["error"]["field"] == "parameters.adapter_id"
        assert tgi.json()["error"]["message"].startswith("adapter digest mismatch: adapter v2-bbbb ")
        assert client.post("/v1/load_lora_adapter", json={"lora_name": "v2-bbbb"}).status_code == 404
        assert client.post("/api/ai-echo/chat", json={"message": "Still you?"}).json()["metadata"]["adapterVersion"] == "v1-aaaa"
    assert server.service.engine.loaded_adapters() == ["v1-aaaa"]
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "adapter digest mismatch" in r.getMessage()]
    assert refused and all("v2-bbbb" in line for line in refused)

    # v2 as trained matches what was recorded: the same reload switches to it.
    shutil.rmtree(artifacts / "v2-bbbb")
    shutil.copytree(artifacts_dir / "v2-bbbb", artifacts / "v2-bbbb")
    assert set(wait_ready(server.url, timeout=30, adapter="v2-bbbb")["loadedAdapters"]) == {"v1-aaaa", "v2-bbbb"}
