"""SSE framing, the error shape, and the session store (ownership, history order, retention)."""

from __future__ import annotations

import pytest

from personalai_server.errors import field_path
from personalai_server.sse import format_done, format_event, parse_events
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit


def test_one_event_is_one_data_line():
    text = format_event({"type": "chunk", "content": "two\nlines ünïcode"})
    assert text.endswith("\n\n") and text.count("\n") == 2
    assert text.startswith('data: {"type":"chunk"')
    body = text + format_event({"type": "complete", "response": "x"}) + format_done()
    assert parse_events(body) == [{"type": "chunk", "content": "two\nlines ünïcode"}, {"type": "complete", "response": "x"}]


def test_field_path_names_the_field_only():
    assert field_path(("body", "settings", "maxTokens")) == "settings.maxTokens"
    assert field_path(("body",)) == "body"


def test_sessions_are_scoped_by_owner_and_keep_order(tmp_path):
    store = SessionStore(tmp_path)
    session = store.create_session("owner-a", "t", {"personalityMode": "wise"})
    for n in range(3):
        assert store.append_exchange("owner-a", session.id, f"q{n}", f"a{n}", {"n": n})
    assert store.get_session("owner-b", session.id) is None
    assert not store.append_exchange("owner-b", session.id, "q", "a", {})
    assert not store.delete_session("owner-b", session.id)
    recent = store.recent_messages("owner-a", session.id, 3)
    assert [m.content for m in recent] == ["a1", "q2", "a2"]
    assert store.recent_messages("owner-b", session.id, 3) == []
    store.close()
    reopened = SessionStore(tmp_path)
    detail = reopened.get_session("owner-a", session.id, with_messages=True)
    assert detail.message_count == 6 and detail.messages[-1].metadata == {"n": 2}


def test_retention_purges_only_expired_sessions_with_their_messages(tmp_path):
    now = [1_000_000.0]
    store = SessionStore(tmp_path, clock=lambda: now[0])
    old = store.create_session("a", "old", {})
    store.append_exchange("a", old.id, "q", "a", {})
    now[0] += 20 * 86400
    fresh = store.create_session("a", "fresh", {})
    now[0] += 11 * 86400
    assert store.purge_expired(30) == 1
    assert store.get_session("a", old.id) is None and store.get_session("a", fresh.id) is not None
    assert store._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
