"""spec.serving.abTest as a person uses it: a passed adapter of their own history serves beside the
current one (the server config's `candidate`, same pod), Drop stops it, Promote makes it current the
way promotion does, and an unknown or another PersonalAI's version is Invalid and never served.

The chat server here is a kwok pod: nothing answers its stats route, so status.abTest says the figures
could not be read and the reconcile goes on (the stats read itself: tests/unit/operator/test_operator_ab_test.py,
against a real HTTP server).
"""

import json
import time

import pytest
from cluster_harness import RESYNC_SECONDS
from serving_cluster_helpers import create_personalai, finish_run, personalai, server_config, server_pods, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

NAME, OTHER = "ada", "bob"


def _ab_status(cluster, ns) -> dict:
    return ((personalai(cluster, ns, NAME) or {}).get("status") or {}).get("abTest") or {}


def _set_ab(cluster, ns, ab_test: dict | None) -> None:
    patch = {"spec": {"serving": {"abTest": ab_test}}}
    cluster.kubectl("patch", "personalais", NAME, "-n", ns, "--type=merge", "-p", json.dumps(patch))


def _wait_ab(cluster, ns, phase: str, words: str) -> dict:
    return wait_for(lambda: (lambda s: s if s.get("phase") == phase and words in s.get("message", "") else None)(
        _ab_status(cluster, ns)), timeout=30, message=f"status.abTest {phase} saying {words!r}")


def _events(cluster, ns) -> list[dict]:
    return [e for e in json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
            if e["involvedObject"]["name"] == NAME and e["reason"].startswith("ABTest")]


def test_candidate_serves_beside_current_then_drop_and_promote_and_foreign_versions_are_invalid(cluster, operator, ns):
    create_personalai(cluster, ns, NAME)
    first = finish_run(cluster, ns, NAME)
    v1 = first["spec"]["adapterVersion"]
    wait_serving(cluster, ns, NAME)
    cluster.kubectl("patch", "personalais", NAME, "-n", ns, "--type=merge",
                    "-p", json.dumps({"spec": {"training": {"epochs": 2}}}))
    v2 = finish_run(cluster, ns, NAME, known=(first["metadata"]["name"],))["spec"]["adapterVersion"]
    wait_for(lambda: server_config(cluster, ns, NAME)["adapter"]["version"] == v2, timeout=60, message="v2 serving")
    pod = server_pods(cluster, ns, NAME)[0]["metadata"]["uid"]

    # Running: the earlier passed adapter gets 30% of new sessions, in the same server pod.
    _set_ab(cluster, ns, {"candidateVersion": v1, "share": 30})
    wait_for(lambda: server_config(cluster, ns, NAME).get("candidate"), timeout=30, message="a candidate configured")
    config = server_config(cluster, ns, NAME)
    assert config["candidate"] == {"version": v1, "manifestSha256": "0" * 64, "share": 30}
    assert config["adapter"]["version"] == v2
    running = _wait_ab(cluster, ns, "Running", v1)
    assert running["candidateVersion"] == v1 and running["share"] == 30 and v2 in running["message"]
    # Nothing answers the kwok pod's stats route: said so, and the reconcile still converges.
    _wait_ab(cluster, ns, "Running", "could not be read")
    assert [p["metadata"]["uid"] for p in server_pods(cluster, ns, NAME)] == [pod]
    # Nothing changed, so resyncs (and their stats reads) write no status.
    version = personalai(cluster, ns, NAME)["metadata"]["resourceVersion"]
    time.sleep(3 * RESYNC_SECONDS)
    assert personalai(cluster, ns, NAME)["metadata"]["resourceVersion"] == version

    # An unknown version is Invalid, names the field, and no candidate is served.
    _set_ab(cluster, ns, {"candidateVersion": "v9-nosuchone"})
    invalid = _wait_ab(cluster, ns, "Invalid", "spec.serving.abTest.candidateVersion v9-nosuchone")
    assert "not an adapter of this PersonalAI" in invalid["message"]
    wait_for(lambda: "candidate" not in server_config(cluster, ns, NAME), timeout=30, message="the candidate removed")

    # Another PersonalAI's passed adapter is not this one's to serve. (Versions name the data and config,
    # so bob trains on another config: the same inputs would give ada's own version name.)
    create_personalai(cluster, ns, OTHER, serving={"enabled": False}, training={"epochs": 3})
    foreign = finish_run(cluster, ns, OTHER)["spec"]["adapterVersion"]
    _set_ab(cluster, ns, {"candidateVersion": foreign})
    _wait_ab(cluster, ns, "Invalid", f"candidateVersion {foreign} is not an adapter of this PersonalAI")
    assert "candidate" not in server_config(cluster, ns, NAME)

    # Drop: the candidate stops serving, the current adapter stays.
    _set_ab(cluster, ns, {"candidateVersion": v1, "share": 30})
    wait_for(lambda: server_config(cluster, ns, NAME).get("candidate"), timeout=30, message="the candidate back")
    _set_ab(cluster, ns, {"candidateVersion": v1, "decision": "Drop"})
    _wait_ab(cluster, ns, "Dropped", f"{v2} stays current")
    wait_for(lambda: "candidate" not in server_config(cluster, ns, NAME), timeout=30, message="the candidate dropped")
    assert personalai(cluster, ns, NAME)["status"]["currentAdapter"]["version"] == v2

    # Promote: the candidate becomes current; the one it replaces heads the history (rollback).
    _set_ab(cluster, ns, {"candidateVersion": v1, "decision": "Promote"})
    _wait_ab(cluster, ns, "Promoted", f"{v1} was promoted over {v2}")
    status = personalai(cluster, ns, NAME)["status"]
    assert status["currentAdapter"]["version"] == v1
    assert [r["version"] for r in status["adapterHistory"]] == [v2]
    wait_for(lambda: server_config(cluster, ns, NAME)["adapter"]["version"] == v1, timeout=30,
             message="the server config to serve v1")
    assert "candidate" not in server_config(cluster, ns, NAME)
    wait_serving(cluster, ns, NAME, timeout=30)
    assert [p["metadata"]["uid"] for p in server_pods(cluster, ns, NAME)] == [pod]
    promoted = [record for record in map(json.loads, (line for line in operator.log_text().splitlines()
                                                     if line.startswith('{"adapterVersion"')))
                if record.get("event") == "promotion" and record.get("namespace") == ns]
    assert [(r["adapterVersion"], r["previousVersion"]) for r in promoted][-1:] == [(v1, v2)], "audited like a promotion"

    reasons = [e["reason"] for e in _events(cluster, ns)]
    assert {"ABTestRunning", "ABTestInvalid", "ABTestDropped", "ABTestPromoted"} <= set(reasons), reasons
    for event in _events(cluster, ns):  # versions and field names only
        assert "thought" not in event["message"] and "Question" not in event["message"]
