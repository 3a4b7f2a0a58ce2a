"""Deleting a PersonalAI leaves nothing it owned once the garbage collector has run."""

import pytest
from cluster_harness import EXAMPLES, get_json, items

from devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

OWNED_KINDS = ("trainingruns", "jobs", "pods", "configmaps", "serviceaccounts", "roles", "rolebindings",
               "persistentvolumeclaims")


def test_deleting_the_personalai_removes_everything_made_from_it(cluster, operator, ns):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
    run = wait_for(lambda: items(cluster, "trainingruns", ns), timeout=60, message="the run")[0]["metadata"]["name"]
    wait_for(lambda: (get_json(cluster, "trainingruns", run, "-n", ns).get("status") or {}).get("phase")
             == "Succeeded", timeout=90, message="the run to finish")
    made = {kind: items(cluster, kind, ns, "personalai.dev/personalai=luke") for kind in OWNED_KINDS}
    assert all(made[kind] for kind in ("trainingruns", "jobs", "configmaps", "serviceaccounts", "roles",
                                       "rolebindings", "persistentvolumeclaims")), {k: len(v) for k, v in made.items()}

    cluster.kubectl("delete", "personalais", "luke", "-n", ns, "--wait=true", timeout=60)

    def leftovers():
        return {kind: [o["metadata"]["name"] for o in items(cluster, kind, ns, "personalai.dev/personalai=luke")]
                for kind in OWNED_KINDS}

    wait_for(lambda: not any(leftovers().values()), timeout=120,
             message="the garbage collector to remove everything luke owned")
    # The shared model cache holds only public base models: it is not the person's and stays.
    assert [c["metadata"]["name"] for c in items(cluster, "persistentvolumeclaims", ns)] == ["personalai-model-cache"]
    assert get_json(cluster, "secrets", "luke-reflections", "-n", ns) is not None  # the person's own Secret is theirs
