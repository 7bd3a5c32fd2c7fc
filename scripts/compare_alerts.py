#!/usr/bin/env python3
"""Replays captures with two relaywatch binaries and lists those whose alerts differ.

An alert is compared by (signature_id, host_ip, detector), so a change in the numbers an
alert quotes is not a difference; a rule that fires elsewhere, or no longer, is.

usage: scripts/compare_alerts.py [--bpf FILTER] OLD_BINARY NEW_BINARY PATH...   (files or
       directories of .pcap/.pcapng, searched recursively; --bpf replays through a capture
       filter, e.g. "not host 198.18.9.50" for the lab's egress-only view). A capture a binary
       refuses counts as its error message. Exit 1 when any capture differs.
       --relay-field NAME also compares each flow's `relay.NAME` in its relay records (e.g.
       ssh_obfuscated), for a change meant to move a finding that no alert shows yet.
"""
import argparse
import collections
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import replaylib  # noqa: E402

CONFIG = "outputs:\n  jsonl:\n    events: [alert]\n"


def captures(paths, suffixes=(".pcap", ".pcapng")):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for root, _, files in sorted(os.walk(p)):
            for f in sorted(files):
                if f.endswith(suffixes):
                    yield os.path.join(root, f)


def alerts(binary, work, config, pcap, relay_field=None):
    found = collections.Counter()
    try:
        events = replaylib.replay(binary, work, config, pcap)
    except SystemExit as refused:
        found[("refused", str(refused).strip().splitlines()[-1])] += 1
        return found
    for e in events:
        if e.get("event_type") == "alert":
            a = e.get("alert", {})
            found[(a.get("signature_id"), e.get("host_ip"), a.get("detector"))] += 1
        elif relay_field and e.get("event_type") == "relay" and relay_field in e.get("relay", {}):
            flow = (e.get("src_ip"), e.get("src_port"), e.get("dest_ip"), e.get("dest_port"))
            found[(f"relay.{relay_field}", flow, json.dumps(e["relay"][relay_field]))] += 1
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--bpf", default="", help="capture filter for both replays")
    ap.add_argument("--relay-field", default=None, help="also compare relay.NAME per flow")
    a = ap.parse_args()
    config = CONFIG.replace("[alert]", "[alert, relay]") if a.relay_field else CONFIG
    config += f"capture:\n  bpf: {json.dumps(a.bpf)}\n" if a.bpf else ""
    n = differ = 0
    with tempfile.TemporaryDirectory() as work:
        for pcap in captures(a.paths):
            n += 1
            old = alerts(a.old, work, config, pcap, a.relay_field)
            new = alerts(a.new, work, config, pcap, a.relay_field)
            if old != new:
                differ += 1
                print(f"DIFF {pcap}")
                for k in sorted(set(old) | set(new), key=str):
                    if old[k] != new[k]:
                        print(f"  {k}: {old[k]} -> {new[k]}")
    print(f"{n} captures, {differ} with other alerts" +
          (f" or another relay.{a.relay_field}" if a.relay_field else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
