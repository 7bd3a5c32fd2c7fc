#!/usr/bin/env bash
# Typing-baseline corpus: long vnc_typed_ssh sessions by several typists (run as root).
#
# usage: tests/lab/typist_runs.sh OUTDIR [--persons "steady quick slow"] [--budget 150]
#                                 [--baseline-seeds "1 2 3"] [--far-delays "20 40 90 150"]
#                                 [--far-seeds "1"] [--no-verify]
#
# For each typist (helpers/human.py PERSONS) the far operator types through VNC
# into the laptop's own ssh session (lab.sh scenario vnc_typed_ssh) for --budget
# seconds per session: near (operator delay 0) with each of --baseline-seeds,
# then from far at each of --far-delays (an empty list records none of that kind,
# to add runs to a corpus). Runs go to OUTDIR/<person>/<run>/ via
# quality_runs.sh (resumable, verified). tests/lab/typing_report.py judges them.
# --no-verify skips helpers/verify.py, whose tshark pass over a long session's VNC
# traffic (40 MB for 900 s) takes longer than the session itself.
set -uo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT=""; PERSONS="steady quick slow"; BUDGET=150
BSEEDS="1 2 3"; FDELAYS="20 40 90 150"; FSEEDS="1"; VERIFY=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --persons) PERSONS="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --baseline-seeds) BSEEDS="$2"; shift 2 ;;
        --far-delays) FDELAYS="$2"; shift 2 ;;
        --far-seeds) FSEEDS="$2"; shift 2 ;;
        --no-verify) VERIFY=(--no-verify); shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "typist_runs: unknown option $1" >&2; exit 2 ;;
        *) [[ -z $OUT ]] || { echo "typist_runs: only one OUTDIR" >&2; exit 2; }; OUT="$1"; shift ;;
    esac
done
[[ -n $OUT ]] || { echo "usage: $0 OUTDIR [options] (see --help)" >&2; exit 2; }
export RWLAB_TYPING_BUDGET_S="$BUDGET"
timeout=$(( BUDGET * 2 + 120 ))   # typing waits for output and reactions beyond the nominal budget
rc=0
for p in $PERSONS; do
    export RWLAB_TYPIST="$p"
    # An empty list ("") records none of that kind: add far runs to a corpus, or near ones.
    if [[ -n ${BSEEDS// /} ]]; then
        "$LAB_DIR/quality_runs.sh" "$OUT/$p" --only '^vnc_typed_ssh' --delays 0 --seeds "$BSEEDS" \
            --timeout "$timeout" "${VERIFY[@]}" || rc=1
    fi
    if [[ -n ${FDELAYS// /} && -n ${FSEEDS// /} ]]; then
        "$LAB_DIR/quality_runs.sh" "$OUT/$p" --only '^vnc_typed_ssh' --delays "$FDELAYS" --seeds "$FSEEDS" \
            --timeout "$timeout" "${VERIFY[@]}" || rc=1
    fi
done
exit "$rc"
