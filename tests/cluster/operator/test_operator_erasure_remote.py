"""Erasure of a PersonalAI served through a remote vLLM: before deleting anything the operator asks the
person's chat server to have vLLM unload their adapters (POST /admin/forget).

On this control plane the chat server is a kwok pod: nothing at its address serves /admin/forget
(what answers there says 404, or nothing does), so this checks the "not confirmed" path only. The operator says it is waiting in the DataPurged condition, asks again
until erasure's bound (a short one here), then erases all the same and says "remote unload not
confirmed" in the DataPurged Event and the audit record. The confirmed path (the server unloading
every name and answering with the count, read by the operator's own request and parser) is
tests/model/server/test_server_forget.py.
"""

from __future__ import annotations

import json

import pytest
from cluster_harness import Suite, condition, get_json
from serving.serving_cluster_helpers import create_personalai, finish_run, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

BOUND_SECONDS = 8


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory):
    return tmp_path_factory.mktemp("opr-audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def suite(audit_log) -> Suite:
    return Suite(prefix="opr", gpu_product="NVIDIA-GeForce-RTX-5090-OPRTEST", nodes=("opr-rtx5090-0",),
                 settings={"PERSONALAI_AUDIT_LOG": str(audit_log),
                           "PERSONALAI_ERASURE_TIMEOUT_SECONDS": str(BOUND_SECONDS)})


def test_an_unreachable_chat_server_delays_erasure_to_its_bound_then_it_is_not_confirmed(
        cluster, operator, ns, audit_log):
    create_personalai(cluster, ns, "vic", serving={"engine": "vllm", "engineUrl": "http://127.0.0.1:9"})
    finish_run(cluster, ns, "vic")
    wait_serving(cluster, ns, "vic")
    uid = get_json(cluster, "personalais", "vic", "-n", ns)["metadata"]["uid"]

    cluster.kubectl("delete", "personalais", "vic", "-n", ns, "--wait=false")
    waiting = wait_for(lambda: (lambda c: c if "Waiting for the chat server" in c.get("message", "") else None)(
        condition(get_json(cluster, "personalais", "vic", "-n", ns) or {}, "DataPurged")), timeout=30, interval=0.3,
        message="DataPurged to say erasure waits for the chat server")
    assert waiting["status"] == "False" and waiting["reason"] == "Erasing", waiting
    # Nothing is deleted while the chat server is being asked.
    assert get_json(cluster, "deployments", "vic-chat", "-n", ns) is not None

    wait_for(lambda: get_json(cluster, "personalais", "vic", "-n", ns) is None, timeout=120, interval=1,
             message="vic erased once the bound has passed")
    events = [e for e in json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
              if e["reason"] == "DataPurged" and e["involvedObject"]["name"] == "vic"]
    assert events and "remote unload not confirmed" in events[0]["message"], events
    record = next(json.loads(line) for line in audit_log.read_text().splitlines()
                  if json.loads(line)["event"] == "erasure" and json.loads(line)["uid"] == uid)
    assert record["remoteAdapters"]["confirmed"] is False and record["remoteAdapters"]["reason"], record
    assert record["durationSeconds"] >= BOUND_SECONDS and record["removed"]["Deployment"] == 1, record
