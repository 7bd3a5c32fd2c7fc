#!/usr/bin/env bash
# Builds the libFuzzer targets with clang 14 (ASan + UBSan) and fuzzes each for a while.
#
#   tests/fuzz/run_fuzz.sh [SECONDS]        # per target; default 30
#
# Environment:
#   BUILD_DIR   clang build directory (default: <repo>/build-fuzz)
#   JOBS        parallel compile jobs (default: 2)
#   TARGETS     space-separated subset (default: every tests/fuzz/*_fuzz.cc)
#
# Each target runs on a scratch copy of tests/fuzz/corpus/<target>/, so the committed seeds
# stay small; new interesting inputs are left in $BUILD_DIR/fuzz-work/<target>/. A crash,
# sanitizer report, leak, timeout or out-of-memory fails the script; the reproducer is saved
# as $BUILD_DIR/fuzz-artifacts/<target>/crash-* (replay it with `<target> FILE`).
# CI calls this with a short time (e.g. 20); long runs are done by hand.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "usage: $0 [SECONDS]  (a positive whole number of seconds per target)" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$repo/build-fuzz}"
jobs="${JOBS:-2}"
if [[ -z "${TARGETS:-}" ]]; then
  TARGETS="$(cd "$repo/tests/fuzz" && ls -- *_fuzz.cc | sed 's/\.cc$//' | tr '\n' ' ')"
fi
targets="$TARGETS"

for tool in clang-14 clang++-14 cmake; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool not found (apt-get install clang-14 libfuzzer-14-dev cmake)" >&2
    exit 2
  fi
done

echo "== configuring $build (clang-14, RELAYWATCH_FUZZ=ON)"
mkdir -p "$build"
CC=clang-14 CXX=clang++-14 cmake -S "$repo" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRELAYWATCH_FUZZ=ON \
  -DRELAYWATCH_BUILD_TESTS=ON >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  exit 1
}
echo "== building fuzz targets"
cmake --build "$build" --target fuzz_targets -j "$jobs"

# Leaks in a long-lived daemon matter: keep LeakSanitizer on. UBSan reports abort the run.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for target in $targets; do
  binary="$build/tests/fuzz/$target"
  seeds="$repo/tests/fuzz/corpus/$target"
  work="$build/fuzz-work/$target"
  artifacts="$build/fuzz-artifacts/$target"
  if [[ ! -x "$binary" ]]; then
    echo "$0: $binary was not built" >&2
    exit 1
  fi
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  cp -r "$seeds/." "$work/"
  echo "== $target: ${seconds}s on $(find "$work" -type f | wc -l) seeds"
  log="$build/fuzz-$target.log"
  if "$binary" "$work" \
      -max_total_time="$seconds" \
      -max_len=4096 \
      -timeout=10 \
      -rss_limit_mb=2048 \
      -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$log" | sed 's/^/   /' || true
  else
    echo "!! $target failed; log: $log" >&2
    grep -E -A40 'ERROR: |runtime error|check failed|deadly signal|Test unit written' "$log" |
      head -80 >&2 || tail -40 "$log" >&2
    failed+=("$target")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "FAILED: ${failed[*]} (reproducers in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "all fuzz targets ran ${seconds}s without a crash"
