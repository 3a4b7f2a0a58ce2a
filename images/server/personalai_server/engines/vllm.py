"""vLLM through its OpenAI-compatible API, with LoRA adapters loaded at runtime.

vLLM (started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) loads an adapter with
POST /v1/load_lora_adapter {lora_name, lora_path} and serves it when a request's `model` is that
name; the base model is its served model name (engine.baseModel). The adapter folder must be
mounted at the same path in both pods.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx

from ..config import ServerConfig
from .base import AdapterError, EngineError, GenerationParams, GenerationStats, Message
from .detokenize import TextPieceJoiner
from .remote import RemoteEngine


class VLLMEngine(RemoteEngine):
    kind = "vllm"

    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self.client = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=httpx.Timeout(config.engine.request_timeout_seconds)
        )

    async def load_remote_adapter(self, version: str, path: str) -> None:
        response = await self.client.post("/v1/load_lora_adapter", json={"lora_name": version, "lora_path": path})
        # vLLM answers 400 when the name is already loaded (a restart of this server, not of vLLM).
        if response.status_code == 400 and "already" in response.text:
            return
        if response.status_code != 200:
            raise AdapterError(f"vllm could not load adapter {version}: HTTP {response.status_code}")

    async def unload_remote_adapter(self, version: str) -> None:
        await self.client.post("/v1/unload_lora_adapter", json={"lora_name": version})

    async def stream(self, messages: list[Message], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        if not self.ready:
            raise EngineError("engine is not reachable yet")
        adapter = self.pick_adapter(params)
        if adapter is not None:
            await self.ensure_adapter(adapter)
        stats.adapter_version = adapter
        body = {
            "model": adapter or self.config.engine.base_model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        # vLLM holds a partial character back itself; another OpenAI-style server may cut a surrogate pair.
        pieces = TextPieceJoiner()
        try:
            async with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise EngineError(f"vllm answered HTTP {response.status_code}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: "):])
                    if chunk.get("usage"):
                        stats.prompt_tokens = chunk["usage"].get("prompt_tokens", stats.prompt_tokens)
                    for choice in chunk.get("choices", []):
                        if choice.get("finish_reason"):
                            stats.finish_reason = choice["finish_reason"]
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            stats.mark_token()
                            if text := pieces.push(delta):
                                yield text
            if tail := pieces.flush():
                yield tail
        except EngineError:
            raise
        except (httpx.HTTPError, json.JSONDecodeError) as error:
            raise EngineError(f"vllm request failed: {type(error).__name__}") from None
        finally:
            stats.finished_at = stats.finished_at or time.perf_counter()

    async def close(self) -> None:
        await super().close()
        await self.client.aclose()
