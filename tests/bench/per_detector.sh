#!/usr/bin/env bash
# shellcheck disable=SC2317  # check_row is only called through run_once
# Cost of each detector per packet: replays one mixed capture with every detector disabled
# (the baseline: capture, decode, flow table, host stage, outputs), then with each detector
# alone, then the relay detector with one method at a time (detectors.relay.methods), then
# with all of them, and prints wall time, ns/packet, the extra ns/packet over the baseline
# and peak RSS, best of N runs. Nothing passes or fails on timing: the exit status is
# non-zero only when a run crashed, exited non-zero, did not read every packet, or ran other
# detectors or relay methods than asked. See README.md next to this script.
#
#   tests/bench/per_detector.sh [--quick] [--synthetic N] [--pcap FILE] [--lab DIR] [--runs N]
#                               [--relay-only] [--keep] [--relaywatch BIN] [--workers N]
#                               [--cache-dir DIR] [--nice N]
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: per_detector.sh [options]
  --quick            500k synthetic packets instead of 5M, and 3 runs instead of 5
  --synthetic N      synthetic packets (make_big_pcap.py --seed 1, the same cached file
                     run_bench.sh uses) replayed after the real captures; 0 = none
  --pcap FILE        bench this capture instead of building the mixed one
  --lab DIR          add the lab runs' captures (DIR/*/gw.pcap, tests/lab/quality_runs.sh)
                     to the real part of the mixed capture: relayed TLS/SSH, remote desktops
  --relay-only       rows: the baseline, relay and one row per relay method only
  --runs N           rounds (every row once each); the lowest wall time per row is shown
                     (default 5, --quick 3)
  --relaywatch BIN   use this binary instead of building build-bench (Release)
  --workers N        relaywatch --workers (default 1)
  --jobs N           parallel compile jobs when building (default 2)
  --cache-dir DIR    where the mixed capture is kept (default $RELAYWATCH_BENCH_CACHE,
                     else /var/tmp/relaywatch-bench)
  --nice N           run the measured commands under nice -n N
  --keep             keep the work directory (configs, metrics, stderr of every run)
  -h, --help         this help
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
BUILD_DIR="$ROOT/build-bench"
CACHE_DIR="${RELAYWATCH_BENCH_CACHE:-/var/tmp/relaywatch-bench}"
SHARED_PCAPS="${RELAYWATCH_SHARED_PCAPS:-$ROOT/../shared/pcaps}"
SYNTHETIC=5000000
RUNS=""
QUICK=0
PCAP=""
LAB=""
RELAY_ONLY=0
RELAYWATCH=""
WORKERS=1
JOBS=2
NICE=""
KEEP=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1; SYNTHETIC=500000 ;;
        --synthetic) SYNTHETIC="${2:?--synthetic needs a number}"; shift ;;
        --pcap) PCAP="${2:?--pcap needs a file}"; shift ;;
        --lab) LAB="${2:?--lab needs a directory}"; shift ;;
        --relay-only) RELAY_ONLY=1 ;;
        --runs) RUNS="${2:?--runs needs a number}"; shift ;;
        --relaywatch) RELAYWATCH="${2:?--relaywatch needs a binary}"; shift ;;
        --workers) WORKERS="${2:?--workers needs a number}"; shift ;;
        --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
        --cache-dir) CACHE_DIR="${2:?--cache-dir needs a directory}"; shift ;;
        --nice) NICE="${2:?--nice needs a number}"; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "per_detector.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -n $RUNS ]] || RUNS=$((QUICK ? 3 : 5))
for v in RUNS WORKERS JOBS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "per_detector.sh: --${v,,} must be a positive integer" >&2; exit 2; }
done
[[ $SYNTHETIC =~ ^[0-9]+$ ]] || { echo "per_detector.sh: --synthetic must be a number" >&2; exit 2; }
[[ -z $NICE || $NICE =~ ^-?[0-9]+$ ]] || { echo "per_detector.sh: --nice must be an integer" >&2; exit 2; }
NICE_CMD=()
[[ -n $NICE ]] && NICE_CMD=(nice -n "$NICE")

log() { printf '[per-detector %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

TIME_BIN=/usr/bin/time
[[ -x $TIME_BIN ]] || die "$TIME_BIN not found (package time)"
for tool in mergecap capinfos python3; do
    command -v "$tool" >/dev/null || die "$tool not found (packages wireshark-common / tshark, python3)"
done

# ---------------------------------------------------------------- build
if [[ -z $RELAYWATCH ]]; then
    mkdir -p "$BUILD_DIR/bench"
    log "building relaywatch (Release) from the working tree in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DRELAYWATCH_BUILD_TESTS=OFF \
        >"$BUILD_DIR/bench/cmake.log" 2>&1 || { tail -30 "$BUILD_DIR/bench/cmake.log" >&2; die "cmake failed"; }
    cmake --build "$BUILD_DIR" -j"$JOBS" --target relaywatch >"$BUILD_DIR/bench/make.log" 2>&1 ||
        { tail -30 "$BUILD_DIR/bench/make.log" >&2; die "building relaywatch failed (log: $BUILD_DIR/bench/make.log)"; }
    RELAYWATCH="$BUILD_DIR/daemon/relaywatch"
fi
[[ -x $RELAYWATCH ]] || die "no relaywatch binary at $RELAYWATCH"
RELAYWATCH=$(readlink -f "$RELAYWATCH")

# The detectors, in registry order: the one list the daemon builds them from.
mapfile -t DETECTORS < <(sed -nE 's/^ *\{"([a-z_]+)", *&[a-z_]+::Create\},.*/\1/p' "$ROOT/detectors/registry.cc")
[[ ${#DETECTORS[@]} -gt 0 ]] || die "no detectors found in detectors/registry.cc"
# The relay methods, from the one place that parses detectors.relay.methods.
mapfile -t RELAY_METHODS < <(sed -nE 's/.*names\[i\] == "([a-z_]+)".*/\1/p' "$ROOT/detectors/relay/config.cc")
[[ ${#RELAY_METHODS[@]} -gt 0 ]] || die "no relay methods found in detectors/relay/config.cc"
[[ -z $LAB || -d $LAB ]] || die "--lab: no directory $LAB"
[[ -z $LAB || -z $PCAP ]] || die "--lab adds to the mixed capture; it cannot go with --pcap"

# ---------------------------------------------------------------- the mixed capture
# The real part: golden captures + the shared corpus (the Ethernet ones: mergecap writes one
# link type), merged in time order into one nanosecond pcap, cached under a name that
# changes with any input. Then the synthetic volume from make_big_pcap.py (the file
# run_bench.sh caches), replayed after it in the same process: relaywatch -r A -r B.
PCAPS=()
if [[ -z $PCAP ]]; then
    mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
    REAL=()
    SKIPPED=()
    CANDIDATES=("$ROOT"/tests/golden/*/input.pcap "$SHARED_PCAPS"/positives/* "$SHARED_PCAPS"/negatives/*)
    LAB_COUNT=0
    if [[ -n $LAB ]]; then
        for f in "$LAB"/*/gw.pcap; do
            [[ -s $f ]] && CANDIDATES+=("$f") && LAB_COUNT=$((LAB_COUNT + 1))
        done
        [[ $LAB_COUNT -gt 0 ]] || die "--lab: no */gw.pcap under $LAB"
    fi
    # capinfos -T -E -r: "file<TAB>encapsulation" per file; keep plain Ethernet only, and only
    # files mergecap can write as pcap (a pcapng with a decryption-secrets block cannot be).
    while IFS=$'\t' read -r f enc; do
        [[ $enc == ether ]] || continue
        if mergecap -F nsecpcap -w "$CACHE_DIR/probe.pcap" "$f" 2>/dev/null; then
            REAL+=("$f")
        else
            SKIPPED+=("$(basename "$f")")
        fi
    done < <(capinfos -T -E -r "${CANDIDATES[@]}" 2>/dev/null)
    rm -f "$CACHE_DIR/probe.pcap"
    [[ ${#SKIPPED[@]} -gt 0 ]] && log "skipped (cannot be written as pcap): ${SKIPPED[*]}"
    [[ ${#REAL[@]} -gt 0 ]] || die "no Ethernet captures under tests/golden or $SHARED_PCAPS"
    key=$(for f in "${REAL[@]}"; do stat -c '%n %s %Y' "$f"; done | sha256sum | cut -c1-12)
    MIXED="$CACHE_DIR/mixed-real-${key}.pcap"
    if [[ -s $MIXED ]]; then
        log "reusing cached $MIXED"
    else
        log "merging ${#REAL[@]} real captures into $MIXED"
        mergecap -F nsecpcap -w "$MIXED.tmp" "${REAL[@]}" || die "mergecap failed"
        mv "$MIXED.tmp" "$MIXED"
    fi
    PCAPS+=("$MIXED")
    real_packets=$(capinfos -T -c -r "$MIXED" | cut -f2)
    MIX_NOTE="$real_packets from ${#REAL[@]} real captures (tests/golden + shared corpus"
    [[ -n $LAB ]] && MIX_NOTE+=" + $LAB_COUNT lab runs from $LAB"
    MIX_NOTE+=", Ethernet)"
    if [[ $SYNTHETIC -gt 0 ]]; then
        gen_hash=$(sha256sum "$BENCH_DIR/make_big_pcap.py" | cut -c1-12)
        SYN_PCAP="$CACHE_DIR/big-${SYNTHETIC}p-seed1-${gen_hash}.pcap"
        if [[ -s $SYN_PCAP ]]; then
            log "reusing cached $SYN_PCAP"
        else
            log "generating $SYNTHETIC synthetic packets into $SYN_PCAP (about $((SYNTHETIC / 60000 + 5)) s)"
            python3 "$BENCH_DIR/make_big_pcap.py" --out "$SYN_PCAP" --packets "$SYNTHETIC" --seed 1 ||
                die "make_big_pcap.py failed"
        fi
        PCAPS+=("$SYN_PCAP")
        MIX_NOTE+=", then $SYNTHETIC synthetic (make_big_pcap.py --seed 1)"
    fi
else
    [[ -r $PCAP ]] || die "cannot read $PCAP"
    PCAPS+=("$(readlink -f "$PCAP")")
    MIX_NOTE="given capture"
fi
REPLAY_ARGS=()
for f in "${PCAPS[@]}"; do
    REPLAY_ARGS+=(-r "$f")
    cat "$f" >/dev/null  # from the page cache from now on
done

# ---------------------------------------------------------------- configs
WORK=$(mktemp -d /tmp/relaywatch-per-detector.XXXXXX)
if [[ $KEEP -eq 1 ]]; then
    log "keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi
# write_config ROW ENABLED...: built-in defaults, except which detectors run. A row named
# relay:METHOD runs relay with only that method (relay:none: with none, the round trips only).
write_config() {
    local row=$1 d on extra=""
    shift
    if [[ $row == relay:* ]]; then
        extra=", methods: [${row#relay:}]"
        [[ $row == relay:none ]] && extra=", methods: []"
    fi
    {
        echo "detectors:"
        for d in "${DETECTORS[@]}"; do
            on=false
            for e in "$@"; do [[ $e == "$d" ]] && on=true; done
            if [[ $d == relay && -n $extra ]]; then
                echo "  $d: {enabled: $on$extra}"
            else
                echo "  $d: {enabled: $on}"
            fi
        done
    } >"$WORK/$row.yaml"
}
ROWS=(baseline)
write_config baseline
for d in "${DETECTORS[@]}"; do
    [[ $RELAY_ONLY -eq 1 && $d != relay ]] && continue
    ROWS+=("$d")
    write_config "$d" "$d"
    if [[ $d == relay ]]; then
        for m in none "${RELAY_METHODS[@]}"; do
            ROWS+=("relay:$m")
            write_config "relay:$m" relay
        done
    fi
done
if [[ $RELAY_ONLY -eq 0 ]]; then
    # stack:context: the stack detector's connection records through the host stage's
    # context rules (docs/context.md): every private host in the inventory (a work-hours
    # profile each) and a 100,000-prefix consumer-VPN list looked up per connection. Its
    # extra over the `stack` row is the context rules' cost.
    printf 'address,hostname,mac,person,location,timezone\n%s\n%s\n%s\n' \
        "10.0.0.0/8,,,Bench,Bench office,America/New_York" \
        "172.16.0.0/12,,,Bench,Bench office,America/New_York" \
        "192.168.0.0/16,,,Bench,Bench office,America/New_York" >"$WORK/inventory.csv"
    python3 -c '
import random
r = random.Random(1)
print("\n".join(f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.0/24"
                for _ in range(100000)))' | sort -u >"$WORK/vpn.txt"
    ROWS+=(stack:context)
    write_config stack:context stack
    printf '%s\n' "context:" "  inventory: inventory.csv" "  address_lists:" \
        "    - {name: bench-vpn, kind: consumer_vpn, file: vpn.txt}" >>"$WORK/stack:context.yaml"
    ROWS+=(all)
    write_config all "${DETECTORS[@]}"
fi
for row in "${ROWS[@]}"; do
    "$RELAYWATCH" -T -c "$WORK/$row.yaml" >"$WORK/$row.check" 2>&1 ||
        die "config for $row rejected: $(tail -3 "$WORK/$row.check")"
done

# ---------------------------------------------------------------- measuring
declare -A WALL CPU RSS ALLWALL STATUS NOTE RUN_NO
REF_PACKETS=""

# check_row ROW DIR: every frame read, and only the asked detectors' counters exported
# (a detector that reports counters must show them when enabled and never otherwise); a
# relay row without the hidden leg or keystrokes must have timed no turnaround.
check_row() {
    local row=$1 dir=$2 p d t
    p=$(awk '$1 == "relaywatch_packets_total" {print $2}' "$dir/metrics.prom" 2>/dev/null)
    [[ -n $p ]] || { echo "no relaywatch_packets_total in the metrics file"; return 1; }
    if [[ -z $REF_PACKETS ]]; then
        REF_PACKETS=$p
    elif [[ $p != "$REF_PACKETS" ]]; then
        echo "read $p packets, other runs read $REF_PACKETS"; return 1
    fi
    for d in "${DETECTORS[@]}"; do
        [[ $row == all || ${row%%:*} == "$d" ]] && continue
        if grep -q "^relaywatch_detector_${d}_" "$dir/metrics.prom"; then
            echo "detector $d ran although the config disabled it"; return 1
        fi
    done
    if [[ $row == relay:* && $row != relay:hidden_leg && $row != relay:keystrokes ]]; then
        t=$(awk '$1 ~ /^relaywatch_detector_relay_turnarounds_total/ {s += $2} END {print s + 0}' \
            "$dir/metrics.prom")
        if [[ $t != 0 ]]; then
            echo "$t turnarounds timed although the config disabled hidden_leg and keystrokes"; return 1
        fi
    fi
    if [[ $row == stack:context ]]; then
        t=$(awk '$1 == "relaywatch_work_profiles" {print $2 + 0}' "$dir/metrics.prom")
        if [[ ${t:-0} == 0 ]]; then
            echo "no work-hours profile kept: the context rules did not run"; return 1
        fi
    fi
    cp "$dir/metrics.prom" "$WORK/last-$row.prom"
}

run_once() {  # run_once ROW
    local row=$1 i dir t0 t1 rc wall rss cpu
    if [[ -z ${STATUS[$row]:-} ]]; then
        WALL[$row]=""; CPU[$row]=""; RSS[$row]=0; ALLWALL[$row]=""; STATUS[$row]=ok; NOTE[$row]=""; RUN_NO[$row]=0
    fi
    [[ ${STATUS[$row]} == ok ]] || return
    i=$((RUN_NO[$row] + 1))
    RUN_NO[$row]=$i
    dir="$WORK/$row.$i"
    mkdir -p "$dir"
    t0=$(date +%s%N)
    (cd "$dir" && "${NICE_CMD[@]}" "$TIME_BIN" -v -o "$dir/time.txt" "$RELAYWATCH" -c "$WORK/$row.yaml" \
        "${REPLAY_ARGS[@]}" --jsonl /dev/null --workers "$WORKERS" --metrics-file metrics.prom \
        >"$dir/stdout" 2>"$dir/stderr")
    rc=$?
    t1=$(date +%s%N)
    wall=$(awk -v ns=$((t1 - t0)) 'BEGIN {printf "%.4f", ns / 1e9}')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt" 2>/dev/null)
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$dir/time.txt" 2>/dev/null)
    if [[ $rc -ne 0 ]] || grep -q 'Command terminated by signal' "$dir/time.txt" 2>/dev/null; then
        STATUS[$row]=CRASHED
        NOTE[$row]="run $i: exit status $rc; $(tail -n 5 "$dir/stderr" 2>/dev/null)"
        return
    fi
    if ! check_row "$row" "$dir" >"$dir/check.txt"; then
        STATUS[$row]=INCOMPLETE
        NOTE[$row]="run $i: $(cat "$dir/check.txt")"
        return
    fi
    ALLWALL[$row]+="$wall "
    [[ ${rss:-0} -gt ${RSS[$row]} ]] && RSS[$row]=$rss
    if [[ -z ${WALL[$row]} ]] || awk -v a="$wall" -v b="${WALL[$row]}" 'BEGIN {exit !(a < b)}'; then
        WALL[$row]=$wall
    fi
    if [[ -z ${CPU[$row]} ]] || awk -v a="$cpu" -v b="${CPU[$row]}" 'BEGIN {exit !(a < b)}'; then
        CPU[$row]=$cpu
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds: each round runs every row once, so a burst of other load spreads over all rows.
for ((round = 1; round <= RUNS; round++)); do
    log "round $round/$RUNS: ${ROWS[*]}"
    for row in "${ROWS[@]}"; do
        run_once "$row"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
echo
echo "relaywatch per-detector cost  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -n), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
echo "load average: $LOAD_START at start, $LOAD_END at end"
echo "binary: $RELAYWATCH ($("$RELAYWATCH" --version 2>/dev/null | head -1)), --workers $WORKERS"
echo "capture: ${PCAPS[*]}"
echo "         ${REF_PACKETS:-?} packets: $MIX_NOTE"
echo "rows: built-in default config with only the named detectors enabled; relay:M = relay with"
echo "      only method M (detectors.relay.methods: [M]; relay:none = methods: []); stack:context ="
echo "      stack with an inventory of every private host and a 100k-prefix list; --jsonl /dev/null"
echo "best of $RUNS runs by wall time; ns/pkt = wall / packets; extra = ns/pkt - baseline ns/pkt;"
echo "cpu ns/pkt = lowest user+sys / packets; RSS = highest over the runs"
echo
printf '%-20s %8s %8s %8s %10s %10s %8s   %s\n' detector "wall s" ns/pkt extra "cpu ns/pkt" "cpu extra" "RSS MiB" "all runs (s)"
printf '%s\n' "-----------------------------------------------------------------------------------------------------"
for row in "${ROWS[@]}"; do
    label=$row
    [[ $row == baseline ]] && label="none (base)"
    if [[ ${STATUS[$row]} != ok ]]; then
        printf '%-20s %s\n' "$label" "${STATUS[$row]} (see below)"
        continue
    fi
    awk -v l="$label" -v w="${WALL[$row]}" -v c="${CPU[$row]}" -v r="${RSS[$row]}" -v p="$REF_PACKETS" \
        -v bw="${WALL[baseline]:-}" -v bc="${CPU[baseline]:-}" -v all="${ALLWALL[$row]% }" -v base="$([[ $row == baseline ]] && echo 1)" 'BEGIN {
        ns = w / p * 1e9; cns = c / p * 1e9
        extra = (bw == "" || base) ? "-" : sprintf("%+.0f", ns - bw / p * 1e9)
        cextra = (bc == "" || base) ? "-" : sprintf("%+.0f", cns - bc / p * 1e9)
        printf "%-20s %8.3f %8.0f %8s %10.0f %10s %8.1f   %s\n", l, w, ns, extra, cns, cextra, r / 1024, all }'
done

status=0
for row in "${ROWS[@]}"; do
    if [[ ${STATUS[$row]} != ok ]]; then
        echo
        echo "$row ${STATUS[$row]}: ${NOTE[$row]}"
        status=1
    fi
done
exit $status
