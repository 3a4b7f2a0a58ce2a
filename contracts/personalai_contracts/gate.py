"""The promotion gate: a run's spec.validation thresholds applied to its adapter's metrics (pure).

The trainer applies it to report `status.validation.passed`; the operator applies it again to the
reported metrics before promoting, so the verdict never rests on what the trainer's token wrote.
Definitions of the metrics: docs/validation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from personalai_contracts.trainer_config import GAIN_THRESHOLD_OFF, ValidationConfig


@dataclass(frozen=True)
class Gate:
    """The promotion thresholds; None switches a threshold off (defaults: the contract's, `gate_from`)."""

    min_perplexity_gain: float | None = None
    min_perplexity_gain_over_in_context: float | None = None
    max_perplexity: float | None = None
    min_coherence: float | None = None
    min_personality_consistency: float | None = None
    min_closer_than_base: float | None = None
    min_attribution: float | None = None
    min_knowledge: float | None = None


def gate_from(config: ValidationConfig) -> Gate:
    """The gate a run's spec.validation sets; a gain threshold at GAIN_THRESHOLD_OFF is off."""
    thresholds = {name: getattr(config, name) for name in Gate.__dataclass_fields__}
    for name in ("min_perplexity_gain", "min_perplexity_gain_over_in_context"):
        if thresholds[name] is not None and thresholds[name] <= GAIN_THRESHOLD_OFF:
            thresholds[name] = None
    return Gate(**thresholds)


def decide_passed(metrics: dict, gate: Gate) -> tuple[bool, list[str]]:
    """Whether the adapter may be promoted, and each threshold it missed, as a sentence."""
    checks = [  # (field, threshold, higher is better, words)
        ("perplexityGain", gate.min_perplexity_gain, True, "held-out perplexity gain over the base model"),
        ("perplexityGainOverInContext", gate.min_perplexity_gain_over_in_context, True,
         "held-out perplexity gain over the base model prompted with the person's answers"),
        ("perplexity", gate.max_perplexity, False, "held-out perplexity"),
        ("coherence", gate.min_coherence, True, "coherence"),
        ("personalityConsistency", gate.min_personality_consistency, True, "personality consistency"),
        ("closerThanBase", gate.min_closer_than_base, True,
         "share of held-out questions answered closer to the person than the base model"),
        ("attribution", gate.min_attribution, True, "attribution"),
        ("knowledge", gate.min_knowledge, True, "knowledge-probe accuracy"),
    ]
    reasons = []
    for field, threshold, higher, words in checks:
        if threshold is None:
            continue
        value = metrics.get(field)
        if value is None or not math.isfinite(value):
            reasons.append(f"{words} could not be measured")
        elif (value < threshold) if higher else (value > threshold):
            bound = "minimum" if higher else "maximum"
            reasons.append(f"{words} {value:.3f} is {'under' if higher else 'over'} the {bound} {threshold}")
    return not reasons, reasons
