#!/usr/bin/env bash
# Training-step throughput of loom next to the PyTorch reference (bench/reference/) on the
# same model, global batch and threads, in one run: 1 process each, then 2 ranks each
# (loom under launch/mpirun.sh, PyTorch DDP over gloo under torchrun).
#   bench/compare_pytorch.sh [--config FILE] [--steps N] [--batch B] [--threads T] [--repeats R]
#                            [KEY=VALUE ...]
# --threads is the machine's share (default: all cores): 1 process gets T, each of 2 ranks
# T/2. KEY=VALUE overrides go to loom, and to the reference through the resolved config.
# The four measurements run R times, interleaved (default 3), so a slow spell of the machine
# hits both sides; the table and ratios use the medians. Prints a table; the last line is
# JSON with the four median samples/s, every repeat, and the loom/PyTorch ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/fashion/dit.yaml
steps=10
warmup=1  # untimed steps of the reference, as loom bench step takes one
batch=0
threads=$(nproc)
repeats=3
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
loom=${LOOM:-build/loom}
python=${LOOM_PYTHON:-$HOME/.cache/loom/venv/bin/python}
torchrun=$(dirname "$python")/torchrun
for f in "$loom" "$python" "$torchrun"; do
  if [[ ! -x $f ]]; then
    echo "error: $f not found ---> HINT: launch/setup.sh builds loom and creates the venv" >&2
    exit 2
  fi
done
half=$(( threads / 2 > 0 ? threads / 2 : 1 ))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The reference reads the config as loom resolved it (defaults and overrides applied).
"$loom" train "$config" "${overrides[@]}" --print-config >"$work/resolved.yaml"
if [[ $batch -eq 0 ]]; then
  batch=$(sed -n 's/^  batch_size: \([0-9]*\).*/\1/p' "$work/resolved.yaml")
fi

# run NAME COMMAND...: runs one measurement; prints its samples/s (from the last JSON
# line of its stdout), or shows its output and stops.
run() {
  local name=$1; shift
  echo "== $name: $*" >&2
  if ! "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    echo "error: $name failed:" >&2
    tail -n 20 "$work/$name.out" "$work/$name.err" >&2
    exit 1
  fi
  grep '^{' "$work/$name.out" | tail -n 1 |
    "$python" -c 'import json, sys; print(json.loads(sys.stdin.read())["samples_per_s"])'
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
step_args=(--steps "$steps" --batch "$batch")
ref=bench/reference/train_step.py

loom1=() torch1=() loom2=() torch2=()
for ((i = 1; i <= repeats; i++)); do
  loom1+=("$(run loom-1 env LOOM_THREADS="$threads" "$loom" bench step --config "$config" "${step_args[@]}" \
    "${overrides[@]}")")
  torch1+=("$(run pytorch-1 env OMP_NUM_THREADS="$threads" "$python" "$ref" --config "$work/resolved.yaml" \
    "${step_args[@]}" --warmup "$warmup" --threads "$threads")")
  loom2+=("$(run loom-2 env LOOM_THREADS="$half" launch/mpirun.sh -np 2 -x LOOM_THREADS "$loom" bench step \
    --config "$config" "${step_args[@]}" "${overrides[@]}")")
  torch2+=("$(run pytorch-2 env OMP_NUM_THREADS="$half" "$torchrun" --standalone --nproc_per_node 2 "$ref" \
    --config "$work/resolved.yaml" "${step_args[@]}" --warmup "$warmup" --threads "$half")")
done
join() { local IFS=,; echo "$*"; }

"$python" - "$config" "$batch" "$threads" "$half" "$(join "${loom1[@]}")" "$(join "${torch1[@]}")" \
  "$(join "${loom2[@]}")" "$(join "${torch2[@]}")" <<'EOF'
import json, statistics, sys
config, batch, threads, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = [[float(x) for x in arg.split(",")] for arg in sys.argv[5:9]]
loom1, torch1, loom2, torch2 = (statistics.median(r) for r in runs)
print(f"{config}, global batch {batch}, median samples/s of {len(runs[0])} interleaved repeats (higher is better)")
print(f"{'':<28}{'loom':>10}{'PyTorch':>10}{'loom/PyTorch':>14}")
print(f"{f'1 process x {threads} threads':<28}{loom1:>10.1f}{torch1:>10.1f}{loom1 / torch1:>14.2f}")
print(f"{f'2 ranks x {half} threads':<28}{loom2:>10.1f}{torch2:>10.1f}{loom2 / torch2:>14.2f}")
print(json.dumps({"config": config, "batch": batch, "threads": threads, "threads_per_rank_at_2": half,
                  "loom_1": loom1, "pytorch_1": torch1, "loom_2": loom2, "pytorch_2": torch2,
                  "ratio_1": loom1 / torch1, "ratio_2": loom2 / torch2,
                  "repeats": dict(zip(["loom_1", "pytorch_1", "loom_2", "pytorch_2"], runs))}))
EOF
