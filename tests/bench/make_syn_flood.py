#!/usr/bin/env python3
"""Writes a pcap of N TCP SYNs from random IPv4 sources and ports to 10.0.0.5:443, 1 us
apart, none answered: a SYN flood, or a scan seen from its target. Every SYN is a flow that
never carries data, which fills the flow table and each detector's per-flow state.

    make_syn_flood.py N OUT.pcap [--seed S]
"""
import argparse
import random
import struct


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00"
    with open(args.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(args.count):
            src = struct.pack("!I", rng.getrandbits(32))
            tcp = struct.pack("!HHIIBBHHH", rng.randint(1024, 65535), 443, rng.getrandbits(32),
                              0, 5 << 4, 0x02, 64240, 0, 0)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src,
                             bytes([10, 0, 0, 5]))
            pkt = eth + ip + tcp
            ts = 1700000000 * 10**6 + i
            f.write(struct.pack("<IIII", ts // 10**6, ts % 10**6, len(pkt), len(pkt)) + pkt)


if __name__ == "__main__":
    main()
