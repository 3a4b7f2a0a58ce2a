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
from collections.abc import Callable
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
-- The adapter version (and A/B variant) a session was given when it was made: sticky for its life.
CREATE TABLE IF NOT EXISTS assignments (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    variant TEXT NOT NULL CHECK (variant IN ('current', 'candidate')),
    version TEXT
);
-- A person's rating of one reply (the version that wrote it copied, so counts need no JSON).
CREATE TABLE IF NOT EXISTS ratings (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    note TEXT,
    version TEXT,
    created_at REAL NOT NULL
);
"""

# The stats key of replies and sessions of the base model alone (no adapter version).
BASE_VERSION = "base"


@dataclass
class StoredMessage:
    role: str
    content: str
    created_at: float
    metadata: dict[str, Any] | None = None
    id: int | None = None
    rating: str | None = None  # "up" | "down" on a rated assistant message
    note: str | None = None


@dataclass(frozen=True)
class Assignment:
    variant: str  # "current" | "candidate"
    version: str | None


@dataclass(frozen=True)
class Rating:
    rating: str
    version: str | None


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

    def create_session(self, owner: str, title: str, settings: dict[str, Any],
                       assign: Callable[[str], Assignment] | None = None) -> StoredSession:
        """A new session; `assign(session id)`, if given, is the adapter it keeps (stored with it)."""
        now = self._clock()
        session = StoredSession(uuid.uuid4().hex, owner, title, settings, now, now)
        assignment = assign(session.id) if assign else None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO sessions (id, owner, title, settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (session.id, owner, title, json.dumps(settings), now, now),
                )
                if assignment is not None:
                    self._db.execute("INSERT INTO assignments (session_id, variant, version) VALUES (?, ?, ?)",
                                     (session.id, assignment.variant, assignment.version))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return session

    def assignment(self, session_id: str) -> Assignment | None:
        with self._lock:
            row = self._db.execute("SELECT variant, version FROM assignments WHERE session_id = ?",
                                   (session_id,)).fetchone()
        return None if row is None else Assignment(row[0], row[1])

    def rate(self, owner: str, session_id: str, message_id: int, rating: str, note: str | None) -> Rating | None:
        """Rate (or re-rate) an assistant message of the owner's session; None if there is no such
        message (a user message counts as none: only replies are rated)."""
        with self._lock:
            row = self._assistant_message(owner, session_id, message_id)
            if row is None:
                return None
            version = (json.loads(row[0]) if row[0] else {}).get("adapterVersion")
            earlier = self._db.execute("SELECT note FROM ratings WHERE message_id = ?", (message_id,)).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO ratings (message_id, rating, note, version, created_at) VALUES (?, ?, ?, ?, ?)",
                (message_id, rating, note, version, self._clock()),
            )
            if earlier is not None and earlier[0]:  # a replaced note is erased like deleted text
                self._erase_wal()
        return Rating(rating, version)

    def unrate(self, owner: str, session_id: str, message_id: int) -> bool:
        """Remove the rating of the message (erased like deleted text); False if there is no such message."""
        with self._lock:
            if self._assistant_message(owner, session_id, message_id) is None:
                return False
            cursor = self._db.execute("DELETE FROM ratings WHERE message_id = ?", (message_id,))
            if cursor.rowcount:
                self._erase_wal()
        return True

    def _assistant_message(self, owner: str, session_id: str, message_id: int):
        return self._db.execute(
            "SELECT m.metadata FROM messages m JOIN sessions s ON s.id = m.session_id "
            "WHERE m.id = ? AND s.id = ? AND s.owner = ? AND m.role = 'assistant'",
            (message_id, session_id, owner),
        ).fetchone()

    def version_counts(self) -> dict[str, dict[str, int]]:
        """Per adapter version (BASE_VERSION for none), over every token: sessions assigned to it and
        ratings up and down of its replies. Numbers only."""
        counts: dict[str, dict[str, int]] = {}

        def entry(version: str | None) -> dict[str, int]:
            return counts.setdefault(version or BASE_VERSION, {"sessions": 0, "ratingsUp": 0, "ratingsDown": 0})

        with self._lock:
            sessions = self._db.execute("SELECT version, COUNT(*) FROM assignments GROUP BY version").fetchall()
            ratings = self._db.execute("SELECT version, rating, COUNT(*) FROM ratings GROUP BY version, rating").fetchall()
        for version, count in sessions:
            entry(version)["sessions"] += count
        for version, rating, count in ratings:
            entry(version)["ratingsUp" if rating == "up" else "ratingsDown"] += count
        return counts

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
    ) -> int | None:
        """Store a question and its answer together (so history never holds half an exchange); the
        id of the answer, or None if the session is gone."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE id = ? AND owner = ?", (now, session_id, owner)
                )
                if cursor.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    return None
                insert = "INSERT INTO messages (session_id, role, content, metadata, created_at) VALUES (?, ?, ?, ?, ?)"
                self._db.execute(insert, (session_id, "user", user_text, None, now))
                answer = self._db.execute(insert, (session_id, "assistant", reply, json.dumps(metadata), now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return answer.lastrowid

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
            "SELECT m.role, m.content, m.created_at, m.metadata, m.id, r.rating, r.note FROM messages m "
            "LEFT JOIN ratings r ON r.message_id = m.id WHERE m.session_id = ? ORDER BY m.id", (session_id,)
        ).fetchall()
        return [_message_from_row(row) for row in rows]


def _session_from_row(row) -> StoredSession:
    return StoredSession(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])


def _message_from_row(row) -> StoredMessage:
    return StoredMessage(row[0], row[1], row[2], json.loads(row[3]) if row[3] else None, *row[4:])
