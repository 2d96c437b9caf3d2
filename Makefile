# Set-up and checks. CI (.ci/run) runs `make test`, then `make test-e2e`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SYSTEM_PACKAGES := fonts-noto-color-emoji fonts-symbola fonts-dejavu-core fontconfig redis-server \
	chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-cuda system-packages demo test test-e2e test-parity bench lint clean

# Debian packages: the fonts the emoji world is rendered from, Redis (the job broker,
# started by the service tests and by `styledrop serve`), and Chromium (the browser test
# of the web app).
system-packages:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES))

# Create the virtual environment and install the project with its test tools.
# torch/torchvision come first and pinned: pip takes them from the machine's local
# wheel store; an unpinned torch would pull a multi-GB build from the network.
$(STAMP): pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[reference,dev]"
	touch $(STAMP)

install: $(STAMP)

# The same environment plus JAX's CUDA build (the `cuda` extra; `CUDA_EXTRA=cuda12` for
# NVIDIA drivers older than 580). Check with `styledrop doctor`; see docs/gpu.md.
CUDA_EXTRA ?= cuda
install-cuda: $(STAMP)
	$(BIN)/pip install --quiet -e ".[reference,dev,$(CUDA_EXTRA)]"

# The main job on the embedded zoo: a round-1 style adapter from the shipped line-art
# house, a grid of other subjects in that style, and out/demo/report.html.
demo: system-packages $(STAMP)
	$(BIN)/styledrop demo --out out/demo

# The default test run: lint and every test but the long end-to-end ones (`make test-e2e`),
# whole test files spread over the machine's cores (TEST_WORKERS=0: one process).
TEST_WORKERS ?= auto
test: system-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The long end-to-end runs the default run leaves out (marker `e2e`); CI runs them second.
test-e2e: system-packages $(STAMP)
	$(BIN)/pytest -q -m e2e

# Only the comparisons against the PyTorch reference.
test-parity: $(STAMP)
	$(BIN)/pytest -q -m parity

# Speed and memory against diffusers on this machine (amused_256 and amused_512; long).
bench: $(STAMP)
	$(BIN)/styledrop bench --json bench-results.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
