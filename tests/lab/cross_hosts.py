#!/usr/bin/env python3
"""Stepping stones across hosts, from real captures: one device, many laptops typing.

`stepping_stone_across_hosts` pairs a session from outside to one home host (an IP-KVM beside
a laptop) with the SSH flows out of every other home host of its site. The false alert to fear
is a laptop that types in its own ssh while a far person's session to the device beside
another laptop runs: the more laptops, the more pairs, and the host stage divides its
threshold by them. Here a crowd of laptops is laid out from real captures: the relayed SSH
egress flows of other runs (every run given that has one, of seeds other than the device's
run: a seed is one typing plan), each moved to a laptop address of its own (10.77.2.N, the
IPv4 and TCP checksums made again) and shifted with its run to begin 1 s after the device's
session began, so that every laptop types while the far person does. The device's run
(`kvm_typed_ssh`, its operator leg going to 10.77.1.20) gives the session; replayed with the
crowd alone nothing may alert, and with its own laptop's egress (as recorded) beside the
crowd exactly that laptop must.

usage: tests/lab/cross_hosts.py --relaywatch BIN --device RUN_DIR... --crowd RUN_DIR...
       (run directories with gw.pcap and truth.json; the device runs' operator leg goes to
       another address than the laptop's)
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cross_pairs  # noqa: E402  (legs, first_packet, merge, stepping_stones)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def move_host(src, dst, old_ip, new_ip):
    """Copies a classic Ethernet pcap, `old_ip` rewritten to `new_ip` in IPv4 headers, with
    the IPv4 and (whole) TCP checksums made again."""
    old, new = bytes(map(int, old_ip.split("."))), bytes(map(int, new_ip.split(".")))
    with open(src, "rb") as f:
        blob = f.read()
    out = bytearray(blob[:24])
    endian = "<" if blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    at = 24
    while at + 16 <= len(blob):
        ts_s, ts_f, caplen, wirelen = struct.unpack(endian + "IIII", blob[at:at + 16])
        frame = bytearray(blob[at + 16:at + 16 + caplen])
        at += 16 + caplen
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            ihl = (frame[14] & 0x0F) * 4
            ip = frame[14:14 + ihl]
            for field in (12, 16):
                if ip[field:field + 4] == old:
                    ip[field:field + 4] = new
            ip[10:12] = b"\0\0"
            ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
            frame[14:14 + ihl] = ip
            total = struct.unpack("!H", ip[2:4])[0]
            seg = frame[14 + ihl:14 + total]
            if ip[9] == 6 and len(seg) == total - ihl and len(seg) >= 20:
                seg[16:18] = b"\0\0"
                pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(seg))
                seg[16:18] = struct.pack("!H", checksum(pseudo + bytes(seg)))
                frame[14 + ihl:14 + total] = seg
        out += struct.pack(endian + "IIII", ts_s, ts_f, caplen, wirelen) + frame
    with open(dst, "wb") as f:
        f.write(out)


def shifted(pcap, start, out):
    subprocess.run(["editcap", "-t", f"{start - cross_pairs.first_packet(pcap):.6f}", pcap, out],
                   check=True, capture_output=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("--device", nargs="+", required=True)
    ap.add_argument("--crowd", nargs="+", required=True)
    a = ap.parse_args()
    seed = lambda run: os.path.basename(os.path.normpath(run)).rsplit("-s", 1)[-1]  # noqa: E731
    false_alerts = controls = controls_found = 0
    crowds = []
    with tempfile.TemporaryDirectory(prefix="rw-cross-hosts-") as work:
        legs = {}
        for n, run in enumerate(a.device + a.crowd):
            legs[run] = cross_pairs.legs(run, work, n)
        for d, device in enumerate(a.device):
            inbound, own = legs[device]
            start = cross_pairs.first_packet(inbound) + 1.0
            crowd = []
            for n, run in enumerate(r for r in a.crowd if seed(r) != seed(device)):
                moved = os.path.join(work, f"d{d}-c{n}.moved.pcap")
                move_host(legs[run][1], moved, "10.77.1.10", f"10.77.2.{n + 1}")
                crowd.append(shifted(moved, start, os.path.join(work, f"d{d}-c{n}.pcap")))
            crowds.append(len(crowd))
            alone = cross_pairs.stepping_stones(
                a.relaywatch, cross_pairs.merge([inbound] + crowd, os.path.join(work, f"d{d}.pcap")))
            false_alerts += len(alone)
            for e in alone:
                print(f"FALSE {os.path.basename(device)}: {json.dumps(e)}")
            # The run's own laptop as recorded: its keys follow the device's.
            found = cross_pairs.stepping_stones(
                a.relaywatch,
                cross_pairs.merge([inbound, own] + crowd, os.path.join(work, f"d{d}-c.pcap")))
            controls += 1
            right = [e for e in found if e.get("host") == "10.77.1.10"]
            wrong = [e for e in found if e.get("host") != "10.77.1.10"]
            false_alerts += len(wrong)
            controls_found += bool(right)
            print(f"control {os.path.basename(os.path.normpath(device))} among {len(crowd)} "
                  f"laptops: {'found, chance %.1e' % right[0]['chance'] if right else 'MISSED'}"
                  f"{'; others alerted: %d' % len(wrong) if wrong else ''}")
    print(f"devices: {len(a.device)}, laptops beside each: {min(crowds)}-{max(crowds)}; "
          f"controls found: {controls_found} of {controls}; false alerts: {false_alerts}")
    return 0 if false_alerts == 0 and controls_found == controls else 1


if __name__ == "__main__":
    sys.exit(main())
