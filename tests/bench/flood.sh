#!/usr/bin/env bash
# Memory under a SYN flood: flows that never carry data fill the flow table (flows.max_flows)
# and every detector's per-flow state. Prints the peak RSS of a replay of N spoofed SYNs
# (default config, all detectors), and, as root with tcpreplay installed, of a live daemon
# capturing them on a veth (workers 1 and 2) through its shutdown (SIGTERM ends every flow).
# Nothing passes or fails: the figures are for docs (conf/relaywatch.yaml, flows.max_flows)
# and for the unit's MemoryMax. The exit status is non-zero only when a run failed.
#
#   tests/bench/flood.sh [--relaywatch BIN] [--syns N]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RELAYWATCH="$ROOT/build/daemon/relaywatch"
SYNS=1000000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --relaywatch) RELAYWATCH=$2; shift 2 ;;
        --syns) SYNS=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "flood.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d /tmp/rw-flood.XXXXXX)
ns="rwflood-$$"
veth="rwfl$$"
cleanup() {
    ip link del "$veth" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
pcap="$work/syn.pcap"
python3 "$ROOT/tests/bench/make_syn_flood.py" "$SYNS" "$pcap" || exit 1
printf 'outputs:\n  jsonl:\n    path: /dev/null\n  prometheus:\n    enabled: false\n' > "$work/replay.yaml"
status=0
echo "$SYNS spoofed SYNs, default config, $RELAYWATCH"
/usr/bin/time -f '%M' -o "$work/rss" "$RELAYWATCH" -c "$work/replay.yaml" -r "$pcap" \
    --workers 1 --metrics-file "$work/replay.prom" || status=1
printf 'replay, 1 worker: peak RSS %d MiB, flows evicted %s\n' $(( $(cat "$work/rss") / 1024 )) \
    "$(awk '/^relaywatch_flows_evicted_total/{print $2}' "$work/replay.prom")"

if [[ $EUID -ne 0 ]] || ! command -v tcpreplay >/dev/null; then
    echo "live rows skipped: they need root and tcpreplay (apt-get install tcpreplay)"
    exit $status
fi
ip netns add "$ns" && ip link add "$veth" type veth peer name flood0 &&
    ip link set flood0 netns "$ns" && ip link set "$veth" up &&
    ip netns exec "$ns" ip link set flood0 up || exit 1
sleep 1
printf 'outputs:\n  jsonl:\n    path: /dev/null\n  prometheus:\n    enabled: false\n' > "$work/live.yaml"
for workers in 1 2; do
    /usr/bin/time -f '%M' -o "$work/rss" \
        "$RELAYWATCH" -c "$work/live.yaml" -i "$veth" --workers "$workers" 2>"$work/err" &
    timer=$!
    sleep 1
    pid=$(pgrep -P "$timer")
    ip netns exec "$ns" tcpreplay -q --topspeed -i flood0 "$pcap" >/dev/null 2>&1
    sleep 3
    flooded=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    start=$(date +%s.%N)
    kill "$pid"
    wait "$timer" || status=1
    took=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'live, %d worker(s): peak RSS %d MiB while flooded, %d MiB with the shutdown (%.1f s)\n' \
        "$workers" $(( flooded / 1024 )) $(( $(cat "$work/rss") / 1024 )) "$took"
done
exit $status
