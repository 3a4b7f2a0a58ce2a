"""`make images`: the operator, gateway, trainer and server images, built from their Dockerfiles with
podman and no network inside the build.

- Base: `python:3.11-slim-bookworm` when it is present or a registry can be reached; otherwise a
  minimal Debian bookworm with python3 (3.11), made by debootstrap from Debian's own packages and
  imported, cached by its package list.
- Python packages: a wheelhouse filled on the host (`pip wheel`, for this host's cp311 x86_64, which
  is the images' Python too) under ~/.cache/personalai/wheelhouse, one completion stamp per image's
  requirements hash; each build mounts it read-only at /wheels and runs with `--network=none`.
- torch: one shared layer image (base + torch and its CUDA wheels) under the trainer and the server.
- Cache: each tag is the hash of the image's inputs (Dockerfile, the files copied in, the base's
  image ID), so a warm run builds nothing and only prints the sizes.

    python -m devcluster.images          # build what is missing, print tags and sizes
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGISTRY_BASE = "docker.io/library/python:3.11-slim-bookworm"
# debootstrap's minbase plus these: python3 is bookworm's 3.11, python3-venv carries ensurepip's pip.
BASE_PACKAGES = ("python3", "python3-venv")
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("PERSONALAI_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Podman on these machines: cgroupfs (no systemd session) and explicit rlimits (the default ones ask
# for more open files than the hard limit allows).
PODMAN = ("podman", "--cgroup-manager=cgroupfs", "--runtime=runc")
ULIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:4096")
SHARED_SOURCES = ("pyproject.toml", "images/requirements.py", "contracts/personalai_contracts")
TORCH_LAYER = """\
# The trainer's and the server's shared layer: torch and its CUDA wheels, from the wheelhouse.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --progress-bar off %s
"""


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    extra: str  # the pyproject extra it installs
    sources: tuple[str, ...]  # copied into the image, besides SHARED_SOURCES
    torch: bool = False


IMAGES = (
    Image("operator", "operator/Dockerfile", "operator", ("operator/personalai_operator",)),
    Image("gateway", "images/gateway/Dockerfile", "gateway", ("images/gateway/personalai_gateway",)),
    Image("trainer", "images/trainer/Dockerfile", "trainer", ("images/trainer/personalai_trainer",), torch=True),
    Image("server", "images/server/Dockerfile", "server", ("images/server/personalai_server",), torch=True),
)


def cache_root() -> Path:
    return Path(os.environ.get("PERSONALAI_CACHE_DIR", Path.home() / ".cache" / "personalai"))


def wheelhouse() -> Path:
    return cache_root() / "wheelhouse"


def record_path() -> Path:
    """What the last `make images` built with: the base it chose (read by the images test tier)."""
    return cache_root() / "images" / "images.json"


def log(message: str) -> None:
    print(f">> {message}", flush=True)


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None):
    return subprocess.run([*PODMAN, *args], check=check, text=True, timeout=timeout,
                          capture_output=capture)


def image_id(reference: str) -> str | None:
    found = podman("image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def image_size(reference: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def requirements(extra: str) -> list[str]:
    """The image's pins, from the same script its Dockerfile runs."""
    out = subprocess.run([sys.executable, "images/requirements.py", extra], cwd=REPO, check=True, text=True,
                         capture_output=True).stdout
    return out.split()


def torch_requirement() -> str:
    return next(line for line in requirements("trainer") if line.startswith("torch=="))


# -- the base --------------------------------------------------------------------------------------------

def debian_base_tag() -> str:
    return f"localhost/personalai-base:{digest(DEBIAN_SUITE, *BASE_PACKAGES)}"


def choose_base() -> str:
    """PERSONALAI_BASE_IMAGE, else an imported Debian base already made, else the registry's python
    image (present or pulled), else a fresh debootstrap."""
    if chosen := os.environ.get("PERSONALAI_BASE_IMAGE"):
        return chosen
    for candidate in (debian_base_tag(), REGISTRY_BASE):
        if image_id(candidate):
            return candidate
    log(f"pulling {REGISTRY_BASE}")
    if podman("pull", "--quiet", REGISTRY_BASE, check=False, timeout=300).returncode == 0:
        return REGISTRY_BASE
    log("no image registry reachable: making the base with debootstrap from Debian's packages")
    return debootstrap_base()


def debootstrap_base() -> str:
    if not shutil.which("debootstrap"):
        raise SystemExit("images: no registry is reachable and debootstrap is missing (apt-get install debootstrap)")
    tag = debian_base_tag()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="personalai-base-") as work:
        root = Path(work) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", DEBIAN_SUITE,
                        str(root), DEBIAN_MIRROR], check=True, stdout=subprocess.DEVNULL)
        # Nothing the images use: the package downloads and indexes (about 60 MB).
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / leftover, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([*PODMAN, "import", "--change", 'CMD ["/bin/bash"]', "-", tag], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise SystemExit("images: packing the debootstrap root failed")
    log(f"base {tag} made in {time.monotonic() - started:.0f} s")
    return tag


# -- the wheelhouse --------------------------------------------------------------------------------------

def fill_wheelhouse(image: Image) -> None:
    """Every wheel the image installs, built or downloaded on the host once per requirements hash."""
    pins = requirements(image.extra)
    stamp = wheelhouse() / ".complete" / f"{image.name}-{digest(*pins, platform.machine(), 'cp311')}"
    if stamp.exists():
        return
    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
        raise SystemExit(f"images: the wheelhouse is filled with this Python for the images' cp311 x86_64; "
                         f"this is {platform.python_version()} on {platform.machine()}")
    log(f"wheelhouse: {image.name}'s {len(pins)} requirements into {wheelhouse()}"
        + (" (torch and its CUDA wheels: about 4 GB)" if image.torch and not any(wheelhouse().glob("torch-*.whl"))
           else ""))
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(pins))
        listing.flush()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--progress-bar", "off",
                        "--wheel-dir", str(wheelhouse()), "--find-links", str(wheelhouse()), "-r", listing.name],
                       check=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    log(f"wheelhouse: {image.name} ready in {time.monotonic() - started:.0f} s")


# -- the builds ------------------------------------------------------------------------------------------

def context_files(image: Image) -> list[str]:
    """The build context: the Dockerfile and what it copies, nothing else (never .venv or .work)."""
    files = []
    for source in (*SHARED_SOURCES, *image.sources, image.dockerfile):
        path = REPO / source
        found = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [str(p.relative_to(REPO)) for p in found
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def torch_tag(base_id: str) -> str:
    return f"localhost/personalai-torch:{digest(TORCH_LAYER, torch_requirement(), base_id)}"


def image_tag(image: Image, base_id: str) -> str:
    contents = [part for name in context_files(image) for part in (name, (REPO / name).read_bytes())]
    return f"localhost/personalai-{image.name}:{digest(*contents, base_id)}"


def build(tag: str, dockerfile: Path, context: Path, base: str) -> None:
    podman("build", "--network=none", "--volume", f"{wheelhouse()}:/wheels:ro", *ULIMITS, "--layers",
           "--build-arg", f"BASE_IMAGE={base}", "-f", str(dockerfile), "-t", tag, str(context), capture=False)


def build_torch_layer(base: str) -> str:
    tag = torch_tag(image_id(base) or "")
    if not image_id(tag):
        log(f"building {tag} (torch and its CUDA wheels: a few minutes)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="personalai-torch-") as context:
            dockerfile = Path(context) / "Dockerfile"
            dockerfile.write_text(TORCH_LAYER % torch_requirement())
            build(tag, dockerfile, Path(context), base)
        remove_older_tags(tag)
        log(f"torch layer built in {time.monotonic() - started:.0f} s")
    return tag


def build_image(image: Image, base: str) -> tuple[str, bool]:
    """(tag, built now): the image for these inputs, built only when no image has that tag."""
    tag = image_tag(image, image_id(base) or "")
    if image_id(tag):
        return tag, False
    log(f"building {tag}")
    with tempfile.TemporaryDirectory(prefix=f"personalai-{image.name}-") as context:
        for name in context_files(image):
            (Path(context) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, Path(context) / name)
        build(tag, Path(context) / image.dockerfile, Path(context), base)
    remove_older_tags(tag)
    return tag, True


def remove_older_tags(tag: str) -> None:
    """Untag the image's builds for older inputs: a torch image is 8 GB, layers it shares stay."""
    repository = tag.rsplit(":", 1)[0]
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository).stdout.split()
    if older := [other for other in listed if other != tag]:
        podman("rmi", *older, check=False)


def current_tags(base: str) -> dict[str, str]:
    """Each image's tag for the repository as it is now, on this base (nothing is built or pulled)."""
    base_id = image_id(base) or ""
    torch_id = image_id(torch_tag(base_id)) or ""
    return {image.name: image_tag(image, torch_id if image.torch else base_id) for image in IMAGES}


def recorded_base() -> str | None:
    return json.loads(record_path().read_text())["base"] if record_path().exists() else None


def main() -> None:
    if not shutil.which("podman"):
        raise SystemExit("images: podman is missing (apt-get install podman runc; `make podman` does it as root)")
    started = time.monotonic()
    base = choose_base()
    for image in IMAGES:
        fill_wheelhouse(image)
    torch_base = build_torch_layer(base)
    rows = []
    for image in IMAGES:
        began = time.monotonic()
        tag, built = build_image(image, torch_base if image.torch else base)
        rows.append((image.name, tag, image_size(tag), f"built in {time.monotonic() - began:.0f} s" if built
                     else "cached"))
    record_path().parent.mkdir(parents=True, exist_ok=True)
    record_path().write_text(json.dumps({"base": base, "tags": {name: tag for name, tag, _, _ in rows}}, indent=2))
    for name, tag, size, how in rows:
        print(f"   {name:9} {tag:52} {size / 1e6:8.0f} MB  {how}")
    log(f"images ready in {time.monotonic() - started:.0f} s (base {base})")


if __name__ == "__main__":
    main()
