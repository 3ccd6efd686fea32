# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo-out
# A CPU build of torch where there is no NVIDIA GPU (a plain `torch` pulls a multi-GB CUDA build).
TORCH_SPEC := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo "torch>=2.2"; else echo "torch==2.13.0"; fi)

.PHONY: venv demo test test-fast lint format bench bench-gpu study
SIRST ?= ../shared/datasets/sirst-v1
STUDY ?= study-out

$(BIN)/.installed: pyproject.toml sirst_synth/_kernel.c
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[train,dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	rm -rf $(DEMO)
	$(BIN)/sirst-synth demo-dataset $(DEMO)/dataset --images 64
	$(BIN)/sirst-synth build-noise-bank $(DEMO)/dataset --out $(DEMO)/bank.h5
	$(BIN)/sirst-synth generate $(DEMO)/dataset --bank $(DEMO)/bank.h5 --out $(DEMO)/sirst5k --workers 2
	$(BIN)/sirst-synth verify $(DEMO)/sirst5k
	$(BIN)/sirst-synth preview $(DEMO)/sirst5k --out $(DEMO)/preview.png
	$(BIN)/sirst-synth train $(DEMO)/sirst5k --out $(DEMO)/run --recipe recipes/demo-train.yaml
	$(BIN)/sirst-synth evaluate $(DEMO)/sirst5k --checkpoint $(DEMO)/run/best.pt --json-out $(DEMO)/eval.json --curve $(DEMO)/pdfa.png
	@echo "demo outputs: $(DEMO)/ (dataset, bank.h5, sirst5k/, preview.png, run/, eval.json)"

# Every test, the slow ones included (CI runs this); `make test-fast` is the quick suite.
test: venv
	$(BIN)/python -m pytest -q -m "slow or not slow"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python bench/run.py

bench-gpu: venv
	$(BIN)/python bench/gpu.py

# The SIRST-5K ablation on real SIRST v1 (its own test split): about 1.5 hours on 2 CPU cores.
# Resumable: run it again after an interruption and finished runs are kept.
study: venv
	mkdir -p $(STUDY)
	$(BIN)/sirst-synth build-noise-bank $(SIRST) --out $(STUDY)/bank.h5 --on-error skip --resume
	$(BIN)/sirst-synth study $(SIRST) --bank $(STUDY)/bank.h5 --out $(STUDY)/study --recipe study-cpu --resume
