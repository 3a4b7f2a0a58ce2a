"""Erasure of a PersonalAI (pure): what to delete, what is still there, and how to say it is gone.

Everything the operator makes for a PersonalAI carries its labels (naming.personalai_labels), so the
inventory is a label query per kind, the same set the ownerReferences cover, but for one: the chat
server's token Secret, a random credential and no personal data, goes with the garbage collector
once the PersonalAI is gone (the operator may neither list nor delete Secrets: it could read or
remove the person's reflections). Pods are not deleted here (their Job or Deployment takes them)
but erasure waits for them, and for the volumes, whose removal is what erases the per-node files.
Messages and records name kinds, counts and object names only, never content.

Adapters a remote vLLM loaded for the person live outside the cluster's objects: before anything
is deleted, the person's chat server (still running) is asked, with the person's token, to have
vLLM unload them (POST /admin/forget); its count goes into the DataPurged message and the audit
record. A server that cannot be reached is asked again until erasure's time bound, and then erasure
goes on and says "remote unload not confirmed". TGI cannot unload adapters: that is recorded too.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from personalai_operator import audit
from personalai_operator.conditions import Condition, make_condition

DATA_PURGED = "DataPurged"
# Kinds listed by the PersonalAI's labels and deleted; owners first, so the garbage collector's
# cascade and ours overlap rather than race.
LISTED_KINDS = ("TrainingRun", "Job", "Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                "PersistentVolumeClaim")
AWAITED_KINDS = (*LISTED_KINDS, "Pod")  # pods leave with their Job or Deployment
MESSAGE_LIMIT = 1000

Inventory = dict[str, list[str]]  # kind -> sorted names


def inventory(found: Mapping[str, list[dict[str, Any]]]) -> Inventory:
    """Kind -> names of the objects found, kinds with none left out."""
    return {kind: sorted(obj["metadata"]["name"] for obj in objects) for kind, objects in found.items() if objects}


def to_delete(found: Mapping[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    """(kind, name) of each found object to delete: not pods, not those already being deleted."""
    return [(kind, obj["metadata"]["name"]) for kind, objects in found.items() if kind != "Pod"
            for obj in objects if not obj["metadata"].get("deletionTimestamp")]


def merge(seen: Inventory, found: Inventory) -> Inventory:
    """Everything seen over the erasure's passes (a later pass sees only what is left)."""
    kinds = [*seen, *(kind for kind in found if kind not in seen)]
    return {kind: sorted({*seen.get(kind, []), *found.get(kind, [])}) for kind in kinds}


def counts(removed: Inventory) -> dict[str, int]:
    return {kind: len(names) for kind, names in removed.items()}


def describe_counts(removed: Inventory) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counts(removed).items()) or "nothing"


def describe_remaining(remaining: Inventory) -> str:
    text = ", ".join(f"{kind} {name}" for kind, names in remaining.items() for name in names)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


FORGET_PATH = "/admin/forget"


@dataclass(frozen=True)
class RemoteUnload:
    """What became of the adapters a remote engine loaded for the person: `unloaded` of them, or not
    confirmed (`unloaded` None) for `reason`; `retry`: asking again may yet confirm it."""

    unloaded: int | None
    reason: str = ""
    retry: bool = False

    def describe(self) -> str:
        if self.unloaded is None:
            return f"remote unload not confirmed ({self.reason})"
        return f"{self.unloaded} adapter{'' if self.unloaded == 1 else 's'} unloaded from the remote engine"

    def record(self) -> dict[str, Any]:
        return {"unloaded": self.unloaded} if self.unloaded is not None else {"confirmed": False, "reason": self.reason}


def serving_engine(personalai: Mapping[str, Any], default: str) -> str:
    """The engine the PersonalAI is served with: its spec.serving.engine, else the operator's setting."""
    return ((personalai.get("spec") or {}).get("serving") or {}).get("engine") or default


def unload_without_asking(engine: str, server_running: bool) -> RemoteUnload | None:
    """For a remote `engine` (tgi, vllm), the outcome known without asking the chat server; None: ask
    it. Only vLLM unloads adapters at runtime."""
    if engine == "tgi":
        return RemoteUnload(None, "tgi has no API to unload adapters; restart it without them")
    if not server_running:
        return RemoteUnload(None, "no chat server was running to ask")
    return None


def secret_token(secret: Mapping[str, Any] | None, key: str) -> str | None:
    """The bearer token in the token Secret as the API returned it (base64 data), or None."""
    encoded = ((secret or {}).get("data") or {}).get(key)
    if not encoded:
        return None
    return base64.b64decode(encoded).decode("utf-8").strip() or None


def forget_request(address: str, token: str) -> urllib.request.Request:
    """POST /admin/forget to the chat server at host:port `address`, under the person's token."""
    return urllib.request.Request(f"http://{address}{FORGET_PATH}", method="POST", data=b"",
                                  headers={"Authorization": f"Bearer {token}"})


def forget_answer(status: int, body: bytes) -> RemoteUnload:
    """The chat server's answer to /admin/forget ({"engine", "unloaded"}), as an outcome."""
    if status != 200:
        return RemoteUnload(None, f"the chat server answered HTTP {status}", retry=True)
    try:
        unloaded = json.loads(body)["unloaded"]
    except (ValueError, KeyError, TypeError):
        unloaded = None
    if not isinstance(unloaded, int) or isinstance(unloaded, bool) or unloaded < 0:
        return RemoteUnload(None, "the chat server's answer had no count of adapters unloaded", retry=True)
    return RemoteUnload(unloaded)


def unload_pending_condition(unload: RemoteUnload) -> Condition:
    return make_condition(DATA_PURGED, False, "Erasing", "Waiting for the chat server to unload this "
                          f"PersonalAI's adapters from the remote engine: {unload.reason}; asking again.")


def purged_condition(removed: Inventory, unload: RemoteUnload | None = None) -> Condition:
    remote = f"; {unload.describe()}" if unload else ""
    return make_condition(DATA_PURGED, True, "Erased",
                          f"Erased {describe_counts(removed)}{remote}; nothing made for this PersonalAI remains.")


def pending_condition(remaining: Inventory, overdue: bool, timeout_seconds: float) -> Condition:
    """Erasure not finished: still going, or past its bound (it keeps retrying either way)."""
    if overdue:
        return make_condition(DATA_PURGED, False, "ErasureStalled",
                              f"Still present after {timeout_seconds:.0f} s: {describe_remaining(remaining)}.")
    return make_condition(DATA_PURGED, False, "Erasing", f"Waiting for: {describe_remaining(remaining)}.")


def erasure_record(personalai: Mapping[str, Any], removed: Inventory, duration_seconds: float,
                   now: str, unload: RemoteUnload | None = None) -> dict[str, Any]:
    return {"time": now, "event": "erasure", **audit.subject(personalai), "removed": counts(removed),
            "durationSeconds": round(duration_seconds, 3),
            **({"remoteAdapters": unload.record()} if unload else {})}
