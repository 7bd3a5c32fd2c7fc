#!/usr/bin/env bash
# Cost of the host stage's shared-line work (StackRecord: devices behind one public address,
# and the nested-tunnel path evidence) per stack record. Replays one capture of many devices
# behind a few public addresses, all connecting to one entry point, three ways: no detector
# (base), the stack detector alone without `entry_points` (records are made but no line is
# counted), and the stack detector with `entry_points` set (every record is counted). The
# difference of the last two is the shared-line work. Prints wall and CPU time, ns/packet,
# µs per stack record and peak RSS, best of N runs. Nothing passes or fails on timing: the
# exit status is non-zero only when a run crashed, exited non-zero or read a different
# number of packets. See README.md next to this script.
#
#   tests/bench/shared_line.sh [--relaywatch BIN] [--connections N] [--lines N]
#                              [--devices-per-line N] [--lab DIR] [--runs N] [--nice N]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
CACHE_DIR="${RELAYWATCH_BENCH_CACHE:-/var/tmp/relaywatch-bench}"
RELAYWATCH="$ROOT/build/daemon/relaywatch"
CONNECTIONS=20000
LINES=8
PER_LINE=32
LAB=""
RUNS=3
NICE=""
ENTRY=198.18.50.10/32  # make_farm_pcap.py's entry point, and the farm lab's

usage() {
    cat <<'EOF'
Usage: shared_line.sh [options]
  --relaywatch BIN       binary to bench (default build/daemon/relaywatch)
  --connections N        connections in the synthetic capture (default 20000)
  --lines N              public addresses (default 8)
  --devices-per-line N   devices behind each (default 32)
  --lab DIR              replay DIR/*/entry.pcap (the farm-lab corpus) instead
  --runs N               rounds, every row once each (default 3)
  --nice N               run the measured commands under nice -n N
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --relaywatch) RELAYWATCH="${2:?}"; shift ;;
        --connections) CONNECTIONS="${2:?}"; shift ;;
        --lines) LINES="${2:?}"; shift ;;
        --devices-per-line) PER_LINE="${2:?}"; shift ;;
        --lab) LAB="${2:?}"; shift ;;
        --runs) RUNS="${2:?}"; shift ;;
        --nice) NICE="${2:?}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "shared_line.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
# shellcheck source=benchlib.sh
source "$BENCH_DIR/benchlib.sh"
bench_prepare shared_line.sh CONNECTIONS LINES PER_LINE RUNS

# ---------------------------------------------------------------- the capture
REPLAY_ARGS=()
if [[ -n $LAB ]]; then
    for f in "$LAB"/*/entry.pcap; do
        [[ -r $f ]] && REPLAY_ARGS+=(-r "$f")
    done
    [[ ${#REPLAY_ARGS[@]} -gt 0 ]] || die "no $LAB/*/entry.pcap"
    NOTE="farm-lab corpus $LAB (${#REPLAY_ARGS[@]} / 2 entry.pcap files, one process)"
else
    mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
    gen_hash=$(sha256sum "$BENCH_DIR/make_farm_pcap.py" | cut -c1-12)
    PCAP="$CACHE_DIR/farm-${LINES}x${PER_LINE}-${CONNECTIONS}c-seed1-${gen_hash}.pcap"
    if [[ ! -s $PCAP ]]; then
        log "generating $PCAP"
        python3 "$BENCH_DIR/make_farm_pcap.py" --out "$PCAP.tmp" --lines "$LINES" \
            --devices-per-line "$PER_LINE" --connections "$CONNECTIONS" --seed 1 >&2 ||
            die "make_farm_pcap.py failed"
        mv "$PCAP.tmp" "$PCAP"
    fi
    REPLAY_ARGS=(-r "$PCAP")
    NOTE="make_farm_pcap.py: $LINES public addresses x $PER_LINE devices, $CONNECTIONS connections to one entry point"
fi
for ((i = 1; i < ${#REPLAY_ARGS[@]}; i += 2)); do cat "${REPLAY_ARGS[i]}" >/dev/null; done

# ---------------------------------------------------------------- configs
WORK=$(mktemp -d /tmp/relaywatch-shared-line.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mapfile -t DETECTORS < <(sed -nE 's/^ *\{"([a-z_]+)", *&[a-z_]+::Create\},.*/\1/p' "$ROOT/detectors/registry.cc")
write_config() {  # write_config ROW STACK(true|false) ENTRY(yes|no)
    {
        [[ $3 == yes ]] && echo "entry_points: [$ENTRY]"
        echo "detectors:"
        for d in "${DETECTORS[@]}"; do
            if [[ $d == stack ]]; then echo "  $d: {enabled: $2}"; else echo "  $d: {enabled: false}"; fi
        done
    } >"$WORK/$1.yaml"
    "$RELAYWATCH" -T -c "$WORK/$1.yaml" >/dev/null 2>&1 || die "config $1 rejected"
}
ROWS=(base stack entry)
write_config base false no
write_config stack true no
write_config entry true yes
declare -A LABEL=([base]="no detector" [stack]="stack, no entry_points" [entry]="stack + entry_points")

# ---------------------------------------------------------------- measuring
declare -A WALL CPU RSS ALL RECORDS
PACKETS=""
status=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= RUNS; round++)); do
    log "round $round/$RUNS"
    for row in "${ROWS[@]}"; do
        dir="$WORK/$row.$round"
        bench_row "$row" "$dir" "$RELAYWATCH" -c "$WORK/$row.yaml" "${REPLAY_ARGS[@]}" \
            --jsonl /dev/null --workers 1 --metrics-file metrics.prom || continue
        RECORDS[$row]=$(awk '$1 == "relaywatch_detector_stack_records_total" {print $2}' "$dir/metrics.prom")
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
echo
echo "relaywatch shared-line cost  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -n), $(nproc) CPUs; load average $LOAD_START at start, $LOAD_END at end"
echo "binary: $RELAYWATCH, --workers 1, --jsonl /dev/null"
echo "capture: $NOTE"
echo "         ${PACKETS:-?} packets, ${RECORDS[entry]:-?} stack records"
echo "best of $RUNS runs; ns/pkt = wall or CPU (user+sys) / packets; us/record = extra CPU over"
echo "the row above / stack records; RSS = highest over the runs"
echo
printf '%-24s %8s %8s %8s %10s %10s %8s   %s\n' row "wall s" "cpu s" ns/pkt "cpu ns/pkt" "us/record" "RSS MiB" "all runs (s)"
printf '%s\n' "--------------------------------------------------------------------------------------------------"
prev=""
for row in "${ROWS[@]}"; do
    [[ -n ${WALL[$row]:-} ]] || { printf '%-24s %s\n' "${LABEL[$row]}" FAILED; prev=""; continue; }
    awk -v l="${LABEL[$row]}" -v w="${WALL[$row]}" -v c="${CPU[$row]}" -v r="${RSS[$row]}" \
        -v p="$PACKETS" -v pc="${prev:+${CPU[$prev]}}" -v n="${RECORDS[entry]:-0}" -v all="${ALL[$row]% }" 'BEGIN {
        per = (pc == "" || n == 0) ? "-" : sprintf("%+.2f", (c - pc) / n * 1e6)
        printf "%-24s %8.3f %8.2f %8.0f %10.0f %10s %8.1f   %s\n", l, w, c, w / p * 1e9, c / p * 1e9, per, r / 1024, all }'
    prev=$row
done
exit $status
