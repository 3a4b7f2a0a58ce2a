"""The prune module (artifact retention): it removes exactly the directories named from a volume laid out
as the trainer lays it out, and refuses, before removing anything, any path outside that layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from personalai_contracts.artifacts import verify_adapter_dir, write_manifest
from personalai_contracts.paths import PREFIX_ENV
from personalai_trainer.prune import PruneRefused, check_path, prune

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def adapter(root: Path, version: str) -> Path:
    """An adapter directory as train.py saves it: weights, config, tokenizer, memory index, manifest."""
    directory = root / version
    directory.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "memory.json"):
        (directory / name).write_text(f"{version} {name}")
    write_manifest(directory, adapter_version=version, base_model="base", data_version="sha256:d", config={},
                   metrics={})
    return directory


def checkpoints(root: Path, run: str) -> Path:
    """A run's checkpoints as checkpoints.save_checkpoint leaves them: the two newest, and a partial one."""
    directory = root / "checkpoints" / run
    for step in ("step-00000050", "step-00000100", ".partial-step-00000150"):
        (directory / step).mkdir(parents=True)
        for name in ("adapter.safetensors", "optimizer.pt", "trainer_state.json"):
            (directory / step / name).write_text(name)
    return directory


@pytest.fixture
def volume(tmp_path) -> Path:
    root = tmp_path / "artifacts"
    for version in ("v1-aaaa1111", "v2-bbbb2222", "v3-cccc3333"):
        adapter(root, version)
    for run in ("ada-aaaa1111", "ada-bbbb2222", "ada-cccc3333"):
        checkpoints(root, run)
    (root / "lost+found").mkdir()
    return root


def tree(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


def test_it_removes_exactly_the_named_directories_and_leaves_the_rest(volume):
    before = tree(volume)
    assert prune(volume, ["v2-bbbb2222", "checkpoints/ada-aaaa1111", "checkpoints/ada-bbbb2222"]) == 3
    gone = {p for p in before if p.startswith(("v2-bbbb2222", "checkpoints/ada-aaaa1111", "checkpoints/ada-bbbb2222"))}
    assert tree(volume) == before - gone
    verify_adapter_dir(volume / "v1-aaaa1111")  # the kept adapters are whole
    verify_adapter_dir(volume / "v3-cccc3333")
    assert (volume / "checkpoints" / "ada-cccc3333" / "step-00000100" / "trainer_state.json").is_file()


def test_an_absent_path_is_not_an_error(volume):
    assert prune(volume, ["v9-99999999", "checkpoints/ada-99999999"]) == 0


@pytest.mark.parametrize("path", [
    "/etc", "/artifacts/v1-aaaa1111", "..", "../other", "v1-aaaa1111/..", "checkpoints/../v1-aaaa1111",
    "checkpoints", "checkpoints/", "checkpoints/ada-aaaa1111/step-00000050", "v1-aaaa1111/adapter_config.json",
    "lost+found", ".", "", "V1-UPPER", "-v1", "a/b", "checkpoints/.partial",
])
def test_a_path_outside_the_layout_is_refused(path):
    with pytest.raises(PruneRefused):
        check_path(path)


def test_one_bad_path_refuses_the_whole_request_before_anything_goes(volume):
    before = tree(volume)
    with pytest.raises(PruneRefused):
        prune(volume, ["v2-bbbb2222", "../v1-aaaa1111"])
    assert tree(volume) == before


def test_a_symbolic_link_is_refused_not_followed(volume, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (volume / "v4-dddd4444").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PruneRefused):
        prune(volume, ["v4-dddd4444"])
    assert (outside / "keep.txt").is_file()


def test_the_command_resolves_the_pods_paths_and_exits_2_on_refusal(volume):
    """`python -m personalai_trainer.prune` as the prune Job runs it, under the dev node agent's path prefix."""
    prefix = volume.parent / "pod"
    (prefix / "artifacts").parent.mkdir(parents=True)
    volume.rename(prefix / "artifacts")
    env = {**os.environ, PREFIX_ENV: str(prefix),
           "PYTHONPATH": os.pathsep.join([str(REPO / "images" / "trainer"), str(REPO / "contracts")])}
    command = [sys.executable, "-m", "personalai_trainer.prune", "--root", "/artifacts", "--"]
    done = subprocess.run([*command, "v1-aaaa1111", "checkpoints/ada-aaaa1111"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "removed 2 of 2" in done.stdout
    assert not (prefix / "artifacts" / "v1-aaaa1111").exists() and (prefix / "artifacts" / "v2-bbbb2222").is_dir()
    refused = subprocess.run([*command, "/etc"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refused" in refused.stderr
