"""Promotion and rollback as a user sees them: a validated run becomes the served adapter, a run that
failed validation never does, and pinning spec.serving.adapterVersion rolls back without a new pod."""

import json

import pytest
from cluster_harness import condition
from serving_cluster_helpers import create_personalai, finish_run, personalai, server_config, server_pods, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

NAME = "ada"


def _current(cluster, ns) -> str | None:
    return ((personalai(cluster, ns, NAME) or {}).get("status") or {}).get("currentAdapter", {}).get("version")


def _set_spec(cluster, ns, spec: dict) -> None:
    cluster.kubectl("patch", "personalais", NAME, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))


def test_validated_runs_serve_failed_ones_never_and_pinning_rolls_back(cluster, ns):
    create_personalai(cluster, ns, NAME)
    first = finish_run(cluster, ns, NAME)
    v1 = first["spec"]["adapterVersion"]
    wait_for(lambda: _current(cluster, ns) == v1, timeout=60, message="v1 promoted")
    wait_serving(cluster, ns, NAME)
    assert server_config(cluster, ns, NAME)["adapter"]["version"] == v1
    pod = server_pods(cluster, ns, NAME)[0]
    template = cluster.kubectl("get", "deployment", f"{NAME}-chat", "-n", ns, "-o", "jsonpath={.spec.template}").stdout

    # A second validated run: it serves, and the first goes to the history.
    _set_spec(cluster, ns, {"training": {"epochs": 2}})
    second = finish_run(cluster, ns, NAME, known=(first["metadata"]["name"],))
    v2 = second["spec"]["adapterVersion"]
    wait_for(lambda: _current(cluster, ns) == v2, timeout=60, message="v2 promoted")
    wait_for(lambda: server_config(cluster, ns, NAME)["adapter"]["version"] == v2, timeout=30,
             message="the server config to name v2")
    assert [r["version"] for r in personalai(cluster, ns, NAME)["status"]["adapterHistory"]] == [v1]

    # A run that trained but missed a validation threshold changes nothing that serves.
    _set_spec(cluster, ns, {"training": {"epochs": 3}})
    third = finish_run(cluster, ns, NAME, passed=False,
                       known=(first["metadata"]["name"], second["metadata"]["name"]))
    v3 = third["spec"]["adapterVersion"]
    trained = wait_for(lambda: (lambda c: c if c.get("reason") == "ValidationFailed" else None)(
        condition(personalai(cluster, ns, NAME), "Trained")), timeout=60, message="Trained=False ValidationFailed")
    assert trained["status"] == "False" and v3 in trained["message"] and "perplexity" in trained["message"]
    status = personalai(cluster, ns, NAME)["status"]
    assert status["currentAdapter"]["version"] == v2
    rejected = {r["version"]: r.get("rejected") for r in status["adapterHistory"]}
    assert rejected[v1] is None and "perplexity" in rejected[v3]  # kept with its reasons, never served
    assert server_config(cluster, ns, NAME)["adapter"]["version"] == v2
    assert condition(personalai(cluster, ns, NAME), "Serving")["status"] == "True"

    # A pin to the rejected adapter is refused with the reason it was rejected.
    _set_spec(cluster, ns, {"serving": {"adapterVersion": v3}})
    serving = wait_for(lambda: (lambda c: c if c.get("reason") == "UnknownAdapterVersion" else None)(
        condition(personalai(cluster, ns, NAME), "Serving")), timeout=30, message="the rejected pin refused")
    assert f"{v3} cannot be served" in serving["message"]

    # A pin to a version this PersonalAI never trained is refused by name.
    _set_spec(cluster, ns, {"serving": {"adapterVersion": "v9-nosuchone"}})
    # (The condition already says UnknownAdapterVersion for the previous pin: wait for this pin's message.)
    serving = wait_for(lambda: (lambda c: c if "v9-nosuchone" in c.get("message", "") else None)(
        condition(personalai(cluster, ns, NAME), "Serving")), timeout=30, message="the unknown pin refused")
    assert serving["status"] == "False" and serving["reason"] == "UnknownAdapterVersion"

    # Rollback: pin the first adapter. The running server reloads its config; no new pod.
    _set_spec(cluster, ns, {"serving": {"adapterVersion": v1}})
    wait_for(lambda: server_config(cluster, ns, NAME)["adapter"]["version"] == v1, timeout=30,
             message="the server config to name v1 again")
    wait_serving(cluster, ns, NAME, timeout=30)
    assert _current(cluster, ns) == v2  # the pin chooses what serves; the newest adapter stays current
    assert [p["metadata"]["uid"] for p in server_pods(cluster, ns, NAME)] == [pod["metadata"]["uid"]]
    assert cluster.kubectl("get", "deployment", f"{NAME}-chat", "-n", ns, "-o",
                           "jsonpath={.spec.template}").stdout == template
