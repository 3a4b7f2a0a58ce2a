"""A headless Chromium page driven over the DevTools protocol: open a URL, evaluate JavaScript in the
page (awaiting its promises), wait for what it shows, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, url: str, profile: Path):
        self.url, self.profile = url, profile
        self.browser: subprocess.Popen | None = None
        self.socket = None
        self.calls = 0

    async def __aenter__(self) -> Page:
        import websockets

        self.browser = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "--window-size=1000,760", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        await self._until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "chromium to start")
        port = port_file.read_text().split()[0]

        def page_target() -> str | None:
            listed = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            return next((t["webSocketDebuggerUrl"] for t in listed if t["type"] == "page"), None)

        target = await self._until(page_target, 30, "a page target in chromium")
        self.socket = await websockets.connect(target, max_size=64 * 1024 * 1024, open_timeout=10)
        # The first page target may still be about:blank.
        await self.wait(f"location.href === {json.dumps(self.url)} && document.readyState === 'complete'", 20,
                        "the page to load")
        return self

    async def __aexit__(self, *exc) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.browser is not None:
            self.browser.terminate()
            try:
                self.browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.browser.kill()

    async def _until(self, probe, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := probe()):
            assert self.browser is None or self.browser.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)
        return value

    async def call(self, method: str, **params) -> dict:
        self.calls += 1
        await self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 60))
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    async def evaluate(self, expression: str):
        """The value of `expression` (a promise is awaited); a thrown error fails the test with its text."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"the page threw: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
