"""Issue 15, server side: sticky A/B assignment of sessions to the current or candidate adapter, reply
metadata naming both, ratings stored with the session (and erased with it), per-version stats and
metrics. A small echo engine stands in for the model; storage is the real SQLite store."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from personalai_server.auth import Principal
from personalai_server.config import ConfigError, parse_config
from personalai_server.engines import Engine
from personalai_server.engines.tokenizers import EstimatingTokenizer
from personalai_server.metrics import ServerMetrics
from personalai_server.service import ChatService, percentile, pick_variant
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit

ALICE = Principal("owner-alice")


class EchoEngine(Engine):
    """Replies "ok" with whatever adapter the turn asked for, as a real engine reports it."""

    kind = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = EstimatingTokenizer(2048)
        self.active_adapter, self.ready = "v1", True

    async def start(self, adapter_version):
        self.active_adapter = adapter_version

    async def stream(self, messages, params, stats):
        stats.adapter_version = self.pick_adapter(params)
        stats.mark_token()
        yield "ok"
        stats.finish_reason = "stop"

    async def ensure_adapter(self, version):
        pass

    def loaded_adapters(self):
        return [self.active_adapter]


def config_with(tmp_path, **sections):
    return parse_config({"persona": {"displayName": "Luke", "personalAI": "luke"},
                         "engine": {"baseModel": "/models/tiny"},
                         "storage": {"dataDir": str(tmp_path / "data")},
                         "adapter": {"version": "v1", "dir": str(tmp_path / "artifacts")}, **sections})


def make_service(tmp_path, share: int | None) -> ChatService:
    sections = {} if share is None else {"candidate": {"version": "v2", "share": share}}
    config = config_with(tmp_path, **sections)
    return ChatService(config, SessionStore(config.storage.data_dir), EchoEngine(), ServerMetrics())


def turn(service: ChatService, session_id: str | None = None):
    async def run():
        async with service.turn(ALICE, "hello", session_id) as current:
            await service.complete(current)
        return current

    return asyncio.run(run())


def test_assignment_is_a_pure_function_of_the_session_id_and_share():
    ids = [f"{n:032x}" for n in range(400)]
    assert all(pick_variant(i, 0) == "current" for i in ids)
    assert all(pick_variant(i, 100) == "candidate" for i in ids)
    half = sum(pick_variant(i, 50) == "candidate" for i in ids)
    assert 150 < half < 250
    assert [pick_variant(i, 30) for i in ids] == [pick_variant(i, 30) for i in ids]


def test_the_candidate_config_names_its_fields(tmp_path):
    with pytest.raises(ConfigError, match="candidate.share"):
        config_with(tmp_path, candidate={"version": "v2", "share": 101})
    with pytest.raises(ConfigError, match="candidate.version"):
        config_with(tmp_path, candidate={"version": "v1", "share": 10})


def test_sessions_keep_their_variant_across_turns_and_share_changes(tmp_path):
    service = make_service(tmp_path, share=50)
    first = [turn(service) for _ in range(30)]
    variants = {t.session.id: t.variant for t in first}
    assert set(variants.values()) == {"current", "candidate"}
    for t in first:
        assert t.metadata["variant"] == t.variant
        assert t.metadata["adapterVersion"] == ("v2" if t.variant == "candidate" else "v1")
    service.config = service.config.model_copy(update={"candidate": service.config.candidate.model_copy(update={"share": 0})})
    for session_id, variant in variants.items():
        assert turn(service, session_id).variant == variant
    metrics = generate_latest(service.metrics.registry).decode()
    candidates = sum(v == "candidate" for v in variants.values())
    assert f'personalai_server_sessions_assigned_total{{variant="candidate",version="v2"}} {float(candidates)}' in metrics
    assert f'personalai_server_replies_total{{outcome="ok",version="v2"}} {float(2 * candidates)}' in metrics


def test_a_session_whose_version_is_no_longer_served_falls_back_and_says_so(tmp_path):
    service = make_service(tmp_path, share=100)
    session_id = turn(service).session.id
    service.config = service.config.model_copy(update={"candidate": None})
    again = turn(service, session_id)
    assert again.metadata["adapterVersion"] == "v1"
    assert again.metadata["variant"] == "current" and again.metadata["variantFallback"] is True


def test_ratings_are_replaced_removed_counted_and_erased_with_the_session(tmp_path):
    service = make_service(tmp_path, share=None)
    done = turn(service)
    store, session_id = service.store, done.session.id
    user_message = store.get_session(ALICE.owner, session_id, with_messages=True).messages[0]
    assert store.rate(ALICE.owner, session_id, user_message.id, "up", None) is None  # only replies
    assert store.rate("owner-bob", session_id, done.message_id, "up", None) is None  # only one's own
    assert store.rate(ALICE.owner, session_id, done.message_id, "up", "replaced-note-canary").version == "v1"
    assert store.rate(ALICE.owner, session_id, done.message_id, "down", None).rating == "down"
    assert not data_files_hold(store, b"replaced-note-canary")
    assert store.version_counts()["v1"] == {"sessions": 1, "ratingsUp": 0, "ratingsDown": 1}
    assert store.get_session(ALICE.owner, session_id, with_messages=True).messages[1].rating == "down"
    assert store.unrate(ALICE.owner, session_id, done.message_id)
    assert store.version_counts()["v1"]["ratingsDown"] == 0
    store.rate(ALICE.owner, session_id, done.message_id, "up", "a canary-note-xyz")
    assert store.delete_session(ALICE.owner, session_id)
    assert store.version_counts() == {}
    assert not data_files_hold(store, b"canary-note-xyz")


def data_files_hold(store: SessionStore, needle: bytes) -> bool:
    return any(needle in path.read_bytes() for path in store.path.parent.iterdir() if path.is_file())


def test_stats_report_each_version_without_text_or_ids(tmp_path):
    service = make_service(tmp_path, share=100)
    done = turn(service)
    service.store.rate(ALICE.owner, done.session.id, done.message_id, "up", "my private note")
    stats = service.stats()
    assert stats["candidate"] == {"version": "v2", "share": 100}
    figures = stats["versions"]["v2"]
    assert (figures["sessions"], figures["replies"], figures["errors"], figures["ratingsUp"]) == (1, 1, 0, 1)
    assert figures["latencyMsP50"] is not None and figures["latencyMsP95"] >= figures["latencyMsP50"]
    assert done.session.id not in repr(stats) and "private" not in repr(stats)


def test_percentiles_are_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([float(n) for n in range(1, 101)], 0.5) == 50.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
