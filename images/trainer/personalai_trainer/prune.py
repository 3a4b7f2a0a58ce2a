"""Remove expired artifacts from a PersonalAI's volume: `python -m personalai_trainer.prune --root /artifacts -- PATH...`.

The operator's prune Job (manifests.build_prune_job) names each directory relative to the volume.
Only the trainer's own layout is accepted: an adapter `<adapterVersion>` or a run's checkpoints
`checkpoints/<run>`, lower-case Kubernetes names. Anything else (an absolute path, `..`, another
shape, a symbolic link, a path that resolves outside the volume) refuses the whole request before
anything is removed. A path already absent is not an error: a prune may be repeated.

Exit codes: 0 done, 2 refused. Output names counts only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from personalai_contracts.paths import resolve

# The adapter version's pattern (TrainingRunSpec.adapterVersion) and a run's (a DNS subdomain's) shape.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CHECKPOINTS_DIR = "checkpoints"
EXIT_REFUSED = 2


class PruneRefused(ValueError):
    """A path outside the known artifact layout: nothing is removed."""


def check_path(relative: str) -> Path:
    """`relative` as a path under the volume, when it names an adapter or a run's checkpoints."""
    parts = relative.split("/")
    if relative.startswith("/") or ".." in relative or not all(NAME.fullmatch(part) for part in parts):
        raise PruneRefused(f"path {relative!r} is not a relative artifact path (no '/', '..' or odd names)")
    adapter = len(parts) == 1 and parts[0] != CHECKPOINTS_DIR
    checkpoints = len(parts) == 2 and parts[0] == CHECKPOINTS_DIR
    if not (adapter or checkpoints):
        raise PruneRefused(f"path {relative!r} is neither <adapterVersion> nor {CHECKPOINTS_DIR}/<run>")
    return Path(*parts)


def prune(root: Path, paths: list[str]) -> int:
    """Remove each directory named (all checked first); returns how many were present and removed."""
    real_root = root.resolve()
    targets = []
    for relative in paths:
        target = root / check_path(relative)
        if target.is_symlink() or target.parent.is_symlink():
            raise PruneRefused(f"path {relative!r} is a symbolic link")
        if target.exists() and not target.resolve().is_relative_to(real_root):
            raise PruneRefused(f"path {relative!r} resolves outside the volume")
        targets.append(target)
    removed = 0
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="personalai_trainer.prune", description="Remove expired artifacts.")
    parser.add_argument("--root", required=True, help="the artifacts volume's mount point")
    parser.add_argument("paths", nargs="+", help="<adapterVersion> or checkpoints/<run>, relative to --root")
    args = parser.parse_args(argv)
    root = resolve(args.root)
    try:
        removed = prune(root, args.paths)
    except PruneRefused as error:
        print(f"personalai-prune: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"personalai-prune: removed {removed} of {len(args.paths)} artifact directories (the rest were absent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
