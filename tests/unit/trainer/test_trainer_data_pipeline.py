"""Filtering, augmentation, chat conversion, the split and packing: the trainer's data pipeline."""

import pytest

from personalai_contracts import Reflection
from personalai_trainer.augmentation import augment_questions
from personalai_trainer.examples import (
    FALLBACK_CHAT_TEMPLATE,
    IGNORE_INDEX,
    TokenizedExample,
    build_messages,
    build_system_prompt,
    ensure_chat_template,
    split_train_validation,
    tokenize_example,
)
from personalai_trainer.filtering import filter_reflections, is_garbage
from personalai_trainer.packing import collate_rows, count_trained_tokens, pack_examples, shuffle_rows

pytestmark = pytest.mark.unit


def reflection(answer: str, question: str = "What matters to you?") -> Reflection:
    return Reflection(question=question, category="values", answer=answer)


def test_filter_counts_each_reason_and_keeps_good_answers():
    good = "My family taught me that hard work and honesty matter more than money ever will."
    answers = [good, "", "Yes, sure.", "asdf;lkj 1234 5678 !!!! #### $$$$", "la la la la la la la la la la",
               good.upper(), good.replace("ever will", "ever could"),
               "I grew up near the sea and every summer we swam until the sun went down."]
    kept, report = filter_reflections([reflection(a) for a in answers])
    assert [r.answer for r in kept] == [good, answers[-1]]
    assert report.as_dict() == {"kept": 2, "dropped": {"duplicate": 1, "empty": 1, "garbage": 2,
                                                       "near_duplicate": 1, "too_short": 1}}


def test_garbage_detection_spares_real_text_with_numbers():
    assert not is_garbage("In 1998 I moved to Berlin with 2 suitcases and 300 euros.")
    assert is_garbage("%%%% 0101 0101 #### ----")


def test_augmentation_is_deterministic_and_varied():
    first = augment_questions("What is your earliest memory?", 3, seed=7)
    assert first == augment_questions("What is your earliest memory?", 3, seed=7)
    assert first[0] == "What is your earliest memory?"
    assert first[1] == "Tell me about your earliest memory."
    assert len(set(first)) == 4
    assert augment_questions("Why?", 0, seed=1) == ["Why?"]
    many = augment_questions("Where did you grow up?", 5, seed=1)
    assert len(set(many)) == 6 and all("where did you grow up" in q.lower() for q in many)


def test_split_is_deterministic_independent_of_order_and_never_empty():
    items = [reflection(f"answer number {i} about my life and my work", f"Question {i}?") for i in range(20)]
    train, held_out = split_train_validation(items, 0.1, seed=42)
    train2, held_out2 = split_train_validation(list(reversed(items)), 0.1, seed=42)
    assert (train, held_out) == (train2, held_out2)
    assert len(held_out) == 2 and len(train) == 18 and not set(held_out) & set(train)
    assert split_train_validation(items, 0.1, seed=43)[1] != held_out
    assert [len(part) for part in split_train_validation(items[:2], 0.4, seed=1)] == [1, 1]


class CharTokenizer:
    """A stand-in tokenizer (one id per character) that renders chat templates like transformers does."""

    eos_token = "</s>"
    chat_template = None

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        import jinja2

        text = jinja2.Template(self.chat_template).render(messages=messages, eos_token=self.eos_token,
                                                          add_generation_prompt=add_generation_prompt)
        return [ord(char) for char in text]


def test_fallback_template_and_labels_only_on_the_answer():
    tokenizer = CharTokenizer()
    assert ensure_chat_template(tokenizer) and tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    messages = build_messages(build_system_prompt("Luke"), "Why?", "Because I care.")
    example = tokenize_example(tokenizer, messages, max_length=1000)
    trained = "".join(chr(label) for label in example.labels if label != IGNORE_INDEX)
    assert trained == "Because I care.</s>\n"
    assert "You are Luke" in "".join(chr(i) for i in example.input_ids)
    assert tokenize_example(tokenizer, messages, max_length=40) is None  # the prompt alone does not fit


def example(length: int, start: int = 1) -> TokenizedExample:
    ids = list(range(start, start + length))
    return TokenizedExample(ids, [IGNORE_INDEX] * (length // 2) + ids[length // 2:])


def test_packing_first_fit_decreasing_restarts_positions():
    rows = pack_examples([example(6), example(3, 100), example(5, 200), example(2, 300)], max_length=8)
    assert [row.lengths for row in rows] == [[6, 2], [5, 3]]
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 5, 0, 1]
    # The first token of every packed example is never a target (it would be predicted from the previous one).
    assert rows[0].labels[6] == IGNORE_INDEX and rows[0].labels[0] == IGNORE_INDEX
    with pytest.raises(ValueError, match="example 0 has 9 tokens"):
        pack_examples([example(9)], max_length=8)


def test_collate_pads_as_a_separate_sequence_or_flattens():
    rows = pack_examples([example(6), example(3, 100), example(5, 200)], max_length=8)
    padded = collate_rows(rows, pad_id=0)
    assert [len(ids) for ids in padded["input_ids"]] == [8, 8]
    assert padded["position_ids"][0] == [0, 1, 2, 3, 4, 5, 0, 1]  # the padding is its own sequence
    assert padded["labels"][0][6:] == [IGNORE_INDEX, IGNORE_INDEX] and padded["input_ids"][0][6:] == [0, 0]
    flat = collate_rows(rows, pad_id=0, flatten=True)
    assert len(flat["input_ids"]) == 1 and len(flat["input_ids"][0]) == sum(len(r) for r in rows)
    assert count_trained_tokens(rows) == sum(label != IGNORE_INDEX for label in flat["labels"][0][1:])


def test_row_order_changes_per_epoch_but_repeats_for_the_seed():
    rows = pack_examples([example(3, i * 10) for i in range(12)], max_length=3)
    assert shuffle_rows(rows, 1, 0) == shuffle_rows(rows, 1, 0)
    assert shuffle_rows(rows, 1, 0) != shuffle_rows(rows, 1, 1)
