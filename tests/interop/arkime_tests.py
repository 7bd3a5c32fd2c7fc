#!/usr/bin/env python3
"""Held-out interop check against Arkime's test captures: every RDP, SSH and VNC session that
Arkime's expected output names must come out of relaywatch as a remote_session of that app.

    git clone https://github.com/arkime/arkime
    python3 tests/interop/arkime_tests.py --arkime arkime --relaywatch build/daemon/relaywatch

Each tests/pcap/NAME.test holds Arkime's sessions for NAME.pcap (JSON after a header); those
whose `protocol` list names rdp, ssh or vnc are matched (source and destination address and
port, either direction) with relaywatch's sessions of the capture, replayed alone with the
default config. Sessions Arkime does not name are printed, not failed (Arkime names SOCKS,
not what its tunnel carries, and a test may cover less than its capture holds). Captures
relaywatch refuses (link types a gateway does not give) are listed. Prints one line per
capture with a session and "N passed, M failed"; exit 0/1, 77 without a checkout.
"""
import argparse
import glob
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shared_pcaps import run_relaywatch  # noqa: E402  (the same replay)

APPS = {"rdp": "rdp", "ssh": "ssh", "vnc": "vnc"}


def expected_sessions(test_path):
    """{(app, frozenset of the two (ip, port) ends)} that Arkime's .test file names."""
    with open(test_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        doc = json.loads(text[text.index("{"):])
    except ValueError:
        return set()
    out = set()
    for s in doc.get("sessions3", []):
        body = s.get("body", s)
        src, dst = body.get("source", {}), body.get("destination", {})
        for proto in body.get("protocol", []):
            if proto in APPS and "ip" in src and "ip" in dst:
                out.add((APPS[proto], frozenset({(src["ip"], src.get("port")),
                                                 (dst["ip"], dst.get("port"))})))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arkime", default=os.environ.get("RELAYWATCH_ARKIME_SRC"),
                    help="a checkout of github.com/arkime/arkime")
    ap.add_argument("--relaywatch", required=True)
    a = ap.parse_args()
    pcaps = os.path.join(a.arkime or "", "tests", "pcap")
    if not a.arkime or not os.path.isdir(pcaps):
        print(f"SKIP: no Arkime checkout ({a.arkime})")
        return 77
    passed, failures, refused = 0, [], []
    with tempfile.TemporaryDirectory() as work:
        for pcap in sorted(glob.glob(os.path.join(pcaps, "*.pcap"))):
            name = os.path.basename(pcap)
            test = pcap[:-len(".pcap")] + ".test"
            expected = expected_sessions(test) if os.path.exists(test) else set()
            rc, stderr, events = run_relaywatch(a.relaywatch, pcap, work)
            if rc != 0:
                why = stderr.strip().splitlines()[-1] if stderr.strip() else rc
                refused.append(f"{name}: {why}")
                if expected:
                    failures.append(f"{name}: refused, but Arkime names {len(expected)} session(s)")
                continue
            ours = {(e["remote_session"]["app"],
                     frozenset({(e["src_ip"], e.get("src_port")),
                                (e["dest_ip"], e.get("dest_port"))}))
                    for e in events if e.get("event_type") == "remote_session"}
            if not expected and not ours:
                continue
            missed = expected - ours
            extra = ours - expected
            line = (f"{name}: {len(expected) - len(missed)} / {len(expected)} of Arkime's "
                    "sessions found")
            if extra:
                line += "; not named by Arkime: " + ", ".join(
                    f"{app} {sorted(ends)}" for app, ends in sorted(extra, key=str))
            print(line)
            if missed:
                failures.append(f"{name}: missed " + ", ".join(
                    f"{app} {sorted(ends)}" for app, ends in sorted(missed, key=str)))
            elif expected:
                passed += 1
    for r in refused:
        print(f"refused: {r}")
    for f in failures:
        print(f"FAIL: {f}")
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
