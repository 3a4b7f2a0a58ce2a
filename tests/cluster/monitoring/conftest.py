"""The monitoring suite's share of the control plane: `mon-*` namespaces and one private simulated
RTX 5090 node (see cluster_harness), whose model slots the operator reports as metrics; and the tiny
model that its trainer and chat server share."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_harness import EXAMPLES, Suite


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(prefix="mon", gpu_product="NVIDIA-GeForce-RTX-5090-MONTEST", nodes=("mon-rtx5090-0",))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from personalai_trainer.tiny_model import build_tiny_model

    texts = (EXAMPLES / "reflections" / "luke-short.csv").read_text().splitlines()
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", extra_texts=texts)
