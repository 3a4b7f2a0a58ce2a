"""GPU telemetry through NVML (module `pynvml` from nvidia-ml-py): utilization, VRAM, temperature.

`read_gpu()` returns the status.progress field names; an empty dict when there is no GPU or NVML,
so a CPU run simply leaves those fields out.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _nvml_handle():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no driver, no GPU, no library: all mean "no telemetry"
        return None


def read_gpu() -> dict[str, int]:
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
