"""Readiness levels and the "what is missing" text the operator puts into status.dataAssessment."""

import pytest

from personalai_contracts import Reflection, assess_readiness, count_words

pytestmark = pytest.mark.unit


def make(count: int, words: int, categories: int) -> list[Reflection]:
    return [Reflection(question=f"Question {i}?", category=f"Topic {i % categories}", answer=" ".join(["word"] * words))
            for i in range(count)]


def test_below_minimum_lists_each_shortfall():
    assessment = assess_readiness(make(14, 25, 2))
    assert assessment.level == "insufficient"
    assert assessment.missing == ["14 of 20 responses", "25 of 30 average words", "2 of 3 categories",
                                  "350 of 1,000 words"]
    assert assessment.message.startswith("Not enough reflections to train yet: 14 of 20 responses")


def test_minimum_level_names_what_optimal_still_needs():
    assessment = assess_readiness(make(40, 60, 4))
    assert assessment.level == "minimum"
    assert assessment.missing == ["40 of 100 responses", "60 of 100 average words", "4 of 8 categories",
                                  "2,400 of 5,000 words"]
    assert "optimal" in assessment.message


def test_optimal_level_has_nothing_missing():
    assessment = assess_readiness(make(100, 100, 8))
    assert (assessment.level, assessment.missing) == ("optimal", [])
    assert assessment.total_words == 10_000


def test_exact_minimum_thresholds_pass():
    assert assess_readiness(make(20, 50, 3)).level == "minimum"
    assert assess_readiness(make(20, 49, 3)).missing == ["980 of 1,000 words"]


def test_empty_answers_do_not_count_and_categories_fold_case():
    reflections = make(20, 50, 3) + [Reflection(question="Q?", category="topic 0", answer="   ")]
    assessment = assess_readiness(reflections)
    assert (assessment.responses, assessment.categories) == (20, 3)


def test_dump_uses_status_field_names():
    dumped = assess_readiness(make(3, 10, 1)).model_dump(by_alias=True)
    assert set(dumped) == {"responses", "averageWords", "categories", "totalWords", "level", "missing", "message"}
    assert dumped["averageWords"] == 10.0


def test_fractional_average_and_no_data():
    reflections = [Reflection(question="a?", category="x", answer="one two"),
                   Reflection(question="b?", category="x", answer="one")]
    assert assess_readiness(reflections).missing[1] == "1.5 of 30 average words"
    empty = assess_readiness([])
    assert (empty.level, empty.average_words, empty.missing[0]) == ("insufficient", 0.0, "0 of 20 responses")


def test_word_count_keeps_contractions_whole():
    assert count_words("I don't know—well-being matters, 42 times.") == 7
