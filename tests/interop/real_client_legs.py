#!/usr/bin/env python3
"""Hidden legs of real clients: the negative captures of ../shared/pcaps, per flow.

Every negative capture is a real client talking to real servers with nobody behind it, so
each TLS or SSH flow's hidden_leg_rtt_ms is what that client's own processing (and anything
it waits on outside the capture) looks like to the relay method. Prints, per capture with a
measured flow, the flows measured, those at or above the budget and the largest, then the
distribution over all flows. A report for docs/relay-quality.md, not a test.
"""
import argparse
import os
import sys
import tempfile

from shared_pcaps import RELAY_METHODS, read_manifest, run_relaywatch

CONFIG = ("outputs:\n  jsonl:\n    events: [alert, relay]\n"
          "detectors:\n  relay:\n    local_rtt: {}ms\n")


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--pcaps", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                        "..", "shared", "pcaps"))
    parser.add_argument("--budget-ms", type=float, default=60.0,
                        help="the local budget (detectors.relay.local_rtt, ms round trip)")
    args = parser.parse_args()
    manifest = os.path.join(args.pcaps, "MANIFEST.tsv")
    if not os.path.exists(manifest):
        print(f"SKIP: peer-labelled pcap corpus not present ({manifest})")
        return 77
    rows = read_manifest(args.pcaps)
    legs = []
    print(f"| capture | flows measured | at or above {args.budget_ms:g} ms | largest (ms) | "
          "relay alerts |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "relay.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(f"{args.budget_ms:g}"))
        for row in rows:
            if row["set"] != "negative":
                continue
            rc, stderr, events = run_relaywatch(args.relaywatch,
                                                os.path.join(args.pcaps, row["file"]), work,
                                                config)
            if rc != 0:
                print(f"FAIL: {row['file']}: relaywatch exited {rc}: {stderr.strip()[-300:]}",
                      file=sys.stderr)
                return 1
            flows = [e["relay"]["hidden_leg_rtt_ms"] for e in events
                     if e.get("event_type") == "relay" and "hidden_leg_rtt_ms" in e["relay"]]
            alerts = [e["alert"].get("detector") for e in events
                      if e.get("event_type") == "alert"]
            alerts = [a for a in alerts if a in RELAY_METHODS]
            legs += flows
            if flows:
                far = sum(1 for v in flows if v >= args.budget_ms)
                print(f"| {row['file']} | {len(flows)} | {far} | {max(flows):.1f} | "
                      f"{', '.join(alerts) or '-'} |")
    if legs:
        print(f"\nAll {len(legs)} flows: median {quantile(legs, 0.5):.1f} ms, 90th percentile "
              f"{quantile(legs, 0.9):.1f}, 99th {quantile(legs, 0.99):.1f}; at or above "
              f"{args.budget_ms:g} ms: {sum(1 for v in legs if v >= args.budget_ms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
