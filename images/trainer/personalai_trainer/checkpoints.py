"""Checkpoints every N steps, and resume from the newest one when the pod was killed.

A checkpoint is a folder `step-00000050/` with the LoRA weights, the optimizer state, the RNG states
and a small JSON of where the run was. It is written under a temporary name and renamed, so a kill
mid-write leaves the previous checkpoint as the newest complete one. The two newest are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

KEEP = 2
STATE = "trainer_state.json"


@dataclass
class TrainerState:
    step: int
    micro_batch: int
    checkpointing: bool
    fingerprint: str  # data + config hash: a checkpoint from other data must not be resumed


def checkpoint_dirs(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("step-*") if (path / STATE).is_file())


def save_checkpoint(root: Path, model, optimizer, state: TrainerState) -> Path:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    partial = root / f".partial-step-{state.step:08d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    adapter = {key: value.detach().contiguous().cpu() for key, value in get_peft_model_state_dict(model).items()}
    save_file(adapter, partial / "adapter.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python_rng": random.getstate()}, partial / "optimizer.pt")
    (partial / STATE).write_text(json.dumps(asdict(state)))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoint_dirs(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(root: Path, model, optimizer, fingerprint: str) -> TrainerState | None:
    """Restore the newest checkpoint made from the same data and config; None when there is none."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for directory in reversed(checkpoint_dirs(root)):
        state = TrainerState(**json.loads((directory / STATE).read_text()))
        if state.fingerprint != fingerprint:
            continue
        device = next(p.device for p in model.parameters() if p.requires_grad)
        set_peft_model_state_dict(model, load_file(directory / "adapter.safetensors", device=str(device)))
        saved = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        random.setstate(saved["python_rng"])
        return state
    return None
