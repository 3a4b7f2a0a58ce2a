"""spec.suspend on the real control plane: the data is assessed, no run is made until it is lifted, a
run going when it is set is stopped and resumed after; the person's token is published as its sha256
from the first reconcile, and deleting its Secret makes a new token and a new digest."""

import base64
import hashlib
import json
import time

import pytest
import yaml
from cluster_harness import EXAMPLES, RESYNC_SECONDS, condition, get_json, items, take_every_gpu

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

TOKEN_SECRET = "luke-chat-auth"


def apply_luke(cluster, ns, **spec) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "luke-reflections-secret.yaml"))
    manifest = yaml.safe_load((EXAMPLES / "luke.yaml").read_text())
    manifest["spec"].update(spec)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def set_suspend(cluster, ns, value: bool) -> None:
    cluster.kubectl("patch", "pai", "luke", "-n", ns, "--type", "merge", "-p",
                    json.dumps({"spec": {"suspend": value}}))


def luke_when(cluster, ns, check, message, timeout=60):
    return wait_for(lambda: (lambda p: p if p and check(p) else None)(get_json(cluster, "pai", "luke", "-n", ns)),
                    timeout=timeout, message=message)


def runs(cluster, ns):
    return items(cluster, "trainingruns", ns)


def token_digest(cluster, ns) -> tuple[str, str]:
    """(sha256 of the Secret's token, the Secret's uid)."""
    secret = get_json(cluster, "secret", TOKEN_SECRET, "-n", ns)
    token = base64.b64decode(secret["data"]["token"])
    return hashlib.sha256(token).hexdigest(), secret["metadata"]["uid"]


def test_a_suspended_personalai_is_assessed_but_trains_only_once_lifted(cluster, operator, suite, ns):
    apply_luke(cluster, ns, suspend=True)
    pai = luke_when(cluster, ns, lambda p: condition(p, "Trained").get("reason") == "Suspended",
                    "luke assessed and Trained=Suspended")
    assert condition(pai, "DataReady")["status"] == "True" and pai["status"]["dataAssessment"]["level"] == "optimal"
    assert pai["status"]["phase"] == "Suspended" and "spec.suspend" in condition(pai, "Trained")["message"]
    time.sleep(3 * RESYNC_SECONDS)  # three resyncs: time enough for a run to appear if one would
    assert runs(cluster, ns) == []

    take_every_gpu(cluster, suite, ns)  # the run waits Queued, so it is still going when suspended again
    set_suspend(cluster, ns, False)
    made = wait_for(lambda: runs(cluster, ns), timeout=60, message="a TrainingRun once suspend is lifted")
    run = made[0]["metadata"]["name"]
    luke_when(cluster, ns, lambda p: condition(p, "Trained").get("reason") in ("Pending", "Queued"),
              "Trained to follow the run")

    set_suspend(cluster, ns, True)
    stopped = wait_for(lambda: (lambda r: r if (r.get("status") or {}).get("phase") == "Failed" else None)(
        get_json(cluster, "trainingruns", run, "-n", ns) or {}), timeout=60, message="the run stopped by suspend")
    assert "suspended (spec.suspend)" in stopped["status"]["message"]
    wait_for(lambda: get_json(cluster, "job", run, "-n", ns) is None, timeout=30, message="its Job deleted")
    luke_when(cluster, ns, lambda p: condition(p, "Trained").get("reason") == "Suspended", "Trained=Suspended again")

    set_suspend(cluster, ns, False)
    wait_for(lambda: (get_json(cluster, "trainingruns", run, "-n", ns).get("status") or {}).get("phase")
             in ("Pending", "Queued"), timeout=60, message="the same run resumed")
    assert [r["metadata"]["name"] for r in runs(cluster, ns)] == [run]


def test_the_persons_token_is_published_as_its_digest_and_rotates_when_its_secret_is_deleted(cluster, operator, ns):
    apply_luke(cluster, ns, suspend=True)  # a token from the first reconcile: no training, no serving needed
    pai = luke_when(cluster, ns, lambda p: (p.get("status") or {}).get("access"), "status.access")
    digest, uid = token_digest(cluster, ns)
    assert pai["status"]["access"] == {"tokenSecret": TOKEN_SECRET, "tokenSha256": digest}
    secret = get_json(cluster, "secret", TOKEN_SECRET, "-n", ns)
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "PersonalAI"
    assert len(base64.b64decode(secret["data"]["token"])) >= 43  # 256 random bits, URL-safe base64

    cluster.kubectl("delete", "secret", TOKEN_SECRET, "-n", ns)
    wait_for(lambda: (get_json(cluster, "secret", TOKEN_SECRET, "-n", ns) or {}).get("metadata", {}).get("uid")
             not in (None, uid), timeout=30, message="a new token Secret")
    new_digest, _ = token_digest(cluster, ns)
    assert new_digest != digest
    luke_when(cluster, ns, lambda p: p["status"]["access"]["tokenSha256"] == new_digest, "the new digest published")
    events = [e for e in items(cluster, "events", ns) if e["reason"] == "TokenCreated"]
    assert len(events) >= 2 and all(base64.b64decode(secret["data"]["token"]).decode() not in e["message"]
                                    for e in events)
