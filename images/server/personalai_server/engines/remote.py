"""What the TGI and vLLM engines share: reaching a remote server, its token, adapter bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import httpx

from personalai_reflections.paths import resolve

from ..adapters import verify_adapter
from ..config import ServerConfig
from .base import Engine, EngineError
from .tokenizers import load_chat_tokenizer

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 1.0


class RemoteEngine(Engine):
    def __init__(self, config: ServerConfig):
        super().__init__()
        self.config = config
        self.url = config.engine.url.rstrip("/")
        self.headers = remote_headers(config.engine.token_file)
        self._adapters: OrderedDict[str, str] = OrderedDict()
        self._adapter_lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self.config.engine.base_model

    async def start(self, adapter_version: str | None) -> None:
        engine = self.config.engine
        self.tokenizer = await asyncio.to_thread(
            load_chat_tokenizer, engine.base_model, engine.model_cache, engine.context_length
        )
        await self.wait_healthy()
        await self.activate_adapter(adapter_version)
        self.ready = True

    async def wait_healthy(self) -> None:
        """Poll the remote `/health` (TGI and vLLM both serve it) until it answers 200."""
        async with httpx.AsyncClient(headers=self.headers, timeout=5.0) as client:
            while True:
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(HEALTH_POLL_SECONDS)

    def loaded_adapters(self) -> list[str]:
        return list(self._adapters)

    async def ensure_adapter(self, version: str) -> None:
        if version in self._adapters:
            self._adapters.move_to_end(version)
            return
        async with self._adapter_lock:
            if version in self._adapters:
                return
            path = self.config.adapter.path_for(version)
            await asyncio.to_thread(verify_adapter, path, version)
            while len(self._adapters) >= self.config.engine.max_loaded_adapters:
                evictable = [name for name in self._adapters if name != self.active_adapter]
                if not evictable:
                    break
                await self.unload_remote_adapter(evictable[0])
                del self._adapters[evictable[0]]
            await self.load_remote_adapter(version, str(path))
            self._adapters[version] = str(path)

    async def load_remote_adapter(self, version: str, path: str) -> None:
        """Tell the remote engine about the adapter (a no-op where it loads adapters at launch)."""

    async def unload_remote_adapter(self, version: str) -> None:
        """Let the remote engine free the adapter (a no-op where it cannot)."""


def remote_headers(token_file: str | None) -> dict[str, str]:
    if not token_file:
        return {}
    try:
        token = resolve(token_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise EngineError(f"engine.tokenFile cannot be read: {error.strerror}") from None
    return {"Authorization": f"Bearer {token}"}
