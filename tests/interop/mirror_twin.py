#!/usr/bin/env python3
"""Mirrored twins: every capture replayed as recorded and as a sensor receives it from a
traffic mirror must give the same findings.

A sensor often does not sit on the wire: a switch sends it a copy inside ERSPAN (GRE), a
cloud's traffic mirroring (AWS VPC Traffic Mirroring, Azure vTAP) inside VXLAN. Each frame
of the capture is wrapped whole, as such a mirror does: a new Ethernet and IPv4 header from
the mirror (192.0.2.1) to the sensor (192.0.2.2), then

  vxlan   UDP to port 4789 and an 8-byte VXLAN header (RFC 7348), VNI 7;
  erspan  GRE (RFC 2784) with a sequence number, protocol 0x88BE, and the 8-byte ERSPAN
          type II header (session 7);
  wlan    no mirror: the sensor hears the LAN over the air (a monitor-mode interface, or a
          capture an incident responder brings from one): each frame as an 802.11 data
          frame after radiotap (TSFT, Flags, Rate, Channel, signal) with its FCS, RFC 1042
          SNAP, the header variants in turn (QoS data to the AP, data from the AP, four
          addresses, QoS with HT control padded to four bytes), and one frame in seven
          (--wlan-retry-every) heard twice, its MAC retry 300 us later (the first
          transmission's ACK lost), which must change nothing as `double` below;
  double  no wrapping: every frame twice, the copy 20 us later with a TTL or hop limit one
          less and the router's own MAC addresses, as a sensor hears a packet on both
          sides of a router (capturing on its LAN and WAN interfaces, or a SPAN session
          of both) - the copy must change nothing.

Timestamps, inner frames and their order are kept. Frames that are not Ethernet (Linux
cooked, raw IP) get an Ethernet header of their own first; a capture of another link type
is skipped. The events of both replays are compared, keys sorted, after removing what the
wrapping changes by definition (TUNNEL_FIELDS): anything else is a detector reading the
outer headers where it should read the mirrored packet.

usage: mirror_twin.py --relaywatch BIN [--config YAML] [--kind vxlan|erspan|double|wlan] [--keep DIR]
                      [--skip-missing] INPUT...   (files or directories, as ipv6_twin.py)
"""
import argparse
import json
import os
import struct
import sys
import zlib

from flow_shape_corpus import replay  # relaywatch -r, one worker, JSON lines
from ipv6_twin import (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2,
                       exit_status, inputs_of, prepare, read_capture, report_difference,
                       write_pcap)

MIRROR, SENSOR = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
MIRROR_MAC, SENSOR_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
ACCESS_POINT = bytes.fromhex("020000000003")
LINKTYPE_RADIOTAP = 127
# Fields that say how deep the packet was wrapped, not what it carried, and a flow's byte
# counts, which count the frames as received (the mirror's headers too).
TUNNEL_FIELDS = {"decoded_tunnel_depth", "tunnel_depth", "bytes_toclient", "bytes_toserver"}


def as_ethernet(linktype, frame):
    """The frame as Ethernet, or None when its link type has no Ethernet form here."""
    if linktype == LINKTYPE_ETHERNET:
        return frame
    if linktype == LINKTYPE_SLL and len(frame) >= 16:
        proto, payload = frame[14:16], frame[16:]
    elif linktype == LINKTYPE_SLL2 and len(frame) >= 20:
        proto, payload = frame[0:2], frame[20:]
    elif linktype in LINKTYPE_RAW and frame:
        proto, payload = struct.pack("!H", 0x86DD if frame[0] >> 4 == 6 else 0x0800), frame
    else:
        return None
    return SENSOR_MAC + MIRROR_MAC + proto + payload


def ipv4_header(proto, payload_length, ident):
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, ident, 0x4000,
                                 64, proto, 0, MIRROR, SENSOR))
    s = sum(struct.unpack("!10H", head))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", head, 10, ~s & 0xFFFF)
    return bytes(head)


def wrap(kind, inner, seq):
    """One mirrored copy of the Ethernet frame `inner` (seq: its number in the mirror's
    stream)."""
    if kind == "vxlan":
        vxlan = struct.pack("!II", 0x08000000, 7 << 8)
        body = struct.pack("!HHHH", 49152 + seq % 16384, 4789, 8 + len(vxlan) + len(inner), 0)
        body += vxlan + inner
        proto = 17
    else:
        # GRE with the S bit and protocol ERSPAN II, then version 1, session 7, index 0.
        gre = struct.pack("!HHI", 0x1000, 0x88BE, seq & 0xFFFFFFFF)
        erspan = struct.pack("!HHI", (1 << 12) | 0, 7, 0)
        body = gre + erspan + inner
        proto = 47
    return SENSOR_MAC + MIRROR_MAC + b"\x08\x00" + ipv4_header(proto, len(body), seq & 0xFFFF) + body


def over_the_air(inner, seq, ts, truncated, retry=False):
    """The Ethernet frame `inner` as a monitor-mode interface records it: radiotap, then an
    802.11 data frame carrying its EtherType and payload in RFC 1042 SNAP, then the FCS
    (left out when the snapshot length cut the frame, as the radio's trailer would be).
    `retry`: the radio's second transmission of the same frame (Retry bit, same sequence)."""
    dst, src, rest = inner[0:6], inner[6:12], inner[12:]
    variant = seq % 4
    flags_field = 0x00 if truncated else 0x10  # FCS at the end
    seq_ctrl = struct.pack("<H", (seq & 0xFFF) << 4)
    if variant == 0:    # QoS data, station to AP: BSSID, SA, DA
        header = b"\x88\x01\x2c\x00" + ACCESS_POINT + src + dst + seq_ctrl + b"\x00\x00"
    elif variant == 1:  # data, AP to station: DA, BSSID, SA
        header = b"\x08\x02\x2c\x00" + dst + ACCESS_POINT + src + seq_ctrl
    elif variant == 2:  # four addresses (a bridge or mesh link), QoS: RA, TA, DA, SA
        header = b"\x88\x03\x2c\x00" + ACCESS_POINT + MIRROR_MAC + dst + seq_ctrl + src + b"\x00\x00"
    else:               # QoS with HT control (Order bit), 30 bytes
        header = b"\x88\x81\x2c\x00" + ACCESS_POINT + src + dst + seq_ctrl + b"\x00\x00" + bytes(4)
    if retry:
        header = header[:1] + bytes([header[1] | 0x08]) + header[2:]
    body = b"\xaa\xaa\x03\x00\x00\x00" + rest
    fcs = b"" if truncated else struct.pack("<I", zlib.crc32(header + body))
    if variant == 3:
        # The driver pads the header to four bytes in the capture; the FCS does not cover it.
        header += bytes(2)
        flags_field |= 0x20
    frame = header + body + fcs
    # Present: TSFT, Flags, Rate, Channel, antenna signal; TSFT aligned to 8 from the start.
    radiotap = struct.pack("<BBHIQBBHHb", 0, 0, 23, 0x2F, (ts // 1000) & (2**64 - 1),
                           flags_field, 0x0C, 5180, 0x0140, -52)
    return radiotap + frame


def forwarded_copy(frame):
    """An Ethernet frame as the router sends it on: its own MAC addresses, TTL or hop limit
    one less (the IPv4 header checksum adjusted); None when it is not IP."""
    copy = bytearray(SENSOR_MAC + MIRROR_MAC + frame[12:])
    off = 12
    while len(copy) >= off + 4 and copy[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    ether, ip = copy[off:off + 2], off + 2
    if ether == b"\x08\x00" and len(copy) >= ip + 20 and copy[ip + 8] > 1:
        copy[ip + 8] -= 1
        csum = struct.unpack("!H", copy[ip + 10:ip + 12])[0] + 0x0100  # RFC 1624: TTL is the high byte
        struct.pack_into("!H", copy, ip + 10, (csum & 0xFFFF) + (csum >> 16))
    elif ether == b"\x86\xdd" and len(copy) >= ip + 40 and copy[ip + 7] > 1:
        copy[ip + 7] -= 1
    else:
        return None
    return bytes(copy)


def mirror_capture(src, dst, kind, retry_every=7):
    """Writes the mirrored copy of `src` to `dst` (classic pcap, ns, Ethernet); returns the
    number of frames, or None when the link type has no Ethernet form."""
    linktypes, out, pending = [], [], []
    for item in read_capture(src):
        if item[0] == "if":
            linktypes.append(item[1])
            continue
        ts, ifid, frame, orig = item
        inner = as_ethernet(linktypes[ifid], frame)
        if inner is None:
            return None
        # The capture's own order is kept (a merged capture may step back in time); each copy
        # goes in before the first later packet that is not earlier than it.
        stepped_back = bool(out) and ts < out[-1][0]
        while pending and (pending[0][0] <= ts or stepped_back):
            out.append(pending.pop(0))
        if kind == "double":
            out.append((ts, inner, orig + len(inner) - len(frame)))
            copy = forwarded_copy(inner)
            if copy is not None:
                pending.append((ts + 20_000, copy, orig + len(copy) - len(frame)))
            continue
        if kind == "wlan":
            seq, truncated = len(out), orig > len(frame)
            copy = over_the_air(inner, seq, ts, truncated)
            out.append((ts, copy, orig + len(copy) - len(frame)))
            if retry_every and seq % retry_every == 3 % retry_every:
                # Its acknowledgement lost, the radio sends the frame again after the ACK
                # timeout, Retry bit set; a monitor interface hears both.
                retry = over_the_air(inner, seq, ts + 300_000, truncated, retry=True)
                pending.append((ts + 300_000, retry, orig + len(retry) - len(frame)))
            continue
        copy = wrap(kind, inner, len(out))
        out.append((ts, copy, orig + len(copy) - len(frame)))
    write_pcap(dst, LINKTYPE_RADIOTAP if kind == "wlan" else LINKTYPE_ETHERNET, out + pending)
    return len(out)


def normalise(value):
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k not in TUNNEL_FIELDS}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def lines(events):
    return [json.dumps(normalise(e), sort_keys=True) for e in events]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("--config", help="used where a case brings none (default: every event type)")
    ap.add_argument("--kind", choices=["vxlan", "erspan", "double", "wlan"], default="vxlan")
    ap.add_argument("--wlan-retry-every", type=int, default=7,
                    help="wlan: one frame in N heard again as its MAC retry (0: none)")
    ap.add_argument("--keep", help="write the mirrored copies here instead of a temporary directory")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("--show", type=int, default=6, help="differences printed per capture")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    work = prepare(args, "rw-mirror-twin-")
    if isinstance(work, int):
        return work
    checked = failed = skipped = events = 0
    for n, (pcap, case_cfg) in enumerate(inputs_of(args.inputs)):
        cfg = case_cfg or args.config
        twin = os.path.join(work, f"{n:04d}-{os.path.basename(pcap)}.{args.kind}.pcap")
        try:
            frames = mirror_capture(pcap, twin, args.kind, args.wlan_retry_every)
        except (ValueError, struct.error) as err:
            print(f"not mirrored: {pcap}: {err}")
            skipped += 1
            continue
        if not frames:
            skipped += 1
            continue
        a, b = lines(replay(args.relaywatch, pcap, cfg)), lines(replay(args.relaywatch, twin, cfg))
        checked += 1
        events += len(a)
        failed += report_difference(pcap, a, b, ("as recorded", f"mirrored ({args.kind})"),
                                    args.show)
    print(f"{checked} captures mirrored ({args.kind}) and compared, {failed} differ, {skipped} "
          f"skipped (link type or file); {events} events compared")
    return exit_status(checked, failed, "no capture compared")


if __name__ == "__main__":
    sys.exit(main())
