"""What `make images` hashes and copies for each image agrees with what its Dockerfile reads."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devcluster import images

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("image", images.IMAGES, ids=lambda image: image.name)
def test_the_build_context_holds_every_copy_source_and_nothing_compiled(image):
    files = images.context_files(image)
    dockerfile = (images.REPO / image.dockerfile).read_text()
    sources = [part for line in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE) for part in line.split()]
    assert sources, image.dockerfile
    for source in sources:
        assert any(name == source or name.startswith(source.rstrip("/") + "/") for name in files), source
    assert image.dockerfile in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.parametrize("image", images.IMAGES, ids=lambda image: image.name)
def test_every_dockerfile_has_the_offline_shape(image):
    dockerfile = (images.REPO / image.dockerfile).read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\n" in dockerfile
    assert "ARG PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels" in dockerfile
    assert f"python requirements.py {image.extra} " in dockerfile
    assert "USER 10001:10001" in dockerfile


def test_the_tag_follows_the_inputs():
    operator = images.IMAGES[0]
    assert images.image_tag(operator, "sha256:a") == images.image_tag(operator, "sha256:a")
    assert images.image_tag(operator, "sha256:a") != images.image_tag(operator, "sha256:b")


def test_requirements_name_the_missing_extra():
    done = subprocess.run([sys.executable, "images/requirements.py", "nonesuch"], cwd=images.REPO,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "no extra 'nonesuch'" in done.stderr
    assert "torch==2.9.1" in images.requirements("trainer") and not any(
        line.startswith("torch") for line in images.requirements("operator"))
