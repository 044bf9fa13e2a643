#!/usr/bin/env bash
# Sets up (idempotent), builds, and runs every test through CTest.
#   launch/test.sh [extra ctest args, e.g. -L mpi or -R Config]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${LOOM_BUILD:-build}"

start=$(date +%s)
bash launch/setup.sh
built=$(date +%s)

# mpirun as root (CI machines) needs these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One intra-op thread per test process: CTest runs two at once on two cores.
export LOOM_THREADS="${LOOM_THREADS:-1}"

status=0
ctest --test-dir "$BUILD" --output-on-failure -j "${LOOM_TEST_JOBS:-2}" "$@" || status=$?
end=$(date +%s)
echo "[test] set-up and build $((built - start)) s, tests $((end - built)) s"
exit $status
