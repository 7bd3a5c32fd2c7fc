# Sourced by shared_line.sh, typing_baseline.sh and cross_hosts.sh: their common start, a
# config with the relay detector alone, and one measured relaywatch run of a row.

# bench_prepare TAG VAR...: checks that each VAR holds a positive integer, sets NICE_CMD from
# NICE, defines log and die (messages tagged TAG), and checks /usr/bin/time and RELAYWATCH
# (made absolute). Exits 2 on a problem.
bench_prepare() {
    local tag="$1" v
    shift
    for v in "$@"; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$tag: $v must be a positive integer" >&2; exit 2; }
    done
    NICE_CMD=()
    [[ -n $NICE ]] && NICE_CMD=(nice -n "$NICE")
    BENCH_TAG="$tag"
    log() { printf '[%s %s] %s\n' "$BENCH_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
    die() { log "ERROR: $*"; exit 2; }
    [[ -x /usr/bin/time ]] || die "/usr/bin/time not found (package time)"
    [[ -x $RELAYWATCH ]] || die "no relaywatch binary at $RELAYWATCH (build it, or --relaywatch BIN)"
    RELAYWATCH=$(readlink -f "$RELAYWATCH")
}


# bench_row ROW DIR CMD...  runs CMD (relaywatch, with --metrics-file metrics.prom) in DIR
# under /usr/bin/time -v (and NICE_CMD), and keeps, per ROW, the lowest wall and CPU
# (user+sys) seconds in WALL[ROW] and CPU[ROW], the highest RSS (KiB) in RSS[ROW] and every
# wall time in ALL[ROW]. The first run's relaywatch_packets_total goes to PACKETS; a run that
# fails or reads another number of packets is logged, sets status=1 and returns 1.
# The caller declares: declare -A WALL CPU RSS ALL; PACKETS=""; status=0 (and has run
# bench_prepare).
bench_row() {
    local row="$1" dir="$2" t0 t1 rc p wall cpu rss
    shift 2
    mkdir -p "$dir"
    t0=$(date +%s%N)
    (cd "$dir" && "${NICE_CMD[@]}" /usr/bin/time -v -o time.txt "$@" >stdout 2>stderr)
    rc=$?
    t1=$(date +%s%N)
    if [[ $rc -ne 0 ]]; then
        log "$row: exit $rc: $(tail -3 "$dir/stderr")"; status=1; return 1
    fi
    p=$(awk '$1 == "relaywatch_packets_total" {print $2}' "$dir/metrics.prom")
    if [[ -z $PACKETS ]]; then PACKETS=$p; elif [[ $p != "$PACKETS" ]]; then
        log "$row: read $p packets, others $PACKETS"; status=1; return 1
    fi
    wall=$(awk -v ns=$((t1 - t0)) 'BEGIN {printf "%.4f", ns / 1e9}')
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$dir/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
    ALL[$row]+="$wall "
    if [[ -z ${WALL[$row]:-} ]] || awk -v a="$wall" -v b="${WALL[$row]}" 'BEGIN {exit !(a < b)}'; then WALL[$row]=$wall; fi
    if [[ -z ${CPU[$row]:-} ]] || awk -v a="$cpu" -v b="${CPU[$row]}" 'BEGIN {exit !(a < b)}'; then CPU[$row]=$cpu; fi
    [[ ${rss:-0} -gt ${RSS[$row]:-0} ]] && RSS[$row]=$rss
    return 0
}


# bench_relay_config FILE EVENTS [KEY_LINE...]: writes FILE, a config with the relay detector
# alone (each KEY_LINE, such as "methods: [stepping_stone]", a key of its section; every other
# detector of detectors/registry.cc off) and JSONL output of EVENTS, and dies unless
# RELAYWATCH accepts it. Needs ROOT (and bench_prepare).
bench_relay_config() {
    local file="$1" events="$2" d line
    shift 2
    local -a detectors
    mapfile -t detectors < <(sed -nE 's/^ *\{"([a-z_]+)", *&[a-z_]+::Create\},.*/\1/p' "$ROOT/detectors/registry.cc")
    {
        echo "home_networks: [10.0.0.0/8]"
        echo "outputs:"
        echo "  jsonl:"
        echo "    events: [$events]"
        echo "detectors:"
        for d in "${detectors[@]}"; do
            if [[ $d == relay ]]; then
                echo "  relay:"
                for line in "$@"; do echo "    $line"; done
            else
                echo "  $d: {enabled: false}"
            fi
        done
    } >"$file"
    "$RELAYWATCH" -T -c "$file" >/dev/null 2>&1 || die "config $(basename "$file") rejected"
}
