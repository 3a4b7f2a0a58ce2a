"""Status writes merge conditions by type: another writer's condition is never lost or rolled back."""

import pytest

from personalai_operator import erasure
from personalai_operator.conditions import OPERATOR_CONDITION_TYPES, make_condition, merge_conditions, set_condition
from personalai_operator.personalai_status import invalid_spec_status
from personalai_operator.run_status import (
    derive_run_status,
    restarted_status,
    superseded_status,
    thermal_condition,
)

pytestmark = pytest.mark.unit
RUN_TYPES = OPERATOR_CONDITION_TYPES["TrainingRun"]
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def checked(message, when=T0):
    return {**make_condition("PolicyChecked", True, "Checked", message), "lastTransitionTime": when}


def test_another_writers_condition_comes_from_the_latest_object_not_from_our_older_read():
    ours = set_condition([checked("check 1")], make_condition("Running", True, "PodRunning"), T1)
    latest = [checked("check 7")]
    merged = merge_conditions(latest, ours, RUN_TYPES)
    assert [c["type"] for c in merged] == ["PolicyChecked", "Running"]
    assert merged[0]["message"] == "check 7"


def test_ours_replace_by_type_and_keep_the_transition_time_the_api_has():
    latest = [{**make_condition("Running", True, "PodRunning", "on node a"), "lastTransitionTime": T0},
              {**make_condition("Queued", True, "Unschedulable"), "lastTransitionTime": T0}, checked("c")]
    ours = [{**make_condition("Running", True, "PodRunning", "on node b"), "lastTransitionTime": T1},
            {**make_condition("Queued", False, "Scheduled"), "lastTransitionTime": T1}]
    merged = {c["type"]: c for c in merge_conditions(latest, ours, RUN_TYPES)}
    assert merged["Running"]["message"] == "on node b" and merged["Running"]["lastTransitionTime"] == T0
    assert merged["Queued"]["status"] == "False" and merged["Queued"]["lastTransitionTime"] == T1
    assert merged["PolicyChecked"] == checked("c")


def test_an_owned_type_we_leave_out_stays_and_a_deleted_foreign_one_stays_deleted():
    latest = [{**make_condition("Succeeded", True, "JobComplete"), "lastTransitionTime": T0}]
    ours = [checked("a stale copy"), {**make_condition("Failed", False, "NoFailure"), "lastTransitionTime": T1}]
    merged = merge_conditions(latest, ours, RUN_TYPES)
    assert [c["type"] for c in merged] == ["Succeeded", "Failed"]
    assert merge_conditions(None, [], RUN_TYPES) == []


def test_every_condition_the_operator_writes_is_of_a_type_it_owns():
    run_status = {"thermal": {"throttling": True, "lastTemperatureC": 90, "limitC": 85}}
    written = [*derive_run_status(None, [], run_status, 1).fields["conditions"],
               *superseded_status({}, "newer", 1)["conditions"],
               *restarted_status({}, "Retrying", "again", 1)["conditions"],
               thermal_condition(run_status["thermal"], 1)]
    assert {c["type"] for c in written} <= RUN_TYPES
    personalai = [*invalid_spec_status({}, "spec: bad", 1)["conditions"],
                  erasure.purged_condition({})]
    assert {c["type"] for c in personalai} <= OPERATOR_CONDITION_TYPES["PersonalAI"]
    assert {"DataReady", "Trained", "Serving", "Ready"} <= OPERATOR_CONDITION_TYPES["PersonalAI"]
