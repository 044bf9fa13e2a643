#!/usr/bin/env bash
# Reference pipelines (the DESIGN.md contract): trains every stage of pipeline NAME on two
# ranks, in order, makes the data it needs if missing, exports the pipeline, and prints as
# its last line one JSON object: {"export": DIR, "stages": {stage: export}, "seconds": N}.
#
#   launch/reference.sh NAME        dit | latent-dit
#
# Every stage resumes from its checkpoints and a finished one is skipped, so running it
# again after an interruption carries on. Environment:
#   RUNS=DIR       run directories and exports (default runs; exports in RUNS/exports)
#   DATASETS=DIR   datasets (default datasets)
#   QUICK=1        a shortened run of each stage (launch/quickstart.sh NAME uses it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NAME="${1:-}"
NAMES="dit, latent-dit"
case "$NAME" in
  dit|latent-dit) ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "error: launch/reference.sh: '${NAME}' is not a reference pipeline; one of: ${NAMES}" >&2; exit 2 ;;
esac
RUNS="${RUNS:-runs}"
DATASETS="${DATASETS:-datasets}"
EXPORTS="$RUNS/exports"
start=$(date +%s)

bash launch/setup.sh >&2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LOOM=build/loom

log() { printf '[reference %s] %s\n' "$NAME" "$*" >&2; }

# Fashion-MNIST shards and their caption tokenizer.
fashion() {
  if [[ ! -f $DATASETS/fashion/train/manifest.json || ! -f $DATASETS/fashion/test/manifest.json ]]; then
    log "making $DATASETS/fashion"
    rm -rf "$DATASETS/fashion"
    $LOOM data fashion-mnist --out "$DATASETS/fashion" >&2
  fi
  if [[ ! -f $DATASETS/fashion/train/tokenizer.model ]]; then
    $LOOM data tokenizer --data "$DATASETS/fashion/train" --vocab 256 >&2
  fi
}

# train CONFIG RUN_NAME [KEY=VALUE ...]: one stage on two ranks (resumes; skips when done).
train() {
  local config=$1 name=$2
  shift 2
  log "training $name ($config)"
  launch/mpirun.sh -np 2 $LOOM train "$config" run.dir="$RUNS" run.name="$name" \
    data.train="$DATASETS/fashion/train" data.test="$DATASETS/fashion/test" "$@" >&2
}

# export RUN OUT: the run's moving average as an export (a pipeline when it has parts).
export_run() {
  log "exporting $RUNS/$1 to $2"
  $LOOM export "$RUNS/$1" --out "$2" >&2
}

case "$NAME" in
  dit)
    fashion
    quick=()
    [[ -n ${QUICK:-} ]] && quick=(train.steps=1500 train.sample_every=500 train.checkpoint_every=500)
    train configs/fashion/dit.yaml dit-fashion "${quick[@]}"
    export_run dit-fashion "$EXPORTS/dit"
    out="$EXPORTS/dit"
    stages="{\"dit\": \"$EXPORTS/dit\"}"
    ;;
  latent-dit)
    fashion
    vae_quick=() dit_quick=()
    if [[ -n ${QUICK:-} ]]; then
      vae_quick=(train.steps=700 train.sample_every=350 train.checkpoint_every=350)
      dit_quick=(train.steps=1500 train.sample_every=500 train.checkpoint_every=500)
    fi
    train configs/fashion/vae.yaml vae-fashion "${vae_quick[@]}"
    export_run vae-fashion "$EXPORTS/vae"
    # The latent cache, made again only when the VAE export changed (its content hash).
    cache="$DATASETS/fashion-latents/train"
    hash=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hash'])" "$EXPORTS/vae/config.json")
    made_by=$( [[ -f $cache/manifest.json ]] && python3 -c "import json,sys; m = json.load(open(sys.argv[1])); \
print(m['caches'][0].get('producer', m.get('producer', {})).get('hash', ''))" "$cache/manifest.json" || true)
    if [[ $made_by != "$hash" ]]; then
      log "encoding $DATASETS/fashion/train with $EXPORTS/vae into $cache"
      rm -rf "$cache"
      $LOOM data encode --data "$DATASETS/fashion/train" --with "$EXPORTS/vae" --out "$cache" >&2
    fi
    train configs/fashion/dit-latent.yaml dit-latent-fashion stage.vae="$EXPORTS/vae" data.train="$cache" \
      "${dit_quick[@]}"
    export_run dit-latent-fashion "$EXPORTS/latent-dit"
    out="$EXPORTS/latent-dit"
    stages="{\"vae\": \"$EXPORTS/vae\", \"dit\": \"$EXPORTS/latent-dit/dit\"}"
    ;;
esac

seconds=$(( $(date +%s) - start ))
log "done in ${seconds} s: $out"
echo "{\"export\": \"$out\", \"stages\": $stages, \"seconds\": $seconds}"
