#!/usr/bin/env python3
"""Receive-offload twins: every capture replayed as recorded and as a Linux router with its
NICs' default offloads (GRO) captures it must give the same alerts.

tcpdump on such a router sees a flow's back-to-back segments merged into one packet of up
to 64 kB, stamped when the merge is delivered (docs/architecture.md, "Receive offload").
tests/lab/helpers/gro_merge.py applies that merge to the capture, both directions, with a
window of --window-us (1000 here: wider than a NAPI poll's, to merge more). Then

* the alerts (signature, detector, host) must be those of the capture as recorded;
* the round trips they quote (hidden_leg_rtt_ms, controller_rtt_ms) may move by no more
  than 10 % or 2 ms: a merge moves a segment by less than its window;
* with --min-merged N, at least N segments must have merged over the inputs (so the
  merge was exercised).

Flow records, packet counts and the relay records' microseconds do change, by definition.
Captures of several interfaces or of a link type gro_merge does not read are skipped.

usage: gro_twin.py --relaywatch BIN [--config YAML] [--window-us 1000] [--min-merged N]
                   [--skip-missing] INPUT...   (files or directories, as ipv6_twin.py)
"""
import argparse
import os
import struct
import sys

from flow_shape_corpus import replay  # relaywatch -r, one worker, JSON lines
from ipv6_twin import exit_status, inputs_of, prepare, read_capture, write_pcap

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab",
                                "helpers"))
import gro_merge  # noqa: E402

QUOTED = ("hidden_leg_rtt_ms", "controller_rtt_ms")
ALERTS_CONFIG = "outputs:\n  jsonl:\n    events: [alert]\n"


def merged_twin(src, dst, window_us):
    """Writes src as GRO would have delivered it; returns (merged, segments) or None when
    the capture cannot be merged (several interfaces)."""
    linktypes, packets = [], []
    for item in read_capture(src):
        if item[0] == "if":
            linktypes.append(item[1])
            continue
        ts, _ifid, frame, orig = item
        packets.append((ts, frame, orig))
    if len(set(linktypes)) != 1:
        return None
    out, merged = gro_merge.merge_packets(linktypes[0], packets, window_us)
    write_pcap(dst, linktypes[0], out)
    return merged, len(packets)


def alerts(events):
    found = {}
    for e in events:
        if e.get("event_type") == "alert":
            a = e["alert"]
            found.setdefault((a.get("signature_id"), a.get("detector"), e.get("host_ip")),
                             e.get("evidence", {}))
    return found


def differences(a, b):
    """What differs between the alerts of the recorded (a) and the merged (b) capture."""
    if set(a) != set(b):
        return [f"alerts {sorted(map(str, set(a) - set(b)))} only as recorded, "
                f"{sorted(map(str, set(b) - set(a)))} only merged"]
    out = []
    for key, evidence in a.items():
        for field in QUOTED:
            if field in evidence and field in b[key]:
                x, y = evidence[field], b[key][field]
                if abs(y - x) > max(2.0, 0.1 * x):
                    out.append(f"{key[1]} {field} {x} as recorded, {y} merged")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("--config", help="used where a case brings none (default: alerts only)")
    ap.add_argument("--window-us", type=int, default=1000)
    ap.add_argument("--min-merged", type=int, default=0)
    ap.add_argument("--keep", help="write the merged copies here instead of a temporary directory")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    given_config = args.config
    work = prepare(args, "rw-gro-twin-")
    if isinstance(work, int):
        return work
    if not given_config:
        args.config = os.path.join(work, "alerts.yaml")
        with open(args.config, "w") as f:
            f.write(ALERTS_CONFIG)
    checked = failed = skipped = merged_total = alerts_total = 0
    for n, (pcap, case_cfg) in enumerate(inputs_of(args.inputs)):
        cfg = case_cfg or args.config
        twin = os.path.join(work, f"{n:04d}-{os.path.basename(pcap)}.gro.pcap")
        try:
            counts = merged_twin(pcap, twin, args.window_us)
        except (ValueError, struct.error, IndexError) as err:
            counts, why = None, err
        else:
            why = "several interfaces"
        if counts is None:
            print(f"not merged: {pcap}: {why}")
            skipped += 1
            continue
        a = alerts(replay(args.relaywatch, pcap, cfg))
        b = alerts(replay(args.relaywatch, twin, cfg))
        checked += 1
        merged_total += counts[0]
        alerts_total += len(a)
        problems = differences(a, b)
        if problems:
            failed += 1
            print(f"DIFFER {pcap} (merged {counts[0]} of {counts[1]} segments):")
            for p in problems:
                print(f"  {p}")
    print(f"{checked} captures merged as GRO would (window {args.window_us} us: {merged_total} "
          f"segments joined another) and compared, {failed} differ, {skipped} skipped; "
          f"{alerts_total} alerts compared")
    if merged_total < args.min_merged:
        print(f"FAIL: only {merged_total} segments merged, fewer than {args.min_merged}: the "
              "merge was not exercised")
        return 1
    return exit_status(checked, failed, "no capture compared")


if __name__ == "__main__":
    sys.exit(main())
