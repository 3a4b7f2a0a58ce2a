"""A forged TrainingRun status (what the trainer's token can write) does not decide promotion."""

import pytest

from personalai_operator.promotion import promote
from personalai_operator.run_trust import trusted_run

pytestmark = pytest.mark.unit

UID = "0b7c-run"
GOOD_METRICS = {"perplexity": 18.0, "coherence": 0.6, "personalityConsistency": 0.4, "perplexityGain": 0.44,
                "perplexityGainOverInContext": 0.2, "heldOutQuestions": 12}
POOR_METRICS = {**GOOD_METRICS, "perplexityGain": 0.01, "coherence": 0.05}


def run(*, phase="Succeeded", artifact=None, validation=None, spec_validation=None):
    artifact = artifact if artifact is not None else {"adapterVersion": "v1-3f9a2c1b",
                                                      "location": "/artifacts/v1-3f9a2c1b",
                                                      "manifestSha256": "a" * 64}
    return {"metadata": {"name": "luke-3f9a2c1b", "uid": UID},
            "spec": {"adapterVersion": "v1-3f9a2c1b", "personalAI": "luke",
                     **({"validation": spec_validation} if spec_validation else {})},
            "status": {"phase": phase, "artifact": artifact, "validation": validation}}


def job(complete=True, owner=UID):
    return {"metadata": {"name": "luke-3f9a2c1b", "ownerReferences": [{"uid": owner}]},
            "status": {"conditions": [{"type": "Complete", "status": "True"}] if complete else []}}


def test_an_honest_run_is_promoted_with_the_operators_verdict():
    trusted = trusted_run(run(validation={**GOOD_METRICS, "passed": True, "reasons": []}), job())
    assert trusted["status"]["validation"]["passed"] is True
    outcome = promote({}, trusted, now="2026-12-01T00:00:00Z")
    assert outcome.promoted and outcome.current["version"] == "v1-3f9a2c1b"


def test_passed_true_over_poor_metrics_is_recomputed_and_rejected():
    trusted = trusted_run(run(validation={**POOR_METRICS, "passed": True, "reasons": []}), job())
    validation = trusted["status"]["validation"]
    assert validation["passed"] is False
    assert any("perplexity gain" in reason for reason in validation["reasons"])
    outcome = promote({}, trusted)
    assert not outcome.promoted and outcome.current is None and outcome.history[0]["rejected"]


def test_the_runs_own_thresholds_decide_not_the_trainers():
    lenient = {"minPerplexityGain": -1, "minCoherence": 0}
    trusted = trusted_run(run(validation={**POOR_METRICS, "passed": False, "reasons": ["x"]}, spec_validation=lenient),
                          job())
    assert trusted["status"]["validation"] == {**POOR_METRICS, "passed": True, "reasons": []}


@pytest.mark.parametrize(("artifact", "words"), [
    ({"adapterVersion": "v9-luke-other", "location": "/artifacts/v9-luke-other"}, "is not the run's spec.adapterVersion"),
    ({"adapterVersion": "v1-3f9a2c1b", "location": "/artifacts/v0-someone-else"}, "the run's own adapter directory"),
    ({"adapterVersion": "../../etc", "location": "/artifacts/../../etc"}, "status.artifact is out of its schema"),
    ({}, "reported no artifact"),  # metrics without the artifact they are about
])
def test_an_artifact_that_is_not_the_runs_own_is_refused(artifact, words):
    trusted = trusted_run(run(artifact=artifact, validation={**GOOD_METRICS, "passed": True}), job())
    assert trusted["status"]["validation"]["passed"] is False
    assert words in trusted["status"]["validation"]["reasons"][0]
    outcome = promote({}, trusted)
    assert outcome.current is None and words in outcome.rejected_reason
    assert outcome.history[0]["version"] == "v1-3f9a2c1b"  # recorded under the run's own version


def test_out_of_range_numbers_are_refused():
    trusted = trusted_run(run(validation={**GOOD_METRICS, "coherence": 7.5, "passed": True}), job())
    assert trusted["status"]["validation"]["passed"] is False
    assert "status.validation is out of its schema (coherence)" in trusted["status"]["validation"]["reasons"][0]


@pytest.mark.parametrize("the_job", [None, job(complete=False), job(owner="someone-elses-run")])
def test_succeeded_is_believed_only_from_the_runs_own_completed_job(the_job):
    trusted = trusted_run(run(validation={**GOOD_METRICS, "passed": True}), the_job)
    assert trusted["status"]["phase"] == "Running"
    assert not promote({}, trusted).promoted


def test_nothing_reported_yet_waits():
    trusted = trusted_run(run(artifact={}, validation=None), job())
    assert promote({}, trusted).awaiting_validation


def test_a_run_whose_job_was_cleaned_up_keeps_the_outcome_promotion_recorded():
    finished = run(validation={**GOOD_METRICS, "passed": True})
    assert trusted_run(finished, None, recorded_versions={"v1-3f9a2c1b"})["status"]["phase"] == "Succeeded"
    assert trusted_run(finished, None, recorded_versions={"v0-older"})["status"]["phase"] == "Running"


# ---- a run the operator will start: its PersonalAI's own -------------------------------------------

REFLECTIONS = {"secretRef": {"name": "luke-reflections", "key": "luke.jsonl"}}
LUKE = {"metadata": {"name": "luke", "uid": "uid-luke"}, "spec": {"reflections": REFLECTIONS},
        "status": {"currentAdapter": {"version": "v1-0aa1b2c3", "trainingRun": "luke-0aa1b2c3"}}}
ALLOWED = {"annotations": {"personalai.dev/reflections-for": "luke"}}


def made(**spec):
    return {"metadata": {"name": "luke-3f9a2c1b", "ownerReferences": [{"uid": "uid-luke"}]},
            "spec": {"personalAI": "luke", "adapterVersion": "v1-3f9a2c1b", "reflections": REFLECTIONS, **spec}}


def test_the_operators_own_run_starts():
    from personalai_operator.run_trust import run_refusal
    assert run_refusal(made(), LUKE, ALLOWED) is None


@pytest.mark.parametrize(("case", "words"), [
    ("no-personalai", "spec.personalAI: PersonalAI luke does not exist"),
    ("not-owned", "metadata.ownerReferences: TrainingRun is not owned by PersonalAI luke"),
    ("other-reflections", "spec.reflections is not PersonalAI luke's spec.reflections"),
    ("served-version", "spec.adapterVersion v1-0aa1b2c3 is already PersonalAI luke's adapter"),
    ("secret-not-allowed", "Secret luke-reflections does not allow PersonalAI luke"),
])
def test_a_hand_made_or_altered_run_is_refused_naming_the_field(case, words):
    from personalai_operator.run_trust import run_refusal
    run, personalai, metadata = made(), LUKE, ALLOWED
    if case == "no-personalai":
        personalai = None
    elif case == "not-owned":
        run["metadata"]["ownerReferences"] = []
    elif case == "other-reflections":
        run["spec"]["reflections"] = {"secretRef": {"name": "zoe-reflections", "key": "zoe.jsonl"}}
    elif case == "served-version":
        run["spec"]["adapterVersion"] = "v1-0aa1b2c3"
    else:
        metadata = {"annotations": {}}
    assert words in run_refusal(run, personalai, metadata)
