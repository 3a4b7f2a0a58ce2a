"""Deterministic names, hashes and labels of everything the operator makes.

A TrainingRun is named from its PersonalAI and a hash of (data, base model, resolved training
config): applying the same manifest twice names the same run, so nothing trains twice; a change to
the data or the config names a new one. Children of a run share its name with a suffix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from personalai_operator.models import GROUP, TrainingConfig

LABEL_PERSONALAI = f"{GROUP}/personalai"
LABEL_TRAINING_RUN = f"{GROUP}/training-run"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "personalai-operator"
FINGERPRINT_LENGTH = 8


def data_version(raw: bytes) -> str:
    """The reflections' identity: sha256 of the exact bytes stored."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def training_fingerprint(data_version_: str, base_model: str, training: TrainingConfig) -> str:
    """Short hash of everything that changes what a run would produce."""
    canonical = json.dumps(
        {"data": data_version_, "baseModel": base_model, "training": training.model_dump(by_alias=True, mode="json")},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def training_run_name(personalai: str, fingerprint: str) -> str:
    return f"{personalai}-{fingerprint}"


def adapter_version(ordinal: int, fingerprint: str) -> str:
    """v<n>-<fingerprint>: ordered for people, unique by content."""
    return f"v{ordinal}-{fingerprint}"


def config_map_name(run: str) -> str:
    return f"{run}-config"


def service_account_name(run: str) -> str:
    return f"{run}-trainer"


def artifacts_claim_name(personalai: str) -> str:
    return f"{personalai}-artifacts"


def run_labels(personalai: str, run: str, component: str = "trainer") -> dict[str, str]:
    return {LABEL_PERSONALAI: personalai, LABEL_TRAINING_RUN: run, LABEL_COMPONENT: component,
            LABEL_MANAGED_BY: MANAGER}


def personalai_labels(personalai: str) -> dict[str, str]:
    return {LABEL_PERSONALAI: personalai, LABEL_MANAGED_BY: MANAGER}


def owner_reference(owner: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    """An ownerReference to `owner` (a manifest with apiVersion, kind, metadata.name/uid)."""
    return {
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": controller, "blockOwnerDeletion": True,
    }
