"""A rotated token works without a restart and the old one is refused; the brief's `wise` works beside a
PersonalAI's own modes; a reply says how confident the model was."""

from __future__ import annotations

import os

import httpx
import pytest
from server_harness import auth, server_config

pytestmark = pytest.mark.model

OLD_TOKEN = "old-token-of-luke-0123456789abcdef"
NEW_TOKEN = "new-token-of-luke-0123456789abcdef"


def mount_secret(auth_dir, version: str, token: str) -> None:
    """Lay the token out as the kubelet does a Secret volume, and swap versions as it does: a new
    timestamped folder, `..data` re-pointed by an atomic rename; `token` links through `..data`."""
    auth_dir.mkdir(exist_ok=True)
    (auth_dir / version).mkdir()
    (auth_dir / version / "token").write_text(token)
    os.symlink(version, auth_dir / "..data_tmp")
    os.replace(auth_dir / "..data_tmp", auth_dir / "..data")
    if not (auth_dir / "token").is_symlink():
        os.symlink("..data/token", auth_dir / "token")


def chat(client: httpx.Client, token: str, message: str = "Hello", **session_settings) -> httpx.Response:
    created = client.post("/api/ai-echo/sessions", headers=auth(token), json={"settings": session_settings})
    if created.status_code != 201:
        return created
    return client.post("/api/ai-echo/chat", headers=auth(token),
                       json={"message": message, "sessionId": created.json()["sessionId"]})


def test_a_rotated_token_is_accepted_without_a_restart_and_the_old_one_refused(tmp_path, tiny_model_dir,
                                                                                artifacts_dir, start_server):
    auth_dir = tmp_path / "mounted-auth"
    mount_secret(auth_dir, "..2026_01_01_00_00_00.1", OLD_TOKEN)
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir, auth={"tokensDir": str(auth_dir)})
    server = start_server(config)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert chat(client, OLD_TOKEN).status_code == 200

        # `kubectl delete secret luke-chat-auth`: the operator makes a new token, the kubelet swaps it in.
        mount_secret(auth_dir, "..2026_01_01_00_05_00.2", NEW_TOKEN)
        refused = client.get("/api/ai-echo/sessions", headers=auth(OLD_TOKEN))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert chat(client, NEW_TOKEN).status_code == 200
        assert chat(client, OLD_TOKEN).status_code == 401


def test_wise_works_beside_the_personalais_own_modes_and_replies_carry_confidence(tmp_path, tiny_model_dir,
                                                                                   artifacts_dir, start_server):
    own = {"storyteller": {"systemPrompt": "You are {displayName}. Tell a story.", "temperature": 0.9}}
    config = server_config(tmp_path, tiny_model_dir, artifacts_dir,
                           conversation={"personalityModes": own, "defaultMode": "storyteller"})
    server = start_server(config)
    token = "token-a-0123456789abcdef"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for mode in ("wise", "nostalgic", "storyteller"):
            reply = chat(client, token, "What mattered most?", personalityMode=mode)
            assert reply.status_code == 200, reply.text
            metadata = reply.json()["metadata"]
            assert metadata["personalityMode"] == mode
            assert metadata["tokens"]["completion"] > 0 and 0.0 <= metadata["confidence"] <= 1.0
        unknown = chat(client, token, personalityMode="grumpy")
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "settings.personalityMode"

    replaced = server_config(tmp_path / "replaced", tiny_model_dir, artifacts_dir,
                             conversation={"personalityModes": own, "defaultMode": "storyteller",
                                           "modesPolicy": "replace"})
    server = start_server(replaced)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert chat(client, token, personalityMode="wise").status_code == 422
