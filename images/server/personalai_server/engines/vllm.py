"""vLLM through its OpenAI-compatible API, with LoRA adapters loaded at runtime.

vLLM (started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) loads an adapter with
POST /v1/load_lora_adapter {lora_name, lora_path} and serves it when a request's `model` is that
name; the base model is its served model name (engine.baseModel). The adapter folder must be
mounted at the same path in both pods.

One vLLM may serve several people's chat servers, and adapter versions repeat across people (they
derive from the training config), so the name an adapter has in vLLM is never its bare version:
it carries the PersonalAI and the adapter's digest (`remote_adapter_name`). A name vLLM already
holds is then this very adapter, and never another person's that happens to share the version.

At erasure (`forget_remote_adapters`, POST /admin/forget) every name this PersonalAI can have in
vLLM is unloaded: those this process loaded and those of every version folder in adapter.dir (an
earlier process of this server may have loaded them), and nothing is loaded after that.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx

from personalai_contracts.artifacts import manifest_digest
from personalai_contracts.paths import resolve

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
        self._remote_names: dict[str, str] = {}  # adapter version -> its name in vLLM
        self._forgotten = False  # erasure has unloaded everything: load nothing again

    async def load_remote_adapter(self, version: str, path: str) -> None:
        if self._forgotten:
            raise AdapterError("this PersonalAI is being erased: its adapters are no longer served")
        name = remote_adapter_name(self.config.persona.personal_ai, version, manifest_digest(path))
        response = await self.client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        # vLLM answers 400 when the name is already loaded (a restart of this server, not of vLLM): the
        # name holds the digest, so what is loaded under it is this adapter.
        if response.status_code != 200 and not (response.status_code == 400 and "already" in response.text):
            raise AdapterError(f"vllm could not load adapter {version}: HTTP {response.status_code}")
        self._remote_names[version] = name

    async def unload_remote_adapter(self, version: str) -> None:
        name = self._remote_names.pop(version, None)
        if name is not None:
            await self.client.post("/v1/unload_lora_adapter", json={"lora_name": name})

    async def forget_remote_adapters(self) -> int:
        async with self._adapter_lock:
            self._forgotten = True
            names = {*self._remote_names.values(), *self._stored_adapter_names()}
            unloaded = 0
            for name in sorted(names):
                try:
                    response = await self.client.post("/v1/unload_lora_adapter", json={"lora_name": name})
                except httpx.HTTPError as error:
                    raise EngineError(f"vllm could not be reached to unload adapters: {type(error).__name__}") from None
                # vLLM answers 404 (400 before 0.8) for a name it does not hold: nothing to unload.
                if response.status_code == 200:
                    unloaded += 1
                elif response.status_code not in (400, 404):
                    raise EngineError(f"vllm could not unload an adapter: HTTP {response.status_code}")
            # The active version stays named: a request for it now fails to load rather than
            # falling back to the base model as though it were the person.
            self._remote_names.clear()
            self._adapters.clear()
        return unloaded

    def _stored_adapter_names(self) -> list[str]:
        """The vLLM name of each adapter version folder in adapter.dir (one without a manifest has none)."""
        names = []
        for folder in sorted(resolve(self.config.adapter.dir).glob("*/")):
            try:
                names.append(remote_adapter_name(self.config.persona.personal_ai, folder.name, manifest_digest(folder)))
            except OSError:
                continue
        return names

    async def stream(self, messages: list[Message], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        if not self.ready:
            raise EngineError("engine is not reachable yet")
        adapter = self.pick_adapter(params)
        if adapter is not None:
            await self.ensure_adapter(adapter)
        stats.adapter_version = adapter
        body = {
            "model": self._remote_names[adapter] if adapter else self.config.engine.base_model,
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


def remote_adapter_name(personal_ai: str, version: str, digest: str) -> str:
    """The adapter's name in a vLLM shared by several people: theirs alone, and this content alone."""
    return f"{personal_ai}--{version}--{digest[:16]}"
