"""Training throughput: our step loop against a plain Hugging Face QLoRA baseline, same model, one run.

    python benchmarks/train_throughput.py            # GPU: Mistral-7B shape, random weights, 4-bit
    python benchmarks/train_throughput.py --tiny     # CPU smoke: a tiny Mistral, seconds

Both sides train LoRA (all linear layers, rank 16) on the same NF4 base (double quantization, bf16
compute on GPU) over the same synthetic chat examples (lengths spread like real reflections):
- baseline: transformers + peft + bitsandbytes with `prepare_model_for_kbit_training`, batch 4
  examples padded to the longest, gradient checkpointing on, no packing (the Trainer's step: bf16
  autocast, fused AdamW).
- ours: personalai_trainer's loop: examples packed into 4 rows of `--seq` tokens with restarting
  position ids, SDPA/FlashAttention 2, checkpointing only when the memory plan needs it, micro-batch
  from free VRAM, no float32 upcast of the frozen model.
tokens/s counts real (non-pad) tokens. Speed and memory do not depend on the weights' values, so the
weights are random: written shard by shard to a temporary folder and quantized as they load.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from personalai_contracts.trainer_config import LoraConfig
from personalai_trainer.batching import MicroBatchController, ModelShape, plan_micro_batch
from personalai_trainer.config import choose_attention, probe_machine
from personalai_trainer.examples import IGNORE_INDEX, TokenizedExample
from personalai_trainer.loop import train_step
from personalai_trainer.modeling import apply_lora, load_base_model
from personalai_trainer.packing import pack_examples

MISTRAL_7B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
              "intermediate_size": 14336, "vocab_size": 32768, "head_dim": 128}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 512, "head_dim": 16}
SHARD_BYTES = 2 * 1024**3
LORA = LoraConfig(rank=16, alpha=32, dropout=0.05)
BATCH = 4  # the baseline's batch size and our rows per optimizer step


def write_random_model(directory: Path, shape: dict, max_positions: int, dtype: torch.dtype) -> Path:
    """A Mistral checkpoint with random weights, one tensor at a time (never the whole model in memory)."""
    from safetensors.torch import save_file
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**shape, max_position_embeddings=max_positions, sliding_window=None,
                           tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device("meta"):
        skeleton = MistralForCausalLM(config)
    generator = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    shard_number, shard_size, total = 0, 0, 0

    def flush() -> None:
        nonlocal shard, shard_number, shard_size
        if shard:
            name = f"model-{shard_number:05d}.safetensors"
            save_file(shard, directory / name, metadata={"format": "pt"})
            index.update({key: name for key in shard})
            shard, shard_number, shard_size = {}, shard_number + 1, 0

    directory.mkdir(parents=True, exist_ok=True)
    for name, parameter in skeleton.named_parameters():
        if parameter.dim() == 1:  # RMSNorm weights: ones, as initialised
            tensor = torch.ones(parameter.shape, dtype=dtype)
        else:
            tensor = torch.empty(parameter.shape, dtype=dtype).normal_(0, 0.02, generator=generator)
        size = tensor.numel() * tensor.element_size()
        if shard_size + size > SHARD_BYTES:
            flush()
        shard[name], shard_size, total = tensor, shard_size + size, total + size
    flush()
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index}))
    config.save_pretrained(directory)
    return directory


def make_examples(count: int, max_length: int, vocab: int, seed: int) -> list[TokenizedExample]:
    """Chat-shaped examples: lengths spread like persona Q&A (median near 40% of the window), the first
    third a prompt (masked), the rest an answer."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        length = max(16, min(max_length, int(rng.lognormvariate(math.log(max_length * 0.4), 0.5))))
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = length // 3
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed_steps(run_step, warmup: int, steps: int, device: str) -> tuple[float, int]:
    for _ in range(warmup):
        run_step()
    synchronize(device)
    started, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += run_step()
    synchronize(device)
    return time.perf_counter() - started, tokens


def run_baseline(model_dir: Path, examples, args, device: str, dtype: torch.dtype) -> dict:
    """The plain recipe: prepare_model_for_kbit_training, padded batches of 4, checkpointing on."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    release(device)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization, dtype=dtype,
                                                 device_map={"": device})
    if device == "cpu":  # bitsandbytes' CPU inference repacking breaks backward (see modeling.py)
        from personalai_trainer.modeling import keep_4bit_weights_trainable_on_cpu
        keep_4bit_weights_trainable_on_cpu(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, PeftLoraConfig(r=LORA.rank, lora_alpha=LORA.alpha, lora_dropout=LORA.dropout,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                                  fused=device == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    position = [0]

    def step() -> int:
        start = position[0] % len(examples)
        batch = [examples[(start + i) % len(examples)] for i in range(BATCH)]
        position[0] += BATCH
        width = max(len(e) for e in batch)
        input_ids = torch.tensor([e.input_ids + [0] * (width - len(e)) for e in batch], device=device)
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in batch], device=device)
        labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e)) for e in batch], device=device)
        with autocast:
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return sum(len(e) for e in batch)

    seconds, tokens = timed_steps(step, args.warmup_steps, args.steps, device)
    result = {"tokensPerSecond": tokens / seconds, "stepSeconds": seconds / args.steps,
              "peakVramMiB": torch.cuda.max_memory_allocated() // 2**20 if device == "cuda" else None,
              "gradientCheckpointing": True, "microBatch": BATCH}
    model = optimizer = None  # drop the closure's references so release() frees the GPU
    release(device)
    return result


def run_ours(model_dir: Path, examples, args, device: str, dtype: torch.dtype, attention: str) -> dict:
    """personalai_trainer's recipe: packed rows, memory-planned micro-batch and checkpointing."""
    release(device)
    model = load_base_model(str(model_dir), quantization="nf4", attention=attention, dtype=dtype, device=device)
    free = torch.cuda.mem_get_info()[0] if device == "cuda" else None
    plan = plan_micro_batch(free_bytes=free, shape=ModelShape.from_config(model.config, quantized_4bit=True),
                            row_tokens=args.seq, rows_per_step=BATCH, requested="auto",
                            checkpointing_mode="auto", dynamic=True)
    model = apply_lora(model, LORA, gradient_checkpointing=plan.checkpointing)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                                  fused=device == "cuda")
    controller = MicroBatchController(plan.micro_batch, BATCH, plan.checkpointing, "auto", dynamic=True)
    rows = pack_examples(examples, args.seq)
    position = [0]

    def step() -> int:
        start = position[0] % len(rows)
        chunk = [rows[(start + i) % len(rows)] for i in range(BATCH)]
        position[0] += BATCH
        train_step(model, optimizer, chunk, controller, pad_id=0, flatten=attention == "flash_attention_2",
                   device=device, dtype=dtype, learning_rate=2e-4)
        return sum(len(row) for row in chunk)

    seconds, tokens = timed_steps(step, args.warmup_steps, args.steps, device)
    result = {"tokensPerSecond": tokens / seconds, "stepSeconds": seconds / args.steps,
              "peakVramMiB": torch.cuda.max_memory_allocated() // 2**20 if device == "cuda" else None,
              "gradientCheckpointing": controller.checkpointing, "microBatch": controller.micro_batch,
              "attention": attention, "packedRows": len(rows)}
    model = optimizer = None  # drop the closure's references so release() frees the GPU
    release(device)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Mistral on the CPU (CI smoke)")
    parser.add_argument("--seq", type=int, default=None, help="sequence length (default 1024, tiny 128)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10, tiny 3)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default 2, tiny 1)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--model-dir", type=Path, help="reuse (or keep) the random-weight model here")
    args = parser.parse_args(argv)
    args.seq = args.seq or (128 if args.tiny else 1024)
    args.steps = args.steps or (3 if args.tiny else 10)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if args.tiny else 2)

    machine = probe_machine()
    if not args.tiny and not machine.cuda:
        sys.exit("train_throughput: the full benchmark needs a CUDA GPU; use --tiny on the CPU")
    device = "cuda" if machine.cuda and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and machine.bf16 else torch.float32
    attention = choose_attention("auto", machine) if device == "cuda" else "sdpa"
    shape = TINY if args.tiny else MISTRAL_7B
    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))

    with tempfile.TemporaryDirectory(prefix="personalai-bench-") as scratch:
        model_dir = args.model_dir or Path(scratch) / "model"
        if not (model_dir / "config.json").exists():
            started = time.perf_counter()
            write_random_model(model_dir, shape, max(4096, args.seq), torch.bfloat16 if device == "cuda" else dtype)
            print(f"wrote random {('tiny' if args.tiny else 'Mistral-7B-shaped')} model in "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
        examples = make_examples(args.examples, args.seq, shape["vocab_size"], seed=0)
        baseline = run_baseline(model_dir, examples, args, device, dtype)
        ours = run_ours(model_dir, examples, args, device, dtype, attention)

    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "shape": shape,
               "seq": args.seq, "steps": args.steps, "baseline": baseline, "ours": ours,
               "speedup": ours["tokensPerSecond"] / baseline["tokensPerSecond"]}
    print(f"device: {results['device']}  seq {args.seq}  {args.steps} timed steps")
    for name in ("baseline", "ours"):
        entry = results[name]
        vram = f"{entry['peakVramMiB']} MiB" if entry["peakVramMiB"] is not None else "n/a (CPU)"
        print(f"{name:>9}: {entry['tokensPerSecond']:10.1f} tokens/s  peak VRAM {vram}  "
              f"micro-batch {entry['microBatch']}  checkpointing {entry['gradientCheckpointing']}")
    print(f"speedup (ours / baseline tokens/s): {results['speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
