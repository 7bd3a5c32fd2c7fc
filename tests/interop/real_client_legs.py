#!/usr/bin/env python3
"""Hidden legs of real clients: the negative captures of ../shared/pcaps, per flow.

Every negative capture is a real client talking to real servers with nobody behind it, so
each TLS or SSH flow's hidden_leg_rtt_ms is what that client's own processing (and anything
it waits on outside the capture) looks like to the relay method. Prints, per capture with a
measured flow, the flows measured, those at or above the budget and the largest, then the
distribution over all flows. A report for docs/relay-quality.md, not a test.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CONFIG = "outputs:\n  jsonl:\n    events: [alert, relay]\ndetectors:\n  relay:\n    local_rtt: {}ms\n"


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
    with open(manifest, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
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
            out = os.path.join(work, "events.jsonl")
            proc = subprocess.run([args.relaywatch, "-c", config, "-r",
                                   os.path.join(args.pcaps, row["file"]), "--jsonl", out,
                                   "--workers", "1"], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                print(f"FAIL: {row['file']}: relaywatch exited {proc.returncode}", file=sys.stderr)
                return 1
            flows, alerts = [], []
            with open(out, encoding="utf-8") as f:
                for line in f:
                    e = json.loads(line)
                    if e.get("event_type") == "relay" and "hidden_leg_rtt_ms" in e["relay"]:
                        flows.append(e["relay"]["hidden_leg_rtt_ms"])
                    elif e.get("event_type") == "alert" and e["alert"].get("category") == "Relay":
                        alerts.append(e["alert"]["detector"])
            os.unlink(out)
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
