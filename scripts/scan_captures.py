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
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SUFFIXES = (".pcap", ".pcapng", ".cap", ".trace")


def captures(paths):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for root, _, files in sorted(os.walk(p, followlinks=True)):
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(SUFFIXES))


def replay(binary, pcap):
    proc = subprocess.run([binary, "-r", pcap, "--jsonl", "-"], capture_output=True, text=True,
                          timeout=600)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return pcap, proc.returncode, proc.stderr.strip(), events


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    n = 0
    sessions, alerts = collections.Counter(), collections.Counter()
    refused = []
    with ThreadPoolExecutor(max(1, (os.cpu_count() or 2))) as pool:
        for pcap, rc, stderr, events in pool.map(lambda p: replay(a.relaywatch, p),
                                                 captures(a.paths)):
            n += 1
            if rc != 0:
                refused.append(f"{pcap}: {stderr.splitlines()[-1] if stderr else rc}")
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
