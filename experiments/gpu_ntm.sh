#!/usr/bin/env bash
# The NTM experiments of issue 20 in one command on one GPU (experiments/gpu_ntm.py says what
# runs and how the update budget is set; docs/RESULTS.md, "GPU runs", how to call it).
#
#   bash experiments/gpu_ntm.sh                 # on the GPU machine, in the repo root
#   bash experiments/gpu_ntm.sh --resume DIR    # continues from the files a command returned
#   bash experiments/gpu_ntm.sh --dry-run       # the same command at tiny sizes, on a CPU
#   bash experiments/gpu_ntm.sh --fetch-wheels  # beforehand, with a registry: into tmp/whl
#
# Environment: OUT (where the files to bring back go; default runs/gpu_ntm_out), PYTHON
# (default python3), TOTAL_S (seconds the whole command may take, packing included;
# default 480, or 300 for a dry run).
set -euo pipefail

START=$(date +%s)
log() { echo "$(date -u +%H:%M:%S) [t=$(( $(date +%s) - START ))s] gpu_ntm.sh: $*"; }

PYTHON=${PYTHON:-python3}
OUT=${OUT:-runs/gpu_ntm_out}
WORKDIR=runs/gpu_ntm
WHEELS=tmp/whl  # ignored by .gitignore (/tmp/); carried to the device
PACK_S=30  # kept back from TOTAL_S: a stuck trainer is killed 20 s in, packing gets 10
# The GPU image has jax, flax, optax, chex and orbax but not ml_collections; absl-py and
# PyYAML come with optax and orbax there, and are installed only if they are missing.
WHEEL_SPECS=(ml_collections==1.1.0 absl-py==2.5.1 PyYAML==6.0.3)

DRY_RUN=()
RESUME=""
while (( $# )); do
  case $1 in
    --dry-run) DRY_RUN=(--dry_run) ;;
    --resume) RESUME=${2:?--resume needs the folder of the files a command returned}; shift ;;
    --fetch-wheels)
      "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${WHEEL_SPECS[@]}"
      exit 0 ;;
    *) echo "unknown argument $1; see the head of $0" >&2; exit 2 ;;
  esac
  shift
done

# Seconds the whole command may take, packing included: 480 leaves a device timeout of
# 570 s room; a dry run on 2 CPU cores needs about 300 (compiling takes most of it).
TOTAL_S=${TOTAL_S:-$(( ${#DRY_RUN[@]} ? 300 : 480 ))}
mkdir -p "$OUT"
log "start: ${DRY_RUN[*]:-GPU sizes}${RESUME:+, resuming from $RESUME}; $(
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader \
  || echo "no nvidia-smi")"

SITE=$(mktemp -d)
wheels=("$WHEELS"/ml_collections-*.whl)
"$PYTHON" -c "import absl" 2>/dev/null || wheels+=("$WHEELS"/absl_py-*.whl)
"$PYTHON" -c "import yaml" 2>/dev/null || wheels+=("$WHEELS"/pyyaml-*.whl)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE:." PYTHONUNBUFFERED=1
log "installed ${wheels[*]##*/} into $SITE"

if [[ -n $RESUME ]]; then
  rm -rf "$WORKDIR"
  mkdir -p "$WORKDIR"
  for archive in "$RESUME"/*.tar.gz; do
    tar -xzf "$archive" -C "$WORKDIR"
  done
  if [[ -f $RESUME/timing.jsonl ]]; then cp "$RESUME/timing.jsonl" "$WORKDIR/"; fi
  log "unpacked $(ls "$RESUME"/*.tar.gz | wc -l) archives into $WORKDIR"
fi

DEADLINE=$(( START + TOTAL_S - PACK_S ))
LIMIT=()  # the trainer stops by DEADLINE itself; this is for one that hangs
if command -v timeout >/dev/null; then
  LIMIT=(timeout --kill-after=5 $(( DEADLINE + 15 - $(date +%s) )))
fi
set +e
"${LIMIT[@]}" "$PYTHON" -m experiments.gpu_ntm --workdir="$WORKDIR" --deadline="$DEADLINE" \
  "${DRY_RUN[@]}" 2>&1 | tee "$OUT/gpu_ntm.log"
status=${PIPESTATUS[0]}
set -e
log "trainer exited with status $status; packing into $OUT"

# One archive per variant (all of them together would pass the 16 MiB a returned file
# may have): its config, metrics and newest checkpoint, what a later command resumes from.
for config in "$WORKDIR"/*/*/config.json; do
  [[ -f $config ]] || continue
  run=$(dirname "${config#"$WORKDIR"/}")
  files=("$run/config.json")
  for name in metrics.jsonl final_metrics.json; do
    if [[ -f $WORKDIR/$run/$name ]]; then files+=("$run/$name"); fi
  done
  latest=$(ls "$WORKDIR/$run/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 \
    || true)
  if [[ -n $latest ]]; then files+=("$run/checkpoints/$latest"); fi
  if [[ -f $WORKDIR/$run/checkpoint_digests/$latest.json ]]; then
    files+=("$run/checkpoint_digests/$latest.json")  # checked when a later command resumes
  fi
  tar -czf "$OUT/${run//\//.}.tar.gz" -C "$WORKDIR" "${files[@]}"
done
if [[ -d $WORKDIR/compile_cache ]]; then
  tar -czf "$OUT/compile_cache.tar.gz" -C "$WORKDIR" compile_cache
  if (( $(stat -c %s "$OUT/compile_cache.tar.gz") > 15 * 1024 * 1024 )); then
    rm "$OUT/compile_cache.tar.gz"
    log "compile cache over 15 MiB, not returned: a next command compiles again"
  fi
fi
if [[ -f $WORKDIR/timing.jsonl ]]; then cp "$WORKDIR/timing.jsonl" "$OUT/"; fi
ls -l "$OUT"
log "done"
exit "$status"
