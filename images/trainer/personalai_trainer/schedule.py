"""Learning rate over the run: linear warmup, then cosine decay to a tenth of the peak."""

from __future__ import annotations

import math

MIN_RATIO = 0.1  # decay to 10% of the peak rather than 0: the last steps still learn


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """Warmup capped at a third of the run, so a short run (small data set) still reaches its peak rate."""
    return min(warmup_steps, total_steps // 3)


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """The rate for optimizer step `step` (0-based) of `total_steps`."""
    warmup = effective_warmup(warmup_steps, total_steps)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    decay_steps = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    return peak * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))
