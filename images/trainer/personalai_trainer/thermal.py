"""The GPU temperature limit: pause training while the GPU is too hot, go on once it has cooled.

`throttle_decision` is the rule (pure): above the limit a run pauses; a paused run resumes only at
least `resumeMarginCelsius` below it (hysteresis, so it does not flap around the limit). After
`maxPauseSeconds` of one pause it goes on at reduced pace (one step per `SLOW_STEP_SECONDS`) and
keeps saying so, since a GPU that never cools should still finish its run rather than hang.

`ThermalGuard.before_step()` applies it: reads the temperature at most once per `READ_INTERVAL_SECONDS`,
sleeps in bounded slices while paused, and keeps the counts the run report carries (status.thermal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from personalai_contracts.trainer_config import ThermalConfig

READ_INTERVAL_SECONDS = 1.0  # NVML reads are cheap, but a step can be milliseconds on a tiny model
PAUSE_SLICE_SECONDS = 0.5  # a paused run re-reads this often
SLOW_STEP_SECONDS = 2.0  # reduced pace after the longest pause: a wait of this before each step

Decision = Literal["run", "pause", "slow"]


def throttle_decision(temperature: int | None, paused: bool, paused_for: float, thermal: ThermalConfig) -> Decision:
    """What to do before a step: the GPU's `temperature` (None: no telemetry), whether we are `paused`
    and for how long this pause has lasted."""
    if temperature is None or not thermal.enabled:
        return "run"
    hot = temperature > thermal.gpu_temperature_limit_celsius
    cooled = temperature <= thermal.gpu_temperature_limit_celsius - thermal.resume_margin_celsius
    if not (hot or (paused and not cooled)):
        return "run"
    return "slow" if paused_for >= thermal.max_pause_seconds else "pause"


@dataclass
class ThermalGuard:
    thermal: ThermalConfig
    read_temperature: Callable[[], int | None]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    paused_seconds: float = 0.0
    episodes: int = 0  # throttle episodes so far: each starts when the limit is crossed
    throttling: bool = False
    last_temperature: int | None = None
    _read_at: float | None = None
    _episode_started: float = 0.0

    def _temperature(self) -> int | None:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= READ_INTERVAL_SECONDS:
            self.last_temperature, self._read_at = self.read_temperature(), now
        return self.last_temperature

    def before_step(self) -> None:
        """Return when the next step may run: at once, after a pause, or after the reduced-pace wait."""
        while True:
            temperature = self._temperature()
            paused_for = self.clock() - self._episode_started if self.throttling else 0.0
            decision = throttle_decision(temperature, self.throttling, paused_for, self.thermal)
            if decision == "run":
                self.throttling = False
                return
            if not self.throttling:
                self.throttling, self.episodes, self._episode_started = True, self.episodes + 1, self.clock()
            wait = SLOW_STEP_SECONDS if decision == "slow" else PAUSE_SLICE_SECONDS
            self.sleep(wait)
            self.paused_seconds += wait
            if decision == "slow":
                return  # still hot: one step at reduced pace, and the next call says so again

    def report(self) -> dict | None:
        """status.thermal (run_report.ThermalReport); None before any reading."""
        if self.last_temperature is None:
            return None
        return {"throttled": self.episodes > 0, "throttling": self.throttling, "episodes": self.episodes,
                "pausedSeconds": round(self.paused_seconds, 1), "lastTemperatureC": self.last_temperature,
                "limitC": self.thermal.gpu_temperature_limit_celsius}
