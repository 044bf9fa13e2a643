#!/usr/bin/env bash
# loom's CUDA checks on a machine with an NVIDIA GPU, in a few minutes: builds loom there
# (Release, for that card's architecture, against the dependency bundle of
# launch/bundle.sh when the machine has no package registry), runs the CUDA tests (NCCL at
# world size 1; `loom train` on the GPU under every strategy, in fp32 and bf16, resumed)
# and `loom bench step` on the GPU in fp32 and bf16, then prints one JSON line of figures.
#
#   launch/gpu_check.sh [--bundle FILE]     default: bundle/loom-deps.tar.gz when present
#
# Where no GPU is found it says so, prints {"gpu": null, "skipped": REASON} and exits 0
# having run nothing: the CUDA tests are skipped there, not faked.
# Environment:
#   LOOM_PYTHON     a Python whose torch is a CUDA build (default python3); LibTorch comes
#                   from it
#   LOOM_GPU_BUILD  build directory (default build-gpu)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[gpu_check] %s\n' "$*" >&2; }
die() { printf '[gpu_check] error: %s\n' "$*" >&2; exit 1; }
skip() {
  log "skipped: $1"
  python3 -c 'import json,sys; print(json.dumps({"gpu": None, "skipped": sys.argv[1]}))' "$1" 2>/dev/null ||
    printf '{"gpu": null, "skipped": "%s"}\n' "$1"
  exit 0
}

bundle=""
[[ -f bundle/loom-deps.tar.gz ]] && bundle=bundle/loom-deps.tar.gz
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -z $bundle || -f $bundle ]] || die "--bundle $bundle: no such file (launch/bundle.sh makes it on a machine with Debian's packages)"

# ---- Is there a GPU? -------------------------------------------------------------
command -v nvidia-smi >/dev/null || skip "no nvidia-smi: this machine has no NVIDIA driver, so no GPU to check"
gpus=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true)
[[ -n $gpus ]] || skip "nvidia-smi lists no GPU on this machine"
gpu=$(head -n 1 <<<"$gpus" | cut -d, -f1)
log "GPU: $(head -n 1 <<<"$gpus") ($(wc -l <<<"$gpus") in all)"

PY="${LOOM_PYTHON:-python3}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  die "the torch of $PY sees no CUDA device although nvidia-smi lists '$gpu'; set LOOM_PYTHON to a Python with a CUDA build of torch"
torch_prefix=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')

# ---- Build -------------------------------------------------------------------------
BUILD="${LOOM_GPU_BUILD:-build-gpu}"
start=$(date +%s)
if [[ -n $bundle ]]; then
  log "dependencies from $bundle"
  rm -rf "$BUILD/deps" && mkdir -p "$BUILD/deps"
  tar -xzf "$bundle" -C "$BUILD/deps"
  # shellcheck disable=SC1091
  source "$BUILD/deps/loom-deps/env.sh"
fi
export TORCH_CUDA_ARCH_LIST="$arch"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="${LOOM_DEPS:+$LOOM_DEPS/usr;}$torch_prefix" \
  -DLOOM_PYTHON="$(command -v "$PY")" >"$BUILD.configure.log" 2>&1 ||
  { tail -n 30 "$BUILD.configure.log" >&2; die "configuring $BUILD failed (whole log: $BUILD.configure.log)"; }
grep -q "loom: CUDA ON" "$BUILD.configure.log" ||
  die "CMake found no CUDA toolkit (see $BUILD.configure.log); loom would build without its CUDA and NCCL paths"
grep -q "NCCL ON" "$BUILD.configure.log" || die "CMake found no NCCL (see $BUILD.configure.log)"
cmake --build "$BUILD" -j "$(nproc)" --target loom cuda_nccl_test cuda_train_test >&2
built=$(date +%s)
log "configured and built in $((built - start)) s"

# ---- Run -----------------------------------------------------------------------------
# Singleton MPI processes (world size 1: NCCL refuses two ranks on one GPU) need no
# launcher daemon.
export OMPI_MCA_ess_singleton_isolated=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$BUILD/loom" info >"$work/info.txt"
tail -n 1 "$work/info.txt" | "$PY" -c 'import json,sys; j = json.load(sys.stdin); sys.exit(0 if j["cuda_available"] and j["nccl_compiled"] else 1)' ||
  die "loom sees no GPU or has no NCCL: $(tail -n 1 "$work/info.txt")"

failed=0
# gtest SUITE: runs one test binary; its JSON report lands in $work/SUITE.json.
gtest() {
  local name=$1
  log "running $name"
  if ! "$BUILD/tests/$name" --gtest_output="json:$work/$name.json" >"$work/$name.log" 2>&1; then
    tail -n 40 "$work/$name.log" >&2
    failed=1
  fi
}
gtest cuda_nccl_test
gtest cuda_train_test

# bench step on the DiT reference model, on synthetic shapes (no dataset package needed).
"$BUILD/loom" data shapes --out "$work/shapes" --count 256 --size 32 >/dev/null
"$BUILD/loom" data tokenizer --data "$work/shapes" --vocab 256 >/dev/null
bench() {
  "$BUILD/loom" bench step --config configs/fashion/dit.yaml data.train="$work/shapes" data.channels=3 \
    --steps 20 "$@" 2>>"$work/bench.log" | tail -n 1
}
log "loom bench step (fp32, bf16)"
fp32=$(bench) || { tail -n 20 "$work/bench.log" >&2; die "loom bench step failed"; }
bf16=$(bench train.precision=bf16) || { tail -n 20 "$work/bench.log" >&2; die "loom bench step (bf16) failed"; }

"$PY" - "$gpu" "$arch" "$((built - start))" "$work" "$fp32" "$bf16" "$failed" <<'EOF'
import json, sys
gpu, arch, build_s, work, fp32, bf16, failed = sys.argv[1:8]

def suite(name):
    try:
        with open(f"{work}/{name}.json") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return {"passed": 0, "failed": None, "skipped": 0, "note": "no report: the binary crashed"}
    cases = [c for s in report["testsuites"] for c in s["testsuite"]]
    skipped = sum(1 for c in cases if c.get("result") == "SKIPPED")
    bad = sum(1 for c in cases if c.get("failures"))
    return {"passed": len(cases) - skipped - bad, "failed": bad, "skipped": skipped}

def step(line):
    j = json.loads(line)
    return {k: j.get(k) for k in ("device", "samples_per_s", "achieved_gflops", "matmul_gflops", "share_of_matmul_peak")}

print(json.dumps({"gpu": gpu, "compute_capability": arch, "build_seconds": int(build_s),
                  "tests": {"cuda_nccl_test": suite("cuda_nccl_test"), "cuda_train_test": suite("cuda_train_test")},
                  "bench_step": {"config": "configs/fashion/dit.yaml", "fp32": step(fp32), "bf16": step(bf16)},
                  "ok": failed == "0"}))
EOF
exit "$failed"
