"""The chat page at / in headless Chromium, driven over the DevTools protocol: enter the token,
send a message, watch the streamed reply arrive, save a screenshot."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import httpx
import pytest
from server_harness import TOKEN_A, auth, server_config

from browser import CHROMIUM, Page

pytestmark = pytest.mark.model

SCREENSHOT_DIR_ENV = "PERSONALAI_SCREENSHOT_DIR"
PAGE_STATE = """({
    log: Array.from(document.querySelectorAll('#log .msg')).map(e => [e.className, e.textContent]),
    state: document.body.dataset.state || "",
    status: document.getElementById('status').textContent,
    session: document.getElementById('session-info').textContent})"""


async def drive_page(url: str, profile, screenshot_path) -> dict:
    async with Page(url, profile) as page:
        await page.evaluate(f"""
            document.getElementById('token').value = {json.dumps(TOKEN_A)};
            document.getElementById('mode').value = 'playful';
            document.getElementById('message').value = 'Hello from the browser';
            document.getElementById('send').click(); true""")
        await page.wait("['complete', 'error'].includes(document.body.dataset.state)", 60, "the streamed reply")
        shown = await page.evaluate(PAGE_STATE)
        await page.screenshot(screenshot_path)
        return shown


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_chat_page_streams_a_reply_in_chromium(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    server = start_server(server_config(tmp_path, tiny_model_dir, artifacts_dir, adapter={"version": "v1-aaaa"}))
    screenshot = tmp_path / "chat-page.png"
    page = asyncio.run(drive_page(f"{server.url}/", tmp_path / "chromium-profile", screenshot))
    assert page["state"] == "complete", page

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 5000
    if os.environ.get(SCREENSHOT_DIR_ENV):
        shutil.copy(screenshot, os.path.join(os.environ[SCREENSHOT_DIR_ENV], "chat-page.png"))
    roles = [cls for cls, _ in page["log"]]
    assert roles == ["msg user", "msg assistant"], page
    assert page["log"][0][1] == "You: Hello from the browser"
    assert len(page["log"][1][1]) > len("AI: ")
    assert "adapter v1-aaaa" in page["status"] and "mode playful" in page["status"]
    # What the page showed is what the server stored.
    session_id = page["session"].split()[-1]
    stored = httpx.get(f"{server.url}/api/ai-echo/sessions/{session_id}", headers=auth(), timeout=10).json()
    assert "AI: " + stored["messages"][1]["content"] == page["log"][1][1]
