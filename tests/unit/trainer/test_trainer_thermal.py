"""The GPU temperature limit: pause above it, resume only the margin below it, reduced pace after the
longest pause; the guard's clock and sleep are injected, so these run in no time."""

import pytest

from personalai_contracts.trainer_config import ThermalConfig, TrainingConfig
from personalai_trainer import thermal
from personalai_trainer.thermal import ThermalGuard, throttle_decision

pytestmark = pytest.mark.unit

LIMIT = ThermalConfig(gpu_temperature_limit_celsius=83, resume_margin_celsius=5, max_pause_seconds=60)


def test_defaults_are_the_briefs_limit_and_a_margin():
    defaults = TrainingConfig().thermal
    assert (defaults.gpu_temperature_limit_celsius, defaults.resume_margin_celsius) == (83, 5)


@pytest.mark.parametrize(("temperature", "paused", "paused_for", "expected"), [
    (None, False, 0, "run"),  # no telemetry: never paused
    (83, False, 0, "run"),  # at the limit is not above it
    (84, False, 0, "pause"),
    (80, True, 10, "pause"),  # cooling, but not yet the margin below
    (78, True, 10, "run"),  # the margin below: resume
    (90, True, 60, "slow"),  # the longest pause is over: reduced pace
    (80, True, 61, "slow"),
])
def test_throttle_decision(temperature, paused, paused_for, expected):
    assert throttle_decision(temperature, paused, paused_for, LIMIT) == expected


def test_disabled_never_pauses():
    assert throttle_decision(120, True, 0, ThermalConfig(enabled=False)) == "run"


def test_bad_limit_names_the_field():
    with pytest.raises(ValueError, match="gpuTemperatureLimitCelsius"):
        TrainingConfig.model_validate({"thermal": {"gpuTemperatureLimitCelsius": 500}})


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def guard_over(readings, config=LIMIT):
    """A guard whose sensor gives `readings(now)`, on a clock its own sleeps advance."""
    clock = FakeClock()
    return ThermalGuard(config, lambda: readings(clock.now), sleep=clock.sleep, clock=clock), clock


def test_pauses_until_the_margin_below_then_reports_one_episode():
    guard, clock = guard_over(lambda now: 90 if now < 5 else (80 if now < 10 else 70))
    guard.before_step()
    assert clock.now >= 10  # 80 C is under the limit but not 5 below it: still paused
    assert guard.report() == {"throttled": True, "throttling": False, "episodes": 1,
                              "pausedSeconds": round(clock.now, 1), "lastTemperatureC": 70, "limitC": 83}
    before = clock.now
    guard.before_step()
    assert clock.now == before  # cool: the next step runs at once


def test_reads_at_most_once_a_second():
    reads = []
    guard, clock = guard_over(lambda now: reads.append(now) or 70)
    for _ in range(5):
        guard.before_step()
    assert reads == [0.0]
    clock.now = thermal.READ_INTERVAL_SECONDS
    guard.before_step()
    assert len(reads) == 2


def test_a_gpu_that_never_cools_goes_on_at_reduced_pace_and_keeps_saying_so():
    guard, clock = guard_over(lambda now: 95)
    guard.before_step()
    assert LIMIT.max_pause_seconds <= clock.now <= LIMIT.max_pause_seconds + thermal.SLOW_STEP_SECONDS
    for _ in range(3):
        before = clock.now
        guard.before_step()
        assert clock.now - before == thermal.SLOW_STEP_SECONDS
    assert guard.report()["throttling"] is True and guard.report()["episodes"] == 1


def test_no_reading_no_report():
    guard, _ = guard_over(lambda now: None)
    guard.before_step()
    assert guard.report() is None


def test_paused_seconds_are_a_prometheus_counter():
    from prometheus_client import generate_latest

    from personalai_trainer.reporting import TrainerMetrics

    metrics = TrainerMetrics(0, "ana-1a2b3c4d")
    metrics.thermal_paused_seconds.inc(2.5)
    assert 'personalai_trainer_thermal_paused_seconds_total{run="ana-1a2b3c4d"} 2.5' in \
        generate_latest(metrics.registry).decode()
