"""The trainer on a CPU in bf16 (AMX) against float32: the whole run, same config, same machine, one run.

    python benchmarks/cpu_precision.py                  # SmolLM2-135M-Instruct, the demo's config
    python benchmarks/cpu_precision.py --epochs 2 --questions 12 --probes 32 --max-new-tokens 64   # the model tier's

Runs `python -m personalai_trainer` twice on examples/reflections/luke.jsonl with the same config: once as
it runs by itself (bf16 where the CPU has AMX-BF16 tiles, personalai_contracts.precision), once
with that probe answering False (float32, how the trainer ran before). It prints, for each, wall time,
training tokens/s, each phase's seconds, peak RSS and the validation metrics the gate reads, then the
speed-up. A CPU without AMX runs float32 both times and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFLECTIONS = REPO / "examples" / "reflections" / "luke.jsonl"
# The trainer as a child process, with the AMX probe forced off for the float32 side.
RUN_TRAINER = ("import sys, personalai_contracts.precision as precision\n"
               "if sys.argv[2] == 'float32': precision.bf16_is_fast = lambda cuda: False\n"
               "from personalai_trainer.__main__ import main\n"
               "sys.argv = ['personalai_trainer', '--config', sys.argv[1]]\n"
               "sys.exit(main())\n")
GATE_METRICS = ("perplexity", "perplexityGain", "perplexityGainOverInContext", "coherence",
                "personalityConsistency", "attribution", "knowledge", "closerThanBase")


def trainer_config(model_dir: Path, work: Path, args) -> dict:
    return {"run": {"name": "luke-bench", "personalAI": "luke", "adapterVersion": "v1-bench"},
            "persona": {"displayName": "Luke"}, "baseModel": str(model_dir),
            "paths": {"reflections": str(REFLECTIONS), "modelCache": str(work / "cache"),
                      "output": str(work / "out"), "checkpoints": str(work / "checkpoints")},
            "training": {"epochs": args.epochs, "maxSeqLength": 512, "quantization": "none", "batchSize": 4,
                         "learningRate": 1e-3, "warmupSteps": 3, "augmentPhrasings": 0, "checkpointEverySteps": 100},
            "validation": {"maxSamples": args.questions, "probes": args.probes, "maxNewTokens": args.max_new_tokens},
            "reporting": {"kubernetes": False, "metricsPort": 0, "minIntervalSeconds": 0}}


def run_once(precision: str, model_dir: Path, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"personalai-precision-{precision}-") as folder:
        work = Path(folder)
        (work / "config.json").write_text(json.dumps(trainer_config(model_dir, work, args)))
        started = time.perf_counter()
        with open(work / "stdout", "w") as stdout, open(work / "stderr", "w") as stderr:
            child = subprocess.Popen([sys.executable, "-c", RUN_TRAINER, str(work / "config.json"), precision],
                                     stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, not the largest so far
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"the {precision} run failed:\n{(work / 'stderr').read_text()[-3000:]}")
        lines = (work / "stdout").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return {"seconds": seconds, "events": events, "peak_rss_mib": usage.ru_maxrss / 1024}


def phases(events: list[dict]) -> dict:
    """Seconds per phase from the events' timestamps: load, train (to the last step), validate, save."""
    def at(name: str, last: bool = False) -> float | None:
        times = [datetime.fromisoformat(event["time"]).timestamp() for event in events
                 if event.get("event") == name and "time" in event]
        return (times[-1] if last else times[0]) if times else None
    stamps = {"start": datetime.fromisoformat(events[0]["time"]).timestamp() if events else None, "model": at("model ready"), "trained": at("step", last=True),
              "validated": at("validation"), "saved": at("saved")}
    if any(value is None for value in stamps.values()):
        return {}
    return {"load": stamps["model"] - stamps["start"], "train": stamps["trained"] - stamps["model"],
            "validate": stamps["validated"] - stamps["trained"], "save": stamps["saved"] - stamps["validated"]}


def describe(label: str, result: dict) -> dict:
    events = result["events"]
    model = next(event for event in events if event.get("event") == "model ready")
    steps = [event["tokensPerSecond"] for event in events if event.get("event") == "step"]
    validation = next(event for event in events if event.get("event") == "validation")
    split = phases(events)
    print(f"{label}: dtype {model['dtype']}, {result['seconds']:.1f} s in all"
          + (" (" + ", ".join(f"{name} {value:.1f} s" for name, value in split.items()) + ")" if split else "")
          + f", training {sorted(steps)[len(steps) // 2]:.0f} tokens/s (median step), peak RSS "
          f"{result['peak_rss_mib']:.0f} MiB")
    print("   gate: passed" if validation["passed"] else f"   gate: failed {validation['reasons']}")
    print("   " + ", ".join(f"{key} {validation[key]:.3f}" for key in GATE_METRICS
                            if isinstance(validation.get(key), float)))
    return {"dtype": model["dtype"], "seconds": result["seconds"], **split}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="the demo's 1")
    parser.add_argument("--questions", type=int, default=8, help="held-out questions scored (the demo's 8)")
    parser.add_argument("--probes", type=int, default=16, help="knowledge probes (the demo's 16)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (the demo's 48)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "hack"))
    from devcluster.small_model import ensure_small_model

    model_dir = ensure_small_model()
    print(f"model {model_dir.name}, {args.epochs} epoch(s), {args.questions} held-out questions, "
          f"{args.probes} probes, {args.max_new_tokens}-token answers", flush=True)
    ours = describe("ours (as the trainer chooses)", run_once("auto", model_dir, args))
    baseline = describe("float32", run_once("float32", model_dir, args))
    if ours["dtype"] == baseline["dtype"]:
        print(f"both runs computed in {ours['dtype']} (no AMX-BF16 tiles here): nothing to compare")
        return 0
    print(f"speed-up, whole run: {baseline['seconds'] / ours['seconds']:.2f}x"
          + "".join(f"; {name} {baseline[name] / ours[name]:.2f}x" for name in ("train", "validate")
                    if ours.get(name) and baseline.get(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
