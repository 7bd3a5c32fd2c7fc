#!/usr/bin/env python3
"""Receive-offload twins: every capture replayed as recorded and as a Linux router with its
NICs' default offloads (GRO) captures it must give the same alerts.

tcpdump on such a router sees a flow's back-to-back segments merged into one packet of up
to 64 kB, stamped when the merge is delivered (docs/architecture.md, "Receive offload").
This applies that merge to the capture, both directions, with a window of --window-us
(1000 here: wider than a NAPI poll's, to merge more). A segment joins the packet held for
its flow (src, dst, ports; as tcp_gro_receive) when
  - both carry payload and it starts where the held packet ends;
  - its flags are the held packet's but PSH/FIN (no SYN, RST, URG, CWR), its
    acknowledgement number and TCP options (timestamps included) are the same bytes,
    its TTL, TOS and DF are the same and it is no longer than the first segment;
  - it arrived within the window of the held packet's first segment (one NAPI poll);
  - the merged packet stays under 64 kB.
A segment with PSH or FIN, or shorter than the first, ends the packet it joins. The merged
packet has the first segment's headers, the flags of all, the lengths fixed, the IPv4
header checksum redone (the TCP checksum is left, as offload leaves it) and the time of
its last segment, or of a packet delivered while it was held if later (the kernel stamps
at delivery); it goes out before the first packet after its window. Everything else
passes unchanged, in the capture's order. Link types Ethernet (with 802.1Q tags), Linux
cooked (SLL and SLL2) and raw IP; IPv4 and IPv6 (no extension headers). Not modelled: GRO's IPv4
ID rule, and UDP (a router merges it only with rx-udp-gro-forwarding on).

Then

* the alerts (signature, detector, host) must be those of the capture as recorded;
* the round trips they quote (hidden_leg_rtt_ms, controller_rtt_ms) may move by no more
  than 10 % or 2 ms: a merge moves a segment by less than its window;
* with --min-merged N, at least N segments must have merged over the inputs (so the
  merge was exercised).

Flow records, packet counts and the relay records' microseconds do change, by definition.
Captures of several link types are skipped.

usage: gro_twin.py --relaywatch BIN [--config YAML] [--window-us 1000] [--min-merged N]
                   [--skip-missing] INPUT...   (files or directories, as ipv6_twin.py)
       gro_twin.py --corpus IN OUT [--window-us 300]   every lab run under IN (gw.pcap,
                   truth.json) merged into OUT/<run>, for tests/lab/quality_report.py
       gro_twin.py --merge-only IN.pcap OUT.pcap [--window-us 300]
"""
import argparse
import os
import shutil
import struct
import sys

from flow_shape_corpus import replay  # relaywatch -r, one worker, JSON lines
from ipv6_twin import exit_status, inputs_of, prepare, read_capture, words_sum, write_pcap

MAX_GRO_BYTES = 65535
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_URG, TCP_CWR = 1, 2, 4, 8, 32, 128


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
    if linktype == 276:  # Linux cooked v2 (tcpdump -i any since libpcap 1.10): protocol first
        return 20 if len(frame) >= 20 and struct.unpack("!H", frame[0:2])[0] in (0x0800, 0x86DD) else None
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
            struct.pack_into("!H", out, f.l3 + 10, ~words_sum(out[f.l3:f.l3 + ihl]) & 0xFFFF)
        return bytes(out)


def merge(packets, window_ns):
    """The parsed packets as GRO would deliver them: (ts_ns, frame, original length) in the
    capture's order, and how many segments joined another."""
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
    would deliver, in the capture's order, and how many segments joined another."""
    parsed = []
    for ts, frame, orig in packets:
        p = Packet(ts, frame)
        p.orig = orig
        p.payload_len = -1
        if len(frame) == orig:   # a cut frame passes as it is
            parse_tcp(p, linktype)
        parsed.append(p)
    return merge(parsed, window_us * 1000)


QUOTED = ("hidden_leg_rtt_ms", "controller_rtt_ms")
ALERTS_CONFIG = "outputs:\n  jsonl:\n    events: [alert]\n"


def merged_twin(src, dst, window_us):
    """Writes src as GRO would have delivered it; returns (merged, segments) or None when
    the capture cannot be merged (interfaces of several link types)."""
    linktypes, packets = [], []
    for item in read_capture(src):
        if item[0] == "if":
            linktypes.append(item[1])
            continue
        ts, _ifid, frame, orig = item
        packets.append((ts, frame, orig))
    if len(set(linktypes)) != 1:
        return None
    out, merged = merge_packets(linktypes[0], packets, window_us)
    write_pcap(dst, linktypes[0], out)
    return merged, len(packets)


def merge_corpus(src, dst, window_us):
    """Every run of a lab corpus (quality_runs.sh's RUN/ or the shared lab's SET/SCENARIO/)
    merged: OUT/<run>/gw.pcap as GRO would deliver it, beside its truth.json."""
    runs = merged = segments = 0
    for root, _dirs, files in sorted(os.walk(src)):
        if "truth.json" not in files or "gw.pcap" not in files:
            continue
        out = os.path.join(dst, os.path.relpath(root, src))
        os.makedirs(out, exist_ok=True)
        counts = merged_twin(os.path.join(root, "gw.pcap"), os.path.join(out, "gw.pcap"), window_us)
        if counts is None:
            print(f"not merged: {root}: interfaces of several link types")
            continue
        shutil.copyfile(os.path.join(root, "truth.json"), os.path.join(out, "truth.json"))
        runs += 1
        merged += counts[0]
        segments += counts[1]
    print(f"{runs} runs merged into {dst} (window {window_us} us): {merged} of {segments} "
          "packets joined another")
    return 0 if runs else 1


def alerts(events):
    found = {}
    for e in events:
        if e.get("event_type") == "alert":
            a = e["alert"]
            found.setdefault((a.get("signature_id"), a.get("detector"), e.get("host_ip")),
                             e.get("evidence", {}))
    return found


def differences(a, b):
    """What differs between the alerts of the recorded (a) and the merged (b) capture."""
    if set(a) != set(b):
        return [f"alerts {sorted(map(str, set(a) - set(b)))} only as recorded, "
                f"{sorted(map(str, set(b) - set(a)))} only merged"]
    out = []
    for key, evidence in a.items():
        for field in QUOTED:
            if field in evidence and field in b[key]:
                x, y = evidence[field], b[key][field]
                if abs(y - x) > max(2.0, 0.1 * x):
                    out.append(f"{key[1]} {field} {x} as recorded, {y} merged")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relaywatch")
    ap.add_argument("--config", help="used where a case brings none (default: alerts only)")
    ap.add_argument("--window-us", type=int,
                    help="merge window (default 1000 for the comparison, 300 for --corpus and "
                    "--merge-only: a NAPI poll with interrupt moderation)")
    ap.add_argument("--min-merged", type=int, default=0)
    ap.add_argument("--keep", help="write the merged copies here instead of a temporary directory")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("--corpus", nargs=2, metavar=("IN", "OUT"),
                    help="merge a lab corpus (run directories with gw.pcap and truth.json) "
                    "into OUT, truth copied")
    ap.add_argument("--merge-only", nargs=2, metavar=("IN", "OUT"))
    ap.add_argument("inputs", nargs="*")
    args = ap.parse_args()
    if args.corpus or args.merge_only:
        window = args.window_us or 300
        if args.corpus:
            return merge_corpus(*args.corpus, window)
        counts = merged_twin(*args.merge_only, window)
        if counts is None:
            print(f"not merged: {args.merge_only[0]}: interfaces of several link types")
            return 1
        print(f"merged {counts[0]} of {counts[1]} packets")
        return 0
    if not args.relaywatch or not args.inputs:
        ap.error("--relaywatch and at least one INPUT are needed")
    args.window_us = args.window_us or 1000
    given_config = args.config
    work = prepare(args, "rw-gro-twin-")
    if isinstance(work, int):
        return work
    if not given_config:
        args.config = os.path.join(work, "alerts.yaml")
        with open(args.config, "w") as f:
            f.write(ALERTS_CONFIG)
    checked = failed = skipped = merged_total = alerts_total = 0
    for n, (pcap, case_cfg) in enumerate(inputs_of(args.inputs)):
        cfg = case_cfg or args.config
        twin = os.path.join(work, f"{n:04d}-{os.path.basename(pcap)}.gro.pcap")
        try:
            counts = merged_twin(pcap, twin, args.window_us)
        except (ValueError, struct.error, IndexError) as err:
            counts, why = None, err
        else:
            why = "several interfaces"
        if counts is None:
            print(f"not merged: {pcap}: {why}")
            skipped += 1
            continue
        a = alerts(replay(args.relaywatch, pcap, cfg))
        b = alerts(replay(args.relaywatch, twin, cfg))
        checked += 1
        merged_total += counts[0]
        alerts_total += len(a)
        problems = differences(a, b)
        if problems:
            failed += 1
            print(f"DIFFER {pcap} (merged {counts[0]} of {counts[1]} segments):")
            for p in problems:
                print(f"  {p}")
    print(f"{checked} captures merged as GRO would (window {args.window_us} us: {merged_total} "
          f"segments joined another) and compared, {failed} differ, {skipped} skipped; "
          f"{alerts_total} alerts compared")
    if merged_total < args.min_merged:
        print(f"FAIL: only {merged_total} segments merged, fewer than {args.min_merged}: the "
              "merge was not exercised")
        return 1
    return exit_status(checked, failed, "no capture compared")


if __name__ == "__main__":
    sys.exit(main())
