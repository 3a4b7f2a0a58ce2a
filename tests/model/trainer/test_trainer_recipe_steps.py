"""The training step on the tiny Mistral: loss falls (float32 LoRA and 4-bit NF4), packing keeps
examples apart, the micro-batch size does not change the math, and an out-of-memory error is recovered."""

from __future__ import annotations

import pytest
import torch

from personalai_contracts import parse_reflections
from personalai_contracts.trainer_config import LoraConfig
from personalai_trainer.batching import MicroBatchController
from personalai_trainer.examples import build_examples, build_system_prompt
from personalai_trainer.loop import train_step
from personalai_trainer.modeling import apply_lora, load_base_model
from personalai_trainer.packing import collate_rows, pack_examples

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def rows(tokenizer, reflections):
    import json

    parsed = parse_reflections("\n".join(json.dumps(r) for r in reflections), "r.jsonl")
    examples, _ = build_examples(tokenizer, parsed[:16], build_system_prompt("Luke"), 512)
    return pack_examples(examples, 512)


def lora_model(tiny_model_dir, quantization="none", attention="sdpa", dropout=0.0):
    torch.manual_seed(0)
    model = load_base_model(str(tiny_model_dir), quantization=quantization, attention=attention, dtype=torch.float32,
                            device="cpu")
    return apply_lora(model, LoraConfig(rank=8, alpha=16, dropout=dropout), gradient_checkpointing=False)


def run_steps(model, rows, pad_id, steps, micro_batch=2, learning_rate=5e-3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    controller = MicroBatchController(micro_batch, len(rows), checkpointing=False, dynamic=False)
    return [train_step(model, optimizer, rows, controller, pad_id=pad_id, flatten=False, device="cpu",
                       dtype=torch.float32, learning_rate=learning_rate).loss for _ in range(steps)]


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_loss_falls_over_a_few_steps(tiny_model_dir, tokenizer, rows, quantization):
    model = lora_model(tiny_model_dir, quantization)
    if quantization == "nf4":
        import bitsandbytes as bnb

        assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    losses = run_steps(model, rows[:4], tokenizer.pad_token_id, steps=6)
    assert losses[-1] < losses[0] * 0.97, losses


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, tokenizer, rows, attention):
    model = lora_model(tiny_model_dir, attention=attention).eval()
    first = pack_examples([_example(rows, 0), _example(rows, 1)], 4096)[0]
    lengths = first.lengths
    with torch.no_grad():
        packed = model(input_ids=torch.tensor([first.input_ids]), position_ids=torch.tensor([first.position_ids]),
                       use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([first.input_ids[lengths[0]:]]), use_cache=False).logits[0]
        # Without restarting positions the second example would see the first: the logits must differ.
        leaky = model(input_ids=torch.tensor([first.input_ids]), use_cache=False).logits[0]
    assert torch.allclose(packed[lengths[0]:], alone, atol=1e-4)
    assert not torch.allclose(leaky[lengths[0]:], alone, atol=1e-3)


def _example(rows, index):
    from personalai_trainer.examples import TokenizedExample

    row = rows[index]
    length = row.lengths[0]
    return TokenizedExample(row.input_ids[:length], row.labels[:length])


def test_micro_batch_size_does_not_change_the_step(tiny_model_dir, tokenizer, rows):
    one, four = lora_model(tiny_model_dir), lora_model(tiny_model_dir)
    loss_one = run_steps(one, rows[:4], tokenizer.pad_token_id, steps=1, micro_batch=1)
    loss_four = run_steps(four, rows[:4], tokenizer.pad_token_id, steps=1, micro_batch=4)
    assert loss_one == pytest.approx(loss_four, rel=1e-4)
    for (name, a), (_, b) in zip(one.named_parameters(), four.named_parameters()):
        if a.requires_grad:
            assert torch.allclose(a, b, atol=1e-5), name


def test_out_of_memory_halves_the_micro_batch_and_retries_the_step(tiny_model_dir, tokenizer, rows):
    reference, injected = lora_model(tiny_model_dir), lora_model(tiny_model_dir)
    fired = []

    def raise_once_on_big_batches(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 2 and not fired:
            fired.append(kwargs["input_ids"].shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    injected.get_base_model().get_decoder().register_forward_pre_hook(raise_once_on_big_batches, with_kwargs=True)
    pad_id = tokenizer.pad_token_id
    optimizer = torch.optim.AdamW([p for p in injected.parameters() if p.requires_grad], lr=5e-3)
    controller = MicroBatchController(4, 4, checkpointing=False, checkpointing_mode="off")
    result = train_step(injected, optimizer, rows[:4], controller, pad_id=pad_id, flatten=False, device="cpu",
                        dtype=torch.float32, learning_rate=5e-3)
    assert fired == [4]
    assert result.recoveries == ["out of memory: halved micro-batch to 2"] and controller.micro_batch == 2
    expected = run_steps(reference, rows[:4], pad_id, steps=1, micro_batch=4)[0]
    assert result.loss == pytest.approx(expected, rel=1e-4)
    for (name, a), (_, b) in zip(reference.named_parameters(), injected.named_parameters()):
        if a.requires_grad:
            assert torch.allclose(a, b, atol=1e-5), name


def test_flattened_micro_batch_matches_padded_rows(tiny_model_dir, tokenizer, rows):
    """The FlashAttention layout (one flattened row) gives the same loss as padded rows under SDPA."""
    from personalai_trainer.loop import summed_loss, to_tensors

    model = lora_model(tiny_model_dir).eval()
    with torch.no_grad():
        padded = summed_loss(model, to_tensors(collate_rows(rows[:3], tokenizer.pad_token_id), "cpu"), torch.float32)
        flat = summed_loss(model, to_tensors(collate_rows(rows[:3], tokenizer.pad_token_id, flatten=True), "cpu"),
                           torch.float32)
    assert padded.item() == pytest.approx(flat.item(), rel=1e-4)


def test_answer_only_chunked_loss_matches_full_logits_and_their_gradients(tiny_model_dir, tokenizer, rows, monkeypatch):
    """Logits only at answer positions, in checkpointed chunks: the same loss and LoRA gradients as
    the plain full-logits cross-entropy."""
    import torch.nn.functional as F

    from personalai_trainer import loop
    from personalai_trainer.examples import IGNORE_INDEX

    monkeypatch.setattr(loop, "LOSS_CHUNK_TOKENS", 7)  # many chunks, a ragged last one
    batch = loop.to_tensors(collate_rows(rows[:3], tokenizer.pad_token_id), "cpu")
    model = lora_model(tiny_model_dir)
    ours = loop.summed_loss(model, batch, torch.float32)
    ours.backward()
    ours_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    full = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    full.backward()
    assert ours.item() == pytest.approx(full.item(), rel=1e-5)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert torch.allclose(ours_grads[name], parameter.grad, atol=1e-6, rtol=1e-4), name
