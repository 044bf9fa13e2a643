#!/usr/bin/env bash
# The main job, from a fresh machine: set-up and build, the stack report, Fashion-MNIST
# shards (checked and tokenized), loader and collective benchmarks on two ranks, then a
# shortened run of the reference experiment on two ranks (about 12 minutes here), its
# sample grid runs/quickstart/samples.png, and its prompt accuracy as the judge sees it.
#
#   launch/quickstart.sh          the main job above
#   launch/quickstart.sh NAME     a shortened run of reference pipeline NAME
#                                 (launch/reference.sh: dit, latent-dit, sd, imagen, dalle2, video; sd took 35
#                                 minutes here, its VAE included, imagen 12 when its last stage
#                                 trained on crops, about 3 more on whole images), ending in
#                                 its sample grid runs/quickstart-NAME/samples.png
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $# -gt 0 ]]; then
  NAME=$1
  RUNS="runs/quickstart-$NAME"
  result=$(QUICK=1 RUNS="$RUNS" launch/reference.sh "$NAME" | tail -1)
  echo "$result"
  if [[ $NAME == video ]]; then
    # Clips of every direction: a GIF, and a PNG strip of their frames beside it.
    prompts=()
    for d in left right up down; do prompts+=(--prompt "a sneaker moving $d" --prompt "a pair of trousers moving $d"); done
    build/loom sample --model "$RUNS/exports/video" "${prompts[@]}" --n 1 --steps 30 --out "$RUNS/samples.gif" >/dev/null
    echo "quickstart video: clips of two garments in four directions in $RUNS/samples.gif (frames in $RUNS/samples.png)"
    exit 0
  fi
  if [[ $NAME == imagen || $NAME == dalle2 ]]; then
    # The pipeline from prompts: four samples of each class (its last stage's previews
    # show inputs beside outputs instead).
    prompts=()
    for c in "a t-shirt" "trousers" "a pullover" "a dress" "a coat" "a sandal" "a shirt" "a sneaker" "a bag" \
             "an ankle boot"; do
      prompts+=(--prompt "a photo of $c")
    done
    build/loom sample --model "$RUNS/exports/$NAME" "${prompts[@]}" --n 4 --out "$RUNS/samples.png" >/dev/null
  else
    # The last preview of the pipeline's final stage: samples of all ten classes.
    run=$(ls -td "$RUNS"/*/ | grep -v exports | head -1)
    last=$(ls "$run"samples/step-*.png | sort | tail -1)
    cp "$last" "$RUNS/samples.png"
  fi
  echo "quickstart $NAME: samples of all ten classes (one column each) in $RUNS/samples.png"
  exit 0
fi

bash launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== loom info under mpirun -np 2"
launch/mpirun.sh -np 2 build/loom info

DATA=datasets/fashion
if [[ ! -f $DATA/train/manifest.json || ! -f $DATA/test/manifest.json ]]; then
  echo "== Fashion-MNIST -> $DATA"
  rm -rf "$DATA"
  build/loom data fashion-mnist --out "$DATA"
fi
echo "== checking every shard"
build/loom data inspect "$DATA"
if [[ ! -f $DATA/train/tokenizer.model ]]; then
  echo "== caption tokenizer"
  build/loom data tokenizer --data "$DATA/train" --vocab 256
fi

echo "== loader throughput (against a bare HDF5 read of the same samples)"
build/loom bench loader --data "$DATA/train" --repeats 1

echo "== collectives on two ranks (against raw MPI) and the DDP step overhead"
launch/mpirun.sh -np 2 build/loom bench comm --max-bytes $((16 << 20)) --seconds 0.05

echo "== training: a shortened run of configs/fashion/dit.yaml on two ranks"
# Re-running resumes from the newest checkpoint (and finishes at once when done).
STEPS="${LOOM_QUICKSTART_STEPS:-1500}"
launch/mpirun.sh -np 2 build/loom train configs/fashion/dit.yaml run.name=quickstart \
  train.steps="$STEPS" train.sample_every=500 train.checkpoint_every=500
last=$(ls runs/quickstart/samples/step-*.png | sort | tail -1)
cp "$last" runs/quickstart/samples.png
echo "quickstart: samples of all ten classes (one column each) in runs/quickstart/samples.png"

echo "== the judge: a classifier of the real images (trained once, about 3 minutes here)"
if [[ ! -f runs/judge/judge.json ]]; then
  build/loom eval classifier --data "$DATA" --out runs/judge
fi
echo "== prompt accuracy of the quickstart model (training wordings and unseen ones)"
build/loom eval prompts --model runs/quickstart --judge runs/judge --per-class 10 --steps 25
