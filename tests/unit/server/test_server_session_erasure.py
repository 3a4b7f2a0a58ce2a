"""Issue 14: deleted chat text cannot be read back from the sessions database's files, and retention
(conversation.retentionDays, 0: never purged) runs on a clock the test moves."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from personalai_server.audit import AuditLog
from personalai_server.config import Audit, ConfigError, parse_config
from personalai_server.metrics import ServerMetrics
from personalai_server.reloader import purge_expired
from personalai_server.service import ChatService
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def data_files_hold(directory: Path, needle: bytes) -> list[str]:
    """The files of the data dir (the db, -wal, -shm, -journal: whatever SQLite left) whose bytes hold `needle`."""
    return sorted(path.name for path in directory.iterdir() if path.is_file() and needle in path.read_bytes())


def plant(store: SessionStore, owner: str) -> tuple[str, bytes]:
    """A session whose title, question and (long, overflow-page) answer carry a unique canary."""
    canary = f"canary-{uuid.uuid4().hex}"
    session = store.create_session(owner, f"title {canary}", {})
    assert store.append_exchange(owner, session.id, f"my secret is {canary}", "x" * 9000 + canary, {})
    return session.id, canary.encode()


@pytest.mark.parametrize("wal_left_unread", [False, True])
def test_a_deleted_sessions_text_is_in_no_file_of_the_data_dir(tmp_path, wal_left_unread):
    store = SessionStore(tmp_path)
    kept = store.create_session("a", "kept", {})
    store.append_exchange("a", kept.id, "an ordinary question", "an ordinary answer", {})
    session_id, canary = plant(store, "a")
    if wal_left_unread:
        # Pages already checkpointed into the db file, so the canary sits in both the db and (after) the WAL.
        store._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    assert data_files_hold(tmp_path, canary), "the scan must see the canary before the delete"
    assert store.delete_session("a", session_id)
    assert data_files_hold(tmp_path, canary) == []
    assert [m.content for m in store.recent_messages("a", kept.id, 2)] == ["an ordinary question", "an ordinary answer"]
    store.close()
    assert data_files_hold(tmp_path, canary) == []


def test_text_purged_by_retention_is_in_no_file_of_the_data_dir(tmp_path):
    clock = Clock()
    store = SessionStore(tmp_path, clock=clock)
    _, canary = plant(store, "a")
    clock.now += 31 * DAY
    fresh = store.create_session("a", "fresh", {})
    assert data_files_hold(tmp_path, canary)
    assert store.purge_expired(30) == 1
    assert data_files_hold(tmp_path, canary) == []
    assert store.get_session("a", fresh.id) is not None


def service_keeping(tmp_path: Path, retention_days: int, clock: Clock) -> ChatService:
    config = parse_config({"persona": {"displayName": "Luke", "personalAI": "luke"},
                           "engine": {"baseModel": "/models/tiny"},
                           "conversation": {"retentionDays": retention_days},
                           "storage": {"dataDir": str(tmp_path / "data")}})
    audit = AuditLog(Audit(sink=str(tmp_path / "audit.jsonl")), "luke", clock=clock)
    # The purge reads only the store, the config and the audit stream: no engine is started here.
    return ChatService(config, SessionStore(config.storage.data_dir, clock=clock), engine=None, metrics=ServerMetrics(),
                       audit=audit)


def purge_records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if json.loads(line)["event"] == "sessions.purge"]


def session_aged(service: ChatService, clock: Clock, days: float) -> str:
    """A session last used `days` ago (the clock is moved back to make it, then forward again)."""
    clock.now -= days * DAY
    session = service.store.create_session("a", "t", {})
    clock.now += days * DAY
    return session.id


def test_thirty_days_purges_a_31_day_old_session_and_keeps_a_29_day_old_one(tmp_path):
    clock = Clock()
    service = service_keeping(tmp_path, 30, clock)
    old, recent = session_aged(service, clock, 31), session_aged(service, clock, 29)
    assert purge_expired(service) == 1
    assert service.store.get_session("a", old) is None and service.store.get_session("a", recent) is not None
    assert [(r["count"], r["retentionDays"], r["outcome"]) for r in purge_records(tmp_path)] == [(1, 30, "success")]


def test_zero_days_keeps_sessions_until_the_personalai_is_deleted(tmp_path):
    clock = Clock()
    service = service_keeping(tmp_path, 0, clock)
    ancient = session_aged(service, clock, 3650)
    assert purge_expired(service) == 0
    assert service.store.get_session("a", ancient) is not None
    assert purge_records(tmp_path) == []
    with pytest.raises(ConfigError, match="conversation.retentionDays"):
        service_keeping(tmp_path, -1, clock)
