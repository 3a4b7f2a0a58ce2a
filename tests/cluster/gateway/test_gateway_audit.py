"""The gateway's audit stream on the real control plane: a failed authentication, a 403 for another
person's userId and a training start each leave exactly one record with the right fields, and no
record holds the token, the person's reflections or any text a request body carried.

The gateway runs as a process (conftest) writing its audit stream to a file; each step reads only the
records it added.
"""

from __future__ import annotations

import json

import pytest
from cluster_harness import EXAMPLES
from gateway_helpers import GatewayProcess, call, create_person

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

CANARY = "canary-body-text-7f3e"


@pytest.fixture(scope="module")
def gateway(cluster, two_namespaces, tmp_path_factory):
    """The suite's gateway, its audit stream in a file (this module's own process)."""
    folder = tmp_path_factory.mktemp("gateway-audit")
    settings = {"PERSONALAI_GATEWAY_NAMESPACES": ",".join(two_namespaces), "PERSONALAI_GATEWAY_GPU_CLASS": "cpu",
                "PERSONALAI_GATEWAY_AUDIT_SINK": str(folder / "audit.jsonl")}
    process = GatewayProcess(folder / "gateway.log", {"KUBECONFIG": str(cluster.kubeconfig)}, settings).start()
    process.audit_path = folder / "audit.jsonl"
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ann(cluster, two_namespaces, gateway):
    reflections = (EXAMPLES / "reflections" / "luke.jsonl").read_text()
    token = create_person(cluster, two_namespaces[0], "ann", reflections)
    wait_for(lambda: call(gateway, "GET", "/api/training/status", token).status_code == 200, timeout=30,
             message="the gateway to know ann's token")
    return token, reflections


class Records:
    """The audit records written since the last `new()`."""

    def __init__(self, path):
        self.path, self.seen = path, 0

    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""

    def new(self) -> list[dict]:
        lines = self.text().splitlines()
        added, self.seen = lines[self.seen:], len(lines)
        return [json.loads(line) for line in added]


def test_failure_403_and_start_each_leave_one_record_without_content(gateway, ann, two_namespaces):
    token, reflections = ann
    records = Records(gateway.audit_path)
    first = records.new()
    assert any(r["event"] == "auth" and r["outcome"] == "success" and r["personalai"] == "ann" for r in first), first

    unknown = "not-anyones-token-" + "9" * 40
    assert call(gateway, "GET", "/api/training/status", unknown).status_code == 401
    [failure] = records.new()
    assert {k: failure[k] for k in ("event", "component", "outcome", "reason", "method", "route")} == {
        "event": "auth", "component": "gateway", "outcome": "failure", "reason": "unknown_token",
        "method": "GET", "route": "/api/training/status"}
    assert failure["client"] == "127.0.0.1" and "personalai" not in failure

    refused = call(gateway, "POST", "/api/training/start-personal-ai", token,
                   json={"userId": f"bob-{CANARY}", "config": {"epochs": 1}})
    assert refused.status_code == 403, refused.text
    [mismatch] = records.new()
    assert (mismatch["event"], mismatch["outcome"], mismatch["reason"]) == ("authz", "failure", "userid_mismatch")
    assert (mismatch["namespace"], mismatch["personalai"]) == (two_namespaces[0], "ann")

    started = call(gateway, "POST", "/api/training/start-personal-ai", token,
                   json={"userId": "ann", "config": {"epochs": 2, "learningRate": 0.0001, "enableFlashAttention2": False}})
    assert started.status_code == 200, started.text
    [start] = records.new()
    assert (start["event"], start["outcome"], start["personalai"]) == ("training.start", "success", "ann")
    assert start["knobs"] == "enableFlashAttention2,epochs,learningRate"
    assert start["config"] == {"enableFlashAttention2": False, "epochs": 2, "learningRate": 0.0001}

    # Chat text sent through the gateway (no chat server runs yet: 503) is never recorded either.
    for path in ("/api/ai-echo/chat", "/api/ai-echo/sessions"):
        assert call(gateway, "POST", path, token, json={"message": CANARY, "title": CANARY}).status_code == 503
    assert records.new() == []

    text = records.text()
    assert token not in text and unknown not in text and CANARY not in text
    for line in reflections.splitlines():
        answer = json.loads(line)["answer"]
        assert answer[:40] not in text
