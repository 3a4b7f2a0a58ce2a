"""What one reflection is, and the error every reader raises when the data cannot be read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Reflection(BaseModel):
    """One answer the person wrote: the question asked, its category, the answer, and when (if known)."""

    model_config = ConfigDict(frozen=True)

    question: str
    category: str
    answer: str
    date: str | None = None


class ReflectionsError(ValueError):
    """The reflections cannot be read. The message names the format, line or item and field, never the text."""
