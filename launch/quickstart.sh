#!/usr/bin/env bash
# The main job, from a fresh machine: set-up and build, the stack report, a check of the
# reference experiment config, and a 2-rank run under mpirun.
# (Data, training and samples join this script as their issues land: #3, #5.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== loom info (one process)"
build/loom info

echo "== loom info under mpirun -np 2"
launch/mpirun.sh -np 2 build/loom info

echo "== resolved reference config -> runs/quickstart/config.yaml"
mkdir -p runs/quickstart
build/loom train configs/fashion/dit.yaml run.name=quickstart --print-config \
  > runs/quickstart/config.yaml
echo "wrote runs/quickstart/config.yaml ($(wc -l < runs/quickstart/config.yaml) lines)"

echo "== 2-rank config check (every rank loads and validates the same config)"
status=0
launch/mpirun.sh -np 2 build/loom train runs/quickstart/config.yaml || status=$?
if [[ $status -ne 2 ]]; then
  echo "unexpected exit code $status" >&2
  exit 1
fi
echo "quickstart: the stack works; training is not built yet (issue #5)"
