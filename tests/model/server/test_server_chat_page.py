"""The chat page at / in headless Chromium, driven over the DevTools protocol: enter the token,
send a message, watch the streamed reply arrive, save a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time

import httpx
import pytest
from server_harness import TOKEN_A, auth, server_config

pytestmark = pytest.mark.model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR_ENV = "PERSONALAI_SCREENSHOT_DIR"


async def devtools(ws_url: str):
    import websockets

    socket = await websockets.connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=10)
    counter = 0

    async def call(method: str, **params):
        nonlocal counter
        counter += 1
        await socket.send(json.dumps({"id": counter, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 30))
            if message.get("id") == counter:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    return socket, call


async def drive_page(ws_url: str, screenshot_path) -> dict:
    socket, call = await devtools(ws_url)
    try:
        async def evaluate(expression: str):
            result = await call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
            return result["result"].get("value")

        deadline = time.monotonic() + 20
        while await evaluate("document.readyState") != "complete" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await evaluate(f"""
            document.getElementById('token').value = {json.dumps(TOKEN_A)};
            document.getElementById('mode').value = 'playful';
            document.getElementById('message').value = 'Hello from the browser';
            document.getElementById('send').click();
        """)
        deadline = time.monotonic() + 30
        while await evaluate("document.body.dataset.state") != "complete":
            assert time.monotonic() < deadline, "the page never showed a complete reply"
            await asyncio.sleep(0.1)
        page = await evaluate("""({
            log: Array.from(document.querySelectorAll('#log .msg')).map(e => [e.className, e.textContent]),
            status: document.getElementById('status').textContent,
            session: document.getElementById('session-info').textContent})""")
        shot = await call("Page.captureScreenshot", format="png")
        screenshot_path.write_bytes(base64.b64decode(shot["data"]))
        return page
    finally:
        await socket.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_chat_page_streams_a_reply_in_chromium(tmp_path, tiny_model_dir, artifacts_dir, start_server):
    server = start_server(server_config(tmp_path, tiny_model_dir, artifacts_dir, adapter={"version": "v1-aaaa"}))
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=900,700", f"{server.url}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and browser.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = []
        while not targets:
            assert time.monotonic() < deadline, "no page target in chromium"
            targets = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json() if t["type"] == "page"]
            time.sleep(0.1)
        screenshot = tmp_path / "chat-page.png"
        page = asyncio.run(drive_page(targets[0]["webSocketDebuggerUrl"], screenshot))
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()

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
