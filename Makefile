# The two set-up commands of the README are `make quickstart` and `make test`.
# Each creates (or reuses) the virtualenv in $(VENV) and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch 2.13.0 for CI and laptops; GPU users: make TORCH_SPEC='torch' (README).
TORCH_SPEC ?= torch==2.13.0
QUICK_DIR ?= runs/quick
STUDY_DIR ?= runs/cpu_study
# Extra train_large_100k.py options, e.g. make quickstart TRAIN_ARGS='--threads 1' on a busy CPU.
TRAIN_ARGS ?=
# Extra probe_downstream.py options for study-cpu, e.g. PROBE_ARGS='--threads 1'.
PROBE_ARGS ?=

.PHONY: quickstart test venv system-deps system-deps-test bench gpu-check study-cpu clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

system-deps:
	scripts/install_system_deps.sh

system-deps-test:
	scripts/install_system_deps.sh --test

# The main job on the embedded corpus: collect -> verify -> train (quick) -> analyze -> visualize.
quickstart: system-deps venv
	$(PY) rare_char_fetch.py --source embedded --out data/corpus.jsonl
	$(PY) verify_dataset.py data/corpus.jsonl --profile embedded --report data/dataset_report.json
	$(PY) train_large_100k.py --preset quick --corpus data/corpus.jsonl --out-dir $(QUICK_DIR) --resume-if-possible $(TRAIN_ARGS)
	$(PY) analyze_100k.py $(QUICK_DIR)/training_history_100k.json --out $(QUICK_DIR)/analysis_100k_result.json --overwrite
	$(PY) visualize_results.py $(QUICK_DIR)/training_history_100k.json --analysis $(QUICK_DIR)/analysis_100k_result.json --out-dir results/quickstart

test: system-deps-test venv
	$(PY) -m pytest -q --durations=10 tests

# Training throughput on this machine (8 min on 2 loaded CPU cores; docs/PERFORMANCE.md), ours vs transformers.
bench: venv data/corpus.jsonl
	$(PY) bench/throughput.py --out bench/throughput_result.json

data/corpus.jsonl:
	$(PY) rare_char_fetch.py --source embedded --out data/corpus.jsonl

# The one GPU check (needs a CUDA build of torch: make TORCH_SPEC=torch venv); the README's GPU section.
gpu-check: venv
	scripts/gpu_check.sh

# The CPU tier of the study: a reduced but genuine run (25 min on 2 idle cores, results/README.md), outputs to results/
# (deliberately: --overwrite replaces the committed analysis and charts, which analyze_100k.py and
# visualize_results.py otherwise refuse to do).
study-cpu: system-deps venv
	$(PY) rare_char_fetch.py --source embedded --out data/corpus.jsonl
	$(PY) verify_dataset.py data/corpus.jsonl --profile embedded --report data/dataset_report.json
	$(PY) train_large_100k.py --preset cpu_study --corpus data/corpus.jsonl --out-dir $(STUDY_DIR) --resume-if-possible $(TRAIN_ARGS)
	$(PY) probe_downstream.py $(STUDY_DIR) $(PROBE_ARGS)
	$(PY) analyze_100k.py $(STUDY_DIR)/training_history_100k.json --downstream $(STUDY_DIR)/downstream_100k.json --out results/analysis_100k_result.json --overwrite
	$(PY) analyze_100k.py $(STUDY_DIR)/training_history_100k.json --metric eval_mlm_acc --downstream $(STUDY_DIR)/downstream_100k.json --out results/analysis_heldout_mlm.json --overwrite
	$(PY) visualize_results.py $(STUDY_DIR)/training_history_100k.json --analysis results/analysis_100k_result.json --downstream $(STUDY_DIR)/downstream_100k.json --out-dir results --overwrite
	cp $(STUDY_DIR)/training_history_100k.json $(STUDY_DIR)/downstream_100k.json results/

clean:
	rm -rf $(QUICK_DIR) results/quickstart .pytest_cache
