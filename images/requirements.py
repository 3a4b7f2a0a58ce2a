"""Print one image's pinned requirements from pyproject.toml, the one list of them: the project's
dependencies and the image's extra. Each Dockerfile runs it: `python requirements.py trainer`."""

import sys
import tomllib

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"][sys.argv[1]]))
