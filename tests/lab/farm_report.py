#!/usr/bin/env python3
"""Expected vs found for the farm lab (issue 6): devices per public address, tunnels.

    tests/lab/farm.sh run all --out /work/labruns6        # record (about 15 min)
    python3 tests/lab/farm_report.py --relaywatch build/daemon/relaywatch /work/labruns6

Each scenario's entry.pcap (the entry point's view) is replayed with the entry point
configured; the truth's device count per public address is compared with the last
`shared_line.devices` relaywatch wrote for it, and the truth's tunnels with the `tunnel`
records (MTU, nested). Exit status 1 when a device count or a nested tunnel is wrong.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def replay(binary, pcap, entry):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f"entry_points: [{entry}/32]\noutputs:\n  jsonl:\n"
                "    events: [alert, shared_line, tunnel]\n")
        config = f.name
    try:
        proc = subprocess.run([binary, "-c", config, "-r", pcap, "--jsonl", "-"],
                              capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(config)
    if proc.returncode != 0:
        raise RuntimeError(f"{pcap}: exit {proc.returncode}: {proc.stderr}")
    return [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("corpus")
    args = parser.parse_args()
    rows, wrong = [], 0
    for scenario in sorted(os.listdir(args.corpus)):
        truth_path = os.path.join(args.corpus, scenario, "truth.json")
        if not os.path.exists(truth_path):
            continue
        truth = json.load(open(truth_path))
        entry = truth["capture"]["address"]
        events = replay(args.relaywatch, os.path.join(args.corpus, scenario, "entry.pcap"),
                        entry)
        devices = {}
        for e in events:
            if e["event_type"] == "shared_line":
                devices[e["shared_line"]["public_ip"]] = (e["shared_line"]["devices"],
                                                          e["shared_line"]["confidence"])
        alerts = sorted({e["alert"]["detector"] for e in events if e["event_type"] == "alert"})
        tunnels = [e["tunnel"] for e in events if e["event_type"] == "tunnel"]
        mtus = sorted({t["mtu"] for t in tunnels})
        nested_found = any(t.get("nested") for t in tunnels)
        nested_expected = any(t.get("nested") for t in truth.get("tunnels", []))
        expected_mtus = sorted({t["expected_mtu_from_mss"] for t in truth.get("tunnels", [])
                                if t.get("expected_mtu_from_mss")})
        for ip, info in sorted(truth["public_ips"].items()):
            want = info["true_device_count"]
            got, conf = devices.get(ip, (0, 0))
            ok = got == want
            wrong += 0 if ok else 1
            rows.append(f"| {scenario} | {ip} | {want} | {got} (confidence {conf}) | "
                        f"{'yes' if ok else 'NO'} | {expected_mtus or '-'} | {mtus or '-'} | "
                        f"{'yes' if nested_expected else 'no'} / "
                        f"{'yes' if nested_found else 'no'} | {', '.join(alerts) or '-'} |")
        if nested_expected != nested_found:
            wrong += 1
    print("| scenario | public address | devices (truth) | devices (found) | right | "
          "tunnel MTU expected | tunnel MTUs found | nested expected / found | alerts |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{wrong} wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
