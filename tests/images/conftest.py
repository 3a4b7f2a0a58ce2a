"""The images tier: the images `make images` built, run as their pods run them (images_harness).
Skipped, with the reason, where podman or the images for the repository as it is now are missing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from devcluster import images

REPO = Path(__file__).resolve().parents[2]
# The operator suites' harness: CRDs, private simulated GPU nodes, isolation by namespace prefix.
sys.path.insert(0, str(REPO / "tests" / "cluster"))


@pytest.fixture(scope="session")
def image_of():
    """`image_of("trainer")`: that image's tag for the sources as they are now; skips when it is not built."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (`make podman` installs it as root): the images tier is skipped")
    base = images.recorded_base()
    if base is None:
        pytest.skip("no images built yet (`make images`): the images tier is skipped")
    tags = images.current_tags(base)

    def image_of(name: str) -> str:
        if not images.image_id(tags[name]):
            pytest.skip(f"the {name} image for the current sources is not built (`make images`): {tags[name]}")
        return tags[name]

    return image_of
