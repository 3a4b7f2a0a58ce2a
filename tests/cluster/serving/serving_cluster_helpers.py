"""The serving suite's steps (on cluster_harness): reading a PersonalAI's server and the model slots
on a node, and taking a PersonalAI from reflections to a promoted adapter.
"""

from __future__ import annotations

import json

from cluster_harness import condition, get_json, items, personalai_manifest, secret_manifest

from devcluster.waiting import wait_for

MODEL_SLOT = "personalai.dev/model-slot"


def personalai(cluster, namespace: str, name: str) -> dict | None:
    return get_json(cluster, "personalais", name, "-n", namespace)


def server_config(cluster, namespace: str, name: str) -> dict | None:
    config_map = get_json(cluster, "configmap", f"{name}-chat-config", "-n", namespace)
    return json.loads(config_map["data"]["server.json"]) if config_map else None


def server_pods(cluster, namespace: str, name: str) -> list[dict]:
    pods = items(cluster, "pods", namespace, f"personalai.dev/component=server,personalai.dev/personalai={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def slot_pods_on(cluster, node: str) -> list[dict]:
    """Live pods on `node` that hold a model slot, in any namespace."""
    pods = (get_json(cluster, "pods", "-A", "--field-selector", f"spec.nodeName={node}") or {}).get("items", [])
    return [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
            and any(MODEL_SLOT in ((c.get("resources") or {}).get("requests") or {}) for c in p["spec"]["containers"])]


def drain_leftovers(cluster, node: str) -> None:
    """Slot-holding pods of earlier tests (their namespaces are deleted asynchronously) leave the node.
    Only pods of namespaces already being deleted are hurried along; anything else is waited for."""
    for pod in slot_pods_on(cluster, node):
        namespace = get_json(cluster, "namespace", pod["metadata"]["namespace"]) or {}
        if namespace.get("status", {}).get("phase") != "Terminating":
            continue
        where = (pod["metadata"]["name"], "-n", pod["metadata"]["namespace"])
        cluster.kubectl("delete", "pod", *where, "--force", "--grace-period=0", "--wait=false", check=False)
    wait_for(lambda: not slot_pods_on(cluster, node), timeout=60, message=f"no model slots in use on {node}")


# ---- making a PersonalAI and its adapters -------------------------------------------------------

def reflections_jsonl(count: int = 21, categories: int = 3, words: int = 55) -> str:
    """Just above the minimum readiness level (20 responses, 30+ average words, 3 categories, 1,000 words)."""
    topics = ["family", "work", "values", "travel"][:categories]
    lines = []
    for i in range(count):
        answer = " ".join(f"thought{i}-{j}" for j in range(words))
        lines.append(json.dumps({"question": f"Question number {i}?", "category": topics[i % categories],
                                 "answer": answer}))
    return "\n".join(lines) + "\n"


def create_personalai(cluster, namespace: str, name: str, **spec) -> None:
    secret, key = f"{name}-reflections", "reflections.jsonl"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=secret_manifest(secret, key, reflections_jsonl(), name))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=personalai_manifest(name, secret, key, **spec))


def finish_run(cluster, namespace: str, personalai_name: str, passed: bool = True,
               known: tuple[str, ...] = (), timeout: float = 90) -> dict:
    """Wait for the PersonalAI's newest run (not in `known`) to complete its Job, and report what its
    trainer would: the artifact and the validation verdict. Returns the run."""
    def new_run():
        runs = [r for r in items(cluster, "trainingruns", namespace, f"personalai.dev/personalai={personalai_name}")
                if r["metadata"]["name"] not in known]
        return runs[0] if runs else None

    run = wait_for(new_run, timeout=60, message=f"a new TrainingRun for {personalai_name}")
    name, version = run["metadata"]["name"], run["spec"]["adapterVersion"]
    # The operator recomputes the verdict from these metrics and the run's spec.validation (the default
    # gate here): the perplexity gain over the base model decides, as it would for a real run.
    metrics = {"evalLoss": 0.8, "perplexity": 2.2 if passed else 4.6, "coherence": 0.9,
               "personalityConsistency": 0.93, "perplexityGain": 0.45 if passed else 0.05,
               "perplexityGainOverInContext": 0.2, "passed": passed, "reasons": []}
    patch = {"status": {"artifact": {"location": f"/artifacts/{version}", "manifestSha256": "0" * 64,
                                     "adapterVersion": version},
                        "validation": metrics}}
    cluster.kubectl("patch", "trainingruns", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps(patch))
    return wait_for(lambda: (lambda r: r if (r.get("status") or {}).get("phase") == "Succeeded" else None)(
        get_json(cluster, "trainingruns", name, "-n", namespace) or {}), timeout=timeout,
        message=f"TrainingRun {name} to succeed")


def wait_serving(cluster, namespace: str, name: str, timeout: float = 150) -> dict:
    return wait_for(lambda: (lambda p: p if condition(p, "Serving").get("status") == "True" else None)(
        personalai(cluster, namespace, name)), timeout=timeout, message=f"{name} Serving=True")
