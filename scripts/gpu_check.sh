#!/usr/bin/env bash
# One GPU check (under 8 minutes on one GPU): the CUDA tests, a short large_100k run with AMP and
# --batch-size auto, and the throughput benchmark against transformers, all in runs/gpu_check/, summed
# up in runs/gpu_check/gpu_check.json. The README's GPU section lists exactly the commands below
# (tests/test_gpu_check.py holds the two to each other). Exit codes: 0 all passed, 1 a check failed,
# 2 runs/gpu_check already exists (an earlier check: move it away first), 4 no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device (torch sees none); nothing checked" >&2
  exit 4
fi
if [[ -e runs/gpu_check ]]; then
  echo "gpu_check: runs/gpu_check exists (an earlier check); move or delete it first" >&2
  exit 2
fi
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"  # tests/conftest.py hides GPUs unless this is set
mkdir -p runs/gpu_check
failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to runs/gpu_check/NAME.log, record the status
  local name=$1 limit=$2; shift 2
  echo "gpu_check: $name: $*"
  timeout "$limit" "$@" > "runs/gpu_check/$name.log" 2>&1
  local status=$?
  echo "$status" > "runs/gpu_check/$name.status"
  [[ $status -eq 0 ]] || { failed=1; echo "gpu_check: $name failed (exit $status; see runs/gpu_check/$name.log)" >&2; }
}
step cuda_tests 150 $PY -m pytest -q -m cuda tests --junitxml runs/gpu_check/cuda_tests.xml
step corpus 60 $PY rare_char_fetch.py --source embedded --out runs/gpu_check/corpus.jsonl
step train 120 $PY scripts/gpu_train_check.py --out runs/gpu_check/train.json -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --out-dir runs/gpu_check/large_run --batch-size auto --steps 300 --warmup-steps 100 --log-interval 50 --eval-interval 300 --save-interval 300 --no-progress
step bench 200 $PY bench/throughput.py --preset large_100k --device cuda --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --compile-preset large_100k --out runs/gpu_check/bench.json
$PY scripts/gpu_train_check.py --summarize runs/gpu_check
summary=$?
[[ $failed -eq 0 && $summary -eq 0 ]] && exit 0 || exit 1
