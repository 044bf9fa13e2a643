#!/usr/bin/env bash
# Builds the safetensors parser fuzzer with clang (libFuzzer + ASan + UBSan, no CMake) and
# runs it for a bounded time from generated seed files. Prints executions, exec/s, coverage
# and crashes; the last line is JSON. Exits 1 when the fuzzer found a crash.
#
#   fuzz/run.sh [SECONDS]     fuzz for SECONDS (default $LOOM_FUZZ_SECONDS or 300)
#
# Environment:
#   LOOM_FUZZ_BUILD   build directory (default build-fuzz): the binary, seeds/, corpus/ (inputs
#                     the fuzzer found, kept between runs), artifacts/ (crashing inputs), fuzz.log
#   LOOM_FUZZ_CXX     the clang++ to use (default clang++)
#
# Replay a crash: build-fuzz/safetensors_fuzz build-fuzz/artifacts/crash-<hash>
set -euo pipefail
export LC_ALL=C  # byte lengths and plain-ASCII tool output

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[fuzz] %s\n' "$*"; }
die() { printf '[fuzz] error: %s\n' "$*" >&2; exit 1; }

BUDGET="${1:-${LOOM_FUZZ_SECONDS:-300}}"
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]] || ((BUDGET == 0)); then
  die "the time budget must be a positive number of seconds, got '$BUDGET'"
fi
BUILD="${LOOM_FUZZ_BUILD:-build-fuzz}"
CXX_FUZZ="${LOOM_FUZZ_CXX:-clang++}"
BIN="$BUILD/safetensors_fuzz"
SOURCES=(core/safetensors_header.cpp fuzz/safetensors_fuzz.cpp)

# ---- tools: clang with libFuzzer, Abseil, nlohmann-json ------------------------
missing=()
command -v "$CXX_FUZZ" >/dev/null || missing+=(clang)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if command -v pkg-config >/dev/null && ! pkg-config --exists absl_statusor; then missing+=(libabsl-dev); fi
[[ -f /usr/include/nlohmann/json.hpp ]] || missing+=(nlohmann-json3-dev)
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install with: apt-get install ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  command -v "$CXX_FUZZ" >/dev/null || die "$CXX_FUZZ still not found after installing clang; set LOOM_FUZZ_CXX"
fi

# ---- build (only when a source is newer than the binary) ------------------------
mkdir -p "$BUILD"
stale=0
[[ -x "$BIN" ]] || stale=1
for f in "${SOURCES[@]}" core/safetensors_header.h; do [[ "$f" -nt "$BIN" ]] && stale=1; done
if ((stale)); then
  log "building $BIN with $CXX_FUZZ"
  # shellcheck disable=SC2046  # pkg-config prints several flags on purpose
  "$CXX_FUZZ" -std=c++20 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$ROOT" "${SOURCES[@]}" -o "$BIN" $(pkg-config --cflags --libs absl_status absl_statusor absl_strings) ||
    die "build failed; is libFuzzer there? (Debian: apt-get install clang, which brings libclang-rt)"
fi

# ---- seeds: small valid files, written as the loom writer lays them out ------------
SEEDS="$BUILD/seeds"
rm -rf "$SEEDS"
mkdir -p "$SEEDS" "$BUILD/corpus" "$BUILD/artifacts"

# seed NAME JSON DATA: 8-byte little-endian header length, JSON padded with spaces to a
# multiple of 8, then DATA (\xNN escapes).
seed() {
  local json="$2"
  json+="$(printf '%*s' $(((8 - ${#json} % 8) % 8)) '')"
  local n=${#json}
  {
    printf '%b' "$(printf '\\x%02x' $((n & 255)) $(((n >> 8) & 255)) $(((n >> 16) & 255)) $(((n >> 24) & 255)))"
    printf '\x00\x00\x00\x00%s' "$json"
    printf '%b' "$3"
  } >"$SEEDS/$1"
}
seed empty '{}' ''
seed one_f32 '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' '\x00\x00\x80\x3f\x00\x00\x00\x40'
seed metadata '{"__metadata__":{"format":"pt","step":"7"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}' \
  '\x80\x3f\x00\x40\x40\x40\x80\x40\x05\x00\x00\x00\x00\x00\x00\x00'
seed zero_size '{"flag":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]},"none":{"dtype":"F16","shape":[0,3],"data_offsets":[1,1]}}' '\x01'
seed all_dtypes '{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},"c":{"dtype":"I16","shape":[1],"data_offsets":[12,14]},"d":{"dtype":"I8","shape":[1],"data_offsets":[14,15]},"e":{"dtype":"U8","shape":[1],"data_offsets":[15,16]}}' \
  '\x00\x00\x00\x00\x00\x00\xf0\x3f\x01\x00\x00\x00\x02\x00\x03\x04'
seed escaped '{"__metadata__":{"k\u00e9y":"v\"q\n"},"t\u00e9":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}' 'abc'

DICT="$BUILD/safetensors.dict"
{
  for word in dtype shape data_offsets __metadata__ F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL; do
    printf '"\\"%s\\""\n' "$word"
  done
  for token in '{' '}' '[' ']' ':' ',' '-' '.0' 'e9' '\\u0000' '\\ud800' '0' '18446744073709551615' \
      '18446744073709551616' '9223372036854775807' '9223372036854775808' '1099511627776'; do
    printf '"%s"\n' "$token"
  done
} >"$DICT"

# ---- run ---------------------------------------------------------------------------
LOG="$BUILD/fuzz.log"
log "fuzzing for ${BUDGET}s (log: $LOG)"
start=$(date +%s)
set +e
"$BIN" "$BUILD/corpus" "$SEEDS" -dict="$DICT" -max_total_time="$BUDGET" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" >"$LOG" 2>&1
rc=$?
set -e
seconds=$(($(date +%s) - start))

final_stat() { sed -n "s/^stat::$1: *//p" "$LOG" | tail -1; }
executions=$(final_stat number_of_executed_units)
exec_per_s=$(final_stat average_exec_per_sec)
if [[ -z "$executions" ]]; then  # no final stats: take the last progress line's count
  executions=$(grep -o '^#[0-9]*' "$LOG" | tail -1 | tr -d '#')
fi
status_line=$(grep -E '^#[0-9]+.*cov: ' "$LOG" | tail -1 || true)
coverage=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$status_line")
features=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$status_line")
corpus=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$status_line")
crashes=$(grep 'Test unit written to' "$LOG" | grep -vc 'slow-unit-' || true)
((rc != 0 && crashes == 0)) && crashes=1

log "executions: ${executions:-0}"
log "exec/s: ${exec_per_s:-0}"
log "coverage: ${coverage:-0} edges, ${features:-0} features, ${corpus:-0} corpus inputs"
if ((crashes)); then
  log "crashes: $crashes (fuzzer exit $rc); inputs in $BUILD/artifacts, end of the log:"
  tail -n 40 "$LOG" | sed 's/^/  /'
else
  log "crashes: 0"
fi
printf '{"executions": %s, "seconds": %s, "crashes": %s, "exec_per_s": %s, "coverage": %s}\n' \
  "${executions:-0}" "$seconds" "$crashes" "${exec_per_s:-0}" "${coverage:-0}"
((crashes == 0))
