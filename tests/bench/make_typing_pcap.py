#!/usr/bin/env python3
"""A capture of many laptops typing SSH sessions, for tests/bench/typing_baseline.sh.

Every laptop gets the four recorded sessions of tests/golden/typing_baseline (two near ones
as history, a third near one, then the far one), an hour apart, with the lab laptop's
address 10.77.1.10 rewritten to its own (10.78.x.y). Laptops follow one another in time.
With --repeat N a laptop types the three near sessions N times over, then the far one N
times: a working day's reactions, enough to fill the default history and its long windows.
The frames are Ethernet/IPv4 as recorded; checksums are not recomputed (relaywatch does not
check them).

usage: make_typing_pcap.py --out FILE [--hosts N] [--repeat N]
"""
import argparse
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import replaylib  # noqa: E402

SESSIONS = ["near_s2", "near_s3", "near_s1", "far_s1"]
LAPTOP = socket.inet_aton("10.77.1.10")
HOUR_US = 3600 * 1_000_000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    if not 1 <= a.hosts <= 60000:
        ap.error("--hosts must be 1..60000")
    if not 1 <= a.repeat <= 1000:
        ap.error("--repeat must be 1..1000")
    header, sessions = None, []
    for name in SESSIONS:
        header, packets = replaylib.read_pcap(
            os.path.join(HERE, "..", "golden", "typing_baseline", name + ".pcap"))
        sessions.append(packets)
    copies = []
    start = 1_764_000_000 * 1_000_000
    for k in range(a.hosts):
        address = socket.inet_aton(f"10.78.{k // 250}.{k % 250 + 2}")
        day = sessions[:-1] * a.repeat + sessions[-1:] * a.repeat
        for packets in day:
            moved = [(ts, replaylib.readdress(frame, LAPTOP, address), orig)
                     for ts, frame, orig in packets]
            copies.append((moved, start))
            start += HOUR_US
    replaylib.write_copies(a.out, header, copies)
    print(f"{a.out}: {a.hosts} laptops x {len(SESSIONS) * a.repeat} sessions", file=sys.stderr)


if __name__ == "__main__":
    main()
