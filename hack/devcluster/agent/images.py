"""Which images the development node agent can run, and the command line it runs for a container.

The agent has no container runtime: it runs the project's own images as Python programs from the
agent's virtualenv. An image is mapped when the last path component of its repository is one of
MAPPED_IMAGES (`personalai/trainer:0.1.0`, `registry.local/server@sha256:...`, `python:3.11-slim`).
"""

from __future__ import annotations

import os
import re

MAPPED_IMAGES = ("trainer", "server", "operator", "gateway", "python")
# What the project's images run when a pod gives no command (their Dockerfile ENTRYPOINT).
DEFAULT_COMMANDS = {
    "trainer": ["python", "-m", "personalai_trainer"],
    "server": ["python", "-m", "personalai_server"],
    "operator": ["python", "-m", "personalai_operator"],
    "gateway": ["python", "-m", "personalai_gateway"],
    "python": ["python3"],
}
NOT_MAPPED_REASON = "ImageNotMappedForDevAgent"
_PYTHON_COMMAND = re.compile(r"^python(\d+(\.\d+)?)?$")


class ImageNotMapped(Exception):
    """The image is not one the development agent knows how to run."""


def image_repository_name(image: str) -> str:
    """The last path component of the repository: `trainer` for `registry:5000/personalai/trainer:0.1`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def build_command(container: dict, python: str) -> list[str]:
    """The argv for a container: its command + args as in the pod spec, `python*` replaced by `python`.

    `command`/`args` are expected already expanded ($(VAR) references); raises ImageNotMapped for an
    image the agent cannot run.
    """
    image = container.get("image", "")
    kind = image_repository_name(image)
    if kind not in MAPPED_IMAGES:
        raise ImageNotMapped(f"image {image!r} is not run by the development node agent: it runs only images "
                             f"named {', '.join(MAPPED_IMAGES)} (last path component of the repository)")
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        command = list(DEFAULT_COMMANDS[kind])
    argv = command + args
    if _PYTHON_COMMAND.match(os.path.basename(argv[0])):
        argv[0] = python
    return argv
