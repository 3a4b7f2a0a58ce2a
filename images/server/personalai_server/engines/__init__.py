"""Engines behind one interface: `local` (in-process), `tgi`, `vllm`."""

from __future__ import annotations

from ..config import ServerConfig
from .base import AdapterError, Engine, EngineError, GenerationParams, GenerationStats, UnknownAdapterError


def build_engine(config: ServerConfig) -> Engine:
    kind = config.engine.kind
    if kind == "local":
        from .local import LocalEngine

        return LocalEngine(config)
    if kind == "tgi":
        from .tgi import TGIEngine

        return TGIEngine(config)
    from .vllm import VLLMEngine

    return VLLMEngine(config)


__all__ = [
    "AdapterError",
    "Engine",
    "EngineError",
    "GenerationParams",
    "GenerationStats",
    "UnknownAdapterError",
    "build_engine",
]
