"""The simulated GPU readings file (tests only, on machines without NVML): read on every call, so a
test can change a reading mid-run, and a bad file is an error naming the setting."""

import json

import pytest

from personalai_trainer import telemetry

pytestmark = pytest.mark.unit


def test_readings_come_from_the_file_and_follow_its_changes(tmp_path, monkeypatch):
    readings = tmp_path / "gpu.json"
    readings.write_text(json.dumps({"gpuUtilization": 90, "vramUsedMiB": 2048.0, "gpuTemperatureC": 70, "fan": 1}))
    monkeypatch.setenv(telemetry.SIMULATED_READINGS_ENV, str(readings))
    assert telemetry.read_gpu() == {"gpuUtilization": 90, "vramUsedMiB": 2048, "gpuTemperatureC": 70}
    readings.write_text(json.dumps({"gpuTemperatureC": 91}))
    assert telemetry.read_gpu() == {"gpuTemperatureC": 91}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"gpuTemperatureC": "hot"}'])
def test_a_bad_readings_file_names_the_setting(tmp_path, monkeypatch, text):
    readings = tmp_path / "gpu.json"
    readings.write_text(text)
    monkeypatch.setenv(telemetry.SIMULATED_READINGS_ENV, str(readings))
    with pytest.raises(ValueError, match=telemetry.SIMULATED_READINGS_ENV):
        telemetry.read_gpu()


def test_a_missing_readings_file_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv(telemetry.SIMULATED_READINGS_ENV, str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match="absent.json"):
        telemetry.read_gpu()
