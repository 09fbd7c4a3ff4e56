# memrl: a fresh clone needs only `make demo` or `make test`; every target that needs the venv
# builds it first.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel by default; set TORCH_SPEC= (empty) to let pip resolve torch itself, or e.g.
# TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.memrl-setup
ENV_STAMP := $(VENV)/.memrl-envs
PYTEST_ARGS ?=
# Test processes (pytest-xdist). Much of the suite waits (Ray start-up, subprocesses, sampling
# loops of one thread), so two workers halve the wall time on 2 cores; TEST_WORKERS=0 runs it
# in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup setup-envs test test-fast lint demo bench validate-deploy clean

setup: $(STAMP) $(ENV_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then echo "installing $(TORCH_SPEC)"; $(PIP) install -q $(TORCH_SPEC); fi
	$(PIP) install -q -e ".[dev]"
	@touch $@

# Environment packages with awkward pins (see README "Environments"): memory-gym without its
# gymnasium/pygame pins, memory-maze with mujoco pinned, and the headless GL libraries.
setup-envs: $(ENV_STAMP)

$(ENV_STAMP): $(STAMP) scripts/setup_envs.sh
	bash scripts/setup_envs.sh $(PY)
	@touch $@

test: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check memrl tests
	$(PY) -m ruff format --check memrl tests

demo: setup
	$(PY) -m memrl.demo

bench: setup
	$(VENV)/bin/memrl bench cores --out results/cores.json

validate-deploy: $(STAMP)
	bash scripts/validate_deploy.sh $(PY)

clean:
	rm -rf $(VENV) .pytest_cache results
