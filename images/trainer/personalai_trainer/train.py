"""The training recipe: config, model, data, train, validate, save. Reads top to bottom.

    python -m personalai_trainer --config /etc/personalai/config.json

Every config default lives in personalai_contracts.trainer_config with its reason; the helpers
(packing, batching, schedule, validation, reporting) are pure or small and tested on their own.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from personalai_contracts import ReflectionsError, gate, parse_reflections
from personalai_contracts.paths import resolve
from personalai_contracts.trainer_config import TrainerConfig
from personalai_trainer.config import check_environment, choose_attention, probe_machine
from personalai_trainer.errors import ConfigError, DataError
from personalai_trainer.reporting import StatusReporter, TrainerMetrics, build_progress, log_event


@dataclass
class RunResult:
    output: Path
    manifest_sha256: str
    metrics: dict
    passed: bool
    resumed_from_step: int | None
    thermal: dict | None = None  # status.thermal as last reported (None: no GPU temperature to act on)


def main(config: TrainerConfig) -> RunResult:
    import torch

    from personalai_contracts import memory
    from personalai_contracts.artifacts import write_manifest
    from personalai_trainer import checkpoints, fidelity, validation
    from personalai_trainer.batching import MicroBatchController, ModelShape, plan_micro_batch, rows_per_step
    from personalai_trainer.examples import (
        build_examples,
        build_system_prompt,
        ensure_chat_template,
        split_train_validation,
    )
    from personalai_trainer.filtering import filter_reflections
    from personalai_trainer.loop import evaluate_loss, train_step
    from personalai_trainer.modeling import (
        apply_lora,
        choose_compute_dtype,
        count_parameters,
        load_base_model,
        model_max_positions,
        resolve_base_model,
        save_adapter,
    )
    from personalai_trainer.packing import pack_examples, shuffle_rows
    from personalai_trainer.schedule import learning_rate_at
    from personalai_trainer.telemetry import read_gpu
    from personalai_trainer.thermal import ThermalGuard

    # --- config: check everything that can fail before anything slow starts --------------------------
    training = config.training
    seed_everything(training.seed)
    machine = probe_machine()
    source, cache_dir = resolve_base_model(config)
    try:
        max_positions = model_max_positions(source, cache_dir)
    except OSError:
        raise ConfigError(f"baseModel {config.base_model}: no local model dir, no copy under paths.modelCache, "
                          f"and it cannot be downloaded") from None
    check_environment(config, machine, max_positions)
    attention = choose_attention(training.attention, machine)
    device = "cuda" if machine.cuda else "cpu"
    dtype = choose_compute_dtype(machine, training.quantization)
    reporter = StatusReporter(config.run.namespace, config.run.name, config.reporting.kubernetes,
                              config.reporting.min_interval_seconds)
    metrics = TrainerMetrics(config.reporting.metrics_port, config.run.name)

    # --- data: read, filter, split, augment, tokenize, pack --------------------------------------------
    raw_bytes = read_reflections_file(config.paths.reflections)
    try:
        reflections = parse_reflections(raw_bytes, config.paths.reflections)
    except ReflectionsError as error:
        raise DataError(f"paths.reflections: {error}") from None
    kept, filter_report = filter_reflections(reflections)
    log_event("data filtered", read=len(reflections), **filter_report.as_dict())
    if len(kept) < 2:
        raise DataError(f"paths.reflections: {len(kept)} usable reflections after filtering "
                        f"(dropped {filter_report.as_dict()['dropped']}); at least 2 are needed")
    train_reflections, held_out = split_train_validation(kept, training.validation_split, training.seed)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, cache_dir=cache_dir)
    if ensure_chat_template(tokenizer):
        log_event("tokenizer has no chat template; using the fallback template")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    system_prompt = build_system_prompt(config.persona.display_name)
    train_examples, train_too_long = build_examples(tokenizer, train_reflections, system_prompt,
                                                    training.max_seq_length, phrasings=training.augment_phrasings,
                                                    seed=training.seed)
    eval_examples, eval_too_long = build_examples(tokenizer, held_out, system_prompt, training.max_seq_length)
    if not train_examples:
        raise DataError("paths.reflections: no example fits training.maxSeqLength")
    train_rows = pack_examples(train_examples, training.max_seq_length)
    evaluation = fidelity.build_evaluation_set(system_prompt, train_reflections, held_out,
                                               max_samples=config.validation.max_samples,
                                               probes=config.validation.probes, seed=training.seed)
    eval_rows = pack_examples(eval_examples, training.max_seq_length)
    log_event("data ready", trainReflections=len(train_reflections), heldOut=len(held_out),
              trainExamples=len(train_examples), packedRows=len(train_rows),
              tokens=sum(len(row) for row in train_rows), tooLong=train_too_long + eval_too_long)

    # --- model: quantized base, LoRA, micro-batch from free memory -----------------------------------------
    model = load_base_model(source, quantization=training.quantization, attention=attention, dtype=dtype,
                            device=device, cache_dir=cache_dir)
    shape = ModelShape.from_config(model.config, quantized_4bit=training.quantization == "nf4")
    step_rows = rows_per_step(training)
    free_bytes = torch.cuda.mem_get_info()[0] if machine.cuda else None
    plan = plan_micro_batch(free_bytes=free_bytes, shape=shape, row_tokens=training.max_seq_length,
                            rows_per_step=step_rows, requested=training.batch_size,
                            checkpointing_mode=training.gradient_checkpointing, dynamic=training.dynamic_batching)
    model = apply_lora(model, training.lora, gradient_checkpointing=plan.checkpointing)
    candidates = fidelity.standard_candidates(model, train_reflections, training.seed)
    max_answer_tokens = training.max_seq_length  # the answer tokens training would have seen
    current = load_current_adapter(model, config)
    if current:
        candidates[validation.CURRENT] = fidelity.Candidate(validation.CURRENT, model, current)
    trainable, total_parameters = count_parameters(model)
    log_event("model ready", attention=attention, dtype=str(dtype).removeprefix("torch."), device=device,
              quantization=training.quantization, trainableParameters=trainable, parameters=total_parameters,
              microBatch=plan.micro_batch, gradientCheckpointing=plan.checkpointing, plan=plan.reason)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=training.learning_rate,
                                  weight_decay=0.0, fused=machine.cuda)  # fused: one kernel per step on GPU
    controller = MicroBatchController(plan.micro_batch, step_rows, plan.checkpointing,
                                      training.gradient_checkpointing, training.dynamic_batching)
    flatten = attention == "flash_attention_2"  # varlen FlashAttention reads packing from a single row
    pad_id = tokenizer.pad_token_id

    # --- train: resume where a killed pod stopped; every step covers the same rows whatever the memory --------
    steps_per_epoch = math.ceil(len(train_rows) / step_rows)
    total_steps = steps_per_epoch * training.epochs
    fingerprint = run_fingerprint(config, raw_bytes)
    checkpoint_root = resolve(config.paths.checkpoints)
    state = checkpoints.load_latest_checkpoint(checkpoint_root, model, optimizer, fingerprint)
    start_step = state.step if state else 0
    if state:
        controller.micro_batch, controller.checkpointing = state.micro_batch, state.checkpointing
        log_event("resumed", step=start_step, totalSteps=total_steps)
    model.train()
    loss = eval_loss = None
    epochs_seen: list[dict] = []  # per finished epoch: held-out perplexity and knowledge-probe accuracy
    snapshots: dict[int, dict] = {}  # LoRA weights of the epochs that may still be kept
    tokens_per_second = 0.0
    seconds_per_step: float | None = None
    guard = ThermalGuard(training.thermal, lambda: read_gpu().get("gpuTemperatureC"))
    for step in range(start_step, total_steps):
        throttled_before = guard.paused_seconds
        guard.before_step()  # above the GPU temperature limit: wait here, between steps, never inside one
        if guard.paused_seconds > throttled_before:
            metrics.thermal_paused_seconds.inc(guard.paused_seconds - throttled_before)
            log_event("gpu throttled", step=step, **guard.report())
        epoch, index = divmod(step, steps_per_epoch)
        rows = shuffle_rows(train_rows, training.seed, epoch)[index * step_rows:
                                                            (index + 1) * step_rows]
        if machine.cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train_step(model, optimizer, rows, controller, pad_id=pad_id, flatten=flatten, device=device,
                            dtype=dtype, learning_rate=learning_rate_at(step, total_steps, training.warmup_steps,
                                                                        training.learning_rate))
        for recovery in result.recoveries:
            metrics.oom_recoveries.inc()
            log_event("out of memory recovered", step=step + 1, action=recovery)
        loss = result.loss
        if not math.isfinite(loss):
            raise DataError(f"training diverged at step {step + 1} (loss {loss}); lower training.learningRate")
        tokens_per_second = sum(len(row) for row in rows) / max(result.seconds, 1e-9)
        seconds_per_step = result.seconds if seconds_per_step is None else 0.8 * seconds_per_step + 0.2 * result.seconds
        if machine.cuda:
            change = controller.after_step(torch.cuda.max_memory_allocated() / torch.cuda.mem_get_info()[1])
            if change:
                log_event("micro-batch", step=step + 1, action=change)
        done = step + 1
        log_event("step", step=done, loss=round(loss, 5), tokensPerSecond=round(tokens_per_second, 1),
                  microBatch=controller.micro_batch)
        if done % steps_per_epoch == 0 and eval_rows:
            eval_loss = evaluate_loss(model, eval_rows, pad_id=pad_id, flatten=flatten, device=device, dtype=dtype,
                                      micro_batch=controller.micro_batch)
            # The run keeps the epoch that generalises and knows the most, not the last (validation.choose_epoch).
            scores = fidelity.quick_scores(tokenizer, evaluation, candidates[validation.ADAPTER],
                                           device=device, max_answer_tokens=max_answer_tokens)
            epochs_seen.append({"epoch": done // steps_per_epoch, **scores})
            snapshots[done // steps_per_epoch] = lora_snapshot(model)
            kept_epoch = validation.choose_epoch(epochs_seen)
            # An epoch out of tolerance of the best perplexity can never be kept again: drop its weights.
            eligible = validation.eligible_epochs(epochs_seen)
            snapshots = {epoch: weights for epoch, weights in snapshots.items() if epoch in eligible}
            log_event("epoch scored", epoch=done // steps_per_epoch, keptEpoch=kept_epoch,
                      perplexity=round(scores["perplexity"], 3), knowledge=scores["knowledge"])
        if done % training.checkpoint_every_steps == 0 and done < total_steps:
            path = checkpoints.save_checkpoint(checkpoint_root, model, optimizer, checkpoints.TrainerState(
                done, controller.micro_batch, controller.checkpointing, fingerprint))
            log_event("checkpoint", step=done, path=str(path))
        progress = build_progress(step=done, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                  total_epochs=training.epochs, loss=loss, eval_loss=eval_loss,
                                  tokens_per_second=tokens_per_second, seconds_per_step=seconds_per_step,
                                  micro_batch=controller.micro_batch, gpu=read_gpu())
        metrics.observe(progress)
        reporter.send(with_thermal({"progress": progress}, guard), force=done == total_steps)

    # --- validate: the kept epoch against the base model and the base model prompted in context ---------------
    selected_epoch = validation.choose_epoch(epochs_seen) if epochs_seen else training.epochs
    if selected_epoch in snapshots:
        restore_lora(model, snapshots[selected_epoch])
    eval_loss = evaluate_loss(model, eval_rows, pad_id=pad_id, flatten=flatten, device=device, dtype=dtype,
                              micro_batch=controller.micro_batch)
    embedder = memory.load_embedder(device)
    if config.memory.enabled:  # score what will be served: adapter and base with memory; both also without
        recaller = fidelity.Recaller(train_reflections, embedder, tokenizer, config.memory.settings())
        candidates = fidelity.with_memory(candidates, recaller)
    fidelity.make_distractors(tokenizer, evaluation, candidates[validation.BASE], device=device, seed=training.seed)
    log_event("generic answers sampled", questions=len(evaluation.held_out))
    kept_scores = next((entry for entry in epochs_seen if entry["epoch"] == selected_epoch), None)
    unaided = validation.ADAPTER_NO_MEMORY if config.memory.enabled else validation.ADAPTER
    report = validation.evaluate_candidates(
        tokenizer, evaluation, candidates, embedder, device=device, max_new_tokens=config.validation.max_new_tokens,
        max_answer_tokens=max_answer_tokens,
        known={unaided: {key: kept_scores[key] for key in ("perplexity", "knowledge")}} if kept_scores else None,
        on_scored=lambda name, seconds: log_event("candidate scored", candidate=name, seconds=round(seconds, 1)))
    results = build_validation_results(report, eval_loss, selected_epoch, evaluation)
    results["memory"] = config.memory.enabled
    if current:
        results["baselines"][validation.CURRENT]["version"] = current.version
        model.delete_adapter(validation.CURRENT)  # only the new adapter is saved
    passed, reasons = gate.decide_passed(validation.gate_inputs(report), gate.gate_from(config.validation))
    log_event("validation", passed=passed, reasons=reasons, **{k: v for k, v in results.items() if k != "baselines"})

    # --- save: adapter, tokenizer, manifest with every file's sha256 ---------------------------------------
    output = resolve(config.paths.output)
    save_adapter(model, tokenizer, output)
    write_memory_index(output, kept, embedder)  # every usable reflection: what the chat server recalls
    run_metrics = {**results, "trainLoss": round(loss, 4) if loss is not None else None, "steps": total_steps,
                   "trainExamples": len(train_examples), "heldOutReflections": len(held_out),
                   "filter": filter_report.as_dict()}
    manifest_sha256 = write_manifest(output, adapter_version=config.run.adapter_version, base_model=config.base_model,
                                     data_version=config.run.data_version, config=config.model_dump(by_alias=True),
                                     metrics=run_metrics)
    log_event("saved", path=str(output), manifestSha256=manifest_sha256)
    final_progress = build_progress(step=total_steps, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                    total_epochs=training.epochs, loss=loss, eval_loss=eval_loss,
                                    tokens_per_second=tokens_per_second, seconds_per_step=seconds_per_step,
                                    micro_batch=controller.micro_batch, gpu=read_gpu())
    reporter.send(with_thermal({"progress": final_progress,
                                "artifact": {"location": config.paths.output, "manifestSha256": manifest_sha256,
                                             "adapterVersion": config.run.adapter_version},
                                "validation": {**results, "passed": passed, "reasons": reasons}}, guard),
                  force=True)
    metrics.close()
    return RunResult(output, manifest_sha256, run_metrics, passed, start_step if state else None,
                     guard.report())


def with_thermal(status: dict, guard) -> dict:
    """The status report with status.thermal once there is a temperature to report."""
    thermal = guard.report()
    return {**status, "thermal": thermal} if thermal else status


class CurrentAdapter:
    """The served adapter, loaded beside the new one; entering it makes it the active adapter."""

    def __init__(self, model, version: str):
        self.model, self.version = model, version

    def __call__(self):
        return self

    def __enter__(self):
        self.model.set_adapter("current")

    def __exit__(self, *_):
        self.model.set_adapter("default")  # peft also makes the active adapter the trainable one again
        return False


def load_current_adapter(model, config: TrainerConfig) -> CurrentAdapter | None:
    """The adapter being served, verified against its manifest, when it was trained on this base model."""
    from personalai_contracts.artifacts import ArtifactError, verify_adapter_dir

    if not config.paths.current_adapter:
        return None
    path = resolve(config.paths.current_adapter)
    try:
        manifest = verify_adapter_dir(path)
    except (ArtifactError, OSError) as error:
        log_event("current adapter not compared", reason=type(error).__name__)
        return None
    if manifest.get("baseModel") != config.base_model:
        log_event("current adapter not compared", reason="trained on another base model")
        return None
    model.load_adapter(str(path), adapter_name="current", is_trainable=False)
    model.set_adapter("default")
    return CurrentAdapter(model, str(manifest.get("adapterVersion")))


def write_memory_index(output: Path, reflections, embedder) -> None:
    """memory.json + memory.f32 beside the adapter (personalai_contracts.memory), before the manifest
    hashes the folder: the index is personal data, checked and erased with the adapter."""
    from personalai_contracts import memory

    items = memory.build_items(reflections)
    vectors = embedder.encode([memory.memory_text(item) for item in items], normalize_embeddings=True,
                              convert_to_numpy=True)
    memory.write_index(output, items, vectors.tolist())


def lora_snapshot(model) -> dict:
    """A copy of the trainable (LoRA) weights: megabytes, kept on the host."""
    return {name: parameter.detach().to("cpu", copy=True)
            for name, parameter in model.named_parameters() if parameter.requires_grad}


def restore_lora(model, snapshot: dict) -> None:
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in snapshot:
                parameter.copy_(snapshot[name].to(parameter.device))


def build_validation_results(report: dict, eval_loss: float, selected_epoch: int, evaluation) -> dict:
    """status.validation: the adapter's metrics (the brief's names first), comparisons, and each baseline's."""
    from personalai_trainer import validation

    def rounded(metrics: dict) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in metrics.items()
                if value is not None}

    adapter = report["metrics"][validation.ADAPTER]
    versus = report["versus"]
    results = {"evalLoss": round(eval_loss, 4), **rounded(adapter),
               "perplexityGain": versus[validation.BASE]["perplexityGain"],
               "perplexityGainOverInContext": versus.get(validation.IN_CONTEXT, {}).get("perplexityGain"),
               "closerThanBase": versus[validation.BASE]["closer"],
               "closerThanInContext": versus.get(validation.IN_CONTEXT, {}).get("closer"),
               "heldOutQuestions": len(evaluation.held_out), "knowledgeProbes": len(evaluation.probes),
               "selectedEpoch": selected_epoch,
               "baselines": {name: rounded(metrics) for name, metrics in report["metrics"].items()
                             if name != validation.ADAPTER}}
    return rounded(results) | {"baselines": results["baselines"]}


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def read_reflections_file(path: str) -> bytes:
    try:
        return resolve(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"paths.reflections: {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"paths.reflections: {path} is a directory, not a file") from None
    except PermissionError:
        raise DataError(f"paths.reflections: {path} is not readable") from None


def run_fingerprint(config: TrainerConfig, raw_bytes: bytes) -> str:
    """What a checkpoint must match to be resumed: the data and everything that shapes the math."""
    shaping = {"baseModel": config.base_model, "training": config.training.model_dump(by_alias=True),
               "persona": config.persona.display_name, "data": hashlib.sha256(raw_bytes).hexdigest()}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
