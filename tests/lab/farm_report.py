#!/usr/bin/env python3
"""Expected vs found for the farm lab (issue 6): devices per public address, tunnels.

    tests/lab/farm.sh run all --out /work/labruns6        # record (about 15 min)
    python3 tests/lab/farm_report.py --relaywatch build/daemon/relaywatch /work/labruns6

Each scenario's entry.pcap (the entry point's view) is replayed with the entry point
configured; the truth's device count per public address is compared with the last
`shared_line.devices` relaywatch wrote for it, and the truth's tunnels with the `tunnel`
records (MTU, nested). The lab's consumer VPN exit (topology.vpn.public_ip) is put on a
`consumer_vpn` address list (context.address_lists), as an operator's list of Astrill exits
would hold it: an `address_list` alert must name exactly the public addresses whose truth
site is that exit. Exit status 1 when a device count, a nested tunnel or a listed address
is wrong.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def replay(binary, pcap, entry, vpn_exits):
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "vpn.txt"), "w") as f:
            f.write("".join(f"{ip}\n" for ip in vpn_exits))
        config = os.path.join(work, "relaywatch.yaml")
        with open(config, "w") as f:
            f.write(f"entry_points: [{entry}/32]\n"
                    "context:\n  address_lists:\n"
                    "    - {name: lab-vpn, kind: consumer_vpn, file: vpn.txt}\n"
                    "outputs:\n  jsonl:\n    events: [alert, shared_line, tunnel]\n")
        proc = subprocess.run([binary, "-c", config, "-r", pcap, "--jsonl", "-"],
                              capture_output=True, text=True, timeout=600)
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
        vpn = truth.get("topology", {}).get("vpn", {}).get("public_ip")
        events = replay(args.relaywatch, os.path.join(args.corpus, scenario, "entry.pcap"),
                        entry, [vpn] if vpn else [])
        listed = {e["host_ip"] for e in events if e["event_type"] == "alert"
                  and e["alert"]["detector"] == "address_list"}
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
            via_vpn = info.get("site") == "consumer VPN exit"
            wrong += 0 if via_vpn == (ip in listed) else 1
            rows.append(f"| {scenario} | {ip} | {want} | {got} (confidence {conf}) | "
                        f"{'yes' if ok else 'NO'} | {expected_mtus or '-'} | {mtus or '-'} | "
                        f"{'yes' if nested_expected else 'no'} / "
                        f"{'yes' if nested_found else 'no'} | "
                        f"{'yes' if via_vpn else 'no'} / {'yes' if ip in listed else 'no'} | "
                        f"{', '.join(alerts) or '-'} |")
        if nested_expected != nested_found:
            wrong += 1
    print("| scenario | public address | devices (truth) | devices (found) | right | "
          "tunnel MTU expected | tunnel MTUs found | nested expected / found | "
          "consumer VPN exit expected / listed alert | alerts |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{wrong} wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
