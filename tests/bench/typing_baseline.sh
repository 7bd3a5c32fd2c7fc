#!/usr/bin/env bash
# Cost of the typing baseline (the relay detector's `keystrokes` method after the record, and
# the host stage's judged windows). Replays make_typing_pcap.py's capture (every laptop types
# the four recorded sessions of tests/golden/typing_baseline) with the relay detector alone,
# its methods without `keystrokes` (base) and with all of them; the difference, per reaction
# and per judged window, is the typing baseline's work. The baseline settings are the
# golden replay's (60 reactions of history, windows of 30, p <= 0.01) so that every laptop
# is judged several times, once significantly (the dearest case: every split is drawn).
# With --day, the defaults (history 600, windows of 60 up to 1920, p <= 0.001) on a day of
# typing per laptop: the near sessions 6 times over, then the far one 6 times.
# Prints wall and CPU time, µs per reaction and ms per judged window, best of N runs.
# Nothing passes or fails on timing: non-zero only when a run failed or read a different
# number of packets. See README.md next to this script.
#
#   tests/bench/typing_baseline.sh [--relaywatch BIN] [--hosts N] [--runs N] [--nice N] [--day]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
CACHE_DIR="${RELAYWATCH_BENCH_CACHE:-/var/tmp/relaywatch-bench}"
RELAYWATCH="$ROOT/build/daemon/relaywatch"
HOSTS=64
RUNS=3
NICE=""
REPEAT=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --relaywatch) RELAYWATCH="${2:?}"; shift ;;
        --hosts) HOSTS="${2:?}"; shift ;;
        --runs) RUNS="${2:?}"; shift ;;
        --nice) NICE="${2:?}"; shift ;;
        --day) REPEAT=6 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "typing_baseline.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# shellcheck source=benchlib.sh
source "$BENCH_DIR/benchlib.sh"
bench_prepare typing_baseline.sh HOSTS RUNS

mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
gen_hash=$(cat "$BENCH_DIR/make_typing_pcap.py" "$ROOT"/tests/golden/typing_baseline/*.pcap | sha256sum | cut -c1-12)
PCAP="$CACHE_DIR/typing-${HOSTS}h-x${REPEAT}-${gen_hash}.pcap"
if [[ ! -s $PCAP ]]; then
    log "generating $PCAP"
    python3 "$BENCH_DIR/make_typing_pcap.py" --out "$PCAP.tmp" --hosts "$HOSTS" --repeat "$REPEAT" || die "make_typing_pcap.py failed"
    mv "$PCAP.tmp" "$PCAP"
fi
cat "$PCAP" >/dev/null

WORK=$(mktemp -d /tmp/relaywatch-typing.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
write_config() {  # write_config ROW METHODS
    local -a keys=("methods: [$2]")
    if ((REPEAT == 1)); then
        keys+=("typing_baseline_samples: 60" "typing_window_samples: 30" "typing_max_p: 0.01")
    fi
    bench_relay_config "$WORK/$1.yaml" typing "${keys[@]}"
}
ROWS=(base typing)
write_config base "hidden_leg, controller_rtt, stepping_stone"
write_config typing "hidden_leg, controller_rtt, stepping_stone, keystrokes"
declare -A LABEL=([base]="relay, no keystrokes" [typing]="relay + keystrokes")

declare -A WALL CPU RSS ALL WINDOWS
PACKETS=""
status=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= RUNS; round++)); do
    log "round $round/$RUNS"
    for row in "${ROWS[@]}"; do
        dir="$WORK/$row.$round"
        bench_row "$row" "$dir" "$RELAYWATCH" -c "$WORK/$row.yaml" -r "$PCAP" \
            --jsonl events.json --workers 1 --metrics-file metrics.prom || continue
        WINDOWS[$row]=$(grep -c '"event_type":"typing"' "$dir/events.json")
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
# Reactions: a window is judged after half a window of new ones; the history's are not.
if ((REPEAT == 1)); then HISTORY=60 HALF=15; else HISTORY=600 HALF=30; fi
REACTIONS=$(( ${WINDOWS[typing]:-0} * HALF + HISTORY * HOSTS ))

echo
echo "relaywatch typing-baseline cost  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -n), $(nproc) CPUs; load average $LOAD_START at start, $LOAD_END at end"
echo "binary: $RELAYWATCH, --workers 1, relay detector only"
echo "capture: make_typing_pcap.py, $HOSTS laptops x $((4 * REPEAT)) recorded SSH sessions typed through VNC"
echo "settings: $( ((REPEAT == 1)) && echo "history 60, windows of 30, p <= 0.01" || echo "the defaults")"
echo "         ${PACKETS:-?} packets, ${WINDOWS[typing]:-?} judged windows, about $REACTIONS reactions"
echo "best of $RUNS runs; extra = CPU (user+sys) over the row above"
echo
printf '%-24s %8s %8s %12s %14s %8s\n' row "wall s" "cpu s" "us/reaction" "ms/window" "RSS MiB"
printf '%s\n' "------------------------------------------------------------------------------"
for row in "${ROWS[@]}"; do
    [[ -n ${WALL[$row]:-} ]] || { printf '%-24s %s\n' "${LABEL[$row]}" FAILED; continue; }
    awk -v l="${LABEL[$row]}" -v w="${WALL[$row]}" -v c="${CPU[$row]}" -v r="${RSS[$row]}" \
        -v base="${CPU[base]:-}" -v n="$REACTIONS" -v win="${WINDOWS[typing]:-0}" -v row="$row" 'BEGIN {
        per_r = (row == "base" || base == "" || n == 0) ? "-" : sprintf("%+.1f", (c - base) / n * 1e6)
        per_w = (row == "base" || base == "" || win == 0) ? "-" : sprintf("%+.2f", (c - base) / win * 1e3)
        printf "%-24s %8.3f %8.2f %12s %14s %8.1f\n", l, w, c, per_r, per_w, r / 1024 }'
done
exit $status
