#!/usr/bin/env bash
# shellcheck disable=SC2317  # the check_* validators are only called through run_once
# Replay throughput bench: a bare libpcap read loop, relaywatch (--workers 1 and 2) and
# ndpiReader on the same large pcap; wall time, packets/s, Gbit/s and peak RSS, best of N
# runs (in rounds: bare, relaywatch x2, ndpiReader, repeated N times).
# Nothing passes or fails on timing: the exit status is non-zero only when a tool crashed,
# exited non-zero or did not read every packet. See README.md next to this script.
#
#   tests/bench/run_bench.sh [--quick] [--pcap FILE] [--runs N] [--cache-dir DIR]
#                            [--rev REV | --relaywatch BIN] [--nice N] [--no-deps]
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: run_bench.sh [options]
  --quick            500k-packet pcap instead of 5M (generated and cached the same way)
  --pcap FILE        bench this pcap instead of the generated one
  --runs N           rounds (one run of every tool each); the best (lowest wall time)
                     per tool is shown (default 3)
  --cache-dir DIR    where generated pcaps are kept (default $RELAYWATCH_BENCH_CACHE,
                     else /var/tmp/relaywatch-bench)
  --rev REV          build relaywatch from commit REV (git archive into
                     build-bench/rev-SHA/), not from the working tree
  --relaywatch BIN   use this relaywatch binary instead of building one
  --nice N           run the measured commands under nice -n N (e.g. -10 as root, to
                     keep other work on a shared box from skewing the times)
  --no-deps          do not apt-get install missing packages (fail instead)
  -h, --help         this help
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
BUILD_DIR="$ROOT/build-bench"
CACHE_DIR="${RELAYWATCH_BENCH_CACHE:-/var/tmp/relaywatch-bench}"
PACKETS=5000000
SEED=1
RUNS=3
PCAP=""
RELAYWATCH=""
INSTALL_DEPS=1
NICE=""
REV=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) PACKETS=500000 ;;
        --pcap) PCAP="${2:?--pcap needs a file}"; shift ;;
        --runs) RUNS="${2:?--runs needs a number}"; shift ;;
        --cache-dir) CACHE_DIR="${2:?--cache-dir needs a directory}"; shift ;;
        --relaywatch) RELAYWATCH="${2:?--relaywatch needs a binary}"; shift ;;
        --rev) REV="${2:?--rev needs a commit}"; shift ;;
        --nice) NICE="${2:?--nice needs a number}"; shift ;;
        --no-deps) INSTALL_DEPS=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "run_bench.sh: --runs must be a positive integer" >&2; exit 2; }
[[ -z $NICE || $NICE =~ ^-?[0-9]+$ ]] || { echo "run_bench.sh: --nice must be an integer" >&2; exit 2; }
NICE_CMD=()
[[ -n $NICE ]] && NICE_CMD=(nice -n "$NICE")

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---------------------------------------------------------------- dependencies
# The bench tools, plus what CMakeLists.txt needs to build relaywatch.
DEPS=(libpcap-dev libndpi-bin time python3 gcc g++ make cmake pkg-config libabsl-dev
      libyaml-cpp-dev prometheus-cpp-dev nlohmann-json3-dev libssl-dev libboost-dev
      libsystemd-dev zlib1g-dev)
[[ -n $RELAYWATCH ]] && DEPS=(libpcap-dev libndpi-bin time python3 gcc)
[[ -n $REV && -z $RELAYWATCH ]] && DEPS+=(git)
missing=()
for p in "${DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $INSTALL_DEPS -eq 1 ]] || die "missing packages: ${missing[*]}"
    [[ $(id -u) -eq 0 ]] || die "missing packages (run as root to install them): ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The lock: other jobs on the same box may run apt at the same time.
    flock /tmp/apt.lock apt-get update -q >&2 || die "apt-get update failed"
    flock /tmp/apt.lock apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install failed"
fi
TIME_BIN=/usr/bin/time
NDPI_BIN=$(command -v ndpiReader) || die "ndpiReader not found (package libndpi-bin)"
PYTHON=$(command -v python3) || die "python3 not found"

# ---------------------------------------------------------------- build
mkdir -p "$BUILD_DIR/bench"
RW_SOURCE="working tree of $ROOT"
if [[ -z $RELAYWATCH ]]; then
    src="$ROOT"
    build="$BUILD_DIR"
    if [[ -n $REV ]]; then
        sha=$(git -C "$ROOT" rev-parse --short=12 "$REV^{commit}") || die "no commit $REV"
        src="$BUILD_DIR/rev-$sha/src"
        build="$BUILD_DIR/rev-$sha/build"
        if [[ ! -f $src/CMakeLists.txt ]]; then
            rm -rf "$src" && mkdir -p "$src"
            git -C "$ROOT" archive "$sha" | tar -x -C "$src" || die "git archive $sha failed"
        fi
        RW_SOURCE="commit $sha"
    fi
    log "building relaywatch (Release) from the $RW_SOURCE in $build"
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRELAYWATCH_BUILD_TESTS=OFF \
        >"$BUILD_DIR/bench/cmake.log" 2>&1 || { tail -30 "$BUILD_DIR/bench/cmake.log" >&2; die "cmake failed"; }
    make -C "$build" -j"$(nproc)" relaywatch >"$BUILD_DIR/bench/make.log" 2>&1 ||
        { tail -30 "$BUILD_DIR/bench/make.log" >&2; die "building relaywatch failed (log: $BUILD_DIR/bench/make.log)"; }
    RELAYWATCH="$build/daemon/relaywatch"
else
    RW_SOURCE="given binary"
fi
[[ -x $RELAYWATCH ]] || die "no relaywatch binary at $RELAYWATCH"
BARE="$BUILD_DIR/bench/bare_loop"
cc -O2 -Wall -o "$BARE" "$BENCH_DIR/bare_loop.c" -lpcap || die "compiling bare_loop.c failed"

# ---------------------------------------------------------------- the pcap
if [[ -z $PCAP ]]; then
    mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
    # The name carries the generator's hash: any change to it makes a new file.
    gen_hash=$(sha256sum "$BENCH_DIR/make_big_pcap.py" | cut -c1-12)
    PCAP="$CACHE_DIR/big-${PACKETS}p-seed${SEED}-${gen_hash}.pcap"
    if [[ -s $PCAP ]]; then
        log "reusing cached $PCAP"
    else
        # Files from older generator versions are dead weight (GBs): drop them.
        for old in "$CACHE_DIR"/big-*p-seed*-*.pcap "$CACHE_DIR"/big-*p-seed*-*.pcap.tmp; do
            [[ -e $old && $old != "$PCAP" && $old != *"-${gen_hash}.pcap"* ]] && { log "removing stale $old"; rm -f "$old"; }
        done
        need_kb=$((PACKETS * 600 / 1024))
        avail_kb=$(df -Pk "$CACHE_DIR" | awk 'NR == 2 {print $4}')
        [[ $avail_kb -gt $need_kb ]] || die "$CACHE_DIR has ${avail_kb} KiB free, the pcap needs about ${need_kb} KiB"
        log "generating $PACKETS packets into $PCAP (takes about $((PACKETS / 60000 + 5)) s)"
        "$PYTHON" "$BENCH_DIR/make_big_pcap.py" --out "$PCAP" --packets "$PACKETS" --seed "$SEED" ||
            die "make_big_pcap.py failed"
    fi
fi
[[ -r $PCAP ]] || die "cannot read $PCAP"
PCAP=$(readlink -f "$PCAP")

# Read it once so every tool sees it from the page cache, not from the disk.
file_bytes=$(stat -c %s "$PCAP")
avail_mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if [[ $((file_bytes / 1024)) -gt $((avail_mem_kb * 8 / 10)) ]]; then
    log "WARNING: the pcap ($((file_bytes >> 20)) MiB) may not fit in the page cache; times include disk reads"
fi
log "warming the page cache"
cat "$PCAP" >/dev/null

# ---------------------------------------------------------------- measuring
WORK=$(mktemp -d /tmp/relaywatch-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
declare -A WALL RSS CPU ALLWALL STATUS NOTE

# run_once KEY VALIDATOR CMD...: one run under /usr/bin/time -v. Keeps the lowest wall
# time, the lowest CPU time (user+sys) and the highest peak RSS over the runs; after a
# failed run the tool is not run again. VALIDATOR is called as VALIDATOR RUN_DIR and
# returns non-zero (with a message on stdout) when the output shows the tool did not do
# the whole job.
declare -A RUN_NO
run_once() {
    local key=$1 validator=$2
    shift 2
    local i dir t0 t1 rc wall rss cpu why
    if [[ -z ${STATUS[$key]:-} ]]; then
        WALL[$key]=""; RSS[$key]=0; CPU[$key]=""; ALLWALL[$key]=""; STATUS[$key]=ok; NOTE[$key]=""; RUN_NO[$key]=0
    fi
    [[ ${STATUS[$key]} == ok ]] || return
    i=$((RUN_NO[$key] + 1))
    RUN_NO[$key]=$i
    dir="$WORK/$key.$i"
    mkdir -p "$dir"
    log "$key: run $i/$RUNS"
    t0=$(date +%s%N)
    (cd "$dir" && "${NICE_CMD[@]}" "$TIME_BIN" -v -o "$dir/time.txt" "$@" >"$dir/stdout" 2>"$dir/stderr")
    rc=$?
    t1=$(date +%s%N)
    wall=$(awk -v ns=$((t1 - t0)) 'BEGIN {printf "%.3f", ns / 1e9}')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt" 2>/dev/null)
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$dir/time.txt" 2>/dev/null)
    if grep -q 'Command terminated by signal' "$dir/time.txt" 2>/dev/null || [[ $rc -ne 0 ]]; then
        why=$(grep -o 'Command terminated by signal [0-9]*' "$dir/time.txt" 2>/dev/null || echo "exit status $rc")
        STATUS[$key]="CRASHED"
        NOTE[$key]="run $i: $why; command: $*"$'\n'"$(tail -n 15 "$dir/stderr" "$dir/stdout" 2>/dev/null)"
        return
    fi
    # Not in $(...): the validators set globals (the reference packet count).
    if ! "$validator" "$dir" >"$dir/check.txt"; then
        why=$(cat "$dir/check.txt")
        STATUS[$key]="INCOMPLETE"
        NOTE[$key]="run $i: $why; command: $*"
        return
    fi
    ALLWALL[$key]+="$wall "
    [[ ${rss:-0} -gt ${RSS[$key]} ]] && RSS[$key]=$rss
    if [[ -z ${WALL[$key]} ]] || awk -v a="$wall" -v b="${WALL[$key]}" 'BEGIN {exit !(a < b)}'; then
        WALL[$key]=$wall
    fi
    if [[ -z ${CPU[$key]} ]] || awk -v a="$cpu" -v b="${CPU[$key]}" 'BEGIN {exit !(a < b)}'; then
        CPU[$key]=$cpu
    fi
}

REF_PACKETS=""
REF_BYTES=""
check_bare() {
    local line
    line=$(grep -o 'packets=[0-9]* wire_bytes=[0-9]*' "$1/stdout") || { echo "no summary line"; return 1; }
    local p=${line#packets=}; p=${p%% *}
    local b=${line##*wire_bytes=}
    if [[ -z $REF_PACKETS ]]; then
        REF_PACKETS=$p; REF_BYTES=$b
        BARE_LINE=$(cat "$1/stdout")
    elif [[ $p != "$REF_PACKETS" ]]; then
        echo "read $p packets, an earlier run read $REF_PACKETS"; return 1
    fi
}
check_relaywatch() {
    local p
    p=$(awk '$1 == "relaywatch_packets_total" {print $2}' "$1/metrics.prom" 2>/dev/null)
    [[ $p == "$REF_PACKETS" ]] || { echo "relaywatch_packets_total=${p:-missing}, the pcap has $REF_PACKETS"; return 1; }
    cp "$1/metrics.prom" "$WORK/last-$(basename "$1" | cut -d. -f1).prom"
}
check_ndpi() {
    local line p
    if grep -q '^ERROR' "$1/stdout" "$1/stderr"; then grep -h '^ERROR' "$1/stdout" "$1/stderr" | head -3; return 1; fi
    # "IP packets:  N  of M packets total"
    line=$(grep -E 'IP packets:' "$1/stdout") || { echo "no traffic summary"; return 1; }
    p=$(sed -E 's/.* of ([0-9]+) packets total.*/\1/' <<<"$line")
    [[ $p == "$REF_PACKETS" ]] || { echo "ndpiReader read $p packets, the pcap has $REF_PACKETS"; return 1; }
    cp "$1/stdout" "$WORK/last-ndpi.txt"
}

NDPI_VERSION=$(dpkg-query -W -f='${Version}' libndpi-bin 2>/dev/null || echo "?")
RW_VERSION=$("$RELAYWATCH" --version 2>/dev/null | head -1)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Rounds: each round runs every tool once, so a burst of other load on the box spreads
# over all rows instead of landing on one tool's runs.
for ((round = 1; round <= RUNS; round++)); do
    run_once bare check_bare "$BARE" "$PCAP"
    [[ -n $REF_PACKETS ]] || { log "the bare loop failed: ${NOTE[bare]}"; exit 1; }
    run_once rw1 check_relaywatch "$RELAYWATCH" -r "$PCAP" --jsonl /dev/null --workers 1 --metrics-file metrics.prom
    run_once rw2 check_relaywatch "$RELAYWATCH" -r "$PCAP" --jsonl /dev/null --workers 2 --metrics-file metrics.prom
    # Without -v ndpiReader prints no per-flow lines, only a ~100-line summary at the end
    # (-q would drop that too); the summary is kept to check that every packet was read.
    run_once ndpi check_ndpi "$NDPI_BIN" -i "$PCAP"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
read -r first_ts last_ts < <(sed -E 's/.*first_ts=([0-9.]+) last_ts=([0-9.]+).*/\1 \2/' <<<"$BARE_LINE")
echo
echo "relaywatch replay throughput bench  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -n), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
echo "load average: $LOAD_START at start, $LOAD_END at end (other work on the box slows every row)"
echo "pcap: $PCAP"
awk -v p="$REF_PACKETS" -v b="$REF_BYTES" -v f="$file_bytes" -v t0="$first_ts" -v t1="$last_ts" 'BEGIN {
    printf "      %.0f packets, %.0f frame bytes (avg %.0f B/packet), file %.2f GB, %.1f s of traffic\n",
           p, b, b / p, f / 1e9, t1 - t0 }'
echo "tools: $RW_VERSION ($RELAYWATCH, $RW_SOURCE), ndpiReader $NDPI_VERSION, bare loop = bare_loop.c (cc -O2)"
echo "best of $RUNS runs by wall time; Gbit/s = frame bytes x 8 / wall; RSS = highest over the runs; CPU = lowest user+sys over the runs"
[[ -n $NICE ]] && echo "measured commands ran under nice -n $NICE"
echo
fmt_row() {  # fmt_row KEY LABEL
    local key=$1 label=$2
    if [[ ${STATUS[$key]} != ok ]]; then
        printf '%-34s %s\n' "$label" "${STATUS[$key]} (see below)"
        return
    fi
    awk -v l="$label" -v w="${WALL[$key]}" -v p="$REF_PACKETS" -v b="$REF_BYTES" -v r="${RSS[$key]}" \
        -v c="${CPU[$key]}" -v base="${WALL[bare]:-0}" -v all="${ALLWALL[$key]}" 'BEGIN {
        x = (base > 0) ? sprintf("%.2fx", w / base) : "-"
        printf "%-34s %8.3f %9.3f %8.2f %10.1f %7.2f %8s   %s\n",
               l, w, p / w / 1e6, b * 8 / w / 1e9, r / 1024, c, x, all }'
}
# A single-threaded, CPU-bound loop that gets much less than a core means other work
# (or the cgroup's CPU share) took the rest: wall times then overstate every row.
awk -v c="${CPU[bare]}" -v w="${WALL[bare]}" 'BEGIN {
    if (c / w < 0.8)
        printf "WARNING: the bare loop got only %.0f%% of a core (CPU %.2f s in %.2f s wall): the box is busy,\n" \
               "         wall times are stretched; the CPU-time ratio below is the steadier comparison.\n\n", 100 * c / w, c, w }'
printf '%-34s %8s %9s %8s %10s %7s %8s   %s\n' "tool" "wall s" "Mpkt/s" "Gbit/s" "RSS MiB" "CPU s" "vs bare" "all runs (s)"
printf '%s\n' "--------------------------------------------------------------------------------------------------------"
fmt_row bare "bare libpcap loop (pcap_next_ex)"
fmt_row rw1 "relaywatch --workers 1"
fmt_row rw2 "relaywatch --workers 2"
fmt_row ndpi "ndpiReader -i (nDPI $NDPI_VERSION)"
echo
echo "relaywatch time / bare loop time:"
for w in 1 2; do
    key=rw$w
    if [[ ${STATUS[$key]} == ok ]]; then
        awk -v w="$w" -v a="${WALL[$key]}" -v b="${WALL[bare]}" 'BEGIN {
            r = a / b
            printf "  --workers %d: %6.2fx   target <= 1.5x   (%s)\n", w, r, r <= 1.5 ? "within target" : "above target" }'
    else
        echo "  --workers $w: -   target <= 1.5x   (${STATUS[$key]})"
    fi
done
# On a busy box wall times stretch with the competition for cores; CPU seconds much less.
if [[ ${STATUS[rw1]} == ok ]]; then
    awk -v a="${CPU[rw1]}" -v b="${CPU[bare]}" -v c="${CPU[rw2]:-}" 'BEGIN {
        printf "relaywatch CPU time / bare loop CPU time (user+sys): --workers 1: %.2fx", a / b
        if (c != "") printf ", --workers 2: %.2fx (two workers and the reader thread)", c / b
        printf "\n" }'
fi

for w in 1 2; do
    m="$WORK/last-rw$w.prom"
    [[ -f $m ]] || continue
    awk -v w="$w" '
        $1 == "relaywatch_flows_created_total" {flows = $2}
        $1 == "relaywatch_flows_evicted_total" {evicted = $2}
        /^relaywatch_remote_sessions_total/ {sessions += $2}
        /^relaywatch_alerts_total/ {alerts += $2}
        /^relaywatch_decode_errors_total/ {errors += $2}
        END {printf "relaywatch --workers %d: %.0f flows, %.0f evicted, %.0f remote sessions, %.0f alerts, %.0f decode errors\n",
                    w, flows, evicted, sessions, alerts, errors}' "$m"
done
if [[ -f $WORK/last-ndpi.txt ]]; then
    awk '/Unique flows:/ {f = $3} /Packet Processing Time:/ {t = $4 " " $5}
         END {printf "ndpiReader: %.0f flows, its own packet processing time %s\n", f, t}' "$WORK/last-ndpi.txt"
fi

status=0
for key in bare rw1 rw2 ndpi; do
    if [[ ${STATUS[$key]} != ok ]]; then
        echo
        echo "$key ${STATUS[$key]}: ${NOTE[$key]}"
        status=1
    fi
done
exit $status
