"""What the operator's watch cache costs per PersonalAI: memory held and time per read, for the store as
the operator keeps it (each object's trimmed JSON, decoded on read) against the store it replaced
(the trimmed objects as dicts, deep-copied on read), in one run on the same objects.

    .venv/bin/python benchmarks/watch_cache_memory.py                  # 1,000 PersonalAIs
    .venv/bin/python benchmarks/watch_cache_memory.py --personalais 100

The objects are the operator's own builders' output for the example PersonalAI (its TrainingRun,
the run's ConfigMap, ServiceAccount, Role, RoleBinding, metrics Service and Job, the artifacts claim,
the token Secret), with the fields the API server adds (uid, resourceVersion, creationTimestamp,
managedFields, a status), one set per PersonalAI with names of its own. Memory is what tracemalloc
counts as held by each store once filled from the objects' JSON, as a watch fills it; a read is `get` of every object once.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import yaml

from personalai_operator import manifests, serving
from personalai_operator.models import PersonalAISpec, TrainingRunSpec
from personalai_operator.settings import OperatorSettings
from personalai_operator.watch_cache import SOURCES, Informer, trim

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "luke.yaml"


def as_served(obj: dict[str, Any], index: int) -> dict[str, Any]:
    """The object as a LIST or WATCH returns it: server-set metadata, managedFields, a status."""
    obj = copy.deepcopy(obj)
    metadata = obj["metadata"]
    metadata.update(uid=str(uuid.uuid4()), resourceVersion=str(100_000 + index), generation=1,
                    creationTimestamp="2026-12-03T18:00:00Z")
    metadata["managedFields"] = [{"manager": "personalai-operator", "operation": "Update", "apiVersion": "v1",
                                  "time": "2026-12-03T18:00:00Z", "fieldsType": "FieldsV1",
                                  "fieldsV1": {"f:metadata": {"f:labels": {f"f:{key}": {} for key in
                                                                           metadata.get("labels") or {}}}}}]
    if obj["kind"] in ("Job", "TrainingRun"):
        obj["status"] = {"phase": "Running", "startTime": "2026-12-03T18:00:05Z", "active": 1,
                         "conditions": [{"type": "Scheduled", "status": "True", "reason": "Scheduled",
                                         "message": "placed on node gpu-7", "lastTransitionTime": "2026-12-03T18:00:05Z"}]}
    return obj


def objects_for(personalai: int, settings: OperatorSettings) -> list[dict[str, Any]]:
    """One PersonalAI's objects as the cache holds them."""
    example = next(doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc and doc.get("kind") == "PersonalAI")
    pai = copy.deepcopy(example)
    pai["metadata"].update(name=f"p{personalai:05d}", namespace=f"ns-{personalai % 10}", uid=str(uuid.uuid4()))
    spec = PersonalAISpec.model_validate(pai["spec"])
    run = manifests.build_training_run(pai, spec, f"{pai['metadata']['name']}-3a4beab1", "sha256:" + "1" * 64,
                                       "v1-3a4beab1")
    run["metadata"]["uid"] = str(uuid.uuid4())
    children = manifests.build_run_children(run, TrainingRunSpec.model_validate(run["spec"]), "Luke", settings)
    made = [pai, run, *children, manifests.build_artifacts_claim(pai, settings),
            serving.build_auth_secret(pai, serving.new_token())]
    return [as_served(obj, personalai * 100 + index) for index, obj in enumerate(made)]


class DictStore:
    """The store before: trimmed objects as dicts, a deep copy per read."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = trim(obj["kind"], obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None


class InformerStore:
    """The store now: one Informer per kind, as the operator has them."""

    def __init__(self) -> None:
        self.informers: dict[str, Informer] = {}

    def put(self, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        if kind not in self.informers:
            source = SOURCES.get(kind) or SOURCES["ConfigMap"]
            self.informers[kind] = Informer(source, None, lambda namespace: True, client_factory=lambda: None)
        self.informers[kind].apply_event("ADDED", obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.informers[kind].get(namespace, name)


def measure(store_type: type, objects: list[dict[str, Any]]) -> tuple[float, float]:
    """(MiB held once filled, microseconds per read). Each store is fed what a watch gives it: the
    object freshly decoded from its JSON."""
    lines = [json.dumps(obj).encode() for obj in objects]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = store_type()
    for line in lines:
        store.put(json.loads(line))
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - before) / 2**20
    tracemalloc.stop()
    keys = [(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) for obj in objects]
    start = time.perf_counter()
    for key in keys:
        assert store.get(*key) is not None
    per_read = (time.perf_counter() - start) / len(keys) * 1e6
    return held, per_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personalais", type=int, default=1000)
    args = parser.parse_args()
    settings = OperatorSettings.from_env({})
    objects = [obj for index in range(args.personalais) for obj in objects_for(index, settings)]
    print(f"== {args.personalais} PersonalAIs, {len(objects)} objects "
          f"({len(objects) // args.personalais} each: {', '.join(obj['kind'] for obj in objects_for(0, settings))})")
    ours_mib, ours_us = measure(InformerStore, objects)
    before_mib, before_us = measure(DictStore, objects)
    print(f"   held:      ours {ours_mib:7.1f} MiB   dicts {before_mib:7.1f} MiB   "
          f"({before_mib / ours_mib:.1f}x less; {ours_mib * 1024 / args.personalais:.0f} KiB per PersonalAI)")
    print(f"   per read:  ours {ours_us:7.1f} us    dicts {before_us:7.1f} us    ({before_us / ours_us:.1f}x faster)")


if __name__ == "__main__":
    main()
