"""The promotion gate, the epoch the run keeps, and the knowledge probes built from the answers."""

import math
from dataclasses import replace

import pytest

from personalai_contracts import Reflection
from personalai_contracts.gate import decide_passed, gate_from
from personalai_contracts.run_report import MAX_PERPLEXITY, MAX_REPORTED_LOSS
from personalai_contracts.trainer_config import ValidationConfig
from personalai_trainer.probes import CHOICES, build_probes, find_facts
from personalai_trainer.validation import (
    choose_epoch,
    closer_fraction,
    compare,
    eligible_epochs,
    gate_inputs,
    perplexity_from_loss,
)

pytestmark = pytest.mark.unit

DEFAULT_GATE = gate_from(ValidationConfig())  # spec.validation left out

TUNED = {"perplexity": 18.0, "coherence": 0.6, "personalityConsistency": 0.4, "attribution": 0.5, "knowledge": 0.6,
         "perplexityGain": 0.44, "perplexityGainOverInContext": 0.2, "closerThanBase": 0.5}


def test_a_tuned_adapter_passes_the_default_gate():
    assert decide_passed(TUNED, DEFAULT_GATE) == (True, [])


def test_the_base_model_fails_the_default_gate_on_its_own_baseline():
    base_as_candidate = {**TUNED, "perplexity": 32.0, "perplexityGain": 0.0, "perplexityGainOverInContext": -0.15,
                         "closerThanBase": 0.0}
    passed, reasons = decide_passed(base_as_candidate, DEFAULT_GATE)
    assert not passed
    assert reasons == [
        "held-out perplexity gain over the base model 0.000 is under the minimum 0.2",
        "held-out perplexity gain over the base model prompted with the person's answers -0.150 is under the minimum 0.0"]
    assert "closer to the person than the base model 0.000 is under the minimum 0.5" in \
        decide_passed(base_as_candidate, replace(DEFAULT_GATE, min_closer_than_base=0.5))[1][-1]


def test_a_random_model_fails_every_floor():
    random_model = {"perplexity": 48000.0, "coherence": 0.02, "personalityConsistency": 0.05, "attribution": 0.25,
                    "knowledge": 0.25, "perplexityGain": -1500.0, "perplexityGainOverInContext": -1700.0,
                    "closerThanBase": 0.0}
    passed, reasons = decide_passed(random_model, DEFAULT_GATE)
    assert not passed and len(reasons) == 4


def test_unmeasurable_metrics_fail_and_unset_thresholds_are_off():
    passed, reasons = decide_passed({**TUNED, "perplexityGain": math.nan}, DEFAULT_GATE)
    assert not passed and reasons == ["held-out perplexity gain over the base model could not be measured"]
    assert decide_passed({**TUNED, "knowledge": None}, replace(DEFAULT_GATE, min_knowledge=None)) == (True, [])
    assert decide_passed(TUNED, replace(DEFAULT_GATE, max_perplexity=10.0))[1] == ["held-out perplexity 18.000 is over the maximum 10.0"]


def test_comparisons_against_a_baseline():
    assert closer_fraction([0.5, 0.4, 0.3, 0.2], [0.4, 0.4, 0.4, 0.1]) == 0.5  # a tie is not closer
    versus = compare({"perplexity": 18.0}, {"perplexity": 30.0}, [0.5], [0.4])
    assert versus == {"perplexityGain": pytest.approx(0.4), "closer": 1.0}
    report = {"metrics": {"adapter": {"perplexity": 18.0, "knowledge": 0.5}}, "versus": {"base": versus}}
    assert gate_inputs(report) == {"perplexity": 18.0, "knowledge": 0.5, "perplexityGain": pytest.approx(0.4),
                                   "perplexityGainOverInContext": None, "closerThanBase": 1.0}
    assert perplexity_from_loss(math.log(2.5)) == pytest.approx(2.5)
    assert perplexity_from_loss(1e9) == math.exp(MAX_REPORTED_LOSS) <= MAX_PERPLEXITY  # fits the report's bounds


def test_the_run_keeps_the_epoch_that_generalises_and_knows_most():
    # The measurement: perplexity is best at epoch 2 and rises as the model memorises.
    history = [{"epoch": 1, "perplexity": 22.0, "knowledge": 0.3}, {"epoch": 2, "perplexity": 18.3, "knowledge": 0.4},
               {"epoch": 3, "perplexity": 19.5, "knowledge": 0.5}, {"epoch": 4, "perplexity": 30.0, "knowledge": 0.6},
               {"epoch": 5, "perplexity": 49.0, "knowledge": 0.7}]
    assert choose_epoch(history) == 3  # within 10% of the best perplexity, and knows more than epoch 2
    assert choose_epoch(history[:2]) == 2
    assert choose_epoch([{"epoch": 1, "perplexity": 20.0, "knowledge": 0.5},
                         {"epoch": 2, "perplexity": 20.0, "knowledge": 0.5}]) == 1  # a tie keeps the earlier
    assert choose_epoch([{"epoch": 1, "perplexity": 20.0, "knowledge": None}]) == 1
    # An epoch passed over can be kept later, when the one kept falls out of tolerance of a new best.
    history = [{"epoch": 1, "perplexity": 20.0, "knowledge": 0.3}, {"epoch": 2, "perplexity": 21.5, "knowledge": 0.5}]
    assert choose_epoch(history) == 2 and eligible_epochs(history) == {1, 2}
    history.append({"epoch": 3, "perplexity": 19.5, "knowledge": 0.2})
    assert eligible_epochs(history) == {1, 3} and choose_epoch(history) == 1


def reflection(question: str, answer: str) -> Reflection:
    return Reflection(question=question, category="life", answer=answer)


def test_facts_are_names_places_years_and_numbers_not_sentence_openers():
    text = "My wife Maggie and I married in Sweet Home in 1974. The house had 3 rooms. Never again, she said."
    facts = [(kind, fact) for kind, fact, _ in find_facts(text, frozenset({"never"}))]
    assert facts == [("person", "Maggie"), ("place", "Sweet Home"), ("year", "1974"), ("number", "3")]


def test_probes_ask_about_a_fact_with_distractors_from_the_persons_other_answers():
    people = ["Maggie", "Dale", "Ben", "Anna", "Carol", "Eli"]
    reflections = [reflection(f"Question {index}?", f"I think about this often and I remember {name} the most, "
                              f"every single day.") for index, name in enumerate(people)]
    probes = build_probes(reflections, limit=10, seed=1)
    assert len(probes) == len(people)
    for probe in probes:
        source = next(r for r in reflections if r.question == probe.question)
        real = probe.choices[probe.answer]
        assert source.answer.startswith(probe.prefix) and source.answer[len(probe.prefix):].lstrip().startswith(real)
        assert len(probe.choices) == CHOICES and len(set(probe.choices)) == CHOICES
        assert all(choice in people and choice not in source.answer for choice in probe.choices if choice != real)
    assert build_probes(reflections, limit=10, seed=1) == probes  # deterministic
    assert len(build_probes(reflections, limit=2, seed=1)) == 2


def test_no_probe_without_enough_context_or_distractors():
    assert build_probes([reflection("Q?", "Maggie was there.")], limit=5, seed=0) == []  # no prefix, no pool


def test_a_gain_threshold_at_its_floor_is_off_even_for_an_adapter_worse_than_twice_the_base():
    gate = gate_from(ValidationConfig(min_perplexity_gain=-1, min_perplexity_gain_over_in_context=-1))
    assert gate.min_perplexity_gain is None and gate.min_perplexity_gain_over_in_context is None
    assert decide_passed({**TUNED, "perplexityGain": -1.5, "perplexityGainOverInContext": -2.0}, gate) == (True, [])
