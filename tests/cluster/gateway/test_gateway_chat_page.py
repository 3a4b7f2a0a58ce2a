"""The brief's JavaScript calls and the gateway's chat page, in headless Chromium, end to end.

Cam has a suspended PersonalAI. The page (served by the gateway) opens with Cam's token and shows
training state while there is no chat server. In the page, the brief's calls: readiness, the start
POST with a config, and a fetch-stream reader of /api/training/metrics?stream=true that receives the
run's progress (patched into the run's status as the trainer does). Then a real chat server (`python
-m personalai_server` on the tiny model) is published the way the operator's is found: the Service
`<name>-chat` and a ready EndpointSlice for it. This tier's pods do not run, so the test runs the
server itself, on this machine's own non-loopback address (the API refuses loopback endpoints). The
page then lists, opens and streams a conversation, and reopens it from the list; a WebSocket from
the page (authenticated by its first frame) has one more turn through the gateway's relay.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from cluster_harness import EXAMPLES, REPO, free_port, items, take_every_gpu
from gateway_helpers import create_person

from browser import CHROMIUM, Page
from devcluster.waiting import wait_for
from personalai_contracts.names import chat_server_name

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")]
LEAD_COPY = Path("/tmp/gateway-chat-page.png")
RATING_COPY = Path("/tmp/gateway-chat-page-rating.png")


def own_address() -> str | None:
    """This machine's IPv4 address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


class ChatServer:
    """`python -m personalai_server` as the chat pod runs it: Cam's token in its auth folder, the tiny model."""

    def __init__(self, workdir: Path, host: str, token: str):
        from personalai_trainer.tiny_model import build_tiny_model

        self.host, self.port = host, free_port()
        (workdir / "auth").mkdir(parents=True)
        (workdir / "auth" / "token").write_text(token)
        (workdir / "adapters").mkdir()
        config = {"persona": {"displayName": "Cam", "personalAI": "cam"},
                  "engine": {"kind": "local", "baseModel": str(build_tiny_model(workdir / "tiny-model"))},
                  "adapter": {"version": None, "dir": str(workdir / "adapters")},
                  "conversation": {"maxTokens": 12}, "storage": {"dataDir": str(workdir / "data")},
                  "auth": {"tokensDir": str(workdir / "auth")}, "listen": {"host": host, "port": self.port}}
        self.config_path = workdir / "server.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ChatServer:
        env = {**os.environ, "PERSONALAI_LISTEN_HOST": self.host, "OMP_NUM_THREADS": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "personalai_server", "--config", str(self.config_path)],
                                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=120, message=f"the chat server (log: {self.log_path})")
        return self

    def ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-2000:]
        try:
            return httpx.get(f"http://{self.host}:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def publish(cluster, namespace: str, name: str, address: str, port: int) -> None:
    """The chat Service and a ready EndpointSlice for it, as the operator's Service and the endpoint
    controller would leave them (without a selector: the endpoints are this test's process)."""
    service = chat_server_name(name)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": port}]}}))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}))


# The brief's calls, as an app would write them (the token in an Authorization header).
READINESS = """fetch('/api/training/start-personal-ai', {headers: {'Authorization': `Bearer ${TOKEN}`}})
  .then((response) => response.json())"""
START = """fetch('/api/training/start-personal-ai', {method: 'POST',
  headers: {'Authorization': `Bearer ${TOKEN}`, 'Content-Type': 'application/json'},
  body: JSON.stringify({config: {epochs: 2, learningRate: 0.0001, batchSize: 4, enableFlashAttention2: false}})})
  .then(async (response) => ({status: response.status, body: await response.json()}))"""
# EventSource cannot send an Authorization header: the same events read from fetch's ReadableStream.
METRICS = """window.metricsEvents = [];
window.metricsDone = (async () => {
  const response = await fetch('/api/training/metrics?stream=true', {headers: {'Authorization': `Bearer ${TOKEN}`}});
  window.metricsReader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const {value, done} = await window.metricsReader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const blocks = buffer.split('\\n\\n');
    buffer = blocks.pop();
    for (const block of blocks) {
      const data = block.split('\\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6));
      if (data.length) window.metricsEvents.push(JSON.parse(data.join('\\n')));
    }
  }
})();
true"""
SOCKET_TURN = """new Promise((resolve, reject) => {
  const socket = new WebSocket(location.origin.replace('http', 'ws') + '/api/ai-echo/ws');
  const events = [];
  socket.onopen = () => socket.send(JSON.stringify({type: 'auth', token: TOKEN}));
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    events.push(event);
    if (event.type === 'ready') socket.send(JSON.stringify({message: 'And over the socket?', sessionId: SESSION}));
    if (event.type === 'complete' || event.type === 'error') { socket.close(); resolve(events); }
  };
  socket.onclose = (closed) => resolve(events.concat([{type: 'closed', code: closed.code}]));
  setTimeout(() => reject(new Error('no complete event in 60 s')), 60000);
})"""
SOCKET_REFUSED = """new Promise((resolve) => {
  const socket = new WebSocket(location.origin.replace('http', 'ws') + '/api/ai-echo/ws');
  socket.onopen = () => socket.send(JSON.stringify({type: 'auth', token: 'not-anyones-token-0123456789'}));
  socket.onclose = (closed) => resolve(closed.code);
})"""
PROGRESS_SEEN = "window.metricsEvents.filter((event) => event.loss != null)"
TEXT = "document.getElementById({}).textContent"


def test_the_brief_calls_and_the_chat_page_in_chromium(cluster, suite, two_namespaces, gateway, tmp_path):
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address for the chat server's EndpointSlice")
    namespace = two_namespaces[0]
    token = create_person(cluster, namespace, "cam", (EXAMPLES / "reflections" / "luke.jsonl").read_text())
    wait_for(lambda: httpx.get(f"{gateway.url}/api/me", headers={"Authorization": f"Bearer {token}"},
                               timeout=5).status_code == 200, timeout=30, message="the gateway to know Cam's token")
    server = ChatServer(tmp_path / "chat-server", address, token)
    screenshot = tmp_path / "gateway-chat-page.png"
    try:
        server.start()
        page_state, stored = asyncio.run(drive(cluster, suite, namespace, gateway, token, server, screenshot))
    finally:
        server.stop()

    shutil.copy(screenshot, LEAD_COPY)
    shutil.copy(screenshot, RATING_COPY)
    print(f"screenshot: {screenshot} (copied to {LEAD_COPY})")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 5000
    log = page_state["log"]
    assert [role for role, _ in log] == ["msg user", "msg assistant"], page_state
    assert log[0][1] == "You: Hello through the gateway" and len(log[1][1]) > len("AI: ")
    assert "mode nostalgic" in page_state["status"], page_state
    # What the page streamed is what the chat server stored, and reopening the session shows it again.
    assert "AI: " + stored["messages"][1]["content"] == log[1][1]
    assert page_state["reopened"] == log
    # The rating the page sent is stored with the session and counted by the chat server, and shown again.
    assert page_state["reopened_rating"] == "true"
    version = stored["messages"][1]["metadata"]["adapterVersion"] or "base"
    assert stored["messages"][1]["rating"] == "up"
    assert page_state["stats"]["versions"][version]["ratingsUp"] == 1, page_state["stats"]
    assert page_state["refused_code"] == 4401, "an unknown token's socket is closed as the chat server closes it"
    events = page_state["socket"]
    assert [event["type"] for event in events[:2]] == ["ready", "session"], events
    assert events[-1]["type"] == "complete" and events[-1]["sessionId"] == stored["sessionId"], events
    assert "".join(event["content"] for event in events if event["type"] == "chunk") == events[-1]["response"]
    assert [m["content"] for m in stored["messages"][2:]] == ["And over the socket?", events[-1]["response"]]


async def drive(cluster, suite, namespace, gateway, token, server, screenshot):
    async with Page(f"{gateway.url}/", Path(screenshot.parent / "chromium-profile")) as page:
        await page.evaluate(f"const TOKEN = {json.dumps(token)}; true")
        # The page with no chat server yet: whose AI it is, its modes, and where training stands.
        await page.evaluate("document.getElementById('token').value = TOKEN; "
                            "document.getElementById('use-token').click(); true")
        await page.wait("document.body.dataset.state === 'training'", 20, "the page to show training state")
        assert await page.evaluate(TEXT.format("'whose'")) == "Cam's PersonalAI"
        assert "has not been started" in await page.evaluate(TEXT.format("'training-state'"))
        modes = await page.evaluate("Array.from(document.getElementById('mode').options).map((o) => o.value)")
        assert modes == ["wise", "nostalgic", "playful"]
        assert await page.evaluate("sessionStorage.getItem('personalai-token') === TOKEN")
        assert token not in await page.evaluate("location.href")

        # The brief's calls: readiness before training, then start.
        ready = await page.evaluate(READINESS)
        assert ready["ready"] is True and ready["suspended"] is True and ready["userId"] == "cam"
        assert items(cluster, "trainingruns", namespace) == [], "nothing trains before start"
        take_every_gpu(cluster, suite, namespace)  # the run waits Queued: kwok would end its Job at once
        started = await page.evaluate(START)
        assert started["status"] == 200, started
        assert started["body"]["userId"] == "cam" and started["body"]["trainingData"]["totalResponses"] == 120
        run = wait_for(lambda: (items(cluster, "trainingruns", namespace) or [None])[0], timeout=60,
                       message="Cam's TrainingRun")["metadata"]["name"]

        # The metrics stream, read in the page while the run reports progress.
        await page.evaluate(METRICS)
        await page.wait("window.metricsEvents.length > 0", 20, "the stream's first event")
        for step, (epoch, loss) in enumerate(((0.5, 2.0), (1.0, 1.6)), start=1):
            progress = {"epoch": epoch, "totalEpochs": 2, "step": step * 10, "totalSteps": 40, "loss": loss,
                        "gpuUtilization": 80 + step, "vramUsedMiB": 18000, "gpuTemperatureC": 65, "etaSeconds": 30}
            cluster.kubectl("patch", "trainingruns", run, "-n", namespace, "--subresource=status", "--type=merge",
                            "-p", json.dumps({"status": {"progress": progress}}))
            await page.wait(f"{PROGRESS_SEEN}.some((event) => event.epoch === {epoch})", 20, f"epoch {epoch}'s event")
        seen = await page.evaluate(PROGRESS_SEEN)
        assert [event["epoch"] for event in seen][:2] == [0.5, 1.0] and seen[0]["gpuUtilization"] == 81
        assert all(event["trainingRun"] == run for event in seen)
        await page.evaluate("window.metricsReader.cancel().then(() => window.metricsDone).then(() => true)")
        await page.wait(f"document.getElementById('training-state').textContent.includes({json.dumps(run)})", 25,
                        "the page's training state to show the run")

        # A chat server appears: the page (checking again every 10 s) turns to the chat.
        publish(cluster, namespace, "cam", server.host, server.port)
        await page.wait("document.body.dataset.state === 'chat'", 30, "the page to offer the chat")
        await page.evaluate("""document.getElementById('mode').value = 'nostalgic';
            document.getElementById('message').value = 'Hello through the gateway';
            document.getElementById('send').click(); true""")
        await page.wait("document.body.dataset.state === 'complete'", 60, "the streamed reply")
        # Rate the streamed reply (issue 15): thumbs up with a note, through the gateway to the chat server.
        await page.evaluate("""document.querySelector('#log .rating .rating-note').value = 'sounds like me';
            document.querySelector('#log .rating .rate-up').click(); true""")
        await page.wait("document.querySelector('#log .rating').dataset.rated === 'up'", 10, "the rating to be stored")
        await page.screenshot(screenshot)
        state = await page.evaluate("""({
            log: Array.from(document.querySelectorAll('#log .msg')).map((e) => [e.className, e.textContent]),
            status: document.getElementById('status').textContent,
            session: document.getElementById('session-info').textContent})""")

        # Past sessions are listed; a new conversation, then the old one reopened from the list.
        session_id = state["session"].split()[-1]
        await page.wait(f"!!document.querySelector('#sessions button[data-session-id={json.dumps(session_id)}]')", 10,
                        "the session in the list")
        await page.evaluate("document.getElementById('new-session').click(); true")
        await page.wait("document.querySelectorAll('#log .msg').length === 0", 10, "an empty new conversation")
        await page.evaluate(f"document.querySelector('#sessions button[data-session-id={json.dumps(session_id)}]')"
                            ".click(); true")
        await page.wait("document.querySelectorAll('#log .msg').length === 2", 10, "the reopened conversation")
        state["reopened"] = await page.evaluate(
            "Array.from(document.querySelectorAll('#log .msg')).map((e) => [e.className, e.textContent])")
        state["reopened_rating"] = await page.evaluate(
            "document.querySelector('#log .rating .rate-up').getAttribute('aria-pressed')")
        state["stats"] = httpx.get(f"{gateway.url}/api/ai-echo/stats", headers={"Authorization": f"Bearer {token}"},
                                   timeout=10).json()
        # The chat server's WebSocket through the gateway, as a browser must use it (no headers: auth frame).
        state["socket"] = await page.evaluate(SOCKET_TURN.replace("SESSION", json.dumps(session_id)))
        state["refused_code"] = await page.evaluate(SOCKET_REFUSED)
        stored = httpx.get(f"{gateway.url}/api/ai-echo/sessions/{session_id}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    return state, stored
