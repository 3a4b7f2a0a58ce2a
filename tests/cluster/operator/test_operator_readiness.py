"""Too little or unreadable data: DataReady=False saying exactly what is missing, no TrainingRun, no
crash loop, and none of the reflection text in status or events."""

import json
import time

import pytest
from cluster_harness import EXAMPLES, condition, get_json, items, personalai_manifest, secret_manifest

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def _data_ready(cluster, ns, name):
    pai = get_json(cluster, "personalais", name, "-n", ns)
    return condition(pai, "DataReady"), pai


def test_too_little_data_says_what_is_missing_and_trains_nothing(cluster, operator, ns):
    short = (EXAMPLES / "reflections" / "luke-short.csv").read_text(encoding="utf-8")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=secret_manifest("short", "luke-short.csv", short, "shorty"))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=personalai_manifest("shorty", "short", "luke-short.csv"))
    ready = wait_for(lambda: _data_ready(cluster, ns, "shorty")[0], timeout=60, message="DataReady on shorty")
    assert ready["status"] == "False" and ready["reason"] == "InsufficientData"
    assert "of 20 responses" in ready["message"]
    pai = _data_ready(cluster, ns, "shorty")[1]
    assessment = pai["status"]["dataAssessment"]
    assert assessment["level"] == "insufficient" and any("of 20 responses" in m for m in assessment["missing"])
    assert pai["status"]["phase"] == "AwaitingData"
    time.sleep(4)  # two resync periods
    assert items(cluster, "trainingruns", ns) == []
    status_and_events = json.dumps(pai["status"]) + json.dumps(items(cluster, "events", ns))
    first_answer = short.splitlines()[1].split(",")[2]
    assert first_answer[:40] not in status_and_events


def test_malformed_data_is_a_condition_not_a_crash(cluster, operator, ns):
    secret_text = "My secret sentence about the old mill"
    bad = json.dumps({"question": "q", "category": "c", "answer": secret_text}) + "\n{not json: " + secret_text + "\n"
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=secret_manifest("bad", "bad.jsonl", bad, "broken"))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=personalai_manifest("broken", "bad", "bad.jsonl"))
    ready = wait_for(lambda: _data_ready(cluster, ns, "broken")[0], timeout=60, message="DataReady on broken")
    assert ready["status"] == "False" and ready["reason"] == "ReflectionsMalformed"
    assert "2" in ready["message"]  # the line number
    assert operator.alive()
    pai = _data_ready(cluster, ns, "broken")[1]
    everything = json.dumps(pai) + json.dumps(items(cluster, "events", ns)) + operator.log_text()
    assert "old mill" not in everything
    assert items(cluster, "trainingruns", ns) == []


def test_missing_secret_then_created_trains(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=personalai_manifest("later", "later-data", "luke.jsonl"))
    ready = wait_for(lambda: _data_ready(cluster, ns, "later")[0], timeout=60, message="DataReady on later")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound" and "later-data" in ready["message"]
    text = (EXAMPLES / "reflections" / "luke.jsonl").read_text(encoding="utf-8")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=secret_manifest("later-data", "luke.jsonl", text, "later"))
    runs = wait_for(lambda: items(cluster, "trainingruns", ns), timeout=60,
                    message="a run once the Secret exists (level-based, no PersonalAI change)")
    assert len(runs) == 1
    assert _data_ready(cluster, ns, "later")[0]["status"] == "True"
