"""Small readers shared by the operator's cluster tests (kubectl in, plain dicts out)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
NODE_PRODUCT = "NVIDIA-GeForce-RTX-5090-OPTEST"  # this suite's own simulated nodes only (see conftest)
NODES = ("opt-rtx5090-0", "opt-rtx5090-1")
NAMESPACE_PATTERN = "opt-*"  # the test operator watches only these namespaces
RESYNC_SECONDS = 2


def get_json(cluster, *args: str):
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def items(cluster, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
    args = [kind, "-n", namespace] + (["-l", selector] if selector else [])
    return (get_json(cluster, *args) or {}).get("items", [])


def condition(obj: dict | None, type_: str) -> dict | None:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == type_:
            return entry
    return None


def personalai_manifest(name: str, secret: str, key: str, **spec) -> str:
    body = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI", "metadata": {"name": name},
            "spec": {"displayName": name.title(), "reflections": {"secretRef": {"name": secret, "key": key}},
                     "training": {"epochs": 1}, **spec}}
    return json.dumps(body)


def secret_manifest(name: str, key: str, text: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: text}})


def reflections_jsonl(count: int, categories: int = 4, words: int = 40) -> str:
    lines = []
    for i in range(count):
        answer = " ".join(f"word{j}" for j in range(words))
        lines.append(json.dumps({"question": f"Question {i}?", "category": f"topic{i % categories}", "answer": answer}))
    return "\n".join(lines) + "\n"
