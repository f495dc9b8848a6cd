#!/usr/bin/env bash
# Every benchmark target of BENCHMARKS.md measured in one command on one H100/H200 (issue 19).
#
# Usage: bash benchmarks/gpu.sh [--dry-run]
#
# Runs the suite in pieces, most important and cheapest first: the GPU-vs-CPU test of the
# noise draws; the activations at 2^28 elements in float32; gradient noise on 100M
# parameters; the LSTM layers at (64, 100, 512, 512); the NTM training step (no copy-task
# training); the activations in bfloat16; the LSTM at (32, 100, 64, 256); the GRU at both
# shapes. Each piece is one benchmark module (or the test) in its own process and results
# folder, under its own time limit, so that a piece that fails or runs out of time costs
# only its own numbers and the next piece starts either way; all of them together stop
# after DEADLINE_S seconds (default 420). Every line printed carries the clock time and
# the seconds since the start. At the end benchmarks/merge_results.py merges the pieces'
# results into <device>.json and writes its tables <device>.md.
#
# --dry-run runs the same pieces on the CPU at toy sizes, with every time limit (and the
# default deadline) three times as long: compiling, not the sizes, takes the time, and a
# shared 2-core CPU compiles more slowly than a GPU machine's host. Its figures mean nothing.
#
# Writes into OUT (default benchmarks/results/gpu_run, cleared first; an OUT given must be
# empty or absent): gpu.log (all that is printed), pieces.tar.gz (each piece's results
# folder and log, and pieces.tsv: name, status, seconds; rewritten after every piece, so
# that it survives a cut-off run), <device>.json and <device>.md (the merged results).
# Environment: PYTHON (default python3), OUT, DEADLINE_S, and BENCH_GIT_SHA: the commit
# to record where the tree was copied without its .git.
set -euo pipefail
shopt -s nullglob

dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu.sh [--dry-run]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
scale=$((dry_run ? 3 : 1))  # of every time limit
PYTHON=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-$((420 * scale))}
MIN_PIECE_S=20  # a piece with less time than this left is skipped
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "${OUT:-}" ]]; then
  OUT=benchmarks/results/gpu_run
  rm -rf "$OUT"
elif [[ -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
  echo "OUT=$OUT is not empty: give an empty or new folder." >&2
  exit 2
fi
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The draws test must pass on the GPU; conftest.py defaults JAX_PLATFORMS to cpu, where
# it is skipped, as the dry run expects.
if ((dry_run)); then
  export JAX_PLATFORMS=cpu
  draws_platforms=cpu draws_expect="1 skipped"
  activations=(--log2-size 12 --repeats 2)
  gradient_noise=(--size 20000 --blocks 1 --repeats 2)
  recurrent=(--repeats 2 --no-small)
  large=2,5,4,8 small=2,3,4,8
  ntm=(--small --repeats 2)
else
  draws_platforms=cuda,cpu draws_expect="1 passed"
  activations=(--log2-size 28 --repeats 100)
  gradient_noise=(--size 100000000 --blocks 8 --repeats 50)
  recurrent=(--repeats 50 --no-small)
  large=64,100,512,512 small=32,100,64,256
  ntm=(--repeats 50)
fi

stamp() {  # prefixes each line read with the clock time and the seconds since the start
  local line
  while IFS= read -r line; do printf '%(%H:%M:%S)T +%ss %s\n' -1 "$SECONDS" "$line"; done
}

log() { echo "== $*" | stamp; }

results=()  # the pieces' results files, in run order
failures=0

piece() {  # NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and the time left
  local name=$1 limit=$(($2 * scale))
  shift 2
  local left=$((DEADLINE_S - SECONDS))
  if ((left < MIN_PIECE_S)); then
    log "$name: skipped, ${left}s left of ${DEADLINE_S}s"
    printf '%s\tskipped\t0\n' "$name" >>"$work/pieces.tsv"
    failures=$((failures + 1))
    return
  fi
  ((limit <= left)) || limit=$left
  log "$name: start, limit ${limit}s: $*"
  local start=$SECONDS rc status
  set +e
  timeout -k 10 "$limit" "$@" 2>&1 | stamp | tee "$work/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after ${limit}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  ((rc == 0)) || failures=$((failures + 1))
  log "$name: $status in $((SECONDS - start))s"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >>"$work/pieces.tsv"
  results+=("$work/$name"/*.json)
  tar -czf "$OUT/pieces.tar.gz" -C "$work" .
}

bench() {  # NAME LIMIT_S MODULE ARGS...: a benchmark module writing into its own folder
  local name=$1 limit=$2 module=$3
  shift 3
  piece "$name" "$limit" "$PYTHON" -m "benchmarks.$module" "$@" --outdir "$work/$name"
}

run_suite() {
  log "benchmarks/gpu.sh$( ((dry_run)) && echo ' --dry-run'): deadline ${DEADLINE_S}s," \
    "OUT=$OUT, $PYTHON, commit $(git rev-parse HEAD 2>/dev/null || echo "${BENCH_GIT_SHA:-unknown}")"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
      | stamp
  fi

  piece draws 45 bash -c '"${@:2}" 2>&1 | tee /dev/stderr | grep -q "$1"' draws "$draws_expect" \
    env "JAX_PLATFORMS=$draws_platforms" "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
    tests/test_noise.py -k test_gpu_draw_matches_cpu
  bench activations_float32 75 bench_activations "${activations[@]}" --dtypes float32
  bench gradient_noise 75 bench_gradient_noise "${gradient_noise[@]}"
  bench recurrent_lstm_large 100 bench_recurrent "${recurrent[@]}" --cells lstm --shapes "$large"
  bench ntm 120 bench_ntm "${ntm[@]}" --no-train-copy
  bench activations_bfloat16 75 bench_activations "${activations[@]}" --dtypes bfloat16
  bench recurrent_lstm_small 90 bench_recurrent "${recurrent[@]}" --cells lstm --shapes "$small"
  bench recurrent_gru_large 90 bench_recurrent "${recurrent[@]}" --cells gru --shapes "$large"
  bench recurrent_gru_small 75 bench_recurrent "${recurrent[@]}" --cells gru --shapes "$small"

  if ((${#results[@]})); then
    log "merge: ${#results[@]} results files"
    set +e
    timeout $((60 * scale)) "$PYTHON" -m benchmarks.merge_results --outdir "$OUT" "${results[@]}" 2>&1 | stamp
    ((PIPESTATUS[0] == 0)) || failures=$((failures + 1))
    set -e
    local tables
    for tables in "$OUT"/*.md; do
      log "targets in $tables"
      grep -h '^- ' "$tables" || true
    done
  fi
  log "pieces: $failures not ok; ${SECONDS}s in all"
  local name status seconds
  while IFS=$'\t' read -r name status seconds; do
    printf '  %-22s %-26s %4ss\n' "$name" "$status" "$seconds"
  done <"$work/pieces.tsv"
  ((failures == 0))
}

run_suite 2>&1 | tee "$OUT/gpu.log"
