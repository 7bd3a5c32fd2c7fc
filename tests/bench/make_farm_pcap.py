#!/usr/bin/env python3
"""Synthetic entry-point capture for the shared-line bench: many devices behind a few
public addresses, every connection to one entry point (what the host stage's shared-line
counting sees, at volume). Python 3 stdlib only, deterministic for the same arguments.

    make_farm_pcap.py --out FILE [--lines 8] [--devices-per-line 32] [--connections 20000]
                      [--seed 1]

Each device has a stack profile (Linux, Windows-like, macOS-like; some with MSS 1380 or
1360) and holds one OpenVPN TCP session (tcp/1194) for the whole capture; the rest of the
connections are short HTTPS-like exchanges to :443 (SYN, SYN/ACK, ACK, request, response
segments, FIN both ways) spread over an hour, each from a random device. TCP checksums
are zero (relaywatch does not verify them); IPv4 header checksums are correct.
"""

import argparse
import heapq
import random
import struct

ENTRY = bytes([198, 18, 50, 10])
MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
DURATION_S = 3600.0
T0 = 1700000000  # capture start (2023-11-14), seconds

# name: (initial ttl, option layout, timestamps, window scale, mss)
PROFILES = [
    ("linux", 64, "linux", True, 7, 1460),
    ("windows", 128, "windows", False, 8, 1460),
    ("macos", 64, "macos", True, 6, 1460),
    ("linux_mss1380", 64, "linux", True, 7, 1380),
    ("linux_vpn1360", 64, "linux", True, 7, 1360),
]


def ip_checksum(header):
    s = sum(struct.unpack("!10H", header))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def syn_options(layout, mss, ts, wscale, tsval):
    mss_opt = struct.pack("!BBH", 2, 4, mss)
    ts_opt = struct.pack("!BBII", 8, 10, tsval, 0)
    if layout == "windows":  # mss,nop,ws,nop,nop,sok
        return mss_opt + b"\x01" + struct.pack("!BBB", 3, 3, wscale) + b"\x01\x01\x04\x02"
    if layout == "macos":  # mss,nop,ws,nop,nop,ts,sok,eol,eol
        return (mss_opt + b"\x01" + struct.pack("!BBB", 3, 3, wscale) + b"\x01\x01" + ts_opt +
                b"\x04\x02\x00\x00")
    # linux: mss,sok,ts,nop,ws
    return mss_opt + b"\x04\x02" + ts_opt + b"\x01" + struct.pack("!BBB", 3, 3, wscale)


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.packets = 0

    def packet(self, t, src, dst, ttl, ip_id, sport, dport, seq, ack, flags, window,
               options=b"", payload_len=0):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          (5 + len(options) // 4) << 4, flags, window, 0, 0) + options
        total = 20 + len(tcp) + payload_len
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ip_id & 0xFFFF, 0x4000, ttl, 6, 0,
                         src, dst)
        ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
        frame = MAC_A + MAC_B + b"\x08\x00" + ip + tcp + bytes(payload_len)
        t += T0
        sec = int(t)
        self.f.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1


def connection(rng, t0, device, dport, long_lived):
    """Yields (t, args) of one connection's packets, in time order."""
    src, hops, profile, state = device
    _, ittl, layout, ts, wscale, mss = profile
    ttl = ittl - hops
    sport = rng.randrange(32768, 61000)
    isn, risn = rng.getrandbits(32), rng.getrandbits(32)
    ip_id = rng.getrandbits(16)
    rtt = 0.02 + rng.random() * 0.08
    send_seg = min(mss, 1460) - (12 if ts else 0)
    opts = b"\x01\x01" + struct.pack("!BBII", 8, 10, 1, 1) if ts else b""
    out = []

    def c2s(t, flags, seq, ack, options=b"", n=0):
        nonlocal ip_id
        ip_id += 1
        out.append((t, [src, ENTRY, ttl, ip_id, sport, dport, seq, ack, flags, 502, options, n]))

    def s2c(t, flags, seq, ack, options=b"", n=0):
        out.append((t, (ENTRY, src, 62, 0, dport, sport, seq, ack, flags, 509, options, n)))

    t = t0
    syn_window = 65535 if layout == "macos" else (65535 // mss) * mss if layout == "linux" else 64240
    c2s(t, 0x02, isn, 0, syn_options(layout, mss, ts, wscale, 1))
    out[-1][1][9] = syn_window
    s2c(t + rtt, 0x12, risn, isn + 1, struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x04\x02")
    t += rtt
    c2s(t, 0x10, isn + 1, risn + 1, opts)
    seq, rseq = isn + 1, risn + 1
    rounds = rng.randint(20, 40) if long_lived else rng.randint(1, 3)
    for _ in range(rounds):
        t += (DURATION_S * 0.9 / rounds) if long_lived else rng.random() * 0.5
        n = rng.randint(80, 600)
        c2s(t, 0x18, seq, rseq, opts, n)
        seq += n
        t += rtt
        for _ in range(rng.randint(1, 6)):
            m = mss - (12 if ts else 0)
            s2c(t, 0x10, rseq, seq, opts, m)
            rseq += m
            t += 0.0005
        c2s(t, 0x10, seq, rseq, opts)
        if rng.random() < 0.2:  # an upload: full segments at the sender's own link MTU
            for _ in range(2):
                c2s(t, 0x10, seq, rseq, opts, send_seg)
                seq += send_seg
    t += 0.01
    c2s(t, 0x11, seq, rseq, opts)
    s2c(t + rtt, 0x11, rseq, seq + 1, opts)
    c2s(t + 2 * rtt, 0x10, seq + 1, rseq + 1, opts)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--lines", type=int, default=8)
    ap.add_argument("--devices-per-line", type=int, default=32)
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    devices = []
    for line in range(args.lines):
        src = bytes([203, 0, 113 + line // 250, 1 + line % 250])
        hops = rng.randint(4, 14)
        for _ in range(args.devices_per_line):
            devices.append((src, hops, PROFILES[rng.randrange(len(PROFILES))], None))
    # Packets of all connections, merged by time: one heap of per-connection lists.
    heap = []
    for i, d in enumerate(devices):
        pkts = connection(rng, rng.random() * 60, d, 1194, True)
        heap.append((pkts[0][0], i, 0, pkts))
    for j in range(max(0, args.connections - len(devices))):
        d = devices[rng.randrange(len(devices))]
        pkts = connection(rng, rng.random() * DURATION_S, d, 443, False)
        heap.append((pkts[0][0], len(devices) + j, 0, pkts))
    heapq.heapify(heap)
    w = Writer(args.out)
    while heap:
        _, key, k, pkts = heapq.heappop(heap)
        w.packet(pkts[k][0], *pkts[k][1])
        if k + 1 < len(pkts):
            heapq.heappush(heap, (pkts[k + 1][0], key, k + 1, pkts))
    w.f.close()
    print(f"{args.out}: {w.packets} packets, {args.lines} public addresses, "
          f"{len(devices)} devices, {max(args.connections, len(devices))} connections")


if __name__ == "__main__":
    main()
