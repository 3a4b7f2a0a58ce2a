"""Re-read the config file every reloadIntervalSeconds and apply what can change while running.

A new `adapter.version` is verified (its manifest against the digest the operator recorded, then
every file against the manifest) and loaded beside the current one, with its memory index, then
made active: requests already generating finish on the old adapter, new ones use the new one and
its memories, with no restart. A version that fails verification, or whose memory index cannot be
read, is not switched to (logged, e.g. "adapter digest mismatch", and the old one serves on). The
conversation settings and limits apply to the next request. While the engine has failed to start
(an adapter that cannot be loaded), a changed config is still applied and the start retried, so a
rollback recovers the pod without deleting it. Changes to the engine, storage, auth, listen or
audit sections need a restart (logged, and the old values stay in force). Expired sessions are
purged on the same timer (never when conversation.retentionDays is 0).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .config import ConfigError, ServerConfig, load_config
from .engines import EngineError
from .service import ChatService

log = logging.getLogger(__name__)

RESTART_ONLY = ("engine", "storage", "auth", "listen", "audit")
PURGE_EVERY_SECONDS = 300.0


def keep_restart_only(old: ServerConfig, new: ServerConfig) -> ServerConfig:
    """`new` with the sections that need a restart as they are in `old` (a change to one is logged)."""
    for section in RESTART_ONLY:
        if getattr(old, section) != getattr(new, section):
            log.warning("config section %s changed; it takes effect after a restart", section)
            new = new.model_copy(update={section: getattr(old, section)})
    return new


async def apply_config(service: ChatService, new: ServerConfig) -> bool:
    """Apply `new` to the running service; returns whether the active adapter changed."""
    new = keep_restart_only(service.config, new)
    changed = new.adapter.version != service.engine.active_adapter
    if changed:
        # The digest, then the index: a refused or broken one leaves the old adapter (and its memories) serving.
        await service.expect_adapter(new.adapter)
        await service.load_memory(new.adapter.version)
        await service.engine.activate_adapter(new.adapter.version)
        service.memories.keep_only({*service.engine.loaded_adapters(), new.adapter.version})
        log.info("adapter switched to %s", new.adapter.version or "none (base model)")
        service.audit_adapter_load(new.adapter, "reload")
    service.use_config(new)
    service.metrics.observe_adapters(service.engine.loaded_adapters(), service.engine.active_adapter)
    return changed


async def retry_start(service: ChatService, new: ServerConfig) -> bool:
    """The engine failed to start: a changed config (e.g. a rollback to the last good adapter) is
    applied and the start tried again, in this process; returns whether it was retried."""
    new = keep_restart_only(service.config, new)
    if new == service.config:
        return False
    service.use_config(new)
    log.info("config changed while not serving; starting again with adapter %s", new.adapter.version or "none")
    await service.start_engine()
    return True


async def watch_config(service: ChatService, config_path: str | None) -> None:
    last_purge = 0.0
    while True:
        await asyncio.sleep(service.config.reload_interval_seconds)
        if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
            purge_expired(service)
            last_purge = time.monotonic()
        if config_path is None:
            continue
        try:
            new = load_config(config_path)
            if service.engine.ready:
                await apply_config(service, new)
            elif service.not_ready_reason is not None:
                await retry_start(service, new)
            # else: the model is still loading; the config is read again on the next tick.
        except ConfigError as error:
            log.error("config not reloaded: %s", error)
        except EngineError as error:
            # The old adapter keeps serving; the next tick tries again.
            log.error("adapter not switched: %s", error)
            service.audit_adapter_load(new.adapter, "reload", error)


def purge_expired(service: ChatService) -> int:
    """Delete the sessions unused for conversation.retentionDays; 0 keeps them until deleted."""
    retention_days = service.config.conversation.retention_days
    if retention_days == 0:
        return 0
    removed = service.store.purge_expired(retention_days)
    if removed:
        log.info("%d expired sessions purged", removed)
        service.audit.record("sessions.purge", count=removed, retentionDays=retention_days)
    return removed
