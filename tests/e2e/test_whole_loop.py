"""The whole loop on a local control plane: the chart's operator, the trainer and the chat server
all run from the pod specs Kubernetes holds (the development node agent runs them as processes).

Its own control plane (ports and pod addresses apart from the test cluster and the demo), stopped
at the end unless PERSONALAI_KEEP_CLUSTER is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from devcluster import demo
from devcluster.agent.podworker import LOGS_ANNOTATION
from devcluster.controlplane import REPO_ROOT, ControlPlane
from devcluster.nodes import GPU_PRODUCT_LABEL, RTX_5090
from devcluster.waiting import wait_for

# Cluster start, chart, a real fine-tune and its validation, serving, chat, erasure on 2 CPU cores:
# about 10 minutes alone (the suite's 900 s default is too tight for it under load).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
NS = demo.NAMESPACE


@pytest.fixture(scope="module")
def plane():
    plane = ControlPlane(state_dir=REPO_ROOT / ".work" / "e2e", apiserver_port=18443, etcd_port=25790,
                         pod_address_prefix="127.0.2")
    plane.down(quiet=True)
    demo.start_cluster(plane)
    yield plane
    if not os.environ.get("PERSONALAI_KEEP_CLUSTER"):
        plane.down()


def names(plane, kind):
    out = plane.kubectl("get", kind, "-n", NS, "-o", "name", check=False).stdout
    return [line for line in out.splitlines() if line]


def test_reflections_become_a_served_model_and_deleting_the_person_forgets_everything(plane):
    demo.seed_base_model(plane)
    demo.install_chart(plane)
    operator_pod = demo.get(plane, "pods", "-n", "personalai-system", "-l", "app.kubernetes.io/component=operator")["items"][0]
    assert operator_pod["spec"]["nodeName"] == demo.AGENT_NODE

    demo.apply_person(plane)
    run, progress = demo.follow_training(plane, timeout=1200)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["node"] == demo.AGENT_NODE
    assert progress, "no progress was reported while training"
    assert any(p.get("percent", 100) < 100 for p in progress) or len(progress) > 1
    # The default gate, nothing lowered: the tuned small model beats the untouched base model.
    applied = demo.person_manifests()[1]["spec"]["validation"]
    assert set(applied) == {"maxSamples", "probes", "maxNewTokens"}  # evaluation size only: default thresholds
    validation = run["status"]["validation"]
    assert validation["passed"] is True, validation
    assert validation["perplexity"] < validation["baselines"]["base"]["perplexity"]
    assert validation["perplexityGain"] >= 0.2 and validation["memory"] is True

    pai = demo.wait_for_serving(plane, timeout=300)
    current = pai["status"]["currentAdapter"]
    assert current["version"] == run["spec"]["adapterVersion"]
    assert current["trainingRun"] == run["metadata"]["name"]
    server_pod = next(p for p in demo.get(plane, "pods", "-n", NS, "-l", "personalai.dev/component=server")["items"])
    node = demo.get(plane, "node", server_pod["spec"]["nodeName"])
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == RTX_5090
    assert node["status"]["allocatable"]["personalai.dev/model-slot"] == "3"

    base_url, token = demo.server_address(plane), demo.chat_token(plane)
    with httpx.Client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        session = client.post(f"{base_url}/api/ai-echo/sessions", headers=headers, json={"title": "e2e"}, timeout=30)
        assert session.status_code in (200, 201), session.text
        session_id = session.json().get("sessionId") or session.json()["id"]
        reply, final = demo.stream_reply(client, base_url, token, session_id, "I'm feeling stressed about work")
        assert reply.strip() and final["type"] == "complete"
        assert final["metadata"]["adapterVersion"] == current["version"]
        assert client.get(f"{base_url}/api/ai-echo/sessions", timeout=10).status_code == 401

        # A deleted session's text is gone from the sessions database's bytes, not only from its rows.
        claims_root = plane.agent_state_dir(demo.AGENT_NODE) / "claims" / NS
        chat_data = claims_root / f"{demo.PERSON}-chat-data"
        planted = client.post(f"{base_url}/api/ai-echo/sessions", headers=headers, json={"title": CANARY},
                              timeout=30).json()["sessionId"]
        demo.stream_reply(client, base_url, token, planted, f"Remember {CANARY} for me.")
        assert _files_holding(chat_data, CANARY), "the canary never reached the sessions database"
        deleted = client.delete(f"{base_url}/api/ai-echo/sessions/{planted}", headers=headers, timeout=30)
        assert deleted.status_code == 204
        assert not _files_holding(chat_data, CANARY)

    assert chat_data.is_dir() and (claims_root / f"{demo.PERSON}-artifacts").is_dir()
    plane.kubectl("delete", "personalais.personalai.dev", demo.PERSON, "-n", NS, "--wait=true", timeout=120)

    def forgotten():
        left = names(plane, "trainingruns") + names(plane, "jobs") + names(plane, "deployments")
        left += [n for n in names(plane, "pods") if "luke" in n]
        left += [n for n in names(plane, "pvc") if "luke" in n] + [n for n in names(plane, "secrets") if "chat" in n]
        left += [str(p) for p in claims_root.glob(f"{demo.PERSON}-*")]
        return not left

    wait_for(forgotten, timeout=120, interval=2,
             message="the PersonalAI's runs, pods, volumes and chat sessions to be gone")
    # The reflections Secret is the person's own input, not something made from it: it stays.
    assert "secret/luke-reflections" in names(plane, "secrets")
    # Erasure said so before the finalizer went: an Event, and an audit record in the operator's stream.
    purged = demo.get(plane, "events", "-n", NS, "--field-selector", "reason=DataPurged")["items"]
    assert [event["involvedObject"]["name"] for event in purged] == [demo.PERSON]
    records = [json.loads(line) for line in _operator_log(plane, operator_pod).splitlines() if line.startswith("{")]
    erased = [r for r in records if r.get("event") == "erasure" and r.get("personalai") == demo.PERSON]
    assert erased and erased[0]["removed"]["PersistentVolumeClaim"] == 2, erased


CANARY = "canary-7f3e9b21-elderberry"


def _files_holding(directory, text: str) -> list[str]:
    """Files under `directory` whose raw bytes hold `text` (the database, its WAL and journal)."""
    return [path.name for path in directory.rglob("*") if path.is_file() and text.encode() in path.read_bytes()]


def _operator_log(plane, pod) -> str:
    """The operator container's output, as the development node agent keeps it (it has no kubelet log API)."""
    pod = demo.get(plane, "pod", pod["metadata"]["name"], "-n", pod["metadata"]["namespace"])
    log_dir = Path(pod["metadata"]["annotations"][LOGS_ANNOTATION])
    return "".join(path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log")))
