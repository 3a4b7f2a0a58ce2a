"""Learning-rate schedule and the micro-batch decisions (plan, grow/shrink, out-of-memory)."""

import pytest

from personalai_trainer.batching import GIB, MicroBatchController, ModelShape, plan_micro_batch
from personalai_trainer.schedule import learning_rate_at

pytestmark = pytest.mark.unit

MISTRAL_7B = ModelShape(parameters=7_240_000_000, hidden_size=4096, intermediate_size=14336, layers=32,
                        vocab_size=32768, quantized_4bit=True)


def test_warmup_rises_then_cosine_decays_to_a_tenth():
    rates = [learning_rate_at(step, 100, 10, 2e-4) for step in range(100)]
    assert rates[0] < rates[5] < rates[9] < 2e-4
    assert rates[10] == pytest.approx(2e-4)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(2e-5)


def test_short_run_caps_warmup_so_the_peak_is_reached():
    rates = [learning_rate_at(step, 6, 10, 1.0) for step in range(6)]
    assert max(rates) == pytest.approx(1.0)
    assert rates[0] < 1.0


def test_cpu_run_keeps_the_requested_micro_batch():
    plan = plan_micro_batch(free_bytes=None, shape=MISTRAL_7B, row_tokens=1024, rows_per_step=8, requested=4,
                            checkpointing_mode="auto", dynamic=True)
    assert (plan.micro_batch, plan.checkpointing) == (4, False)


def test_big_gpu_uses_all_rows_without_checkpointing():
    plan = plan_micro_batch(free_bytes=78 * GIB, shape=MISTRAL_7B, row_tokens=1024, rows_per_step=4,
                            requested="auto", checkpointing_mode="auto", dynamic=True)
    assert (plan.micro_batch, plan.checkpointing) == (4, False)


def test_rtx_5090_shrinks_micro_batch_before_turning_checkpointing_on():
    plan = plan_micro_batch(free_bytes=30 * GIB, shape=MISTRAL_7B, row_tokens=1024, rows_per_step=4,
                            requested="auto", checkpointing_mode="auto", dynamic=True)
    assert not plan.checkpointing and 1 <= plan.micro_batch < 4


def test_small_gpu_needs_checkpointing_and_forced_off_starts_at_one_row():
    plan = plan_micro_batch(free_bytes=8 * GIB, shape=MISTRAL_7B, row_tokens=4096, rows_per_step=4,
                            requested="auto", checkpointing_mode="auto", dynamic=True)
    assert plan.checkpointing
    off = plan_micro_batch(free_bytes=5 * GIB, shape=MISTRAL_7B, row_tokens=4096, rows_per_step=4,
                           requested="auto", checkpointing_mode="off", dynamic=True)
    assert (off.micro_batch, off.checkpointing) == (1, False)


def test_controller_grows_into_spare_memory_and_shrinks_near_the_top():
    controller = MicroBatchController(micro_batch=1, max_micro_batch=8, checkpointing=False)
    assert controller.after_step(0.3) == "grew micro-batch to 2"
    controller.after_step(0.3)
    assert controller.micro_batch == 4
    assert controller.after_step(0.7) is None
    assert controller.after_step(0.95) == "shrank micro-batch to 2"
    assert controller.after_step(None) is None


def test_out_of_memory_halves_then_turns_on_checkpointing_then_gives_up():
    controller = MicroBatchController(micro_batch=4, max_micro_batch=8, checkpointing=False, checkpointing_mode="auto")
    assert controller.on_out_of_memory() == "out of memory: halved micro-batch to 2"
    assert controller.max_micro_batch == 2  # never grows back into the size that failed
    controller.on_out_of_memory()
    assert "checkpointing on" in controller.on_out_of_memory() and controller.checkpointing
    with pytest.raises(MemoryError, match="micro-batch of one packed row"):
        controller.on_out_of_memory()


def test_fixed_checkpointing_mode_is_not_overridden_on_oom():
    controller = MicroBatchController(micro_batch=1, max_micro_batch=4, checkpointing=False, checkpointing_mode="off")
    with pytest.raises(MemoryError, match="gradient checkpointing off"):
        controller.on_out_of_memory()
