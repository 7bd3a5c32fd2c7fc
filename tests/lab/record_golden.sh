#!/usr/bin/env bash
# Record relaywatch's golden captures from real lab traffic (run as root).
#
# usage: tests/lab/record_golden.sh [--seed N] [--op-delay-ms N] [--work DIR] [--golden DIR]
#                                   [--attempts N] [CASE...]
#
# For each case (default: the seven below) it runs `lab.sh run CASE` with a
# fixed seed and --op-delay-ms, checks the full run with helpers/verify.py
# (retrying the run if that fails), cuts gw.pcap per TCP connection down to a
# small input.pcap (every connection keeps its handshake and first seconds),
# copies truth.json, and checks the cut with helpers/golden.py and verify.py.
# Results: tests/golden/CASE/{input.pcap,truth.json} and tests/golden/README.md.
# The full runs stay in --work (default: a temporary directory under /tmp);
# they are not part of the repository. The lab is always torn down at the end.
#
# Environment: RWLAB_PREFIX (default rwgold-) and RWLAB_DISPLAY_BASE (default 87)
# keep this lab apart from any other lab instance on the machine;
# GOLDEN_TARGET_BYTES (default 200000) and GOLDEN_HARDCAP_BYTES (default 400000);
# GOLDEN_NICE (default -10): the lab (servers, clients) runs at this niceness so
# that other work on the machine does not distort the recorded timing (the
# delay lines additionally run SCHED_FIFO, see RWLAB_DELAY_RT_PRIO in lab.sh).
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LAB_DIR/../.." && pwd)"
LAB="$LAB_DIR/lab.sh"
NICE="${GOLDEN_NICE:--10}"
lab() { nice -n "$NICE" "$LAB" "$@"; }
PY="${RWLAB_PYTHON:-python3}"
export RWLAB_PREFIX="${RWLAB_PREFIX:-rwgold-}"
export RWLAB_DISPLAY_BASE="${RWLAB_DISPLAY_BASE:-87}"
NEAR_DELAY_MS="${RWLAB_NEAR_DELAY_MS:-5}"
export RWLAB_NEAR_DELAY_MS="$NEAR_DELAY_MS"

SEED=7
OP_DELAY=60
JITTER=0
ATTEMPTS=3
GOLDEN="$REPO/tests/golden"
WORK=""
TARGET="${GOLDEN_TARGET_BYTES:-200000}"
HARDCAP="${GOLDEN_HARDCAP_BYTES:-400000}"
DEFAULT_CASES=(rdp_session vnc_session direct_ssh_interactive jump_ssh_interactive ssh_tunnel direct_tls proxied_tls)
# Cut candidates W:B, generous to tight. W = seconds kept per connection,
# B = bytes per direction per connection; 0 = unlimited.
CUTS=(0:0 20:0 15:262144 15:131072 12:65536 10:32768 10:16384 8:8192 6:4096)

log() { printf '[golden %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

CASES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seed) SEED="$2"; shift 2 ;;
        --op-delay-ms) OP_DELAY="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --golden) GOLDEN="$2"; shift 2 ;;
        --attempts) ATTEMPTS="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) CASES+=("$1"); shift ;;
    esac
done
[[ ${#CASES[@]} -gt 0 ]] || CASES=("${DEFAULT_CASES[@]}")
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
for b in tshark editcap ip; do command -v "$b" >/dev/null || die "missing $b (run: $LAB deps)"; done
[[ -z $WORK ]] && WORK="$(mktemp -d "${TMPDIR:-/tmp}/rwgold-work.XXXXXX")"
mkdir -p "$WORK" "$GOLDEN"
SUMS="$WORK/summaries"
mkdir -p "$SUMS"

if ip netns list 2>/dev/null | grep -qw "${RWLAB_PREFIX}gw"; then
    die "a lab with prefix $RWLAB_PREFIX is already up; stop it ($LAB down with that prefix) or set RWLAB_PREFIX"
fi

cleanup() {
    local rc=$?
    log "tearing the lab down"
    lab down || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# case_env CASE: what a case records with besides the defaults (the VNC volume; routed_quic's
# pages capped as curl's downloads, since the cut below keeps every UDP datagram)
case_env() {
    case "$1" in
        vnc_session | vnc_forwarded) echo "RWLAB_VNC_SCALE=1/2 RWLAB_VNC_PIXEL_FORMAT=bgr233" ;;
        routed_quic) echo "RWLAB_MAX_DOWNLOAD_BYTES=20000" ;;
    esac
}

# cut IN OUT W B: keep, per TCP connection, the first W s and the first B bytes each way
cut_pcap() {
    local in="$1" out="$2" w="$3" b="$4" cond=()
    if [[ $w == 0 && $b == 0 ]]; then
        editcap -F pcap "$in" "$out"
        return
    fi
    [[ $w != 0 ]] && cond+=("tcp.time_relative <= $w")
    [[ $b != 0 ]] && cond+=("tcp.seq <= $b && tcp.ack <= $b")
    local f="${cond[0]}"
    [[ ${#cond[@]} -gt 1 ]] && f="$f && ${cond[1]}"
    tshark -n -r "$in" -o tcp.calculate_timestamps:TRUE -o tcp.relative_sequence_numbers:TRUE \
        -o tcp.analyze_sequence_numbers:TRUE \
        -Y "!tcp || tcp.flags.syn == 1 || ($f)" -F pcap -w "$out" 2>/dev/null
}

# verify_dir PCAP TRUTH: run helpers/verify.py on a pcap + truth pair
verify_pair() {
    local d
    d="$(mktemp -d "$WORK/verify.XXXXXX")"
    ln -s "$(realpath "$1")" "$d/gw.pcap"
    ln -s "$(realpath "$2")" "$d/truth.json"
    "$PY" "$LAB_DIR/helpers/verify.py" "$d"
    local rc=$?
    rm -rf "$d"
    return $rc
}

log "lab prefix $RWLAB_PREFIX, seed $SEED, op delay ${OP_DELAY} ms, work dir $WORK"
lab up

FAILED=()
for c in "${CASES[@]}"; do
    run="$WORK/$c"
    ok=0
    for attempt in $(seq "$ATTEMPTS"); do
        log "$c: run attempt $attempt"
        rc=0
        # shellcheck disable=SC2046  # case_env's words are VAR=value pairs
        env $(case_env "$c") nice -n "$NICE" "$LAB" run "$c" --op-delay-ms "$OP_DELAY" \
            --jitter-ms "$JITTER" --seed "$SEED" --out "$run" || rc=$?
        if [[ $rc -ne 0 ]]; then
            log "$c: lab run failed (rc=$rc), see $run/scenario.log"
            continue
        fi
        if "$PY" "$LAB_DIR/helpers/verify.py" "$run" >"$run/verify_full.txt" 2>&1; then
            ok=1; break
        fi
        log "$c: verify of the full run failed:"; grep -E 'FAIL|MISSING|status' "$run/verify_full.txt" >&2 || true
    done
    if [[ $ok -ne 1 ]]; then
        log "$c: giving up after $ATTEMPTS attempts; the old golden files (if any) are left alone"
        FAILED+=("$c"); continue
    fi

    # cut: first candidate under TARGET; else the smallest under HARDCAP
    chosen="" best="" best_size=0
    for cw in "${CUTS[@]}"; do
        w="${cw%%:*}"; b="${cw##*:}"
        cut_pcap "$run/gw.pcap" "$run/cut_$w-$b.pcap" "$w" "$b"
        sz=$(stat -c %s "$run/cut_$w-$b.pcap")
        log "$c: cut $cw -> $sz bytes"
        if [[ -z $best || $sz -lt $best_size ]]; then best="$cw"; best_size=$sz; fi
        if [[ $sz -le $TARGET ]]; then chosen="$cw"; break; fi
    done
    if [[ -z $chosen ]]; then
        if [[ $best_size -le $HARDCAP ]]; then
            chosen="$best"; log "$c: no cut under $TARGET bytes; using $best ($best_size bytes)"
        else
            log "$c: no cut under the hard cap ($HARDCAP bytes)"; FAILED+=("$c"); continue
        fi
    fi
    w="${chosen%%:*}"; b="${chosen##*:}"
    stage="$WORK/stage/$c"
    rm -rf "$stage"; mkdir -p "$stage"
    cp "$run/cut_$w-$b.pcap" "$stage/input.pcap"
    cp "$run/truth.json" "$stage/truth.json"
    if ! "$PY" "$LAB_DIR/helpers/golden.py" check "$stage" --cut "$chosen" --summary "$SUMS/$c.json" >"$run/check_cut.txt" 2>&1; then
        cat "$run/check_cut.txt" >&2
        log "$c: golden check of the cut failed"; FAILED+=("$c"); continue
    fi
    if ! verify_pair "$stage/input.pcap" "$stage/truth.json" >"$run/verify_cut.txt" 2>&1; then
        cat "$run/verify_cut.txt" >&2
        log "$c: verify.py on the cut failed"; FAILED+=("$c"); continue
    fi
    cat "$run/check_cut.txt" >&2
    mkdir -p "$GOLDEN/$c"
    cp "$stage/input.pcap" "$stage/truth.json" "$GOLDEN/$c/"
    log "$c: wrote $GOLDEN/$c (cut $chosen, $(stat -c %s "$GOLDEN/$c/input.pcap") bytes)"
done

# README from the summaries of every case written now; keep summaries of
# cases recorded earlier (not in this invocation) by re-checking their files.
for d in "$GOLDEN"/*/; do
    c="$(basename "$d")"
    [[ -f $SUMS/$c.json || ! -f $d/input.pcap || ! -f $d/truth.json ]] && continue
    cut_old="$(sed -n "s/^| \`$c\` |.*| \([0-9:]*\) |\$/\1/p" "$GOLDEN/README.md" 2>/dev/null | head -n1)"
    "$PY" "$LAB_DIR/helpers/golden.py" check "$d" --cut "${cut_old:-?}" --summary "$SUMS/$c.json" >/dev/null 2>&1 || true
done
"$PY" "$LAB_DIR/helpers/golden.py" readme --golden "$GOLDEN" --summaries "$SUMS" --seed "$SEED" \
    --op-delay-ms "$OP_DELAY" --jitter-ms "$JITTER" --near-delay-ms "$NEAR_DELAY_MS" \
    --target "$TARGET" --hardcap "$HARDCAP"
log "wrote $GOLDEN/README.md"

if [[ ${#FAILED[@]} -gt 0 ]]; then
    log "FAILED cases: ${FAILED[*]} (full runs in $WORK)"
    exit 1
fi
log "all ${#CASES[@]} cases recorded; full runs in $WORK"
