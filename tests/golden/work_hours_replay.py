#!/usr/bin/env python3
"""The work-hours rule (docs/context.md, alert 9100040) on real traffic.

The lab's direct_tls capture (real curl sessions from the laptop 10.77.1.10, six TLS
connections in eight seconds: one worked minute) is laid down again and again at chosen
times, as if the laptop worked those hours, and replayed with an inventory that puts the
laptop in New York:

* "far": every hour from 20:00 to 04:00 New York time, Monday to Friday, which is 09:00 to
  17:00 in Beijing: a work_hours alert must name the laptop, with the best-fitting shift
  half a day away;
* "office": every hour from 09:00 to 17:00 New York time on the same days: no alert.

The packets are the recorded ones; only their timestamps move (by whole copies, so each
copy keeps its own timing). Prints what it found; exit 0/1.
"""
import argparse
import datetime
import os
import sys
import tempfile
import zoneinfo

import replaylib

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(HERE, "direct_tls", "input.pcap")
LAPTOP = "10.77.1.10"
ZONE = zoneinfo.ZoneInfo("America/New_York")
MONDAY = datetime.date(2026, 11, 16)


def schedule(first_hour, hours):
    """Local start times: `hours` consecutive hours from `first_hour`, five weekdays."""
    starts = []
    for day in range(5):
        for h in range(hours):
            local = datetime.datetime.combine(MONDAY + datetime.timedelta(days=day),
                                              datetime.time(0, 7), ZONE)
            local += datetime.timedelta(hours=first_hour + h)
            starts.append(local)
    return starts


def replay(binary, work, name, starts, header, packets):
    pcap = os.path.join(work, f"{name}.pcap")
    replaylib.write_copies(pcap, header,
                           [(packets, int(start.timestamp() * 1_000_000)) for start in starts])
    config = ("context:\n  inventory: inventory.csv\n"
              "outputs:\n  jsonl:\n    events: [alert]\n")
    return [e for e in replaylib.replay(binary, work, config, pcap)
            if e.get("event_type") == "alert" and e["alert"]["detector"] == "work_hours"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relaywatch", required=True)
    args = parser.parse_args()
    header, packets = replaylib.read_pcap(CAPTURE)
    problems = []
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "inventory.csv"), "w") as f:
            f.write("address,hostname,mac,person,location,timezone\n"
                    f"{LAPTOP},lab-laptop,,Lab Typist,New York office,America/New_York\n")
        far = replay(args.relaywatch, work, "far", schedule(20, 9), header, packets)
        office = replay(args.relaywatch, work, "office", schedule(9, 9), header, packets)
    print(f"far (20:00-04:00 New York, 09:00-17:00 Beijing): {len(far)} work_hours alert(s)")
    for a in far:
        ev = a["evidence"]
        print(f"  {a['timestamp']} host {a['host_ip']} active_hours {ev['active_hours']} "
              f"outside {ev['outside_share']:.2f} night {ev['night_share']:.2f} "
              f"best shift {ev['best_shift_hours']:+d} h, severity {a['alert']['severity']}")
    print(f"office (09:00-17:00 New York): {len(office)} work_hours alert(s)")
    if not far:
        problems.append("no work_hours alert for a working day in Beijing")
    for a in far:
        if a["host_ip"] != LAPTOP:
            problems.append(f"alert names {a['host_ip']}, not the laptop")
        if abs(a["evidence"]["best_shift_hours"]) < 9:
            problems.append(f"best shift {a['evidence']['best_shift_hours']} h, not half a day")
        if a["evidence"].get("asset", {}).get("person") != "Lab Typist":
            problems.append("the alert does not name the inventory's person")
    if office:
        problems.append(f"{len(office)} work_hours alert(s) for office hours")
    return replaylib.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
