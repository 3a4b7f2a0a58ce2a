"""Build the control plane's binaries from pinned Go modules, once, into a cache keyed by version.

The pins are the `require` lines of the wrapper modules in hack/tools/*/go.mod (with their
go.sum): etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
Nothing is fetched but Go modules through the module proxy. The cache lives outside the repo
($PERSONALAI_CACHE, default ~/.cache/personalai) under a key made of the pins and the Go version,
so a warm machine skips the build and a version bump builds afresh.

    python -m devcluster build
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
STAGE_FILES = [  # kwok >= 0.8 ships no built-in stages: these come from its own module.
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/general/pod-create.yaml",
    "kustomize/stage/pod/general/pod-init-container-running.yaml",
    "kustomize/stage/pod/general/pod-init-container-completed.yaml",
    "kustomize/stage/pod/general/pod-ready.yaml",
    "kustomize/stage/pod/general/pod-complete.yaml",
    "kustomize/stage/pod/general/pod-delete.yaml",
    "kustomize/stage/volume/fast/pvc-provision.yaml",
    "kustomize/stage/volume/fast/pv-bind.yaml",
    "kustomize/stage/volume/fast/pv-delete.yaml",
    "kustomize/stage/volume/fast/pvc-delete.yaml",
]
STORAGE_CLASS_FILE = "kustomize/stage/volume/fast/storage-class.yaml"


def cache_root() -> Path:
    return Path(os.environ.get("PERSONALAI_CACHE", Path.home() / ".cache" / "personalai"))


def module_version(tool: str, module: str) -> str:
    """The version a wrapper module pins for `module` (its go.mod is the one source of the pin)."""
    text = (TOOLS_DIR / tool / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise RuntimeError(f"hack/tools/{tool}/go.mod does not require {module}")
    return match.group(1)


@dataclass(frozen=True)
class Tool:
    """One wrapper module and the commands it builds."""

    name: str
    module: str
    packages: tuple[str, ...]
    outputs: tuple[str, ...]

    def ldflags(self, version: str) -> str:
        if self.name == "kubernetes":
            minor = version.split(".")[1]
            stamp = f"gitVersion={version} -X {{pkg}}.gitMajor=1 -X {{pkg}}.gitMinor={minor} -X {{pkg}}.gitTreeState=clean"
            flags = []
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                flags.append("-X " + f"{pkg}." + stamp.replace("{pkg}", pkg))
            return "-s -w " + " ".join(flags)
        if self.name == "helm":
            # Helm assumes Kubernetes 1.20 for `template` and `lint` unless told the version it was built against.
            minor = module_version("kubernetes", "k8s.io/kubernetes").split(".")[1]
            stamps = [f"helm.sh/helm/v3/internal/version.version={version}",
                      "helm.sh/helm/v3/internal/version.gitTreeState=clean"]
            stamps += [f"helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}" for pkg in ("chartutil", "lint/rules")
                       for part, value in (("Major", "1"), ("Minor", minor))]
            return "-s -w " + " ".join(f"-X {stamp}" for stamp in stamps)
        if self.name == "kwok":
            return f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={version}"
        return "-s -w"


TOOLS = [
    Tool("etcd", "go.etcd.io/etcd/server/v3", (".",), ("etcd",)),
    Tool("kubernetes", "k8s.io/kubernetes",
         tuple(f"k8s.io/kubernetes/cmd/{c}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")),
         ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")),
    Tool("kwok", "sigs.k8s.io/kwok", ("sigs.k8s.io/kwok/cmd/kwok",), ("kwok",)),
    Tool("helm", "helm.sh/helm/v3", ("helm.sh/helm/v3/cmd/helm",), ("helm",)),
]


def versions() -> dict[str, str]:
    return {tool.name: module_version(tool.name, tool.module) for tool in TOOLS}


def go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def cache_key() -> str:
    """Pins, go.sum contents and the Go version: any change builds into a new folder."""
    digest = hashlib.sha256(go_version().encode())
    digest.update(Path(__file__).read_bytes())  # the build flags live here
    for tool in TOOLS:
        for name in ("go.mod", "go.sum", "main.go"):
            path = TOOLS_DIR / tool.name / name
            if path.exists():
                digest.update(path.read_bytes())
    pins = "-".join(f"{k}{v}" for k, v in versions().items())
    return f"{pins}-{digest.hexdigest()[:12]}"


def bin_dir() -> Path:
    return cache_root() / "bin" / cache_key()


def log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def _run_with_heartbeat(command: list[str], cwd: Path, log_path: Path, what: str, env: dict[str, str]) -> None:
    """Run a slow command, printing that it is alive every 30 s; on failure say what, how and where the log is."""
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            log(f"  still building {what} ({time.monotonic() - started:.0f}s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    with log_path.open("w") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    done.set()
    if result.returncode != 0:
        tail = log_path.read_text().splitlines()[-15:]
        raise RuntimeError(f"building {what} failed (exit {result.returncode})\n  command: {' '.join(command)}\n"
                           f"  in: {cwd}\n  log: {log_path}\n  last lines:\n    " + "\n    ".join(tail))
    log(f"  built {what} in {time.monotonic() - started:.0f}s")


def _module_dir(tool: Tool, env: dict[str, str]) -> Path:
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", tool.module], cwd=TOOLS_DIR / tool.name,
                         check=True, capture_output=True, text=True, env=env).stdout.strip()
    return Path(out)


def build() -> Path:
    """Build every missing binary into the cache; return the folder that holds them."""
    target = bin_dir()
    if _complete(target):
        return target
    # One builder at a time (`make demo` and `make test` side by side share the cache): the second
    # waits, then finds the folder the first one finished.
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return target if _complete(target) else _build_into(target)


def _complete(target: Path) -> bool:
    return all((target / out).exists() for tool in TOOLS for out in tool.outputs) and (target / "kwok-stages.yaml").exists()


def _build_into(target: Path) -> Path:
    if shutil.which("go") is None:
        raise RuntimeError("building the control plane needs Go (https://go.dev/dl); `go` is not on PATH")
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # -mod=readonly: the committed go.sum is the pin; a missing entry is an error, not a silent update.
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
    log(f"building control-plane binaries into {target} (first time: about 10 minutes on 2 cores)")
    for index, tool in enumerate(TOOLS, 1):
        if all((partial / out).exists() for out in tool.outputs):
            continue
        version = module_version(tool.name, tool.module)
        what = f"{'/'.join(tool.outputs)} {version} [{index}/{len(TOOLS)}]"
        log(f"building {what}")
        command = ["go", "build", "-trimpath", "-ldflags", tool.ldflags(version), "-o", str(partial) + "/", *tool.packages]
        _run_with_heartbeat(command, TOOLS_DIR / tool.name, logs / f"build-{tool.name}.log", what, env)
    kwok_dir = _module_dir(TOOLS[2], env)
    stages = [(kwok_dir / f).read_text().strip() for f in STAGE_FILES]
    (partial / "kwok-stages.yaml").write_text("\n---\n".join(stages) + "\n")
    shutil.copy(kwok_dir / STORAGE_CLASS_FILE, partial / "kwok-storage-class.yaml")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target
