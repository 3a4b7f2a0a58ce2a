"""The audit stream's sink (issue 14): JSON lines of identifiers only, to stderr or to a file rotated
each UTC day and kept audit.keepDays, on a clock the test moves."""

from __future__ import annotations

import json
import os

import pytest

from personalai_server.audit import AuditLog
from personalai_server.config import Audit, ConfigError, parse_config

pytestmark = pytest.mark.unit

DAY = 86400.0
MIDDAY = 1_764_590_400.0  # 2025-12-01T12:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = MIDDAY

    def __call__(self) -> float:
        return self.now


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_record_is_one_json_line_of_time_event_personalai_outcome_and_identifiers(capsys):
    audit = AuditLog(Audit(), "luke", clock=Clock())
    audit.record("auth", "failure", transport="http", client="10.0.0.7", owner=None, reason="no_token")
    assert json.loads(capsys.readouterr().err) == {
        "time": "2025-12-01T12:00:00.000Z", "event": "auth", "personalai": "luke", "outcome": "failure",
        "transport": "http", "client": "10.0.0.7", "reason": "no_token"}


def test_only_identifiers_can_be_recorded(capsys):
    audit = AuditLog(Audit(), "luke")
    with pytest.raises(ValueError, match="message"):
        audit.record("session.create", message="what was said")
    assert capsys.readouterr().err == ""


def test_a_file_sink_is_owner_only_and_rotated_each_utc_day_keeping_keep_days(tmp_path):
    clock = Clock()
    path = tmp_path / "audit" / "audit.jsonl"
    audit = AuditLog(Audit(sink=str(path), keep_days=2), "luke", clock=clock)
    for day in range(4):
        audit.record("sessions.purge", count=day)
        audit.record("sessions.purge", count=day * 10)
        clock.now += DAY
    audit.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [entry["count"] for entry in lines(path)] == [3, 30]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "audit.jsonl", "audit.jsonl.2025-12-02", "audit.jsonl.2025-12-03"]
    assert [entry["count"] for entry in lines(path.with_name("audit.jsonl.2025-12-03"))] == [2, 20]


def test_a_file_left_by_an_earlier_day_is_rotated_by_the_next_process(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event":"auth"}\n')
    os.utime(path, (MIDDAY - DAY, MIDDAY - DAY))
    audit = AuditLog(Audit(sink=str(path)), "luke", clock=Clock())
    audit.record("auth", transport="http")
    audit.close()
    assert lines(path.with_name("audit.jsonl.2025-11-30")) == [{"event": "auth"}]
    assert [entry["time"][:10] for entry in lines(path)] == ["2025-12-01"]


def test_the_audit_section_is_validated_naming_the_field():
    base = {"persona": {"displayName": "Luke", "personalAI": "luke"}, "engine": {"baseModel": "/m"}}
    assert parse_config(base).audit == Audit(sink="stderr", keep_days=90)
    with pytest.raises(ConfigError, match="audit.keepDays"):
        parse_config({**base, "audit": {"sink": "/data/audit.jsonl", "keepDays": 0}})
    with pytest.raises(ConfigError, match="audit.retention"):
        parse_config({**base, "audit": {"retention": 3}})
