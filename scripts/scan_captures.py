#!/usr/bin/env python3
"""Replays every capture under the given folders (each on its own, default config) and lists
the remote sessions and alerts relaywatch reports, and the captures it refuses: a quick look
at a corpus nobody labelled (another project's test traces, a customer's evidence).

usage: scripts/scan_captures.py --relaywatch BIN PATH...   (files or folders, searched
       recursively for .pcap, .pcapng, .cap and .trace). Prints one line per session or alert,
       then a summary; exit 0.
"""
import argparse
import collections
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))
from compare_alerts import captures  # noqa: E402
from shared_pcaps import run_relaywatch  # noqa: E402

SUFFIXES = (".pcap", ".pcapng", ".cap", ".trace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    n = 0
    sessions, alerts = collections.Counter(), collections.Counter()
    refused = []
    with tempfile.TemporaryDirectory() as work:
        for pcap in captures(a.paths, SUFFIXES):
            n += 1
            rc, stderr, events = run_relaywatch(a.relaywatch, pcap, work)
            if rc != 0:
                refused.append(f"{pcap}: {stderr.strip().splitlines()[-1] if stderr.strip() else rc}")
                continue
            for e in events:
                where = (f"{e.get('proto')} {e.get('src_ip')}:{e.get('src_port')} -> "
                         f"{e.get('dest_ip')}:{e.get('dest_port')}")
                if e.get("event_type") == "remote_session":
                    r = e["remote_session"]
                    sessions[r["app"]] += 1
                    print(f"session {pcap}: {r['app']} ({r.get('confirmed_by')}) {where}")
                elif e.get("event_type") == "alert":
                    alerts[e["alert"]["detector"]] += 1
                    print(f"alert {pcap}: {e['alert']['detector']}: {e['alert']['signature']}")
    for line in refused:
        print(f"refused {line}")
    print(f"{n} captures: sessions {dict(sorted(sessions.items()))}, "
          f"alerts {dict(sorted(alerts.items()))}, refused {len(refused)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
