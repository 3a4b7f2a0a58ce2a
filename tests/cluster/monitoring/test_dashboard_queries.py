"""Every query of the Grafana dashboard (charts/personalai/dashboards/personalai.json) returns data
from a real Prometheus scraping the real processes: the operator (on the local control plane, with a
PersonalAI to reconcile and a GPU node to count slots on), a trainer (`python -m personalai_trainer`
on the tiny model, its GPU readings from the simulated-readings file: this machine has no NVML), and
a chat server (`python -m personalai_server` on the tiny model) that streamed replies, was rated and
refused a request over its limit. Static scrape configs give trainer and server the `namespace` and
`personalai` labels the chart's PodMonitors give them in a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from cluster_harness import EXAMPLES, REPO, free_port

from devcluster.waiting import wait_for
from personalai_trainer.telemetry import SIMULATED_READINGS_ENV

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (make prometheus)")]
DASHBOARD = REPO / "charts" / "personalai" / "dashboards" / "personalai.json"
HOST = "127.0.0.1"
PERSON = "cam"
TOKEN = "monitoring-test-token-0123456789abcdef"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PERSONALAI_LISTEN_HOST": HOST}
RATINGS_METRIC = "personalai_server_ratings_total"


def dashboard_queries(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, the dashboard's variables substituted."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(variables, key=len, reverse=True):  # $__range before a shorter name
                expr = expr.replace(f"${name}", variables[name])
            assert "$" not in expr, f"panel {panel['title']!r}: a variable the test does not know in {expr}"
            queries.append((panel["title"], expr))
    return queries


class Process:
    """A child process with its output in a log file, stopped within bounds."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str] = ENV):
        self.name, self.log_path = name, log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        assert self.popen.poll() is None, f"{self.name} exited: {self.log_path.read_text()[-2000:]}"
        return True

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def answers(url: str, **kwargs) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def start_trainer(workdir: Path, model: Path, namespace: str) -> tuple[Process, int]:
    """A run long enough (many epochs) to still be training while every query is asked; its GPU
    readings come from the simulated-readings file."""
    port = free_port()
    readings = workdir / "gpu.json"
    readings.write_text(json.dumps({"gpuUtilization": 93, "vramUsedMiB": 20480, "gpuTemperatureC": 68}))
    config = {
        "run": {"name": "cam-run-1", "namespace": namespace, "personalAI": PERSON, "adapterVersion": "v1",
                "dataVersion": "sha256:test"},
        "persona": {"displayName": "Cam"}, "baseModel": str(model),
        "paths": {"reflections": str(EXAMPLES / "reflections" / "luke-short.csv"), "modelCache": str(workdir / "cache"),
                  "output": str(workdir / "out"), "checkpoints": str(workdir / "checkpoints")},
        "training": {"epochs": 100, "batchSize": 2, "maxSeqLength": 256, "quantization": "nf4",
                     "learningRate": 1e-3, "warmupSteps": 1, "checkpointEverySteps": 10000, "augmentPhrasings": 1},
        "validation": {"maxSamples": 2, "maxNewTokens": 8},
        "reporting": {"kubernetes": False, "metricsPort": port, "minIntervalSeconds": 0},
    }
    (workdir / "trainer.json").write_text(json.dumps(config))
    process = Process("trainer", [sys.executable, "-m", "personalai_trainer", "--config", str(workdir / "trainer.json")],
                      workdir / "trainer.log", {**ENV, SIMULATED_READINGS_ENV: str(readings)})
    return process, port


def start_chat_server(workdir: Path, model: Path) -> tuple[Process, int]:
    port = free_port()
    (workdir / "auth").mkdir()
    (workdir / "auth" / "token").write_text(TOKEN)
    (workdir / "adapters").mkdir()
    config = {"persona": {"displayName": "Cam", "personalAI": PERSON},
              "engine": {"kind": "local", "baseModel": str(model)},
              "adapter": {"version": None, "dir": str(workdir / "adapters")},
              "conversation": {"maxTokens": 8}, "storage": {"dataDir": str(workdir / "data")},
              "auth": {"tokensDir": str(workdir / "auth")}, "listen": {"host": HOST, "port": port},
              # Low, so that the test can be refused once: the rejections panel needs a rejection.
              "limits": {"requestsPerMinute": 4}}
    (workdir / "server.yaml").write_text(yaml.safe_dump(config))
    process = Process("chat server", [sys.executable, "-m", "personalai_server", "--config",
                                      str(workdir / "server.yaml")], workdir / "server.log")
    wait_for(lambda: process.alive() and answers(f"http://{HOST}:{port}/readyz"), timeout=180,
             message=f"the chat server (log: {workdir / 'server.log'})")
    return process, port


def start_prometheus(workdir: Path, targets: dict[str, tuple[int, dict]]) -> tuple[Process, str]:
    port = free_port()
    jobs = []
    for job, (target_port, labels) in targets.items():
        scrape = {"job_name": job, "scrape_interval": "1s", "scrape_timeout": "1s",
                  "static_configs": [{"targets": [f"{HOST}:{target_port}"], "labels": labels}]}
        if job == "chat-server":  # the chat server's /metrics takes the person's bearer token
            scrape["authorization"] = {"type": "Bearer", "credentials": TOKEN}
        jobs.append(scrape)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"},
                                                            "scrape_configs": jobs}))
    process = Process("prometheus", [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address={HOST}:{port}"],
                      workdir / "prometheus.log")
    url = f"http://{HOST}:{port}"
    wait_for(lambda: process.alive() and answers(f"{url}/-/ready"), timeout=60,
             message=f"prometheus (log: {workdir / 'prometheus.log'})")
    return process, url


def chat(server: str, session_id: str | None = None) -> httpx.Response:
    body = {"message": "What did your father teach you?", **({"sessionId": session_id} if session_id else {})}
    with httpx.stream("POST", f"{server}/api/ai-echo/stream", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        response.read()
    return response


def session_of(reply: httpx.Response) -> str:
    events = [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")]
    return next(event["sessionId"] for event in events if event["type"] == "complete")


def rate_last_reply(server: str, session_id: str) -> None:
    """Rate the session's assistant reply up, through the chat API's ratings route."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    detail = httpx.get(f"{server}/api/ai-echo/sessions/{session_id}", headers=auth, timeout=10).json()
    reply = next(message for message in detail["messages"] if message["role"] == "assistant")
    response = httpx.post(f"{server}/api/ai-echo/sessions/{session_id}/messages/{reply['messageId']}/rating",
                          json={"rating": "up"}, headers=auth, timeout=10)
    assert response.status_code == 200, response.text


def refuse_one(server: str) -> None:
    """Chat past limits.requestsPerMinute until one request is refused (429)."""
    for _ in range(6):
        if chat(server).status_code == 429:
            return
    pytest.fail("the chat server never refused a request over limits.requestsPerMinute")


def series(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]


def test_every_dashboard_query_returns_data(cluster, ns, operator, tiny_model, tmp_path):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))  # a PersonalAI and its TrainingRun to reconcile
    wait_for(lambda: "personalai_operator_training_runs{" in operator.metrics(), timeout=90,
             message="the operator's TrainingRun metrics")
    trainer, trainer_port = start_trainer(tmp_path, tiny_model, ns)
    chat_server = None
    prometheus = None
    try:
        chat_server, server_port = start_chat_server(tmp_path, tiny_model)
        labels = {"namespace": ns, "personalai": PERSON}
        prometheus, prometheus_url = start_prometheus(tmp_path, {
            "operator": (operator.metrics_port, {}), "trainer": (trainer_port, labels),
            "chat-server": (server_port, labels)})
        # Scraped once before any traffic, so that rates and increases see the replies and the refusal.
        wait_for(lambda: len(series(prometheus_url, "up == 1")) == 3, timeout=60, message="three targets up")
        server = f"http://{HOST}:{server_port}"
        first = chat(server)
        assert first.status_code == 200, first.text
        time.sleep(3)  # scraped between the replies: rates over the histograms see an increase
        assert chat(server, session_of(first)).status_code == 200
        rate_last_reply(server, session_of(first))
        refuse_one(server)

        queries = dashboard_queries({"namespace": ns, "personalai": PERSON, "__rate_interval": "1m",
                                     "__range": "10m"})
        assert any(RATINGS_METRIC in expr for _, expr in queries), "the dashboard shows ratings per version"

        def without_data() -> list[str]:
            trainer.alive()
            return [f"{title}: {expr}" for title, expr in queries if not series(prometheus_url, expr)]

        missing: list[str] = []

        def all_answered() -> bool:
            missing[:] = without_data()
            return not missing

        try:
            wait_for(all_answered, timeout=240, interval=2, message="every dashboard query to return data")
        except TimeoutError:
            pytest.fail("dashboard queries without data (panel: query):\n" + "\n".join(missing)
                        + f"\n(logs under {tmp_path})")
    finally:
        for process in (prometheus, chat_server, trainer):
            if process is not None:
                process.stop()
