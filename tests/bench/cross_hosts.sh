#!/usr/bin/env bash
# Cost of stepping stones across hosts at a large site. Replays make_site_pcap.py's capture
# (a far person's session to a device beside one laptop, and many laptops typing in SSH, each
# with earlier sessions of the hour) with the relay detector's stepping_stone method alone,
# once with `stepping_stone_across_hosts: false` (base) and once with it; the difference, per
# kept SSH flow, is the cost of keeping and pairing the site's flows. Also prints whether the
# recorded laptop was found and how many pairs divided its threshold, and the kept-flow
# gauges. Best of N runs. Nothing passes or fails on timing: non-zero only when a run failed
# or read a different number of packets. See README.md next to this script.
#
#   tests/bench/cross_hosts.sh [--relaywatch BIN] [--laptops N] [--history H] [--runs N] [--nice N]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
CACHE_DIR="${RELAYWATCH_BENCH_CACHE:-/var/tmp/relaywatch-bench}"
RELAYWATCH="$ROOT/build/daemon/relaywatch"
LAPTOPS=1000
HISTORY=3
RUNS=3
NICE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --relaywatch) RELAYWATCH="${2:?}"; shift ;;
        --laptops) LAPTOPS="${2:?}"; shift ;;
        --history) HISTORY="${2:?}"; shift ;;
        --runs) RUNS="${2:?}"; shift ;;
        --nice) NICE="${2:?}"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "cross_hosts.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $HISTORY =~ ^[0-9]+$ ]] || { echo "cross_hosts.sh: HISTORY must be 0 or more" >&2; exit 2; }
# shellcheck source=benchlib.sh
source "$BENCH_DIR/benchlib.sh"
bench_prepare cross_hosts.sh LAPTOPS RUNS

mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
gen_hash=$(cat "$BENCH_DIR/make_site_pcap.py" "$ROOT"/tests/golden/kvm_typed_ssh/{input.pcap,truth.json} | sha256sum | cut -c1-12)
PCAP="$CACHE_DIR/site-${LAPTOPS}l-h${HISTORY}-${gen_hash}.pcap"
if [[ ! -s $PCAP ]]; then
    log "generating $PCAP"
    python3 "$BENCH_DIR/make_site_pcap.py" --out "$PCAP.tmp" --laptops "$LAPTOPS" \
        --history "$HISTORY" >&2 || die "make_site_pcap.py failed"
    mv "$PCAP.tmp" "$PCAP"
fi
cat "$PCAP" >/dev/null

WORK=$(mktemp -d /tmp/relaywatch-cross-hosts.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
write_config() {  # write_config ROW ACROSS
    bench_relay_config "$WORK/$1.yaml" alert "methods: [stepping_stone]" \
        "stepping_stone_across_hosts: $2"
}
ROWS=(base across)
write_config base false
write_config across true
declare -A LABEL=([base]="one host at a time" [across]="+ across hosts")

declare -A WALL CPU RSS ALL
PACKETS=""
status=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= RUNS; round++)); do
    log "round $round/$RUNS"
    for row in "${ROWS[@]}"; do
        bench_row "$row" "$WORK/$row.$round" "$RELAYWATCH" -c "$WORK/$row.yaml" -r "$PCAP" \
            --jsonl events.json --workers 1 --metrics-file metrics.prom || continue
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
dir="$WORK/across.1"
metric() { awk -v m="$1" '$1 == m {print $2}' "$dir/metrics.prom" 2>/dev/null; }
FOUND=$(python3 - "$dir/events.json" <<'EOF'
import json, sys
alerts = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
stones = [a for a in alerts if a.get("alert", {}).get("detector") == "stepping_stone"]
mine = [a for a in stones if a.get("host_ip") == "10.77.1.10"]
others = len(stones) - len(mine)
print((f"found, chance {mine[0]['evidence']['chance']:.1e} at pairs_tested "
       f"{mine[0]['evidence'].get('pairs_tested', 1)}" if mine else "MISSED") +
      f"; {others} other stepping_stone alerts")
EOF
)
KEPT=$(metric relaywatch_stepping_stone_cross_host_flows)
EVICTED=$(metric relaywatch_stepping_stone_cross_host_flow_evictions_total)
FLOWS=$((LAPTOPS * (HISTORY + 1) + 2))

echo
echo "relaywatch stepping stones across hosts  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -n), $(nproc) CPUs; load average $LOAD_START at start, $LOAD_END at end"
echo "binary: $RELAYWATCH, --workers 1, relay detector's stepping_stone alone"
echo "capture: make_site_pcap.py, $LAPTOPS laptops typing beside a device's far session, $HISTORY earlier sessions each"
echo "         ${PACKETS:-?} packets, $FLOWS SSH and VNC flows; kept at the end ${KEPT:-?}, evicted ${EVICTED:-?}"
echo "the recorded laptop: ${FOUND:-?}"
echo "best of $RUNS runs; extra = CPU (user+sys) over the row above"
echo
printf '%-24s %8s %8s %14s %8s\n' row "wall s" "cpu s" "extra us/flow" "RSS MiB"
printf '%s\n' "--------------------------------------------------------------------"
for row in "${ROWS[@]}"; do
    [[ -n ${WALL[$row]:-} ]] || { printf '%-24s %s\n' "${LABEL[$row]}" FAILED; continue; }
    awk -v l="${LABEL[$row]}" -v w="${WALL[$row]}" -v c="${CPU[$row]}" -v r="${RSS[$row]}" \
        -v base="${CPU[base]:-}" -v n="$FLOWS" -v row="$row" 'BEGIN {
        per = (row == "base" || base == "") ? "-" : sprintf("%+.1f", (c - base) / n * 1e6)
        printf "%-24s %8.3f %8.2f %14s %8.1f\n", l, w, c, per, r / 1024 }'
done
exit $status
