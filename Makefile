# The two set-up commands of the README are `make quickstart` and `make test`.
# Each creates (or reuses) the virtualenv in $(VENV) and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch 2.13.0 for CI and laptops. GPU users (README, GPU check): the CUDA build from
# PyTorch's index, e.g. make TORCH_SPEC='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cu128 venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# The installed torch is recorded in a stamp named after TORCH_SPEC and TORCH_INDEX: another value
# reinstalls torch (the old build is uninstalled first, since pip keeps any build that satisfies the spec).
TORCH_KEY := $(shell printf '%s|%s' '$(TORCH_SPEC)' '$(TORCH_INDEX)' | cksum | cut -d' ' -f1)
TORCH_STAMP := $(VENV)/.torch-$(TORCH_KEY)
# make quickstart and study-cpu collect the embedded corpus into a folder of their own, so a crawl saved
# at data/corpus.jsonl (the README's target for rare_char_fetch.py) and its progress file are never touched.
EMBEDDED_DIR ?= data/embedded
QUICK_DIR ?= runs/quick
STUDY_DIR ?= runs/cpu_study
# Extra train_large_100k.py options, e.g. make quickstart TRAIN_ARGS='--threads 1' on a busy CPU.
TRAIN_ARGS ?=
# Extra probe_downstream.py options for study-cpu, e.g. PROBE_ARGS='--threads 1'.
PROBE_ARGS ?=
# Pretraining seeds for study-cpu, e.g. make study-cpu SEEDS="1 2 3": one run per seed in $(STUDY_DIR)_seed<N>
# (same corpus, vocabulary and held-out split: the split has its own --split-seed), each resumable, then the
# spread of every headline figure across them in $(SEEDS_SUMMARY). Unset: the single run below.
SEEDS ?=
SEEDS_SUMMARY ?= results/seeds_summary.json
# What make quickstart asks the trained model at the end (fill_mask.py, top 3 per [MASK]).
PROBE_SENTENCES ?= "中国[MASK]民" "北京是中国的首[MASK]" "我们明[MASK]去上学"
# Milestones of the first seed that study-cpu SEEDS=... also fine-tunes (encoder + head), beside the frozen probes.
FINETUNE_STEPS ?= 500,2000,5000

.PHONY: help quickstart test test-fast across-models venv system-deps system-deps-test bench gpu-check study-cpu clean
.DEFAULT_GOAL := help

# `make` alone: the targets, from the `## ` text on each target's line.
help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed -E 's/^([a-z-]+):.*## /\1\t/' | \
		awk -F'\t' '{printf "  make %-17s %s\n", $$1, $$2}'

$(TORCH_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if ls $(VENV)/.torch-* >/dev/null 2>&1; then $(PY) -m pip uninstall -q -y torch; rm -f $(VENV)/.torch-*; fi
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	printf '%s\n' '$(TORCH_SPEC) $(TORCH_INDEX)' > $@

# torch is imported once numpy is installed: imported before, it warns "Failed to initialize NumPy".
$(VENV)/.installed: $(TORCH_STAMP) requirements.txt requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
	touch $@

venv: $(VENV)/.installed  ## the virtualenv (.venv, or VENV=...): torch (TORCH_SPEC, TORCH_INDEX) and the requirements

system-deps:  ## the system packages the scripts need (scripts/install_system_deps.sh)
	scripts/install_system_deps.sh

system-deps-test:  ## the same, plus those of the MediaWiki tests
	scripts/install_system_deps.sh --test

# The main job on the embedded corpus: collect -> verify -> train (quick) -> analyze -> visualize, then the
# model's top 3 for the probe sentences (PROBE_SENTENCES; scripts/quick_recipes.py asks the same).
quickstart: system-deps venv  ## collect, verify, train the quick preset, analyze, chart, ask the model (runs/quick)
	$(PY) rare_char_fetch.py --source embedded --out $(EMBEDDED_DIR)/corpus.jsonl
	$(PY) verify_dataset.py $(EMBEDDED_DIR)/corpus.jsonl --profile embedded --report $(EMBEDDED_DIR)/dataset_report.json
	$(PY) train_large_100k.py --preset quick --corpus $(EMBEDDED_DIR)/corpus.jsonl --out-dir $(QUICK_DIR) --resume-if-possible $(TRAIN_ARGS)
	$(PY) analyze_100k.py $(QUICK_DIR)/training_history_100k.json --out $(QUICK_DIR)/analysis_100k_result.json --overwrite
	$(PY) visualize_results.py $(QUICK_DIR)/training_history_100k.json --analysis $(QUICK_DIR)/analysis_100k_result.json --out-dir results/quickstart
	$(PY) fill_mask.py $(QUICK_DIR)/export_hf $(PROBE_SENTENCES) --top-k 3

# pytest-xdist's processes for make test and test-fast: 2, CI's cores (most tests use one core: OMP_NUM_THREADS=1 in
# tests/conftest.py). worksteal hands a finished process the other's waiting tests, so the two end together.
# TEST_WORKERS=auto takes one per core; TEST_WORKERS=0 runs in this process (pdb, print debugging).
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10

test: system-deps-test venv  ## every test (what CI runs)
	$(PYTEST) tests

# The development loop: the tests not marked slow (tests/conftest.py says what is), without the MediaWiki's
# packages; `make test` (and CI) runs every test.
test-fast: system-deps venv  ## the tests not marked slow
	$(PYTEST) -m "not slow" tests

# Training throughput on this machine, ours vs transformers (minutes on a CPU; docs/PERFORMANCE.md has the figures and times).
bench: venv data/corpus.jsonl  ## training throughput on this machine, ours vs transformers
	$(PY) bench/throughput.py --out bench/throughput_result.json

# The across-model test (docs/ACROSS_MODELS_PLAN.md): 21 runs of 1,000 steps and their probes, two processes at a
# time on one thread each, into $(ACROSS_RUNS); rerun to continue. Its analysis and chart: results/across_models/.
ACROSS_RUNS ?= runs/across_models
across-models: system-deps venv  ## the across-model test: prepare, train 21 runs, probe them, analyze (resumable)
	$(PY) rare_char_fetch.py --source embedded --out $(EMBEDDED_DIR)/corpus.jsonl
	$(PY) scripts/across_models.py prepare --corpus $(EMBEDDED_DIR)/corpus.jsonl
	$(PY) scripts/across_models.py --runs-dir $(ACROSS_RUNS) train --processes 2 --threads 1
	$(PY) scripts/across_models.py --runs-dir $(ACROSS_RUNS) probe --processes 2 --threads 1
	$(PY) scripts/across_models.py --runs-dir $(ACROSS_RUNS) analyze --out results/across_models/analysis.json --overwrite
	$(PY) scripts/across_models.py --runs-dir $(ACROSS_RUNS) publish --out results/across_models --overwrite

data/corpus.jsonl:
	$(PY) rare_char_fetch.py --source embedded --out data/corpus.jsonl

# The one GPU check (needs a CUDA build of torch: see TORCH_INDEX above); the README's GPU section.
gpu-check: venv  ## the one GPU check (a CUDA build of torch)
	scripts/gpu_check.sh

# The CPU tier of the study: a reduced but genuine run (its time: the README), outputs to results/
# (deliberately: --overwrite replaces the committed analysis and charts, which analyze_100k.py and
# visualize_results.py otherwise refuse to do). analysis_100k_result.json (what the charts draw) analyses the
# default metric, held-out [MASK] accuracy (training MLM accuracy for a history without it);
# analysis_training_mlm.json the original's metric, for comparison; analysis_heldout_mlm.json held-out, all positions.
study-cpu: system-deps venv  ## the CPU tier of the study into results/ (SEEDS="1 2 3" for seeds)
	$(PY) rare_char_fetch.py --source embedded --out $(EMBEDDED_DIR)/corpus.jsonl
	$(PY) verify_dataset.py $(EMBEDDED_DIR)/corpus.jsonl --profile embedded --report $(EMBEDDED_DIR)/dataset_report.json
ifneq ($(strip $(SEEDS)),)
	$(foreach seed,$(SEEDS),$(call study_seed,$(STUDY_DIR)_seed$(seed),$(seed)))
	$(PY) analyze_100k.py --seeds-summary $(foreach seed,$(SEEDS),$(STUDY_DIR)_seed$(seed)/analysis_heldout_mlm.json $(STUDY_DIR)_seed$(seed)/analysis_heldout_mask.json) --out $(SEEDS_SUMMARY) --overwrite
	$(PY) visualize_results.py --seeds-summary $(SEEDS_SUMMARY) --out-dir $(dir $(SEEDS_SUMMARY)) --overwrite
	$(PY) probe_downstream.py $(STUDY_DIR)_seed$(firstword $(SEEDS)) --finetune --milestone-steps $(FINETUNE_STEPS) $(PROBE_ARGS)
	$(call publish_study,$(STUDY_DIR)_seed$(firstword $(SEEDS)))
	cp $(STUDY_DIR)_seed$(firstword $(SEEDS))/downstream_finetune_100k.json results/
else
	$(PY) train_large_100k.py --preset cpu_study --corpus $(EMBEDDED_DIR)/corpus.jsonl --out-dir $(STUDY_DIR) --resume-if-possible $(TRAIN_ARGS)
	$(PY) probe_downstream.py $(STUDY_DIR) $(PROBE_ARGS)
	$(call publish_study,$(STUDY_DIR))
endif

# A finished study run's analyses and charts into results/ (with SEEDS: the first seed's run), and its history
# and downstream file beside them.
define publish_study
	$(PY) analyze_100k.py $(1)/training_history_100k.json --downstream $(1)/downstream_100k.json --out results/analysis_100k_result.json --overwrite
	$(PY) analyze_100k.py $(1)/training_history_100k.json --metric mlm_acc --out results/analysis_training_mlm.json --overwrite --quiet
	$(PY) analyze_100k.py $(1)/training_history_100k.json --metric eval_mlm_acc --downstream $(1)/downstream_100k.json --out results/analysis_heldout_mlm.json --overwrite
	$(PY) visualize_results.py $(1)/training_history_100k.json --analysis results/analysis_100k_result.json --downstream $(1)/downstream_100k.json --out-dir results --overwrite
	cp $(1)/training_history_100k.json $(1)/downstream_100k.json results/
endef

# One seed of study-cpu SEEDS=...: $(1) the run folder, $(2) the seed. Rerunning continues where it stopped:
# a finished run's training says "already complete" (nothing retrained), the probe pass resumes, the
# analyses (held-out MLM over all positions, held-out [MASK]) are redone. The blank line ends each seed's lines.
define study_seed
	$(PY) train_large_100k.py --preset cpu_study --corpus $(EMBEDDED_DIR)/corpus.jsonl --out-dir $(1) --seed $(2) --resume-if-possible $(TRAIN_ARGS)
	$(PY) probe_downstream.py $(1) $(PROBE_ARGS)
	$(PY) analyze_100k.py $(1)/training_history_100k.json --metric eval_mlm_acc --downstream $(1)/downstream_100k.json --out $(1)/analysis_heldout_mlm.json --overwrite --quiet
	$(PY) analyze_100k.py $(1)/training_history_100k.json --metric eval_mask_acc --downstream $(1)/downstream_100k.json --out $(1)/analysis_heldout_mask.json --overwrite --quiet

endef

clean:  ## remove runs/quick, results/quickstart and .pytest_cache
	rm -rf $(QUICK_DIR) results/quickstart .pytest_cache
