#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   scripts/dev.sh run    install what is missing, build, run the daemon in the foreground
#   scripts/dev.sh test   install what is missing, build, run every test (unit, golden,
#                         interop, fuzz corpora and a brief fuzzing run)
# Extra arguments after `run` go to relaywatch (e.g. `scripts/dev.sh run -i eth1`).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=$(nproc)

# Build and runtime dependencies, all from Debian 12.
BUILD_PACKAGES=(build-essential cmake pkg-config python3 libpcap-dev libboost-dev
  libabsl-dev libyaml-cpp-dev prometheus-cpp-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libssl-dev libsystemd-dev zlib1g-dev
  libmaxminddb-dev tzdata)  # context: GeoIP (.mmdb) lookups; IANA zones of the inventory
# What the tests run against: real receivers and linters, and clang's libFuzzer.
TEST_PACKAGES=(rsyslog prometheus iproute2 systemd clang-14 libfuzzer-14-dev
  libclang-rt-14-dev
  tshark                      # interop: our dns records against its dissector
  nftables                    # interop: live capture of an nflog group
  ethtool                     # interop: an interface with receive offload on
  libmaxmind-db-writer-perl)  # writes the context tests' GeoIP databases

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

case "${1:-}" in
  run)
    shift
    install_missing "${BUILD_PACKAGES[@]}"
    build
    # Built-in defaults: the default-route interface, events (alerts, remote sessions) as
    # JSON lines on stdout, metrics on http://127.0.0.1:9781/metrics.
    exec "$BUILD_DIR/daemon/relaywatch" "$@"
    ;;
  test)
    install_missing "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    build
    # Brief fuzzing of every parser in its own clang build (long runs: tests/fuzz/run_fuzz.sh).
    FUZZ_SECONDS=${FUZZ_SECONDS:-20} tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-20}"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
    ;;
  *)
    echo "usage: $0 run [relaywatch args...] | test" >&2
    exit 2
    ;;
esac
