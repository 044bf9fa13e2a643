#!/usr/bin/env bash
# Imagen's text-encoder finding, measured on Fashion-MNIST (docs/imagen.md): the 8x8 base
# stage of configs/fashion/imagen/base.yaml trained three ways for the same steps, on two
# ranks, then judged at 8x8 on the default templates (two training wordings, two unseen)
# and on paraphrases in words no caption uses (configs/fashion/imagen/paraphrases.json):
#   a  a small text Transformer (width 128, 2 layers) trained from scratch with the U-Net
#   b  the frozen pretrained all-MiniLM-L6-v2 (6 layers, width 384), cached
#   c  as a, with the U-Net twice as wide (model_channels 128)
# Needs what launch/reference.sh imagen makes (the MiniLM export and the text cache); at
# the reference's steps, b is the reference's base run (runs/imagen-base) itself.
# Every run resumes; a finished one is skipped. The last line is one JSON object.
#
#   launch/text_encoders.sh          STEPS=2800 (the reference base's) by default
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEPS="${STEPS:-2800}"
RUNS="${RUNS:-runs}"
DATASETS="${DATASETS:-datasets}"
CACHE="${CACHE:-$DATASETS/fashion-text/train}"
MINILM="$RUNS/exports/minilm"
JUDGE="$RUNS/judge-resize-8"
LOOM=build/loom
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
log() { printf '[text-encoders] %s\n' "$*" >&2; }

for need in "$MINILM/config.json" "$CACHE/manifest.json" "$DATASETS/fashion/train/tokenizer.model"; do
  if [[ ! -f $need ]]; then
    echo "error: launch/text_encoders.sh: $need is missing; run launch/reference.sh imagen first" >&2
    exit 2
  fi
done
if [[ ! -f $JUDGE/judge.json ]]; then
  log "training the 8x8 judge $JUDGE"
  $LOOM eval classifier --data "$DATASETS/fashion" --out "$JUDGE" --image-size 8 --fit resize >&2
fi

# train NAME [KEY=VALUE ...]: the base config for STEPS steps on two ranks.
train() {
  local name=$1
  shift
  log "training $name"
  launch/mpirun.sh -np 2 $LOOM train configs/fashion/imagen/base.yaml run.dir="$RUNS" run.name="$name" \
    data.test="$DATASETS/fashion/test" train.steps="$STEPS" train.sample_every="$STEPS" "$@" >&2
}
own=('stage.text_encoder=""' data.train="$DATASETS/fashion/train" stage.text.width=128 stage.text.depth=2
     stage.text.heads=4 stage.text.vocab=1024)
# judge NAME ARGS...: the last JSON line of eval prompts on run NAME.
judge() {
  local name=$1
  shift
  $LOOM eval prompts --model "$RUNS/$name" --judge "$JUDGE" --steps 25 --cfg 4 "$@" | tail -1
}
# Each variant is trained and then judged before the next one starts, so a stopped
# script leaves the figures of those it finished in its log.
start=$(date +%s)
rows=()
for v in a b c; do
  case $v in
    a) train text-a "${own[@]}" ;;
    b) if [[ $STEPS == 2800 && -d $RUNS/imagen-base ]]; then
         ln -sfn imagen-base "$RUNS/text-b"
       else
         train text-b stage.text_encoder="$MINILM" data.train="$CACHE"
       fi ;;
    c) train text-c "${own[@]}" stage.model.model_channels=128 ;;
  esac
  log "judging text-$v"
  templates=$(judge "text-$v" --per-class 20)
  phrases=$(judge "text-$v" --per-class 10 --phrases configs/fashion/imagen/paraphrases.json)
  rows+=("$(python3 - "$v" "$templates" "$phrases" <<'PY'
import json, sys
v, t, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
groups = {g["template"]: g["prompt_accuracy"] for g in t["templates"]}
print(json.dumps({"variant": v, "templates": groups, "templates_accuracy": t["prompt_accuracy"],
                  "paraphrase_accuracy": p["prompt_accuracy"], "frechet": t["frechet"],
                  "phrases": {x["phrase"]: x["accuracy"] for x in p["phrases"]}}))
PY
)")
  log "text-$v: ${rows[-1]}"
done
seconds=$(( $(date +%s) - start ))
printf '{"steps": %s, "seconds": %s, "judge": "%s", "variants": [%s]}\n' "$STEPS" "$seconds" "$JUDGE" \
  "$(IFS=,; echo "${rows[*]}")"
