"""The trainer's metrics Service (one run's pods, its port, owned by the run) and the GPU temperature
limit in the run's status: a GpuThrottled condition from status.thermal, an Event once per episode."""

import pytest

from personalai_operator import manifests, naming
from personalai_operator.models import TrainingRunSpec
from personalai_operator.run_status import THROTTLED, derive_run_status
from personalai_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

RUN = {"apiVersion": "personalai.dev/v1alpha1", "kind": "TrainingRun",
       "metadata": {"name": "ana-1a2b3c4d", "namespace": "people", "uid": "run-uid"}}
JOB = {"metadata": {"name": "ana-1a2b3c4d", "uid": "job-uid"}, "status": {}}
POD = {"metadata": {"name": "ana-1a2b3c4d-x", "creationTimestamp": "2026-12-01T10:00:00Z"},
       "spec": {"nodeName": "gpu-1"}, "status": {"phase": "Running"}}
HOT = {"throttled": True, "throttling": True, "episodes": 1, "pausedSeconds": 12.5, "lastTemperatureC": 88,
       "limitC": 83}


def test_metrics_service_selects_this_jobs_trainer_pods_on_the_metrics_port():
    service = manifests.build_trainer_metrics_service(RUN, "ana")
    assert service["metadata"]["ownerReferences"][0]["uid"] == "run-uid"
    assert service["metadata"]["labels"][naming.LABEL_COMPONENT] == "trainer"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {**naming.run_labels("ana", "ana-1a2b3c4d"),
                                           manifests.JOB_NAME_LABEL: "ana-1a2b3c4d"}
    assert service["spec"]["ports"] == [{"name": "metrics", "port": manifests.TRAINER_METRICS_PORT,
                                         "targetPort": "metrics", "protocol": "TCP"}]


def test_the_trainer_pods_carry_every_label_the_service_selects_but_the_job_controllers():
    spec = TrainingRunSpec.model_validate({"personalAI": "ana", "adapterVersion": "v1",
                                           "reflections": {"secretRef": {"name": "ana", "key": "r.json"}}})
    pod_labels = manifests.build_training_job(RUN, spec, OperatorSettings())["spec"]["template"]["metadata"]["labels"]
    selector = manifests.build_trainer_metrics_service(RUN, "ana")["spec"]["selector"]
    assert {key: value for key, value in selector.items() if key != manifests.JOB_NAME_LABEL} == pod_labels


def throttled_condition(update):
    return next(c for c in update.fields["conditions"] if c["type"] == THROTTLED)


def test_a_hot_report_sets_the_condition_and_one_event_per_episode():
    first = derive_run_status(JOB, [POD], {"phase": "Running", "thermal": HOT})
    assert throttled_condition(first)["status"] == "True"
    assert "88 C, limit 83 C" in throttled_condition(first)["message"]
    assert [event.reason for event in first.events if event.reason == THROTTLED] == [THROTTLED]
    still_hot = derive_run_status(JOB, [POD], {"phase": "Running", "thermal": {**HOT, "pausedSeconds": 20.0},
                                               "conditions": first.fields["conditions"]})
    assert not [event for event in still_hot.events if event.reason == THROTTLED]
    cooled = derive_run_status(JOB, [POD], {"phase": "Running", "thermal": {**HOT, "throttling": False},
                                            "conditions": still_hot.fields["conditions"]})
    assert throttled_condition(cooled)["status"] == "False"
    again = derive_run_status(JOB, [POD], {"phase": "Running", "thermal": {**HOT, "episodes": 2},
                                           "conditions": cooled.fields["conditions"]})
    assert [event.reason for event in again.events if event.reason == THROTTLED] == [THROTTLED]


def test_no_thermal_report_no_condition():
    update = derive_run_status(JOB, [POD], {"phase": "Running"})
    assert THROTTLED not in [condition["type"] for condition in update.fields["conditions"]]
