"""What the engines that load adapter versions from adapter.dir share: each version is verified
(its manifest against the recorded digest, every file against the manifest) before it is loaded,
and the loaded ones are kept least recently used first, so the first of them makes room."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import OrderedDict
from pathlib import Path

from ..adapters import verify_adapter
from ..config import ServerConfig
from .base import Engine

log = logging.getLogger(__name__)


class AdapterHoldingEngine(Engine):
    def __init__(self, config: ServerConfig):
        super().__init__()
        self.config = config
        # Loaded versions and their folders, least recently used first.
        self._adapters: OrderedDict[str, str] = OrderedDict()
        self._adapter_lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self.config.engine.base_model

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
            # Hashing the weights happens before the model is touched: generations go on meanwhile.
            await asyncio.to_thread(verify_adapter, path, version, self.recorded_digests.get(version))
            await self.load_verified_adapter(version, path)
            self._adapters[version] = str(path)
        log.info("adapter %s loaded (%d held)", version, len(self._adapters))

    def least_recently_used(self) -> str | None:
        """The adapter to unload to make room for another, if one may be (never the active one)."""
        if len(self._adapters) < self.config.engine.max_loaded_adapters:
            return None
        return next((name for name in self._adapters if name != self.active_adapter), None)

    @abc.abstractmethod
    async def load_verified_adapter(self, version: str, path: Path) -> None:
        """Load the verified adapter folder `path` as `version`, first unloading least_recently_used()."""
