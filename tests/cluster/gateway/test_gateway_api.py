"""The brief's app API through the gateway, on the real control plane with the real operator.

Ann (the example reflections: optimal) and Bob (too few reflections) each have a suspended
PersonalAI in their own namespace and their own token, which the operator makes and publishes as
status.access.tokenSha256; the test reads the token from its Secret as the person would be given it.
The tests run in order: who may see what first (nothing is trained yet), then Ann's whole loop.
"""

from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest
from cluster_harness import EXAMPLES, get_json, items, take_every_gpu
from gateway_helpers import call, create_person

from devcluster.waiting import wait_for
from personalai_gateway.sse import parse_stream

pytestmark = pytest.mark.cluster

ROUTES = [("GET", "/api/training/start-personal-ai"), ("POST", "/api/training/start-personal-ai"),
          ("GET", "/api/training/status"), ("GET", "/api/training/metrics"),
          ("GET", "/api/training/metrics?stream=true"), ("GET", "/api/ai-echo/sessions"),
          ("POST", "/api/ai-echo/chat")]


@pytest.fixture(scope="module")
def people(cluster, two_namespaces, gateway):
    ann_ns, bob_ns = two_namespaces
    few = "\n".join(json.dumps({"question": f"Q{i}?", "category": "family", "answer": "a short answer"})
                    for i in range(3)) + "\n"
    tokens = {"ann": create_person(cluster, ann_ns, "ann", (EXAMPLES / "reflections" / "luke.jsonl").read_text()),
              "bob": create_person(cluster, bob_ns, "bob", few)}
    # The gateway learns of the tokens from its watch: wait until both authenticate.
    for who, token in tokens.items():
        wait_for(lambda t=token: call(gateway, "GET", "/api/training/status", t).status_code == 200, timeout=30,
                 message=f"the gateway to know {who}'s token")
    return {"ann": (ann_ns, tokens["ann"]), "bob": (bob_ns, tokens["bob"])}


def test_no_token_or_an_unknown_token_gets_401_on_every_route(gateway, people):
    for method, path in ROUTES:
        for token in (None, "not-anyones-token-0123456789"):
            response = call(gateway, method, path, token)
            assert response.status_code == 401, (method, path, token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_reads_and_starts_only_its_own_personalai(gateway, people, cluster):
    _, ann = people["ann"]
    bob_ns, bob = people["bob"]
    assert call(gateway, "GET", "/api/training/start-personal-ai", ann).json()["userId"] == "ann"
    assert call(gateway, "GET", "/api/training/status", ann).json()["userId"] == "ann"
    assert call(gateway, "GET", "/api/training/metrics", ann).json()["userId"] == "ann"
    # Naming Bob in a body is refused before anything is done, on the training and the chat routes.
    for path in ("/api/training/start-personal-ai", "/api/ai-echo/chat"):
        refused = call(gateway, "POST", path, ann, json={"userId": "bob", "config": {"epochs": 1}})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "userId", refused.text
    assert get_json(cluster, "personalai", "bob", "-n", bob_ns)["spec"]["suspend"] is True
    # Ann's chat goes to Ann's chat server, which does not exist yet; never to anyone else's.
    unserved = call(gateway, "POST", "/api/ai-echo/chat", ann, json={"message": "hi"})
    assert unserved.status_code == 503 and "no chat server" in unserved.json()["error"]["message"]
    # Bob's own token: his data is too thin to train, and his answer names only him.
    thin = call(gateway, "POST", "/api/training/start-personal-ai", bob, json={"config": {}})
    assert thin.status_code == 409 and "not ready" in thin.json()["error"]["message"], thin.text
    assert call(gateway, "GET", "/api/training/start-personal-ai", bob).json()["userId"] == "bob"


def test_readiness_is_there_before_any_training(gateway, people, cluster):
    ann_ns, ann = people["ann"]
    answer = call(gateway, "GET", "/api/training/start-personal-ai", ann).json()
    assert answer["ready"] is True and answer["suspended"] is True
    assert answer["dataAssessment"]["responses"] == 120 and answer["dataAssessment"]["level"] == "optimal"
    assert answer["levels"]["minimum"]["responses"] == 20 and answer["levels"]["optimal"]["totalWords"] == 5000
    assert items(cluster, "trainingruns", ann_ns) == [], "a suspended PersonalAI makes no run"
    assert call(gateway, "GET", "/api/training/status", ann).json()["state"] == "NoRun"


def test_a_bad_knob_is_refused_naming_it(gateway, people):
    _, ann = people["ann"]
    for config, field in (({"epochs": 0}, "config.epochs"), ({"learningRate": "fast"}, "config.learningRate"),
                          ({"warpSpeed": True}, "config.warpSpeed")):
        refused = call(gateway, "POST", "/api/training/start-personal-ai", ann, json={"config": config})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text


def test_start_status_and_a_metrics_stream_to_the_end_of_the_run(gateway, people, cluster, suite):
    ann_ns, ann = people["ann"]
    # The run waits Queued while the suite's GPU is taken: kwok would finish its Job at once, before
    # any progress could be reported. The GPU is given back once the progress is in.
    take_every_gpu(cluster, suite, ann_ns)
    started = call(gateway, "POST", "/api/training/start-personal-ai", ann, json={
        "userId": "ann", "config": {"epochs": 2, "learningRate": 0.0001, "enableFlashAttention2": False,
                                    "warmupSteps": 5}})
    assert started.status_code == 200, started.text
    answer = started.json()
    assert answer["userId"] == "ann" and answer["trainingData"]["totalResponses"] == 120
    assert answer["trainingData"]["estimatedTrainingSeconds"] > 0
    assert answer["trainingData"]["estimatedCompletion"].endswith("Z")
    assert answer["trainingData"]["estimateBasis"].startswith("estimate:")
    assert answer["config"]["method"] == "QLoRA" and answer["config"]["baseModel"]
    assert answer["config"]["precision"] and answer["config"]["epochs"] == 2
    spec = get_json(cluster, "personalai", "ann", "-n", ann_ns)["spec"]
    assert spec["suspend"] is False and spec["training"]["attention"] == "sdpa" and spec["training"]["epochs"] == 2

    run = wait_for(lambda: (items(cluster, "trainingruns", ann_ns) or [None])[0], timeout=60,
                   message="Ann's TrainingRun")
    name = run["metadata"]["name"]
    status = wait_for(lambda: (lambda s: s if s["trainingRun"] == name else None)(
        call(gateway, "GET", "/api/training/status", ann).json()), timeout=30, message="the status to show the run")
    assert status["state"] in ("Pending", "Queued") and status["userId"] == "ann"

    events, body = [], []

    def read_stream() -> None:
        with httpx.stream("GET", f"{gateway.url}/api/training/metrics?stream=true",
                          headers={"Authorization": f"Bearer {ann}"}, timeout=httpx.Timeout(10, read=30)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for text in response.iter_text():
                body.append(text)
                events[:] = parse_stream("".join(body))

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    wait_for(lambda: events, timeout=20, message="the stream's first event")
    for step, (epoch, loss) in enumerate(((0.5, 2.1), (1.0, 1.7)), start=1):
        # What the trainer patches into its run's status (personalai_contracts.run_report.TrainingProgress).
        progress = {"epoch": epoch, "totalEpochs": 2, "step": step * 10, "totalSteps": 40, "loss": loss,
                    "gpuUtilization": 90 + step, "vramUsedMiB": 20000 + step, "gpuTemperatureC": 70, "etaSeconds": 60}
        cluster.kubectl("patch", "trainingruns", name, "-n", ann_ns, "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": {"progress": progress}}))
        wait_for(lambda e=epoch: any(ev["data"].get("epoch") == e for ev in events), timeout=20,
                 message=f"the event for epoch {epoch}")
    # The GPU back (take_every_gpu's pods): the run's Job runs, and kwok finishes it.
    cluster.kubectl("delete", "pod", *[f"hog-{i}" for i in range(len(suite.nodes))], "-n", ann_ns, "--wait=false")
    finish = {"artifact": {"location": f"/artifacts/{run['spec']['adapterVersion']}", "manifestSha256": "0" * 64,
                           "adapterVersion": run["spec"]["adapterVersion"]},
              "validation": {"evalLoss": 0.8, "perplexity": 2.2, "coherence": 0.9, "personalityConsistency": 0.93,
                             "perplexityGain": 0.45, "perplexityGainOverInContext": 0.2, "passed": True, "reasons": []}}
    cluster.kubectl("patch", "trainingruns", name, "-n", ann_ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": finish}))
    reader.join(timeout=120)
    assert not reader.is_alive(), f"the stream ended when the run did; events: {[e['data'] for e in events]}"
    progress_events = [e["data"] for e in events if e["data"].get("loss") is not None]
    assert [e["epoch"] for e in progress_events][:2] == [0.5, 1.0]
    assert progress_events[0]["gpuUtilization"] == 91 and progress_events[0]["vramUsage"] == 20001
    assert events[-1]["data"]["final"] is True and events[-1]["data"]["phase"] in ("Succeeded", "Failed")
    assert "".join(body).startswith("retry: ") and ": heartbeat" in "".join(body)

    done = call(gateway, "GET", "/api/training/status", ann).json()
    assert done["trainingRun"] == name and done["state"] == events[-1]["data"]["phase"]
    assert done["progress"]["epoch"] == 1.0
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'personalai_gateway_requests_total{code="200",route="/api/training/status"}' in metrics
    assert ann_ns not in metrics and ann not in metrics, "metrics name no person and no token"
    wait_for(lambda: 'personalai_gateway_open_streams{kind="metrics"} 0.0' in httpx.get(
        f"{gateway.url}/metrics", timeout=5).text, timeout=10, message="the ended stream to be counted closed")


def test_a_rotated_token_works_at_once_and_the_old_one_stops(gateway, people, cluster):
    bob_ns, old = people["bob"]
    secret = get_json(cluster, "personalai", "bob", "-n", bob_ns)["status"]["access"]["tokenSecret"]
    cluster.kubectl("delete", "secret", secret, "-n", bob_ns)  # rotation: the operator makes a new token
    new = wait_for(lambda: (lambda s: base64.b64decode(s["data"]["token"]).decode() if s else None)(
        get_json(cluster, "secret", secret, "-n", bob_ns)), timeout=60, message="Bob's new token")
    assert new != old
    wait_for(lambda: call(gateway, "GET", "/api/training/status", new).status_code == 200, timeout=60,
             message="the gateway to take Bob's new token, unrestarted")
    assert call(gateway, "GET", "/api/training/status", old).status_code == 401
