"""Whose reflections a PersonalAI may read: only those whose owner allowed it on the Secret itself (pure).

The operator reads reflections with its own rights, so a reference alone proves nothing: anyone who
may create a PersonalAI could name another person's Secret. The Secret (or ConfigMap) must carry
the annotation below naming the PersonalAI; only someone who may update that Secret can set it.

    kubectl annotate secret luke-reflections personalai.dev/reflections-for=luke
"""

from __future__ import annotations

from typing import Any

REFLECTIONS_FOR = "personalai.dev/reflections-for"  # comma-separated PersonalAI names, in the same namespace


def allowed_personalais(metadata: dict[str, Any] | None) -> set[str]:
    value = ((metadata or {}).get("annotations") or {}).get(REFLECTIONS_FOR) or ""
    return {name.strip() for name in value.split(",") if name.strip()}


def access_refusal(kind: str, name: str, metadata: dict[str, Any] | None, personalai: str) -> str | None:
    """Why `personalai` may not read the reflections in `kind`/`name`, or None when its owner allowed it."""
    if personalai in allowed_personalais(metadata):
        return None
    return (f"{kind} {name} does not allow PersonalAI {personalai} to use it: its owner allows it with "
            f"`kubectl annotate {kind.lower()} {name} {REFLECTIONS_FOR}={personalai}`.")
