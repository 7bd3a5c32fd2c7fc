#!/usr/bin/env python3
"""Rewrites a capture as a Linux router with receive offload (GRO) would have captured it.

tcpdump on a gateway whose NICs keep their default offloads does not see wire-sized
segments: GRO merges a flow's back-to-back segments into one packet of up to 64 kB before
the capture point, stamped when the merge ends. The lab turns offloads off (or, with
RWLAB_OFFLOADS=1, keeps only the laptop's TSO, because veth links deliver packets one by
one and so never merge the downloads); this script applies the merge offline to any
capture, both directions, so that every corpus can be replayed as a router would see it.

A segment joins the packet held for its flow (src, dst, ports; as tcp_gro_receive) when
  - both carry payload and it starts where the held packet ends;
  - its flags are the held packet's but PSH/FIN (no SYN, RST, URG, CWR), its
    acknowledgement number and TCP options (timestamps included) are the same bytes,
    its TTL, TOS and DF are the same and it is no longer than the first segment;
  - it arrived within WINDOW_US of the held packet's first segment (one NAPI poll);
  - the merged packet stays under 64 kB.
A segment with PSH or FIN, or shorter than the first, ends the packet it joins. The merged
packet has the first segment's headers, the flags of all, the lengths fixed, the IPv4
header checksum redone (the TCP checksum is left, as offload leaves it) and the time of
its last segment, or of a packet delivered while it was held if later (the kernel stamps
at delivery); it goes out before the first packet after its window. Everything else
passes unchanged, in the capture's order.

Reads classic pcap (either byte order, us or ns), link types Ethernet (with 802.1Q
tags), Linux cooked (SLL) and raw IP; IPv4 and IPv6 (no extension headers).

usage: gro_merge.py IN.pcap OUT.pcap [--window-us 300]   prints "merged N of M segments"
       gro_merge.py --tree IN_DIR OUT_DIR [--window-us 300]   every *.pcap below IN_DIR
"""
import argparse
import os
import struct
import sys

MAX_GRO_BYTES = 65535
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = 1, 2, 4, 8, 16, 32, 64, 128


class Packet:
    __slots__ = ("ts", "frame", "orig", "l3", "key", "seq", "ack", "flags", "payload_at", "payload_len",
                 "options", "ip_sig", "v6", "l4")

    def __init__(self, ts, frame):
        self.ts = ts
        self.frame = frame
        self.key = None


def ip_offset(linktype, frame):
    """Offset of the IP header in the frame, or None."""
    if linktype == 1:
        at, ethertype = 14, struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0
        while ethertype in (0x8100, 0x88A8) and len(frame) >= at + 4:
            ethertype = struct.unpack("!H", frame[at + 2:at + 4])[0]
            at += 4
        return at if ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:
        return 16 if len(frame) >= 16 and struct.unpack("!H", frame[14:16])[0] in (0x0800, 0x86DD) else None
    if linktype in (101, 12, 14):
        return 0
    return None


def parse_tcp(p, linktype):
    """Fills p's TCP fields; p.key stays None for anything not a whole TCP segment."""
    l3 = ip_offset(linktype, p.frame)
    f = p.frame
    if l3 is None or len(f) < l3 + 20:
        return
    version = f[l3] >> 4
    if version == 4:
        ihl = (f[l3] & 15) * 4
        total = struct.unpack("!H", f[l3 + 2:l3 + 4])[0]
        frag = struct.unpack("!H", f[l3 + 6:l3 + 8])[0]
        if f[l3 + 9] != 6 or frag & 0x3FFF or ihl < 20 or l3 + total > len(f) or total < ihl + 20:
            return
        l4, end = l3 + ihl, l3 + total
        src, dst = f[l3 + 12:l3 + 16], f[l3 + 16:l3 + 20]
        p.ip_sig = (4, f[l3 + 1], f[l3 + 8], frag & 0x4000, f[l3:l3 + 1])
    elif version == 6:
        if len(f) < l3 + 40 or f[l3 + 6] != 6:
            return
        end = l3 + 40 + struct.unpack("!H", f[l3 + 4:l3 + 6])[0]
        if end > len(f):
            return
        l4 = l3 + 40
        src, dst = f[l3 + 8:l3 + 24], f[l3 + 24:l3 + 40]
        p.ip_sig = (6, f[l3 + 7], f[l3:l3 + 4])
    else:
        return
    if end < l4 + 20:
        return
    doff = (f[l4 + 12] >> 4) * 4
    if doff < 20 or l4 + doff > end:
        return
    p.l3, p.l4, p.v6 = l3, l4, version == 6
    p.seq, p.ack = struct.unpack("!II", f[l4 + 4:l4 + 12])
    p.flags = f[l4 + 13]
    p.options = bytes(f[l4 + 20:l4 + doff])
    p.payload_at, p.payload_len = l4 + doff, end - (l4 + doff)
    p.key = (bytes(src), bytes(dst), f[l4:l4 + 4])


class Held:
    """A flow's packet under construction: its first segment and the payloads that joined."""

    def __init__(self, p):
        self.first = p
        self.last_ts = p.ts
        self.parts = [p.frame[p.payload_at:p.payload_at + p.payload_len]]
        self.next_seq = (p.seq + p.payload_len) & 0xFFFFFFFF
        self.flags = p.flags
        self.mss = p.payload_len
        self.bytes = p.payload_at - p.l3 + p.payload_len
        self.open = not (p.flags & (TCP_PSH | TCP_FIN))
        self.count = 1

    def accepts(self, p, window_ns):
        f = self.first
        return (self.open and p.payload_len > 0 and p.seq == self.next_seq
                and not p.flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR)
                and (p.flags | TCP_PSH | TCP_FIN) == (f.flags | TCP_PSH | TCP_FIN)
                and p.ack == f.ack and p.options == f.options and p.ip_sig == f.ip_sig
                and p.payload_len <= self.mss and p.ts - f.ts <= window_ns
                and self.bytes + p.payload_len <= MAX_GRO_BYTES)

    def add(self, p):
        self.parts.append(p.frame[p.payload_at:p.payload_at + p.payload_len])
        self.next_seq = (self.next_seq + p.payload_len) & 0xFFFFFFFF
        self.flags |= p.flags
        self.bytes += p.payload_len
        self.last_ts = p.ts
        self.count += 1
        if p.flags & (TCP_PSH | TCP_FIN) or p.payload_len < self.mss:
            self.open = False

    def frame(self):
        f = self.first
        if self.count == 1:
            return f.frame
        out = bytearray(f.frame[:f.payload_at])   # Ethernet padding is left behind
        for part in self.parts:
            out += part
        out[f.l4 + 13] = self.flags
        if f.v6:
            struct.pack_into("!H", out, f.l3 + 4, len(out) - f.l3 - 40)
        else:
            struct.pack_into("!H", out, f.l3 + 2, len(out) - f.l3)
            ihl = (out[f.l3] & 15) * 4
            struct.pack_into("!H", out, f.l3 + 10, 0)
            struct.pack_into("!H", out, f.l3 + 10, ipv4_checksum(out[f.l3:f.l3 + ihl]))
        return bytes(out)


def ipv4_checksum(header):
    s = sum(struct.unpack("!%dH" % (len(header) // 2), bytes(header)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def merge(packets, window_ns):
    """The parsed packets as GRO would deliver them: (ts_ns, frame, original length) in time
    order, and how many segments joined another."""
    out, held, merged = [], {}, 0

    def flush(key):
        h = held.pop(key)
        frame = h.frame()
        # Stamped when delivered, as the kernel stamps it: not before a packet of another
        # flow that went out while it was held (but a capture that steps back keeps its step).
        ts = h.last_ts
        if out and 0 < out[-1][0] - ts <= window_ns:
            ts = out[-1][0]
        out.append((ts, frame, len(frame) if h.count > 1 else h.first.orig))

    for p in packets:
        # A poll ends: every packet whose window has passed is delivered first.
        done = [k for k, h in held.items() if p.ts - h.first.ts > window_ns or not h.open]
        for key in sorted(done, key=lambda k: held[k].last_ts):
            flush(key)
        if p.key is None or p.payload_len <= 0:
            if p.key in held:
                flush(p.key)
            out.append((p.ts, p.frame, p.orig))
            continue
        h = held.get(p.key)
        if h is not None and h.accepts(p, window_ns):
            h.add(p)
            merged += 1
            continue
        if h is not None:
            flush(p.key)
        held[p.key] = Held(p)
    for key in sorted(held, key=lambda k: held[k].last_ts):
        flush(key)
    # Each merged packet went out just before the first packet after its window, so the
    # capture's own order (which may step back in time) is kept without sorting.
    return out, merged


def merge_packets(linktype, packets, window_us):
    """GRO over (ts_ns, frame, original length) packets of one link type: the packets it
    would deliver, in time order, and how many segments joined another."""
    parsed = []
    for ts, frame, orig in packets:
        p = Packet(ts, frame)
        p.orig = orig
        p.payload_len = -1
        if len(frame) == orig:   # a cut frame passes as it is
            parse_tcp(p, linktype)
        parsed.append(p)
    return merge(parsed, window_us * 1000)


def read_pcap(path):
    """(header bytes, byte order, ns per tick, link type, [(ts_ns, frame, orig)])."""
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 24:
        raise ValueError("too short for a pcap header")
    formats = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
    if data[:4] not in formats:
        raise ValueError("not a classic pcap (pcapng is not read)")
    endian, scale = formats[data[:4]]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    packets, at = [], 24
    while at + 16 <= len(data):
        sec, frac, caplen, wirelen = struct.unpack(endian + "IIII", data[at:at + 16])
        packets.append((sec * 1_000_000_000 + frac * scale, data[at + 16:at + 16 + caplen], wirelen))
        at += 16 + caplen
    return data[:24], endian, scale, linktype, packets


def write_pcap(path, header, endian, scale, packets):
    with open(path, "wb") as fh:
        # The snaplen must admit the merged packets.
        fh.write(header[:16] + struct.pack(endian + "I", 262144) + header[20:24])
        for ts, frame, orig in packets:
            sec, rem = divmod(ts, 1_000_000_000)
            fh.write(struct.pack(endian + "IIII", sec, rem // scale, len(frame), orig))
            fh.write(frame)


def convert(src, dst, window_us):
    header, endian, scale, linktype, packets = read_pcap(src)
    out, merged = merge_packets(linktype, packets, window_us)
    write_pcap(dst, header, endian, scale, out)
    return merged, len(packets)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--window-us", type=int, default=300)
    ap.add_argument("--tree", action="store_true")
    a = ap.parse_args()
    if not a.tree:
        merged, total = convert(a.src, a.dst, a.window_us)
        print(f"merged {merged} of {total} segments")
        return 0
    failed = 0
    for root, _, files in sorted(os.walk(a.src)):
        for name in sorted(files):
            if not name.endswith(".pcap"):
                continue
            src = os.path.join(root, name)
            dst = os.path.join(a.dst, os.path.relpath(src, a.src))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                merged, total = convert(src, dst, a.window_us)
                print(f"{os.path.relpath(src, a.src)}: merged {merged} of {total}")
            except (ValueError, struct.error) as e:
                failed += 1
                print(f"{os.path.relpath(src, a.src)}: skipped: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
