"""Chat sessions and their messages in SQLite, on the data volume (`storage.dataDir`).

One file, `sessions.sqlite3`, in WAL mode so reads do not wait on writes. Deleted text is erased,
not merely unlinked: secure_delete zeroes the freed cells and pages, and after every delete the WAL
(which still holds the pages as they were written) is checkpointed into the file and truncated.
Every query is scoped by
owner (the caller's token digest): a session of another token is simply not found. Calls are short
and serialised by one lock; the async API calls them directly (each is well under a millisecond).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalai_contracts.paths import resolve

log = logging.getLogger(__name__)

DB_NAME = "sessions.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions(owner, updated_at);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    metadata TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_session ON messages(session_id, id);
"""


@dataclass
class StoredMessage:
    role: str
    content: str
    created_at: float
    metadata: dict[str, Any] | None = None


@dataclass
class StoredSession:
    id: str
    owner: str
    title: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float
    message_count: int = 0
    messages: list[StoredMessage] = field(default_factory=list)


class SessionStore:
    def __init__(self, data_dir: str | Path, clock=time.time):
        directory = resolve(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_session(self, owner: str, title: str, settings: dict[str, Any]) -> StoredSession:
        now = self._clock()
        session = StoredSession(uuid.uuid4().hex, owner, title, settings, now, now)
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (id, owner, title, settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (session.id, owner, title, json.dumps(settings), now, now),
            )
        return session

    def count_sessions(self, owner: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM sessions WHERE owner = ?", (owner,)).fetchone()[0]

    def list_sessions(self, owner: str) -> list[StoredSession]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.id, s.owner, s.title, s.settings, s.created_at, s.updated_at, "
                "(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) "
                "FROM sessions s WHERE s.owner = ? ORDER BY s.updated_at DESC",
                (owner,),
            ).fetchall()
        return [_session_from_row(row) for row in rows]

    def get_session(self, owner: str, session_id: str, with_messages: bool = False) -> StoredSession | None:
        with self._lock:
            row = self._db.execute(
                "SELECT s.id, s.owner, s.title, s.settings, s.created_at, s.updated_at, "
                "(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) "
                "FROM sessions s WHERE s.id = ? AND s.owner = ?",
                (session_id, owner),
            ).fetchone()
            if row is None:
                return None
            session = _session_from_row(row)
            if with_messages:
                session.messages = self._messages(session_id)
        return session

    def recent_messages(self, owner: str, session_id: str, limit: int) -> list[StoredMessage]:
        """The last `limit` messages of the session, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.role, m.content, m.created_at, m.metadata FROM messages m "
                "JOIN sessions s ON s.id = m.session_id WHERE s.id = ? AND s.owner = ? "
                "ORDER BY m.id DESC LIMIT ?",
                (session_id, owner, limit),
            ).fetchall()
        return [_message_from_row(row) for row in reversed(rows)]

    def update_session(
        self, owner: str, session_id: str, title: str | None, settings: dict[str, Any] | None
    ) -> StoredSession | None:
        with self._lock:
            row = self._db.execute(
                "SELECT title, settings FROM sessions WHERE id = ? AND owner = ?", (session_id, owner)
            ).fetchone()
            if row is None:
                return None
            new_title = row[0] if title is None else title
            new_settings = json.loads(row[1]) if settings is None else settings
            self._db.execute(
                "UPDATE sessions SET title = ?, settings = ?, updated_at = ? WHERE id = ?",
                (new_title, json.dumps(new_settings), self._clock(), session_id),
            )
        return self.get_session(owner, session_id)

    def delete_session(self, owner: str, session_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM sessions WHERE id = ? AND owner = ?", (session_id, owner))
            if cursor.rowcount:
                self._erase_wal()
        return cursor.rowcount > 0

    def append_exchange(
        self, owner: str, session_id: str, user_text: str, reply: str, metadata: dict[str, Any]
    ) -> bool:
        """Store a question and its answer together (so history never holds half an exchange)."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE id = ? AND owner = ?", (now, session_id, owner)
                )
                if cursor.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    return False
                self._db.executemany(
                    "INSERT INTO messages (session_id, role, content, metadata, created_at) VALUES (?, ?, ?, ?, ?)",
                    [
                        (session_id, "user", user_text, None, now),
                        (session_id, "assistant", reply, json.dumps(metadata), now),
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True

    def purge_expired(self, retention_days: float) -> int:
        """Delete sessions not used for `retention_days`, with their messages; returns how many."""
        cutoff = self._clock() - retention_days * 86400
        with self._lock:
            cursor = self._db.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,))
            if cursor.rowcount:
                self._erase_wal()
        return cursor.rowcount

    def _erase_wal(self) -> None:
        """Copy the WAL into the database file and cut it to zero bytes: its frames are the pages as
        they were before the delete, deleted text included (secure_delete only zeroes the new ones)."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            # Only another connection reading could hold it; the next delete's checkpoint tries again.
            log.warning("sessions WAL not truncated after a delete: a reader holds it")

    def _messages(self, session_id: str) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT role, content, created_at, metadata FROM messages WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [_message_from_row(row) for row in rows]


def _session_from_row(row) -> StoredSession:
    return StoredSession(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])


def _message_from_row(row) -> StoredMessage:
    return StoredMessage(row[0], row[1], row[2], json.loads(row[3]) if row[3] else None)
