"""What every handler shares: the settings and typed parsing of a spec."""

from __future__ import annotations

from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from personalai_operator.settings import OperatorSettings

SETTINGS = OperatorSettings.from_env()
Model = TypeVar("Model", bound=BaseModel)


class InvalidSpec(kopf.PermanentError):
    """The spec cannot be parsed; retrying will not help until it changes."""


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """Field paths and what is wrong with them; never the values (they may be personal)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        path = ".".join([prefix, *(str(part) for part in item["loc"])])
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)[:1000]


def parse_spec(model: type[Model], spec: Any) -> Model:
    try:
        return model.model_validate(dict(spec or {}))
    except ValidationError as error:
        raise InvalidSpec(describe_validation_error(error)) from None
