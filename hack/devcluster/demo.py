"""`make demo`: the product's whole loop on a local control plane, a tiny model and the CPU.

A PersonalAI for a sample person (examples/) is applied; the operator, installed by the Helm
chart, assesses the reflections, makes a TrainingRun and its Job; the development node agent runs
the trainer pod from that Job's pod spec; the adapter is promoted and the chat server's
Deployment comes up on the same node; then the brief's questions go through the streaming API.

The demo cluster has its own state folder and ports (it can run beside the test cluster) and is
left up at the end, with the commands to chat and to tear it down.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from .controlplane import REPO_ROOT, ControlPlane
from .waiting import wait_for

NAMESPACE = "personalai-demo"
PERSON = "luke"
BASE_MODEL = "tiny-mistral"
AGENT_NODE = "dev-rtx5090-0"
MODEL_CACHE_CLAIM = "personalai-model-cache"
DEV_IMAGES = {"operator": "personalai/operator", "trainer": "personalai/trainer", "server": "personalai/server"}

PERSONALITY_QUESTIONS = [
    "What matters most to you in life?",
    "Tell me about where you grew up.",
    "What advice would you give your grandchildren?",
]
CONTEXT_CONVERSATION = ["I'm feeling stressed about work", "What should I do?", "Thank you for that advice"]


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def demo_plane() -> ControlPlane:
    """The demo's own control plane (state folder, ports and pod addresses apart from the test cluster's)."""
    state = Path(os.environ.get("PERSONALAI_DEMO_DIR", REPO_ROOT / ".work" / "demo"))
    return ControlPlane(state_dir=state, apiserver_port=int(os.environ.get("PERSONALAI_DEMO_APISERVER_PORT", "17443")),
                        etcd_port=int(os.environ.get("PERSONALAI_DEMO_ETCD_PORT", "24790")), pod_address_prefix="127.0.1")


def start_cluster(plane: ControlPlane | None = None) -> ControlPlane:
    """A control plane whose only RTX 5090 node is the agent's, so the trainer and server really run."""
    say("starting the local control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok) and the dev node agent")
    plane = (plane or demo_plane()).up(gpu_nodes=0, cpu_nodes=1)
    plane.start_node_agent(AGENT_NODE)
    return plane


def seed_base_model(plane: ControlPlane, namespace: str = NAMESPACE) -> str:
    """Put the tiny base model where the model-cache volume of `namespace` lands on the agent's node.

    A real cluster would pull Mistral-7B into this cache once; no hub is reachable here, so the
    demo writes a tiny Mistral-architecture model built from a config.
    """
    from personalai_trainer.tiny_model import build_tiny_model

    # The cache is a PVC like on a real cluster (the operator would make it too); the agent keeps
    # each claim's files in one host folder, which is where a model pull would land.
    plane.kubectl("create", "namespace", namespace, check=False)
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": MODEL_CACHE_CLAIM, "namespace": namespace,
                          "labels": {"app.kubernetes.io/managed-by": "personalai-operator",
                                     "personalai.dev/component": "model-cache"}},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(claim))
    target = plane.agent_state_dir(AGENT_NODE) / "claims" / namespace / MODEL_CACHE_CLAIM / BASE_MODEL
    if not (target / "config.json").exists():
        say(f"building the tiny base model into the model cache ({target})")
        texts = [json.loads(line)["answer"] for line in (REPO_ROOT / "examples/reflections/luke.jsonl").read_text().splitlines()]
        build_tiny_model(target, extra_texts=texts, hidden_size=64, layers=2)
    return BASE_MODEL


def chart_values(namespace: str = NAMESPACE) -> dict:
    """Chart values for the demo: dev images the agent maps to this checkout, the agent's node."""
    def image(name: str) -> dict:
        return {"repository": DEV_IMAGES[name], "tag": "dev"}

    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    return {
        "images": {"operator": image("operator"), "trainer": image("trainer"), "server": image("server"),
                   "pullPolicy": "Never"},
        "watchNamespaces": [namespace],
        # One node holds the trainer and the server: share its GPU rather than ask for a whole one.
        "gpu": {"servingSharing": "shared"},
        "training": {"deadlineSeconds": 1800, "backoffLimit": 1},
        "operator": {"resyncSeconds": 5, "nodeSelector": {"kubernetes.io/hostname": AGENT_NODE},
                     "tolerations": [gpu_toleration]},
    }


def install_chart(plane: ControlPlane, namespace: str = NAMESPACE, release: str = "personalai") -> None:
    say("helm install personalai charts/personalai")
    plane.kubectl("create", "namespace", namespace, check=False)
    plane.kubectl("create", "namespace", "personalai-system", check=False)
    values = plane.state_dir / "demo-values.yaml"
    values.write_text(yaml.safe_dump(chart_values(namespace)))
    plane.helm("upgrade", "--install", release, str(REPO_ROOT / "charts/personalai"), "-n", "personalai-system",
               "-f", str(values), "--wait", "--timeout", "180s", timeout=240)


def person_manifests(base_model: str = BASE_MODEL) -> list[dict]:
    """examples/ as applied, with the base model and the budget of a CPU run.

    Validation thresholds are relaxed: a model of a few hundred thousand random weights cannot
    reach the perplexity or consistency a real 7B adapter is held to, and the demo must show promotion.
    """
    docs = [yaml.safe_load((REPO_ROOT / "examples" / name).read_text())
            for name in ("luke-reflections-secret.yaml", "luke.yaml")]
    spec = docs[1]["spec"]
    spec["baseModel"] = base_model
    spec["training"].update({"epochs": 3, "maxSeqLength": 256, "quantization": "none", "batchSize": 8,
                             "checkpointEverySteps": 20, "warmupSteps": 5, "learningRate": 0.004})
    spec["validation"] = {"maxPerplexity": 1000.0, "minCoherence": 0.0, "minPersonalityConsistency": 0.0}
    spec["serving"]["maxTokens"] = 48
    return docs


def apply_person(plane: ControlPlane, namespace: str = NAMESPACE) -> None:
    say(f"kubectl apply -f examples/  (PersonalAI {PERSON} and its reflections Secret)")
    for doc in person_manifests():
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def get(plane: ControlPlane, *args: str) -> dict:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def follow_training(plane: ControlPlane, namespace: str = NAMESPACE, timeout: float = 1200) -> tuple[dict, list[dict]]:
    """Print `kubectl get trainingruns` as it changes until the run ends; return it and the progress seen."""
    seen: list[dict] = []
    last_table = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = get(plane, "trainingruns", "-n", namespace)["items"]
        if runs:
            run = runs[-1]
            progress = run.get("status", {}).get("progress")
            if progress and (not seen or progress != seen[-1]):
                seen.append(progress)
            header, *rows = plane.kubectl("get", "trainingruns", "-n", namespace).stdout.rstrip().splitlines()
            if not last_table:
                print(header, flush=True)
            # Rows as `kubectl get trainingruns -w` prints them: a line per change (AGE aside).
            row = rows[-1] if rows else ""
            if row.rsplit(None, 1)[0] != last_table:
                print(row, flush=True)
                last_table = row.rsplit(None, 1)[0]
            phase = run.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return run, seen
        time.sleep(2)
    raise TimeoutError(f"training did not finish in {timeout:.0f}s")


def wait_for_serving(plane: ControlPlane, namespace: str = NAMESPACE, timeout: float = 600) -> dict:
    say("waiting for the adapter to be promoted and the chat server to be Ready")

    def ready():
        pai = get(plane, "personalais.personalai.dev", PERSON, "-n", namespace)
        return pai if condition(pai, "Ready").get("status") == "True" else None

    return wait_for(ready, timeout=timeout, interval=2, message="PersonalAI Ready (trained and serving)")


def server_address(plane: ControlPlane, namespace: str = NAMESPACE) -> str:
    """The Ready serving pod's address (the agent gives each pod its own loopback IP; there is no kube-proxy)."""
    pods = get(plane, "pods", "-n", namespace, "-l", "personalai.dev/component=server")["items"]
    pod = next(p for p in pods if condition(p, "Ready").get("status") == "True")
    return f"http://{pod['status']['podIP']}:8080"


def chat_token(plane: ControlPlane, namespace: str = NAMESPACE) -> str:
    import base64

    secret = get(plane, "secret", f"{PERSON}-chat-auth", "-n", namespace)
    return base64.b64decode(secret["data"]["token"]).decode()


def stream_reply(client, base_url: str, token: str, session_id: str, message: str) -> tuple[str, dict]:
    """POST /api/ai-echo/stream and read the SSE lines the way the brief's JavaScript does."""
    chunks, final = [], {}
    with client.stream("POST", f"{base_url}/api/ai-echo/stream", headers={"Authorization": f"Bearer {token}"},
                       json={"message": message, "sessionId": session_id}, timeout=120) as response:
        response.raise_for_status()
        buffer = ""
        for text in response.iter_text():
            buffer += text
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: "):])
                if event["type"] == "chunk":
                    chunks.append(event["content"])
                elif event["type"] == "complete":
                    final = event
    return "".join(chunks), final


def chat(base_url: str, token: str) -> list[tuple[str, str, dict]]:
    import httpx

    answers = []
    with httpx.Client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        for title, questions in (("Personality test", PERSONALITY_QUESTIONS), ("Context awareness", CONTEXT_CONVERSATION)):
            session = client.post(f"{base_url}/api/ai-echo/sessions", headers=headers,
                                  json={"title": title, "settings": {"maxTokens": 48}}, timeout=30)
            session.raise_for_status()
            session_id = session.json()["sessionId"] if "sessionId" in session.json() else session.json()["id"]
            say(f"{title} (session {session_id})")
            for question in questions:
                reply, final = stream_reply(client, base_url, token, session_id, question)
                metadata = final.get("metadata", {})
                tokens = (metadata.get("tokens") or {}).get("completion", "?")
                print(f"  you:  {question}\n  {PERSON}: {reply.strip()}\n        "
                      f"[{tokens} tokens, adapter {metadata.get('adapterVersion', '?')}]", flush=True)
                answers.append((question, reply, metadata))
    return answers


def run_demo() -> int:
    started = time.monotonic()
    plane = start_cluster()
    seed_base_model(plane)
    install_chart(plane)
    apply_person(plane)
    run, progress = follow_training(plane)
    if run["status"]["phase"] != "Succeeded":
        say(f"training failed: {condition(run, 'Failed').get('message', 'see kubectl describe trainingrun')}")
        return 1
    pai = wait_for_serving(plane)
    say(f"serving adapter {pai['status']['currentAdapter']['version']} at {pai['status'].get('endpoint')}")
    base_url, token = server_address(plane), chat_token(plane)
    chat(base_url, token)
    kubeconfig = plane.kubeconfig
    say(f"done in {time.monotonic() - started:.0f}s. The cluster is still up:")
    print(f"  kubectl --kubeconfig {kubeconfig} get personalais,trainingruns -n {NAMESPACE}")
    print(f"  chat:  curl -N -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
          f"{base_url}/api/ai-echo/chat -d '{{\"message\": \"Hello Luke\"}}'   (or open {base_url}/ in a browser)")
    print(f"  tear down:  PERSONALAI_CLUSTER_DIR={plane.state_dir} PERSONALAI_APISERVER_PORT={plane.apiserver_port} "
          f"PERSONALAI_ETCD_PORT={plane.etcd_port} .venv/bin/python -m devcluster down")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
