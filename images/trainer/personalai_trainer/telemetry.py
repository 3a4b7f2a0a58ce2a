"""GPU telemetry through NVML (module `pynvml` from nvidia-ml-py): utilization, VRAM, temperature.

`read_gpu()` returns the status.progress field names; an empty dict when there is no GPU or NVML,
so a CPU run simply leaves those fields out.

Tests on machines without a GPU set PERSONALAI_SIMULATED_GPU_READINGS to a JSON file holding those
same fields (e.g. `{"gpuUtilization": 97, "vramUsedMiB": 20480, "gpuTemperatureC": 71}`); it is read
on every call, so a test may change a reading (a hot GPU) while training runs. Never set in a pod.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SIMULATED_READINGS_ENV = "PERSONALAI_SIMULATED_GPU_READINGS"
READING_FIELDS = ("gpuUtilization", "vramUsedMiB", "gpuTemperatureC")


def read_simulated(path: str | Path) -> dict[str, int]:
    """The readings file's known fields as ints; a bad file is a test's mistake, so it raises naming it."""
    try:
        readings = json.loads(Path(path).read_text())
        if not isinstance(readings, dict):
            raise TypeError("not an object")
        return {key: int(readings[key]) for key in READING_FIELDS if key in readings}
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{SIMULATED_READINGS_ENV}={path}: not a JSON object of integer readings "
                         f"{', '.join(READING_FIELDS)} ({type(error).__name__})") from None


@functools.lru_cache(maxsize=1)
def _nvml_handle():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no driver, no GPU, no library: all mean "no telemetry"
        return None


def read_gpu() -> dict[str, int]:
    simulated = os.environ.get(SIMULATED_READINGS_ENV)
    if simulated:
        return read_simulated(simulated)
    handle = _nvml_handle()
    if handle is None:
        return {}
    pynvml, device = handle
    try:
        utilization = pynvml.nvmlDeviceGetUtilizationRates(device)
        memory = pynvml.nvmlDeviceGetMemoryInfo(device)
        temperature = pynvml.nvmlDeviceGetTemperature(device, pynvml.NVML_TEMPERATURE_GPU)
    except Exception as error:  # a GPU that fell off the bus should not stop training
        log.warning("gpu telemetry failed", extra={"fields": {"error": type(error).__name__}})
        return {}
    return {"gpuUtilization": int(utilization.gpu), "vramUsedMiB": int(memory.used // (1024 * 1024)),
            "gpuTemperatureC": int(temperature)}
