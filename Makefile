# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo-out
# A CPU build of torch where there is no NVIDIA GPU (a plain `torch` pulls a multi-GB CUDA build).
TORCH_SPEC := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo "torch>=2.2"; else echo "torch==2.13.0"; fi)

.PHONY: venv demo test test-fast lint format bench bench-gpu gpu-data gpu-check study study-status study-length-check
SIRST ?= ../shared/datasets/sirst-v1
STUDY ?= study-out

$(BIN)/.installed: pyproject.toml $(wildcard sirst_synth/*.c sirst_synth/*.h)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[train,dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	rm -rf $(DEMO)
	$(BIN)/sirst-synth demo-dataset $(DEMO)/dataset --images 64
	$(BIN)/sirst-synth build-noise-bank $(DEMO)/dataset --bank $(DEMO)/bank.h5
	$(BIN)/sirst-synth generate $(DEMO)/dataset --bank $(DEMO)/bank.h5 --out $(DEMO)/sirst5k --workers 2
	$(BIN)/sirst-synth verify $(DEMO)/sirst5k
	$(BIN)/sirst-synth preview $(DEMO)/sirst5k --sheet $(DEMO)/preview.png
	$(BIN)/sirst-synth train $(DEMO)/sirst5k --out $(DEMO)/run --recipe recipes/demo-train.yaml --precision fp32
	$(BIN)/sirst-synth evaluate $(DEMO)/sirst5k --checkpoint $(DEMO)/run/last.pt --json-out $(DEMO)/eval.json --curve $(DEMO)/pdfa.png
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

# A copy of SIRST v1 inside the repository (git ignores it) for a GPU machine, where ../shared
# is not there: `make gpu-data` here, then carry .gpu-data to the GPU machine.
gpu-data:
	rm -rf .gpu-data/sirst-v1
	mkdir -p .gpu-data
	cp -r $(SIRST) .gpu-data/sirst-v1
	chmod -R u+w .gpu-data

# On a GPU machine whose python already has torch, h5py, OpenCV, typer, rich, PyYAML, scipy and
# matplotlib (no network): install this project without dependencies, then the whole check.
GPU_PY ?= python3
GPU_OUT ?= gpu-out
gpu-check:
	$(GPU_PY) -m pip install -q --no-deps --no-build-isolation .
	$(GPU_PY) bench/gpu_check.py --out $(GPU_OUT)

# The CPU study on real SIRST v1 (train/val/test of idx_427), with SIRST-V2's unseen scenes as
# extra tests: about 23 hours on 2 CPU cores (54 runs of about 50 minutes, 2 at a time).
# Resumable across machines: finished runs' small files are published under
# docs/results/sirst-v1-6000 and taken as finished by a later --resume. The 3,000-step study-cpu
# (too short) is make study STUDY_RECIPE=study-cpu PUBLISH=docs/results/sirst-v1 STUDY_JOBS=1.
V2 ?= ../shared/datasets/sirst-v2-new
STUDY_RECIPE ?= study-cpu-6000
PUBLISH ?= docs/results/sirst-v1-6000
# Runs trained at once, each with the recipe's threads (study-cpu-6000: 1 thread, 2 jobs).
STUDY_JOBS ?= 2
study: venv
	mkdir -p $(STUDY)
	$(BIN)/sirst-synth study $(SIRST) --out $(STUDY)/$(STUDY_RECIPE) --recipe $(STUDY_RECIPE) \
		--resume --publish $(PUBLISH) --jobs $(STUDY_JOBS) \
		--extra-test v2-targets=$(V2):$(V2)/idx_v2/targets.txt \
		--extra-test v2-backgrounds=$(V2):$(V2)/idx_v2/backgrounds.txt

# Where the study stands (reads only; safe beside a running study): its own folder where this
# machine has it, else the published runs.
study-status: venv
	$(BIN)/sirst-synth study-status $$(test -f $(STUDY)/$(STUDY_RECIPE)/study.yaml && echo $(STUDY)/$(STUDY_RECIPE) || echo $(PUBLISH)) --jobs $(STUDY_JOBS)

# Is a study long enough? Its reference arm at twice the steps against its own reference runs,
# on the validation split. The first check: study-cpu's 3,000 steps against study-length's 6,000
# (make study STUDY_RECIPE=study-length PUBLISH=docs/results/sirst-v1-length); the second:
# 6,000 against study-length-12000's 12,000 (LENGTH=12000). Writes length.md and the curve.
LENGTH ?= 6000
LENGTH_SHORT_6000 = docs/results/sirst-v1 --arm reference
LENGTH_SHORT_12000 = docs/results/sirst-v1-length --arm reference-6000
LENGTH_LONG_6000 = docs/results/sirst-v1-length
LENGTH_LONG_12000 = docs/results/sirst-v1-length-12000
LENGTH_OUT_6000 = docs/results/sirst-v1-length-check
LENGTH_OUT_12000 = docs/results/sirst-v1-length-check-12000
study-length-check: venv
	$(BIN)/sirst-synth length-check $(LENGTH_SHORT_$(LENGTH)) $(LENGTH_LONG_$(LENGTH)) \
		--long-arm reference-$(LENGTH) --out $(LENGTH_OUT_$(LENGTH)) --overwrite
