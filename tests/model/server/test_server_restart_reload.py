"""`python -m personalai_server` as the pod runs it: sessions survive a restart; a new adapter
version in the config file is verified and switched to without one; a tampered one is refused."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
import yaml
from server_harness import ServerProcess, auth, make_adapter, server_config, wait_ready

pytestmark = pytest.mark.model


def test_restart_keeps_sessions_and_hot_reload_switches_adapter(tmp_path, tiny_model_dir, artifacts_dir):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, artifacts)
    config = server_config(tmp_path, tiny_model_dir, artifacts, adapter={"version": "v1-aaaa", "dir": str(artifacts)},
                           engine={"maxLoadedAdapters": 2})
    config_path = tmp_path / "server.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server = ServerProcess(config_path, tmp_path / "server.log")
    try:
        server.start(adapter="v1-aaaa")
        with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
            session_id = client.post("/api/ai-echo/sessions", json={"title": "Before restart"}).json()["sessionId"]
            first = client.post("/api/ai-echo/chat", json={"message": "Remember this", "sessionId": session_id}).json()
            assert first["metadata"]["adapterVersion"] == "v1-aaaa"

        server.stop()
        server.start(adapter="v1-aaaa")
        with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
            detail = client.get(f"/api/ai-echo/sessions/{session_id}").json()
            assert detail["title"] == "Before restart"
            assert [m["content"] for m in detail["messages"]] == ["Remember this", first["response"]]

            # Hot reload: the operator points the config at v2; no restart.
            pid = server.process.pid
            config["adapter"]["version"] = "v2-bbbb"
            server.write_config(config)
            ready = wait_ready(server.url, timeout=30, adapter="v2-bbbb")
            assert set(ready["loadedAdapters"]) == {"v1-aaaa", "v2-bbbb"}
            assert server.process.pid == pid and server.process.poll() is None
            second = client.post("/api/ai-echo/chat", json={"message": "And now?", "sessionId": session_id}).json()
            assert second["metadata"]["adapterVersion"] == "v2-bbbb"
            # The earlier turn is still the context of the new adapter.
            assert second["metadata"]["historyMessages"] == 2

            # A third version makes room by unloading the least recently used one (maxLoadedAdapters 2).
            make_adapter(tiny_model_dir, artifacts, "v3-cccc", seed=3)
            config["adapter"]["version"] = "v3-cccc"
            server.write_config(config)
            ready = wait_ready(server.url, timeout=30, adapter="v3-cccc")
            assert set(ready["loadedAdapters"]) == {"v2-bbbb", "v3-cccc"}

            # A version whose weights changed after training is never loaded; v3 keeps serving.
            shutil.copytree(artifacts / "v1-aaaa", artifacts / "v4-dddd")
            manifest = (artifacts / "v4-dddd" / "manifest.json")
            manifest.write_text(manifest.read_text().replace("v1-aaaa", "v4-dddd"))
            with (artifacts / "v4-dddd" / "adapter_model.safetensors").open("r+b") as weights:
                weights.seek(-8, 2)
                weights.write(b"\x00" * 8)
            config["adapter"]["version"] = "v4-dddd"
            server.write_config(config)
            time.sleep(2.5)  # several reload intervals
            ready = wait_ready(server.url, timeout=5, adapter="v3-cccc")
            assert "v4-dddd" not in ready["loadedAdapters"]
            assert client.post("/api/ai-echo/chat", json={"message": "Still you?", "sessionId": session_id}).json()[
                "metadata"]["adapterVersion"] == "v3-cccc"
        log = (tmp_path / "server.log").read_text()
        assert "Remember this" not in log and "And now?" not in log
        assert "v4-dddd" in log  # the refusal is logged by version, not by content
    finally:
        server.stop()
