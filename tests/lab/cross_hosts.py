#!/usr/bin/env python3
"""Stepping stones across hosts, from real captures: one device, many laptops typing.

`stepping_stone_across_hosts` pairs a session from outside to one home host (an IP-KVM beside
a laptop) with the SSH flows out of every other home host of its site. The false alert to fear
is a laptop that types in its own ssh while a far person's session to the device beside
another laptop runs: the more laptops, the more pairs, and the host stage divides its
threshold by them. Here a crowd of laptops is laid out from real captures: the relayed SSH
egress flows of other runs (every run given that has one, of seeds other than the device's
run: a seed is one typing plan), each moved to a laptop address of its own (10.77.2.N, the
IPv4 and TCP checksums adjusted) and shifted with its run to begin 1 s after the device's
session began, so that every laptop types while the far person does. The device's run
(`kvm_typed_ssh`, its operator leg going to 10.77.1.20) gives the session; replayed with the
crowd alone nothing may alert, and with its own laptop's egress (as recorded) beside the
crowd exactly that laptop must. `--history H` also lays the crowd down H times before the
device's session, at the same laptops' addresses, a minute apart: the SSH sessions a site's
laptops had earlier in the hour, which the host stage keeps (up to 8 per laptop) but which
never overlap the device's session.

usage: tests/lab/cross_hosts.py --relaywatch BIN --device RUN_DIR... --crowd RUN_DIR...
                                [--copies K] [--history H] [--report-after 5s]
       (run directories with gw.pcap and truth.json; the device runs' operator leg goes to
       another address than the laptop's)
"""

import argparse
import ipaddress
import json
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import cross_pairs  # noqa: E402  (legs, first_packet, merge, stepping_stones)
import replaylib  # noqa: E402  (read_pcap, write_copies)
from ipv6_twin import adjust_checksum  # noqa: E402  (RFC 1624)


def moved(src, dst, old_ip, new_ip, start_us):
    """Copies a classic Ethernet pcap with `old_ip` rewritten to `new_ip` in IPv4 headers
    (their checksums and whole TCP segments' adjusted) and its first packet at start_us."""
    old, new = ipaddress.IPv4Address(old_ip).packed, ipaddress.IPv4Address(new_ip).packed
    header, packets = replaylib.read_pcap(src)
    out = []
    for ts, frame, orig in packets:
        frame = bytearray(frame)
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            ihl = (frame[14] & 0x0F) * 4
            tcp = 14 + ihl if frame[23] == 6 and len(frame) == orig else None
            for at in (26, 30):  # source, destination
                if frame[at:at + 4] != old:
                    continue
                frame[at:at + 4] = new
                for csum in (24, None if tcp is None else tcp + 16):
                    if csum is not None:
                        value = struct.unpack("!H", frame[csum:csum + 2])[0]
                        frame[csum:csum + 2] = struct.pack("!H", adjust_checksum(value, old, new))
        out.append((ts, bytes(frame), orig))
    replaylib.write_copies(dst, header, [(out, start_us)])
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("--device", nargs="+", required=True)
    ap.add_argument("--crowd", nargs="+", required=True)
    ap.add_argument("--copies", type=int, default=1,
                    help="lay each crowd run down this many times, each copy at addresses of "
                         "its own and 0.3 s later than the one before (a larger site)")
    ap.add_argument("--history", type=int, default=0,
                    help="also lay the crowd down this many times before the device's "
                         "session, at the same addresses, each a minute before the last "
                         "(the laptops' earlier sessions of the hour)")
    ap.add_argument("--report-after", default=None,
                    help="detectors.relay.report_after for the replays (e.g. 5s): windows of "
                         "a 20 s run come as a long session's do, interleaved with every "
                         "other laptop's")
    a = ap.parse_args()
    keys = {"report_after": a.report_after} if a.report_after else None
    seed = lambda run: os.path.basename(os.path.normpath(run)).rsplit("-s", 1)[-1]  # noqa: E731
    false_alerts = controls = controls_found = 0
    crowds = []
    with tempfile.TemporaryDirectory(prefix="rw-cross-hosts-") as work:
        legs = {}
        for n, run in enumerate(a.device + a.crowd):
            legs[run] = cross_pairs.legs(run, work, n)
        for d, device in enumerate(a.device):
            inbound, own = legs[device]
            start_us = round((cross_pairs.first_packet(inbound) + 1.0) * 1e6)
            others = [r for r in a.crowd if seed(r) != seed(device)]
            crowd = []
            for copy in range(a.copies):
                for n, run in enumerate(others):
                    i = copy * len(others) + n
                    address = f"10.77.{2 + i // 250}.{i % 250 + 1}"
                    for h in range(a.history + 1):
                        crowd.append(moved(legs[run][1],
                                           os.path.join(work, f"d{d}-c{i}-h{h}.pcap"),
                                           "10.77.1.10", address,
                                           start_us + copy * 300_000 - h * 60_000_000))
            crowds.append(a.copies * len(others))
            alone = cross_pairs.stepping_stones(
                a.relaywatch, cross_pairs.merge([inbound] + crowd, os.path.join(work, f"d{d}.pcap")),
                keys)
            false_alerts += len(alone)
            for e in alone:
                print(f"FALSE {os.path.basename(device)}: {json.dumps(e)}")
            # The run's own laptop as recorded: its keys follow the device's.
            found = cross_pairs.stepping_stones(
                a.relaywatch,
                cross_pairs.merge([inbound, own] + crowd, os.path.join(work, f"d{d}-c.pcap")),
                keys)
            controls += 1
            right = [e for e in found if e.get("host") == "10.77.1.10"]
            wrong = [e for e in found if e.get("host") != "10.77.1.10"]
            false_alerts += len(wrong)
            controls_found += bool(right)
            print(f"control {os.path.basename(os.path.normpath(device))} among {crowds[-1]} "
                  f"laptops: {'found, chance %.1e of %d pairs' % (right[0]['chance'], right[0].get('pairs_tested', 1)) if right else 'MISSED'}"
                  f"{'; others alerted: %d' % len(wrong) if wrong else ''}")
    print(f"devices: {len(a.device)}, laptops beside each: {min(crowds)}-{max(crowds)}"
          f"{f' (and {a.history} earlier sessions each)' if a.history else ''}; "
          f"controls found: {controls_found} of {controls}; false alerts: {false_alerts}")
    return 0 if false_alerts == 0 and controls_found == controls else 1


if __name__ == "__main__":
    sys.exit(main())
