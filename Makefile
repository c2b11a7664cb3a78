# The two commands of the README. Both create .venv on first use and install only what changed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.eightfold-installed
DEMO_OUT ?= demo-report
# Extra pip arguments for the torch install, e.g. an index of CPU-only wheels on machines where
# the default index would bring a CUDA build.
TORCH_PIP_ARGS ?=
# 2 cores: one intra-op thread per process is usually fastest for the tiny models here.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint typecheck unit install clean

install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned to the CPU build that lies on disk, so no dependency pulls a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet $(TORCH_PIP_ARGS) torch==2.13.0
	$(PIP) install --quiet -e '.[dev,all]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eightfold demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check eightfold tests benchmarks
	$(VENV)/bin/ruff format --check eightfold tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy eightfold

unit: $(STAMP)
	$(VENV)/bin/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
