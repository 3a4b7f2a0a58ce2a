"""An object the API refuses is a condition, not a frozen status: with a ResourceQuota that allows no
Deployment, Serving says RolloutFailed with the kind, the name and the API's reason, while Trained,
the adapter and the phase are still written; once the quota is lifted the next pass serves."""

import json

import pytest
from cluster_harness import condition
from serving_cluster_helpers import create_personalai, finish_run, personalai, wait_serving

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

NAME = "rosa"
QUOTA = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments"},
         "spec": {"hard": {"count/deployments.apps": "0"}}}


def _reasons(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_refused_deployment_is_reported_and_the_rest_of_the_status_is_written(cluster, ns):
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(QUOTA))
    create_personalai(cluster, ns, NAME)
    version = finish_run(cluster, ns, NAME)["spec"]["adapterVersion"]

    serving = wait_for(lambda: (lambda c: c if c.get("reason") == "RolloutFailed" else None)(
        condition(personalai(cluster, ns, NAME), "Serving")), timeout=60, message="Serving=False RolloutFailed")
    assert serving["message"].startswith(f"The API refused Deployment {NAME}-chat: HTTP 403 Forbidden"), serving
    status = personalai(cluster, ns, NAME)["status"]
    assert status["currentAdapter"]["version"] == version and status["phase"] == "Trained"
    assert _reasons(status) == {"DataReady": ("True", "Ready"), "Trained": ("True", "AdapterValidated"),
                                "Serving": ("False", "RolloutFailed"), "Ready": ("False", "NotServing")}
    assert "thought" not in json.dumps(status)  # the reflections' words never reach the status
    assert cluster.kubectl("get", "deployment", f"{NAME}-chat", "-n", ns, check=False).returncode != 0

    cluster.kubectl("delete", "resourcequota", "no-deployments", "-n", ns)
    status = wait_serving(cluster, ns, NAME)["status"]
    assert status["phase"] == "Serving" and _reasons(status)["Ready"] == ("True", "Serving")
