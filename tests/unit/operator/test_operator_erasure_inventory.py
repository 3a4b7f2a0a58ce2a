"""Erasure's pure pieces: the inventory, what to delete, the DataPurged condition, the audit records."""

from __future__ import annotations

import json
import logging

import pytest

from personalai_operator import audit, erasure
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit
NOW = "2026-12-01T12:00:00Z"
LUKE = {"apiVersion": "personalai.dev/v1alpha1", "kind": "PersonalAI",
        "metadata": {"name": "luke", "namespace": "people", "uid": "u-1"}}


def obj(name, deleting=False):
    metadata = {"name": name, **({"deletionTimestamp": NOW} if deleting else {})}
    return {"metadata": metadata}


FOUND = {"TrainingRun": [obj("luke-b"), obj("luke-a")], "Job": [obj("luke-a", deleting=True)], "Deployment": [],
         "PersistentVolumeClaim": [obj("luke-artifacts"), obj("luke-chat-data")], "Pod": [obj("luke-a-x1")]}


def test_the_inventory_names_what_is_there_by_kind_and_leaves_out_empty_kinds():
    assert erasure.inventory(FOUND) == {"TrainingRun": ["luke-a", "luke-b"], "Job": ["luke-a"],
                                        "PersistentVolumeClaim": ["luke-artifacts", "luke-chat-data"],
                                        "Pod": ["luke-a-x1"]}
    assert erasure.inventory({kind: [] for kind in erasure.AWAITED_KINDS}) == {}


def test_pods_and_objects_already_going_are_waited_for_not_deleted_again():
    assert erasure.to_delete(FOUND) == [("TrainingRun", "luke-b"), ("TrainingRun", "luke-a"),
                                        ("PersistentVolumeClaim", "luke-artifacts"),
                                        ("PersistentVolumeClaim", "luke-chat-data")]


def test_the_kinds_cover_what_the_operator_makes_but_secrets_and_pods_are_awaited_or_left():
    assert set(erasure.LISTED_KINDS) == {"TrainingRun", "Job", "Deployment", "Service", "ConfigMap", "ServiceAccount",
                                         "Role", "RoleBinding", "PersistentVolumeClaim"}
    assert "Secret" not in erasure.AWAITED_KINDS  # the operator may neither list nor delete Secrets
    assert set(erasure.AWAITED_KINDS) - set(erasure.LISTED_KINDS) == {"Pod"}


def test_what_was_seen_accumulates_over_the_passes():
    first = {"Job": ["luke-a"], "Pod": ["luke-a-x1"]}
    assert erasure.merge(first, {"Pod": ["luke-a-x2"], "ConfigMap": ["luke-chat-config"]}) == {
        "Job": ["luke-a"], "Pod": ["luke-a-x1", "luke-a-x2"], "ConfigMap": ["luke-chat-config"]}
    assert erasure.merge(first, {}) == first


def test_the_purged_condition_counts_kinds_and_names_no_object():
    condition = erasure.purged_condition({"Job": ["luke-a"], "PersistentVolumeClaim": ["luke-artifacts", "luke-chat"]})
    assert (condition["type"], condition["status"], condition["reason"]) == ("DataPurged", "True", "Erased")
    assert condition["message"].startswith("Erased 1 Job, 2 PersistentVolumeClaim;")
    assert "luke-artifacts" not in condition["message"]


def test_an_unfinished_erasure_says_what_is_still_there_and_whether_it_is_past_its_bound():
    remaining = {"PersistentVolumeClaim": ["luke-artifacts"], "Pod": ["luke-chat-7f"]}
    going = erasure.pending_condition(remaining, overdue=False, timeout_seconds=600)
    assert (going["status"], going["reason"]) == ("False", "Erasing")
    assert going["message"] == "Waiting for: PersistentVolumeClaim luke-artifacts, Pod luke-chat-7f."
    stalled = erasure.pending_condition(remaining, overdue=True, timeout_seconds=600)
    assert stalled["reason"] == "ErasureStalled" and stalled["message"].startswith("Still present after 600 s:")


def test_a_long_list_of_leftovers_is_cut_to_the_message_limit():
    remaining = {"Pod": [f"luke-pod-{i:04d}" for i in range(500)]}
    message = erasure.pending_condition(remaining, overdue=True, timeout_seconds=60)["message"]
    assert len(message) < erasure.MESSAGE_LIMIT + 40 and "..." in message


def test_the_erasure_record_has_who_what_by_kind_and_how_long():
    record = erasure.erasure_record(LUKE, {"Job": ["luke-a"], "Pod": ["p1", "p2"]}, 12.34567, NOW)
    assert record == {"time": NOW, "event": "erasure", "namespace": "people", "personalai": "luke", "uid": "u-1",
                      "removed": {"Job": 1, "Pod": 2}, "durationSeconds": 12.346}


def test_the_promotion_record_names_versions_and_the_run_not_metrics_or_content():
    current = {"version": "v2-b", "trainingRun": "luke-b", "manifestSha256": "ab" * 32, "metrics": {"perplexity": 2}}
    record = audit.promotion_record(LUKE, current, {"version": "v1-a"}, NOW)
    assert record == {"time": NOW, "event": "promotion", "namespace": "people", "personalai": "luke", "uid": "u-1",
                      "adapterVersion": "v2-b", "trainingRun": "luke-b", "manifestSha256": "ab" * 32,
                      "previousVersion": "v1-a"}
    assert audit.promotion_record(LUKE, current, None, NOW)["previousVersion"] is None


def test_audit_records_go_as_json_lines_to_the_configured_file_only(tmp_path, caplog):
    logger = logging.getLogger("personalai.audit")
    saved = list(logger.handlers)
    logger.handlers.clear()
    try:
        path = tmp_path / "audit.jsonl"
        audit.write({"event": "erasure", "personalai": "luke"}, str(path), 30)
        audit.write({"event": "promotion", "personalai": "luke"}, str(path), 30)
        for handler in logger.handlers:
            handler.flush()
        lines = path.read_text().splitlines()
        assert [json.loads(line)["event"] for line in lines] == ["erasure", "promotion"]
        assert not caplog.records  # not propagated into the operator's own log
        (rotating,) = logger.handlers  # rotated at midnight UTC, keeping that many days
        assert (rotating.when, rotating.utc, rotating.backupCount) == ("MIDNIGHT", True, 30)
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:] = saved


def test_the_audit_stream_and_the_erasure_bound_are_settings_with_defaults():
    defaults = OperatorSettings.from_env({})
    assert (defaults.audit_log, defaults.audit_keep_days, defaults.erasure_timeout_seconds) == ("stderr", 365, 600.0)
    custom = OperatorSettings.from_env({"PERSONALAI_AUDIT_LOG": "/var/log/audit.jsonl", "PERSONALAI_AUDIT_KEEP_DAYS": "30",
                                        "PERSONALAI_ERASURE_TIMEOUT_SECONDS": "90"})
    assert (custom.audit_log, custom.audit_keep_days, custom.erasure_timeout_seconds) == ("/var/log/audit.jsonl", 30, 90.0)
    with pytest.raises(ValueError, match="ERASURE_TIMEOUT_SECONDS"):
        OperatorSettings.from_env({"PERSONALAI_ERASURE_TIMEOUT_SECONDS": "0"})
