"""What the TGI and vLLM engines share: reaching a remote server, its token, adapter bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx

from personalai_contracts.paths import resolve

from ..config import ServerConfig
from .base import EngineError
from .held import AdapterHoldingEngine
from .tokenizers import load_chat_tokenizer

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 1.0


class RemoteEngine(AdapterHoldingEngine):
    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self.url = config.engine.url.rstrip("/")
        self.headers = remote_headers(config.engine.token_file)

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

    async def load_verified_adapter(self, version: str, path: Path) -> None:
        while (unused := self.least_recently_used()) is not None:
            await self.unload_remote_adapter(unused)
            del self._adapters[unused]
        await self.load_remote_adapter(version, str(path))

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
