#!/usr/bin/env bash
# Detector-quality corpus: many real lab runs, one lab up/down for the batch (run as root).
#
# usage: tests/lab/quality_runs.sh OUTDIR [--seeds "1 2"] [--delays "0 20 40 90 150"]
#                                  [--op-jitter 2] [--near-jitters "0 5 10"]
#                                  [--loss-pct P] [--reorder-pct P] [--lan-loss-pct P]
#                                  [--jitter-order kept|free] [--relayed-near-jitter MS]
#                                  [--lan-delay MS] [--lan-jitter MS] [--lan-rate-kbit N] [--lan-queue-ms 200] [--lan-bulk]
#                                  [--only REGEX] [--no-verify] [--timeout S]
#
# (a) every relayed scenario at each operator one-way delay (--op-delay-ms),
#     with op-link jitter --op-jitter (default 2 ms), for each seed;
# (b) every direct scenario with near-link jitter (gw<->srv, RWLAB_NEAR_JITTER_MS)
#     of 0, 5 and 10 ms, for each seed;
# (c) every direct scenario whose peer is the far person at op (webrtc_call: a video
#     call with a colleague abroad, not remote control) at each operator delay with
#     the op-link jitter, as (a), for each seed: a negative at every distance.
# Each run goes to OUTDIR/<scenario>-d<delay>-j<jitter>-s<seed>/ (gw.pcap,
# truth.json, ...); j is the op-link jitter for relayed runs and the near-link
# jitter for direct runs (which use d0). --loss-pct and --reorder-pct (default 0)
# lose and reorder that share of the packets on both internet links, each way
# (lab.sh run --loss-pct/--reorder-pct); --lan-loss-pct loses that share on the
# laptop's own LAN link; the run names then end -l<P>-r<P>-w<P>. --jitter-order
# free lets the jitter of both internet links reorder as netem's does (lab.sh run
# --jitter-order; names end -F); --relayed-near-jitter MS puts that much jitter
# on the server's link in relayed runs too (default 0; names end -N<MS>), so
# their server flights reach the capture point jittered (scrambled, with -F). --lan-delay and
# --lan-jitter (default 0) put a delay line between the laptop and the capture
# point (an office Wi-Fi: one-way delay, gaussian jitter each way; the lab comes
# up with RWLAB_LAN_DELAY_LINE=1); the run names then end -L<delay>-J<jitter>.
# --lan-rate-kbit N (with a buffer of --lan-queue-ms, 200) and --lan-bulk (the
# laptop's own download keeps it full: a bufferbloated Wi-Fi) add -R<rate>[-Q<ms>] and -B.
#
# Resumable: a run whose truth.json says status "ok" is kept and skipped. A run
# that fails (non-zero exit, no truth.json, status not ok, or, unless
# --no-verify, helpers/verify.py failing) is retried once; after that it is
# recorded as failed (or "verify_failed" if only the check failed, data kept)
# and the batch goes on. --only REGEX limits the batch to matching run names.
# At the end it prints a summary table (also OUTDIR/summary.tsv); logs of each
# attempt go to OUTDIR/logs/. Exit status 0 if every run is ok.
#
# Environment (defaults keep the corpus small and apart from other labs):
#   RWLAB_PREFIX=rwqual-  RWLAB_DISPLAY_BASE=97   own namespaces and X displays
#   RWLAB_VNC_SCALE=1/2  RWLAB_VNC_PIXEL_FORMAT=bgr233   VNC volume
#   RWLAB_MAX_DOWNLOAD_BYTES=1500000   HTTPS downloads capped at 1.5 MB (only
#                                      ssh_tunnel fetches more)
#   QUALITY_NICE=-10   niceness of the lab runs (timing on a busy machine)
set -uo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB="$LAB_DIR/lab.sh"
PY="${RWLAB_PYTHON:-python3}"
export RWLAB_PREFIX="${RWLAB_PREFIX:-rwqual-}"
export RWLAB_DISPLAY_BASE="${RWLAB_DISPLAY_BASE:-97}"
export RWLAB_VNC_SCALE="${RWLAB_VNC_SCALE-1/2}"
export RWLAB_VNC_PIXEL_FORMAT="${RWLAB_VNC_PIXEL_FORMAT:-bgr233}"
export RWLAB_MAX_DOWNLOAD_BYTES="${RWLAB_MAX_DOWNLOAD_BYTES-1500000}"
unset RWLAB_NEAR_JITTER_MS RWLAB_LOSS_PCT RWLAB_REORDER_PCT RWLAB_LAN_LOSS_PCT   # set per run below
NICE="${QUALITY_NICE:--10}"

RELAYED=(proxied_tls http_proxy_tls jump_ssh_interactive ssh_tunnel ssh_local_forward vnc_session rdp_session vnc_typed_ssh
         routed_relay proxied_rdp proxied_ssh corp_proxy_tls proxied_browser vnc_forwarded ssh_forwarded rdp_forwarded
         vnc_reverse webrtc_session webrtc_turn_session webrtc_turn_tcp_session ssh_nested routed_quic
         rdp_typed_ssh kvm_typed_ssh)
DIRECT=(direct_tls direct_ssh_interactive scp_transfer revocation_tls corp_proxy_direct_tls direct_browser
        direct_quic)
FAR_DIRECT=(webrtc_call webrtc_turn_call webrtc_turn_tcp_call)   # not relayed, but the peer is at op: run at the operator delays

log() { printf '[quality %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

OUT=""
SEEDS="1 2"
DELAYS="0 20 40 90 150"
OPJ=2
NEARJ="0 5 10"
LOSS=0
REORDER=0
LANLOSS=0
LANDELAY=0
LANJITTER=0
LANRATE=0
LANQUEUE=200
LANBULK=()
ORDER=kept
RELNJ=0
ONLY=""
VERIFY=1
TIMEOUT=300
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seeds) SEEDS="$2"; shift 2 ;;
        --delays) DELAYS="$2"; shift 2 ;;
        --op-jitter) OPJ="$2"; shift 2 ;;
        --near-jitters) NEARJ="$2"; shift 2 ;;
        --loss-pct) LOSS="$2"; shift 2 ;;
        --reorder-pct) REORDER="$2"; shift 2 ;;
        --lan-loss-pct) LANLOSS="$2"; shift 2 ;;
        --jitter-order) ORDER="$2"; shift 2 ;;
        --relayed-near-jitter) RELNJ="$2"; shift 2 ;;
        --lan-delay) LANDELAY="$2"; shift 2 ;;
        --lan-jitter) LANJITTER="$2"; shift 2 ;;
        --lan-rate-kbit) LANRATE="$2"; shift 2 ;;
        --lan-queue-ms) LANQUEUE="$2"; shift 2 ;;
        --lan-bulk) LANBULK=(--lan-bulk); shift ;;
        --only) ONLY="$2"; shift 2 ;;
        --no-verify) VERIFY=0; shift ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) [[ -z $OUT ]] || die "only one OUTDIR"; OUT="$1"; shift ;;
    esac
done
[[ -n $OUT ]] || die "usage: $0 OUTDIR [--seeds \"1 2\"] [--delays \"0 20 40 90 150\"] (see --help)"
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
mkdir -p "$OUT/logs" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"

# The batch: name|scenario|op_delay|op_jitter|near_jitter|seed
SUFFIX=""
[[ $LOSS == 0 && $REORDER == 0 && $LANLOSS == 0 ]] || SUFFIX="-l$LOSS-r$REORDER-w$LANLOSS"
LANLINE=0
if [[ $LANDELAY != 0 || $LANJITTER != 0 ]]; then SUFFIX="$SUFFIX-L$LANDELAY-J$LANJITTER"; LANLINE=1; fi
if [[ $LANRATE != 0 ]]; then SUFFIX="$SUFFIX-R$LANRATE"; LANLINE=1; fi
[[ $LANQUEUE == 200 ]] || SUFFIX="$SUFFIX-Q$LANQUEUE"
[[ ${#LANBULK[@]} -eq 0 ]] || SUFFIX="$SUFFIX-B"
[[ $ORDER == kept || $ORDER == free ]] || die "--jitter-order must be kept or free"
[[ $ORDER == kept ]] || SUFFIX="$SUFFIX-F"
RELSUFFIX=""
[[ $RELNJ == 0 ]] || RELSUFFIX="-N$RELNJ"
RUNS=()
for seed in $SEEDS; do
    for d in $DELAYS; do
        for scn in "${RELAYED[@]}" "${FAR_DIRECT[@]}"; do RUNS+=("$scn-d$d-j$OPJ-s$seed$SUFFIX$RELSUFFIX|$scn|$d|$OPJ|$RELNJ|$seed"); done
    done
    for nj in $NEARJ; do
        for scn in "${DIRECT[@]}"; do RUNS+=("$scn-d0-j$nj-s$seed$SUFFIX|$scn|0|0|$nj|$seed"); done
    done
done
if [[ -n $ONLY ]]; then
    sel=()
    for r in "${RUNS[@]}"; do [[ ${r%%|*} =~ $ONLY ]] && sel+=("$r"); done
    RUNS=("${sel[@]}")
fi
[[ ${#RUNS[@]} -gt 0 ]] || die "no runs selected"

status_of() {  # status_of RUN_DIR -> truth.json status or "none"
    "$PY" -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["status"])
except Exception: print("none")' "$1/truth.json"
}

we_upped=0
cleanup() {
    local rc=$?
    if [[ $we_upped == 1 ]]; then log "tearing the lab down"; "$LAB" down >>"$OUT/logs/lab-updown.log" 2>&1 || true; fi
    exit "$rc"
}
trap cleanup EXIT
# the current run is started in the background and waited for, so that a
# signal to this script reaches it (timeout(1) puts it in its own process group)
CUR=""
trap 'log "interrupted"; [[ -n $CUR ]] && kill -TERM "$CUR" 2>/dev/null; wait; exit 130' INT TERM

T0=$(date +%s)
log "${#RUNS[@]} runs -> $OUT (prefix $RWLAB_PREFIX, verify=$VERIFY)"
if ip netns list 2>/dev/null | grep -qw "${RWLAB_PREFIX}gw"; then
    log "lab $RWLAB_PREFIX already up: using it and leaving it up"
else
    RWLAB_LAN_DELAY_LINE=$LANLINE nice -n "$NICE" "$LAB" up >>"$OUT/logs/lab-updown.log" 2>&1 || die "lab up failed (see $OUT/logs/lab-updown.log)"
    we_upped=1
fi

SUMMARY="$OUT/summary.tsv"
printf 'run\tscenario\top_delay_ms\top_jitter_ms\tnear_jitter_ms\tseed\tresult\tattempts\tseconds\tpcap_bytes\n' >"$SUMMARY"
n_ok=0 n_fail=0 n_vfail=0 n_kept=0 i=0
for r in "${RUNS[@]}"; do
    IFS='|' read -r name scn d j nj seed <<<"$r"
    i=$((i + 1))
    dir="$OUT/$name"
    result="" attempts=0 secs=0
    if [[ $(status_of "$dir") == ok ]]; then
        result=ok_kept
        secs=$("$PY" -c 'import json,sys; t=json.load(open(sys.argv[1])); print(round(t["ended_at"]-t["started_at"]))' "$dir/truth.json" 2>/dev/null || echo 0)
        n_kept=$((n_kept + 1))
    else
        for attempt in 1 2; do
            attempts=$attempt
            alog="$OUT/logs/$name.$attempt.log"
            log "[$i/${#RUNS[@]}] $name (attempt $attempt)"
            t1=$(date +%s)
            timeout --kill-after=30 "$TIMEOUT" nice -n "$NICE" "$LAB" run "$scn" --op-delay-ms "$d" --jitter-ms "$j" \
                --near-jitter-ms "$nj" --loss-pct "$LOSS" --reorder-pct "$REORDER" --jitter-order "$ORDER" --lan-loss-pct "$LANLOSS" \
                --lan-delay-ms "$LANDELAY" --lan-jitter-ms "$LANJITTER" --lan-rate-kbit "$LANRATE" --lan-queue-ms "$LANQUEUE" "${LANBULK[@]}" --seed "$seed" --out "$dir" >"$alog" 2>&1 &
            CUR=$!
            wait "$CUR"
            rc=$?
            CUR=""
            secs=$(( $(date +%s) - t1 ))
            st=$(status_of "$dir")
            if [[ $rc -ne 0 || $st != ok ]]; then
                result=failed
                log "  $name: failed (rc=$rc, status=$st; see $alog)"
                continue
            fi
            if [[ $VERIFY == 1 ]]; then
                if "$PY" "$LAB_DIR/helpers/verify.py" "$dir" >"$dir/verify.txt" 2>&1; then
                    result=ok
                else
                    result=verify_failed
                    log "  $name: verify failed: $(grep -m3 'FAIL' "$dir/verify.txt" | tr -s ' ' | paste -sd';')"
                    continue
                fi
            else
                result=ok
            fi
            break
        done
        case $result in
            ok) n_ok=$((n_ok + 1)) ;;
            verify_failed) n_vfail=$((n_vfail + 1)) ;;
            *) n_fail=$((n_fail + 1)) ;;
        esac
    fi
    bytes=$(stat -c %s "$dir/gw.pcap" 2>/dev/null || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$scn" "$d" "$j" "$nj" "$seed" "$result" "$attempts" "$secs" "$bytes" >>"$SUMMARY"
    log "  $name: $result"
done
T1=$(date +%s)

# summary table
{
    echo
    printf '%-44s %-13s %8s %6s %10s\n' run result attempts secs pcap_KB
    tail -n +2 "$SUMMARY" | while IFS=$'\t' read -r name _ _ _ _ _ result attempts secs bytes; do
        printf '%-44s %-13s %8s %6s %10d\n' "$name" "$result" "$attempts" "$secs" $((bytes / 1024))
    done
    total=$(tail -n +2 "$SUMMARY" | awk -F'\t' '{s += $10} END {printf "%.1f", s / 1048576}')
    echo
    echo "runs: ${#RUNS[@]}  ok: $((n_ok + n_kept)) (kept from before: $n_kept)  verify_failed: $n_vfail  failed: $n_fail"
    echo "pcap total: ${total} MB; corpus on disk: $(du -sh "$OUT" | cut -f1); elapsed: $(( (T1 - T0) / 60 )) min $(( (T1 - T0) % 60 )) s"
    echo "summary: $SUMMARY"
} | tee "$OUT/summary.txt"
[[ $n_fail -eq 0 && $n_vfail -eq 0 ]]
