"""The adapter digest: the server recomputes the manifest's sha256 as the trainer defined it and
refuses a folder whose manifest is not the one the operator recorded, before anything is loaded."""

from __future__ import annotations

import asyncio

import pytest

from personalai_contracts.artifacts import manifest_digest, write_manifest
from personalai_server.adapters import AdapterDigestError, check_digest, verify_adapter
from personalai_server.config import ConfigError, parse_config
from personalai_server.engines.base import AdapterError
from personalai_server.engines.local import LocalEngine
from personalai_server.metrics import ServerMetrics
from personalai_server.reloader import apply_config
from personalai_server.service import ChatService
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit

MINIMAL = {"persona": {"displayName": "Luke", "personalAI": "luke"}, "engine": {"baseModel": "/models/tiny"}}
SECRET = b"the person's own words, which no error may quote"


def write_adapter(folder, version: str, weights: bytes) -> str:
    """An adapter folder as the trainer leaves it; returns the digest the trainer reports."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return write_manifest(folder, adapter_version=version, base_model="/m", data_version="sha256:x",
                          config={}, metrics={})


def refusals(service: ChatService, version: str) -> float | None:
    return service.metrics.registry.get_sample_value(
        "personalai_server_adapter_refusals_total", {"version": version, "reason": "digest_mismatch"})


def test_the_servers_digest_is_the_one_the_trainer_reports(tmp_path):
    reported = write_adapter(tmp_path / "v1", "v1", b"weights " + SECRET)
    assert manifest_digest(tmp_path / "v1") == reported
    assert verify_adapter(tmp_path / "v1", "v1", reported)["adapterVersion"] == "v1"


def test_a_rewritten_adapter_passes_its_own_manifest_but_not_the_recorded_digest(tmp_path):
    recorded = write_adapter(tmp_path / "v1", "v1", b"weights " + SECRET)
    # Weights changed and the manifest written again to match: only the recorded digest tells.
    write_adapter(tmp_path / "v1", "v1", b"other weights " + SECRET)
    assert verify_adapter(tmp_path / "v1", "v1")["adapterVersion"] == "v1"
    with pytest.raises(AdapterDigestError) as raised:
        verify_adapter(tmp_path / "v1", "v1", recorded)
    message = str(raised.value)
    assert message.startswith("adapter digest mismatch: adapter v1 ") and recorded in message
    assert SECRET.decode() not in message and "weights" not in message


def test_another_persons_adapter_under_this_version_is_refused(tmp_path):
    recorded = write_adapter(tmp_path / "luke" / "v1", "v1", b"luke's weights")
    write_adapter(tmp_path / "served" / "v1", "v1", b"someone else's weights")
    with pytest.raises(AdapterDigestError):
        check_digest(tmp_path / "served" / "v1", "v1", recorded)


def test_a_folder_without_a_manifest_is_refused_by_name(tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(AdapterError, match=r"^adapter v1: manifest.json cannot be read$"):
        check_digest(tmp_path / "v1", "v1", "0" * 64)


@pytest.mark.parametrize("adapter, field", [
    ({"version": "v1", "manifestSha256": "XYZ"}, "adapter.manifestSha256"),
    ({"manifestSha256": "a" * 64}, "adapter.manifestSha256"),
])
def test_the_config_digest_is_a_sha256_of_a_named_version(adapter, field):
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, "adapter": adapter})
    assert field in str(raised.value)


def service_for(tmp_path, version: str | None, digest: str | None) -> ChatService:
    adapter = {"dir": str(tmp_path / "artifacts"), "version": version, "manifestSha256": digest}
    config = parse_config({**MINIMAL, "adapter": {key: value for key, value in adapter.items() if value}})
    # The real local engine, never started: every refusal here comes before the model is needed.
    return ChatService(config, SessionStore(tmp_path / "data"), LocalEngine(config), ServerMetrics())


def test_a_refused_adapter_at_start_leaves_the_server_unready_with_the_reason(tmp_path):
    write_adapter(tmp_path / "artifacts" / "v1", "v1", b"swapped in")
    service = service_for(tmp_path, "v1", "0" * 64)
    asyncio.run(service.start_engine())
    assert not service.engine.ready and service.engine.loaded_adapters() == []
    assert service.not_ready_reason.startswith("adapter digest mismatch: adapter v1 ")
    assert refusals(service, "v1") == 1


def test_on_reload_a_refused_version_is_not_switched_to_nor_loadable_by_request(tmp_path):
    recorded = write_adapter(tmp_path / "artifacts" / "v2", "v2", b"v2 as trained")
    write_adapter(tmp_path / "artifacts" / "v2", "v2", b"v2 rewritten")
    service = service_for(tmp_path, None, None)
    new = service_for(tmp_path, "v2", recorded).config

    async def run():
        with pytest.raises(AdapterDigestError):
            await apply_config(service, new)
        # The version is bound to its recorded digest: naming it in a request cannot load it either.
        with pytest.raises(AdapterDigestError):
            await service.engine.ensure_adapter("v2")

    asyncio.run(run())
    assert service.config.adapter.version is None and service.engine.active_adapter is None
    assert "v2" not in service.memories.indexes and refusals(service, "v2") == 1
