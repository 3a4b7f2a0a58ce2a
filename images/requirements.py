"""Print one image's pinned requirements from pyproject.toml, the one list of them: the project's
dependencies and the image's extra. Each Dockerfile runs it (`python requirements.py trainer`), and
`make images` runs it on the host to fill the wheelhouse with exactly what the image will install."""

import sys
import tomllib
from pathlib import Path


def requirements(extra: str, pyproject: Path = Path("pyproject.toml")) -> list[str]:
    with pyproject.open("rb") as file:
        project = tomllib.load(file)["project"]
    extras = project["optional-dependencies"]
    if extra not in extras:
        raise SystemExit(f"requirements.py: no extra {extra!r} in {pyproject} (extras: {', '.join(extras)})")
    return project["dependencies"] + extras[extra]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else Path("pyproject.toml"))))
