"""The local engine with a 4-bit (NF4) base model plus an adapter, as on a GPU node, on the CPU."""

from __future__ import annotations

import httpx
import pytest
from server_harness import auth, server_config

pytestmark = pytest.mark.model


def test_nf4_base_with_adapter_answers(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    pytest.importorskip("bitsandbytes")
    server = start_server(server_config(tmp_path, tiny_model_dir, artifacts_dir,
                                        engine={"quantization": "nf4"}, adapter={"version": "v1-aaaa"}))
    model = server.service.engine.model
    assert any("4bit" in type(module).__name__ for module in model.modules())
    answer = httpx.post(f"{server.url}/api/ai-echo/chat", headers=auth(), timeout=60, json={"message": "Hello"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["metadata"]["adapterVersion"] == "v1-aaaa" and body["metadata"]["tokens"]["completion"] >= 1
