# Two commands for a newcomer: `make run` and `make test`. Both set everything up first and are
# idempotent; a second run only re-checks stamps.
PYTHON     ?= python3
VENV       := .venv
UV_VERSION := 0.13.8
LLAMA_VERSION := 0.3.36
# llama-cpp-python is source-only on PyPI and pip's cache ignores CMAKE_ARGS, so it is built once,
# portably (no -march=native), into a wheelhouse shared by every checkout on this machine.
WHEELHOUSE ?= $(HOME)/.cache/tektra/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
UV         := $(VENV)/bin/uv
STAMP      := $(VENV)/.tektra-installed
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: setup run test lint typecheck pytest bench clean

setup: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

$(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION): | $(UV)
	mkdir -p $(WHEELHOUSE)
	@echo "Building llama-cpp-python $(LLAMA_VERSION) once (about 6 minutes on 2 cores)..."
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(VENV)/bin/pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(STAMP): pyproject.toml uv.lock $(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION) | $(UV)
	$(UV) sync --frozen --inexact --no-install-package llama-cpp-python
	$(UV) pip install --python $(VENV)/bin/python --no-deps --no-index \
	  --find-links $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

run: setup
	$(VENV)/bin/tektra run --config models.toml

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(VENV)/bin/pytest

test: lint typecheck pytest

# The latency budget and its comparisons, written to BENCHMARKS.md (~25 minutes; the idle
# measurement listens to 2 minutes of silence and 2 of room noise). Needs the packages .ci/run
# installs. One section alone: .venv/bin/python -m benchmarks --only SECTION.
bench: setup
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
