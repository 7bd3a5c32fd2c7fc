#!/usr/bin/env bash
# The shipped unit must stay hardened: systemd-analyze's exposure score at most 2.5 ("OK"),
# running as an unprivileged user with CAP_NET_RAW only. Exit 77 (skip) without systemd-analyze.
set -u
unit="$(dirname "$0")/../../systemd/relaywatch.service"
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
fail=0
out=$(systemd-analyze security --offline=yes --threshold=25 "$unit" 2>&1) || fail=1
echo "$out" | tail -1
grep -q '^User=relaywatch$' "$unit" || { echo "FAIL: unit does not run as user relaywatch"; fail=1; }
grep -q '^CapabilityBoundingSet=CAP_NET_RAW$' "$unit" || { echo "FAIL: capabilities not CAP_NET_RAW only"; fail=1; }
grep -q '^Type=notify$' "$unit" || { echo "FAIL: not Type=notify"; fail=1; }
if ((fail)); then echo "0 passed, 1 failed"; exit 1; fi
echo "1 passed, 0 failed"
