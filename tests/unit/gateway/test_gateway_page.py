"""The chat page's files and the modes /api/me offers: pure pieces, no cluster."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from personalai_contracts.names import DEFAULT_MODE_NAMES, chat_server_name
from personalai_gateway import page
from personalai_gateway.views import me, personality_modes

pytestmark = pytest.mark.unit


def client() -> TestClient:
    app = FastAPI()
    app.include_router(page.router)
    return TestClient(app)


def test_the_page_and_its_assets_are_served_under_a_self_only_policy():
    with client() as http:
        for path, media in (("/", "text/html"), ("/static/chat.js", "text/javascript"),
                            ("/static/chat.css", "text/css")):
            answer = http.get(path)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(media), path
            assert answer.headers["content-security-policy"].startswith("default-src 'self'")
            assert answer.headers["x-content-type-options"] == "nosniff"
        assert http.get("/static/../app.py").status_code == 404
        assert http.get("/static/settings.py").status_code == 404


def test_the_page_loads_nothing_from_elsewhere_and_inlines_no_script_or_style():
    html = (page.STATIC / "index.html").read_text()
    script = (page.STATIC / "chat.js").read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "only this origin (CSP default-src 'self')"
    assert not re.search(r"<script>|<style>|\sstyle=|\son[a-z]+=", html), "CSP would block inline code"
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script, "model text goes in as text"
    assert "localStorage" not in script and "?token=" not in script, "the token stays in sessionStorage"


def test_modes_add_to_the_built_in_ones_unless_replaced():
    assert chat_server_name("luke") == "luke-chat"
    modes, default = personality_modes({})
    assert [m["name"] for m in modes] == list(DEFAULT_MODE_NAMES) == ["wise", "nostalgic", "playful"]
    assert default == "wise"
    own = {"coach": {"systemPrompt": "private prompt", "description": "Encouraging"}, "wise": {"systemPrompt": "x"}}
    added, default = personality_modes({"personalityModes": own})
    assert [m["name"] for m in added] == ["wise", "nostalgic", "playful", "coach"] and default == "coach"
    assert {"name": "coach", "description": "Encouraging"} in added
    replaced, default = personality_modes({"personalityModes": own, "modesPolicy": "replace", "defaultMode": "wise"})
    assert [m["name"] for m in replaced] == ["coach", "wise"] and default == "wise"
    assert "private prompt" not in repr(replaced), "a mode's system prompt is not the page's business"


def test_me_says_whose_ai_it_is():
    personalai = {"metadata": {"name": "luke", "namespace": "ns"},
                  "spec": {"displayName": "Luke", "serving": {"defaultMode": "nostalgic"}}}
    answer = me(personalai)
    assert answer["userId"] == "luke" and answer["displayName"] == "Luke" and answer["defaultMode"] == "nostalgic"
    assert len(answer["personalityModes"]) == 3


def test_the_built_in_mode_names_are_the_chat_servers_and_the_operators():
    from personalai_operator.models import DEFAULT_MODE_NAMES as OPERATOR_NAMES  # the CRD descriptions use it
    from personalai_server.config import DEFAULT_MODES

    assert tuple(DEFAULT_MODES) == DEFAULT_MODE_NAMES == OPERATOR_NAMES
