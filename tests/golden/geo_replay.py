#!/usr/bin/env python3
"""The geo rule (docs/context.md, alert 9100042) and the alerts' asset and peer context on
real traffic: the golden rdp_session capture (real xrdp and FreeRDP; the operator
198.18.9.50 controls the laptop 10.77.1.10) replayed with an inventory that puts the laptop
in New York and a GeoIP database (written by make_test_mmdb.pl, the ctest fixture
context_mmdb) that places the operator's network in KP.

Checks: a geo alert names the laptop, controller country KP against claimed US; the
remote-control alert carries the inventory's person and the operator's country and AS;
with `expected_countries: [KP]` and no inventory (the operator's own country expected) the
geo alert is gone. Exit 0/1.
"""
import argparse
import os
import sys
import tempfile

import replaylib

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(HERE, "rdp_session", "input.pcap")
LAPTOP, OPERATOR = "10.77.1.10", "198.18.9.50"


def replay(binary, work, context_yaml):
    return replaylib.replay(binary, work, "context:\n" + context_yaml +
                            "outputs:\n  jsonl:\n    events: [alert]\n", CAPTURE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--mmdb", required=True, help="context_test.mmdb")
    args = parser.parse_args()
    args.mmdb = os.path.abspath(args.mmdb)  # config paths are relative to the config file
    problems = []
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "inventory.csv"), "w") as f:
            f.write("address,hostname,mac,person,location,timezone\n"
                    f"{LAPTOP},lab-laptop,,Lab Typist,New York office,America/New_York\n")
        alerts = replay(args.relaywatch, work,
                        f"  inventory: inventory.csv\n  geoip: {args.mmdb}\n")
        expected = replay(args.relaywatch, work,
                          f"  geoip: {args.mmdb}\n  expected_countries: [KP]\n")
    geo = [a for a in alerts if a["alert"]["detector"] == "geo"]
    remote = [a for a in alerts if a["alert"]["detector"] == "remote_access"]
    for a in alerts:
        print(f"{a['alert']['signature_id']} {a['alert']['signature']} (host {a['host_ip']})")
    if len(geo) != 1:
        problems.append(f"{len(geo)} geo alerts, expected 1")
    else:
        ev = geo[0]["evidence"]
        if geo[0]["host_ip"] != LAPTOP or ev.get("controller_country") != "KP" or \
                ev.get("claimed_country") != "US" or ev.get("peer") != OPERATOR:
            problems.append(f"geo alert evidence {ev}")
    if len(remote) != 1:
        problems.append(f"{len(remote)} remote_access alerts, expected 1")
    else:
        ev = remote[0]["evidence"]
        if ev.get("asset", {}).get("person") != "Lab Typist":
            problems.append(f"remote_access alert without the asset: {ev.get('asset')}")
        if ev.get("peer_geo", {}).get("country") != "KP" or \
                ev.get("peer_geo", {}).get("asn") != 64501:
            problems.append(f"remote_access alert peer_geo {ev.get('peer_geo')}")
    if any(a["alert"]["detector"] == "geo" for a in expected):
        problems.append("geo alert although the operator's country is expected")
    return replaylib.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
