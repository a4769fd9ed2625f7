# freqnn: `make demo` runs the main job, `make test` the whole suite. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean system-deps docs

# Debian packages the experiments use: flite synthesises the offline speech corpus, wamerican is
# the word list its texts are drawn from (the same list on every machine keeps the corpus identical).
system-deps:
	@if ! command -v flite >/dev/null 2>&1 || [ ! -f /usr/share/dict/words ]; then \
	  echo "installing Debian packages flite wamerican ..."; \
	  (apt-get update -qq && apt-get install -y -qq flite wamerican) >/dev/null 2>&1 || \
	  echo "warning: could not install flite/wamerican; speech-corpus tests will be skipped"; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the pinned CPU wheel is available locally, any other pick downloads gigabytes
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[experiments,dev,docs]"
	touch $(STAMP)

venv: $(STAMP)

# The numerically sensitive tests (marker numerics) once more under another CPU dispatch, so that
# their float32 results round as on another machine: ATen's kernels without SIMD (the SFM kernel
# is then built without -mavx2 -mfma) and MKL's reproducible code path. On an AVX-512 machine
# both change float32 GEMM bits and training losses; ATEN_CPU_CAPABILITY=avx2 and
# MKL_ENABLE_INSTRUCTIONS=AVX2 changed none of them there, so they are not used.
NUMERICS_DISPATCH := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

test: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	$(NUMERICS_DISPATCH) $(BIN)/python -m pytest -q -m numerics

demo: venv system-deps
	$(BIN)/python -m freqnn.cli demo

lint: venv
	$(BIN)/ruff check .

# the documentation site (MkDocs + Material + mkdocstrings) into site/; tests/test_docs.py
# builds it too, strictly, as part of make test
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: venv
	$(BIN)/python benchmarks/sfm.py
	$(BIN)/python benchmarks/transform.py

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
