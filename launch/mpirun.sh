#!/usr/bin/env bash
# mpirun with what loom needs on a single machine or a small cluster:
#   launch/mpirun.sh -np 4 build/loom train configs/fashion/dit.yaml
# - allows running as root (containers, CI) and more ranks than cores;
# - binds nothing, so loom can give each rank cores/ranks intra-op threads itself.
# Extra mpirun options go before the program, e.g. --hostfile hosts.txt.
set -euo pipefail
args=(--oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
if [[ $(id -u) -eq 0 ]]; then
  args+=(--allow-run-as-root)
fi
exec mpirun "${args[@]}" "$@"
