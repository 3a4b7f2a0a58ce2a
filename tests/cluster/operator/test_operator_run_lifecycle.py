"""One run at a time per person: quick edits leave one trainer Job, the older runs say which run
superseded them; a failed run says why and starts over once per new value of personalai.dev/retry.

Both GPUs are taken first, so runs stay Queued (still going) instead of finishing by themselves.
"""

import json
import time

import pytest
from cluster_harness import EXAMPLES, condition, get_json, items, take_every_gpu

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster


def _jobs(cluster, ns):
    return [job for job in items(cluster, "jobs", ns) if not job["metadata"].get("deletionTimestamp")]


def _run(cluster, ns, name):
    return get_json(cluster, "trainingruns", name, "-n", ns) or {}


def test_quick_edits_leave_one_trainer_job(cluster, suite, operator, ns):
    take_every_gpu(cluster, suite, ns)
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    first = wait_for(lambda: _jobs(cluster, ns), timeout=60, message="the first trainer Job")[0]["metadata"]["name"]

    most_jobs = 1
    for epochs in (5, 6, 7):  # examples/luke.yaml trains 4
        cluster.kubectl("patch", "personalais", "luke", "-n", ns, "--type=merge",
                        "-p", json.dumps({"spec": {"training": {"epochs": epochs}}}))
        most_jobs = max(most_jobs, len(_jobs(cluster, ns)))
    # Edits quicker than a reconcile may be seen as one: a run for the last, and any for those in between.
    runs = wait_for(lambda: (lambda rs: rs if any(r["spec"]["training"]["epochs"] == 7 for r in rs) else None)(
        items(cluster, "trainingruns", ns)), timeout=60, message="a run for the last edit")
    latest = next(r for r in runs if r["spec"]["training"]["epochs"] == 7)["metadata"]["name"]

    def settled():
        jobs = _jobs(cluster, ns)
        nonlocal most_jobs
        most_jobs = max(most_jobs, len(jobs))
        return jobs if [j["metadata"]["name"] for j in jobs] == [latest] else None

    wait_for(settled, timeout=60, message="only the latest run's Job")
    for _ in range(3):  # a resync or two later, still one
        time.sleep(2)
        assert [j["metadata"]["name"] for j in _jobs(cluster, ns)] == [latest]
    assert most_jobs == 1, "two trainer Jobs of one PersonalAI existed at once"

    older = [r["metadata"]["name"] for r in runs if r["metadata"]["name"] != latest]
    assert first in older
    for name in older:
        run = wait_for(lambda name=name: (lambda r: r if r.get("status", {}).get("phase") == "Failed" else None)(
            _run(cluster, ns, name)), timeout=30, message=f"{name} marked superseded")
        failed = condition(run, "Failed")
        assert failed["status"] == "True" and failed["reason"] == "Superseded"
        assert "Superseded by TrainingRun" in run["status"]["message"]
    # The first run's trainer pod went with its Job (background propagation), not orphaned.
    wait_for(lambda: not items(cluster, "pods", ns, f"personalai.dev/training-run={first}"), timeout=60,
             message="the superseded run's pods gone")
    events = [e for e in items(cluster, "events", ns) if e["reason"] == "Superseded"]
    assert {e["involvedObject"]["name"] for e in events} == set(older)
    assert _run(cluster, ns, latest)["status"]["phase"] in ("Pending", "Queued")
    pai = get_json(cluster, "personalais", "luke", "-n", ns)
    assert pai["status"]["latestTrainingRun"] == latest


def _fail_trainer_pod(cluster, ns, run, exit_code, category):
    """What the kubelet reports when the trainer exits (kwok runs no trainer; its pod waits for a GPU)."""
    pod = wait_for(lambda: items(cluster, "pods", ns, f"personalai.dev/training-run={run}"), timeout=60,
                   message="the trainer pod")[0]
    status = {"status": {"phase": "Failed", "containerStatuses": [{
        "name": "trainer", "image": "personalai-trainer:test", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": "Error", "message": category,
                                 "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:01:00Z"}}}]}}
    cluster.kubectl("patch", "pod", pod["metadata"]["name"], "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps(status))


def test_a_failed_run_says_why_and_is_retried_once_per_value(cluster, suite, operator, ns):
    take_every_gpu(cluster, suite, ns)
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    job = wait_for(lambda: _jobs(cluster, ns), timeout=60, message="the trainer Job")[0]
    run = job["metadata"]["name"]
    _fail_trainer_pod(cluster, ns, run, 3, "data")

    # Exit code 3 (bad data) fails the Job at once: no second pod tries the same reflections.
    failed = wait_for(lambda: (lambda r: r if r.get("status", {}).get("phase") == "Failed" else None)(
        _run(cluster, ns, run)), timeout=60, message="the run Failed")
    assert condition(failed, "Failed")["reason"] == "InvalidData"
    assert failed["status"]["message"].startswith("InvalidData: ") and "exit code 3" in failed["status"]["message"]
    assert len(items(cluster, "pods", ns, f"personalai.dev/training-run={run}")) == 1
    pai = wait_for(lambda: (lambda p: p if condition(p, "Trained").get("reason") == "TrainingFailed" else None)(
        get_json(cluster, "personalais", "luke", "-n", ns)), timeout=30, message="luke's Trained=TrainingFailed")
    assert "InvalidData" in condition(pai, "Trained")["message"]

    cluster.kubectl("annotate", "personalais", "luke", "-n", ns, "personalai.dev/retry=1")
    fresh = wait_for(lambda: [j for j in _jobs(cluster, ns) if j["metadata"]["uid"] != job["metadata"]["uid"]],
                     timeout=60, message="a fresh Job for the retried run")[0]
    assert fresh["metadata"]["name"] == run
    retried = wait_for(lambda: (lambda r: r if r.get("status", {}).get("phase") in ("Pending", "Queued") else None)(
        _run(cluster, ns, run)), timeout=30, message="the run going again")
    assert retried["status"]["retriedFor"] == "1" and condition(retried, "Failed")["status"] == "False"

    # The same value again (an unrelated annotation, resyncs) asks for nothing more.
    cluster.kubectl("annotate", "personalais", "luke", "-n", ns, "touched=yes")
    time.sleep(6)  # three resync periods
    assert [j["metadata"]["uid"] for j in _jobs(cluster, ns)] == [fresh["metadata"]["uid"]]
    retries = [e for e in items(cluster, "events", ns) if e["reason"] == "Retrying"]
    assert len(retries) == 1 and retries[0]["involvedObject"]["name"] == run
    assert [r["metadata"]["name"] for r in items(cluster, "trainingruns", ns)] == [run]
