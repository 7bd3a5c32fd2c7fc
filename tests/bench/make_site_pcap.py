#!/usr/bin/env python3
"""A capture of a large site for tests/bench/cross_hosts.sh: many laptops typing in SSH while
a far person's session to a device beside one of them (an IP-KVM) types into that laptop.

From tests/golden/kvm_typed_ssh: the far person's VNC session to the device (10.77.1.20) and
the laptop's SSH flow (10.77.1.10) as recorded, and --laptops copies of that SSH flow moved to
addresses of their own (10.80.x.y), each 50 ms after the one before, so that every laptop
types while the far person does; with --history H each laptop also had H earlier sessions, a
minute apart, that the host stage keeps but never pairs with the device's. The copies type the
device's keys too, but later than the stepping-stone window: only the laptop as recorded
follows them within it. Frames are Ethernet/IPv4 as recorded; checksums are not recomputed
(relaywatch does not check them).

usage: make_site_pcap.py --out FILE [--laptops N] [--history H]
"""
import argparse
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import replaylib  # noqa: E402

CASE = os.path.join(HERE, "..", "golden", "kvm_typed_ssh")
STEP_US = 50_000  # between one laptop's copy and the next
# A copy's keys follow the device's by at least this much: beyond the 80 ms window and the
# hosts' legs, so only the recorded laptop is a stepping stone.
LAG_US = 400_000
MINUTE_US = 60_000_000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--laptops", type=int, default=1000)
    ap.add_argument("--history", type=int, default=0)
    a = ap.parse_args()
    if not 0 <= a.laptops <= 60000:
        ap.error("--laptops must be 0..60000")
    if not 0 <= a.history <= 50:
        ap.error("--history must be 0..50")
    truth = json.load(open(os.path.join(CASE, "truth.json")))
    laptop = socket.inet_aton(truth["hosts"]["farm"])
    egress = next(f["five_tuple"] for f in truth["flows"] if f["role"] == "relayed_egress")
    port = egress["sport"].to_bytes(2, "big")
    header, packets = replaylib.read_pcap(os.path.join(CASE, "input.pcap"))

    def is_egress(frame):
        return (frame[26:30] == laptop and frame[34:36] == port) or (
            frame[30:34] == laptop and frame[36:38] == port)

    ssh = [(ts, frame, orig) for ts, frame, orig in packets if len(frame) >= 38 and
           frame[12:14] == b"\x08\x00" and is_egress(frame)]
    out = list(packets)
    for i in range(a.laptops):
        address = socket.inet_aton(f"10.80.{i // 250}.{i % 250 + 1}")
        for h in range(a.history + 1):
            shift = LAG_US + i * STEP_US - h * MINUTE_US
            out.extend((ts + shift, replaylib.readdress(frame, laptop, address), orig)
                       for ts, frame, orig in ssh)
    out.sort(key=lambda p: p[0])
    replaylib.write_copies(a.out, header, [(out, out[0][0])])
    print(f"{a.out}: {len(out)} packets, {a.laptops} laptops with {a.history} earlier "
          f"sessions each beside the device's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
