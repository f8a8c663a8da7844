# The two README commands: `make demo` (main job on the demo data) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := var/.installed

.PHONY: install demo test lint services

# torch first, pinned, so no other requirement pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[all]"
	@mkdir -p var && touch $(STAMP)

install: $(STAMP)

demo: install
	$(PYTHON) -m inspection demo

services:
	bash scripts/services.sh

lint: install
	$(PYTHON) -m ruff check inspection apps tests bench
	$(PYTHON) -m ruff format --check inspection apps tests bench

# pytest exits 5 when it collects nothing: that is a failure here, like any other.
test: install services
	$(PYTHON) -m ruff check inspection apps tests bench
	$(PYTHON) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
