# The two README commands: `make demo` (main job on the demo data) and `make test`.
# Everything runs in the project's own virtual environment (.venv), so Debian's system
# python3 (PEP 668 "externally managed") works as the base interpreter.
BASE_PYTHON ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test lint services

$(PYTHON):
	@$(BASE_PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  echo "$(BASE_PYTHON) cannot create virtual environments: apt-get install python3-venv"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned, so no other requirement swaps it for another build. PyPI's x86_64 wheel
# carries CUDA libraries (~3 GB unused on a CPU): with PyTorch's own index reachable,
# `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs the CPU build.
TORCH_INDEX ?=
$(STAMP): pyproject.toml | $(PYTHON)
	@echo "installing torch and the project into $(VENV): a few minutes the first time"
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(PYTHON) -m inspection demo

services:
	bash scripts/services.sh

lint: install
	$(PYTHON) -m ruff check inspection apps tests bench scripts
	$(PYTHON) -m ruff format --check inspection apps tests bench scripts
	$(VENV)/bin/lint-imports --no-cache

# pytest exits 5 when it collects nothing: that is a failure here, like any other.
# pytest: three workers on two cores (with two, a fifth of the cores idled while tests waited on
# a server, a station or a timer: reports/tests/suite_time.md), each test file whole on one; a
# dead worker fails the run (pyproject: --max-worker-restart=0, a 600 s timeout per test).
# lint-imports: the layer, torch-boundary and no-cycle contracts of pyproject.toml.
test: install services
	$(PYTHON) -m ruff check inspection apps tests bench scripts
	$(VENV)/bin/lint-imports --no-cache
	$(PYTHON) -m pytest -n 3 --dist loadfile --no-loadscope-reorder; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
