"""The pieces of issue 11 on the server: tokens re-read on change, modes added to the built-ins, confidence."""

from __future__ import annotations

import math

import pytest

from personalai_server.auth import TokenStore, hash_token
from personalai_server.config import DEFAULT_MODES, Conversation
from personalai_server.engines.base import GenerationStats

pytestmark = pytest.mark.unit

OLD, NEW = "old-token-0123456789abcdef", "new-token-0123456789abcdef"


def test_the_store_re_reads_a_changed_folder_and_keeps_its_tokens_when_the_new_ones_are_bad(tmp_path):
    (tmp_path / "token").write_text(OLD)
    store = TokenStore.from_dir(tmp_path)
    assert store.authenticate(OLD).owner == hash_token(OLD) and not store.refresh()  # unchanged: no read
    (tmp_path / "token.new").write_text(NEW)
    (tmp_path / "token.new").replace(tmp_path / "token")
    assert store.authenticate(OLD) is None and store.authenticate(NEW).owner == hash_token(NEW)
    (tmp_path / "token").write_text("short")  # refused by the reader: NEW stays in force
    assert store.authenticate(NEW) is not None and len(store) == 1


def test_fixed_digests_are_never_re_read():
    store = TokenStore({hash_token(OLD)})
    assert not store.refresh() and store.authenticate(OLD) is not None


def test_own_modes_are_added_to_the_built_in_ones_unless_replace_is_asked():
    own = {"storyteller": {"systemPrompt": "Tell a story."}, "wise": {"systemPrompt": "Be brief.", "temperature": 0.1}}
    added = Conversation.model_validate({"personalityModes": own, "defaultMode": "storyteller"})
    assert set(added.personality_modes) == set(DEFAULT_MODES) | {"storyteller"}
    assert added.personality_modes["wise"].temperature == 0.1  # a mode of the same name wins
    assert Conversation.model_validate(added.model_dump(by_alias=True)) == added  # a reload reads the same
    replaced = Conversation.model_validate({"personalityModes": own, "defaultMode": "storyteller",
                                            "modesPolicy": "replace"})
    assert set(replaced.personality_modes) == {"storyteller", "wise"}
    with pytest.raises(ValueError, match="modesPolicy"):
        Conversation.model_validate({"modesPolicy": "merge"})


def test_confidence_is_the_mean_token_probability_rounded_or_none_without_probabilities():
    stats = GenerationStats()
    assert stats.confidence is None  # tgi and vllm record none
    for probability in (0.9, 0.5, 0.6):
        stats.record_probability(probability)
    assert stats.confidence == pytest.approx(0.667)


def test_a_token_probability_is_the_softmax_at_temperature_one():
    torch = pytest.importorskip("torch")
    from personalai_server.engines.local import token_probability

    logits = torch.tensor([2.0, 1.0, 0.0])
    expected = math.exp(1.0) / sum(math.exp(x) for x in (2.0, 1.0, 0.0))
    assert token_probability(logits, 1) == pytest.approx(expected)
