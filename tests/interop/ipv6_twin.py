#!/usr/bin/env python3
"""IPv6 twins: every capture replayed once as IPv4 and once translated to IPv6 must give the
same findings.

The lab and most labelled captures are IPv4, yet a gateway or VPN concentrator carries both
families. This script translates each IPv4 packet of a capture into IPv6 the way a
stateless translator does (RFC 7915 section 4.1: traffic class from the TOS, hop limit from
the TTL, a Fragment header for a fragment, the transport checksum adjusted for the new
pseudo-header), keeping every timestamp, port and payload byte. Private IPv4 addresses
(10/8, 172.16/12, 192.168/16) become fd04::<v4> (inside the default home_networks'
fc00::/7), every other one 2001:db8:4::<v4> (outside it). A SYN's MSS is lowered by 20, as
the same host announces it over IPv6 on the same link. Left out: ICMP (ICMPv6 has other
types) and the protocol numbers IPv6 uses for extension headers. IPv6 packets and non-IP
frames are copied unchanged. A config's IPv4 prefixes, and those of the list files it
names, are mapped the same way for the twin's replay.

The IPv4 side of the comparison is the capture with its IPv4 IDs zeroed and the same
packets left out (`--reference no-id`, the default): IPv6 has no ID, and the relay detector
tells loss before the sensor by it, so that difference is the family's, shown apart with
`--reference original`. Events are compared, keys sorted, with the twin's addresses mapped
back and without what the family changes by definition (FAMILY_FIELDS, flow ids, the stack
signature's version, MSS and quirks). Anything else that differs is a finding a detector
reaches for one family and not the other: the script prints the first differences per
capture and exits 1.

usage: ipv6_twin.py --relaywatch BIN [--config YAML] [--keep DIR] [--reference no-id|original]
                    INPUT...
  INPUT: a pcap/pcapng file or a directory of them (walked; an input.pcap brings the
  config.yaml beside it, as a golden case does). --skip-missing exits 77 when an INPUT does
  not exist.
  --translate-only IN OUT: write the twin of IN to OUT and print its counts.
  --corpus IN OUT: twin every lab run under IN (gw.pcap, truth.json) into OUT/ipv6 and its
  IPv4 reference into OUT/ipv4-no-id, for tests/lab/quality_report.py.
"""
import argparse
import atexit
import ipaddress
import json
import os
import re
import shutil
import struct
import sys
import tempfile

from flow_shape_corpus import replay  # relaywatch -r, one worker, JSON lines

PRIVATE4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
HOME6 = ipaddress.ip_network("fd04::/96")
AWAY6 = ipaddress.ip_network("2001:db8:4::/96")

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ALL_EVENTS = ["alert", "remote_session", "flow", "dns", "tls", "ssh", "relay", "tunnel",
              "shared_line", "typing"]
LINKTYPE_ETHERNET, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 113, 276
LINKTYPE_RAW = {101, 12, 14}

# Fields whose value depends on the address family itself (hashes over the addresses, counts
# that include IP headers), not on what the detectors found.
# `mss`: the twin's SYNs announce 20 bytes less (lower_mss).
FAMILY_FIELDS = {"community_id", "bytes_toserver", "bytes_toclient", "mss"}


STACK_SIGNATURE = re.compile(r"^[46]:\d+:\d+:[^:]*:[^:]*:[^:]*:[^:]*$")


def map4(addr4):
    """The twin's IPv6 address for IPv4 bytes."""
    v4 = ipaddress.IPv4Address(addr4)
    net = HOME6 if any(v4 in n for n in PRIVATE4) else AWAY6
    return (int(net.network_address) | int(v4)).to_bytes(16, "big")


def unmap6(text):
    """The IPv4 address a twin's IPv6 address stands for, or None."""
    try:
        v6 = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    for net in (HOME6, AWAY6):
        if v6 in net:
            return str(ipaddress.IPv4Address(int(v6) & 0xFFFFFFFF))
    return None


def csum_add(a, b):
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def words_sum(b):
    s = 0
    for i in range(0, len(b), 2):
        s = csum_add(s, (b[i] << 8) | (b[i + 1] if i + 1 < len(b) else 0))
    return s


def adjust_checksum(old, removed, added):
    """RFC 1624 eqn. 3: the checksum after `removed` pseudo-header words became `added`."""
    s = csum_add((~old) & 0xFFFF, (~words_sum(removed)) & 0xFFFF)
    s = csum_add(s, words_sum(added))
    return (~s) & 0xFFFF


def lower_mss(tcp):
    """A SYN's MSS as the same host announces it over IPv6 on the same link: 20 bytes less
    (the larger IP header), so the MTU it implies stays the link's."""
    if len(tcp) < 20 or not tcp[13] & 0x02:
        return
    end = min(len(tcp), (tcp[12] >> 4) * 4)
    pos = 20
    while pos < end:
        kind = tcp[pos]
        if kind == 0:
            return
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= end or tcp[pos + 1] < 2:
            return
        if kind == 2 and tcp[pos + 1] == 4 and pos + 4 <= end:
            old = tcp[pos + 2:pos + 4]
            mss = struct.unpack("!H", old)[0]
            new = struct.pack("!H", mss - 20 if mss > 20 else mss)
            tcp[pos + 2:pos + 4] = new
            csum = struct.unpack("!H", tcp[16:18])[0]
            struct.pack_into("!H", tcp, 16, adjust_checksum(csum, old, new))
            return
        pos += tcp[pos + 1]


# Left out of both replays: ICMP (ICMPv6 has other types), and the protocol numbers that are
# extension headers in IPv6 (hop-by-hop, routing, fragment, AH, destination options,
# mobility), which the IPv6 decoder steps over where IPv4 carries them as protocols.
LEFT_OUT = {1, 0, 43, 44, 51, 60, 135}


def translate_ip(ip, to6):
    """One IPv4 packet (as captured, maybe truncated) as IPv6, or (to6 False) as IPv4 with
    its ID zeroed: the reference, as IPv6 has no ID to tell loss before the sensor by.
    None leaves the packet out of both."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 0x0F) * 4
    if ihl < 20 or len(ip) < ihl:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    proto, ttl, tos = ip[9], ip[8], ip[1]
    if proto in LEFT_OUT:
        return None
    ident, frag = struct.unpack("!HH", ip[4:8])
    if not to6:
        v4 = bytearray(ip)
        v4[4:6] = b"\0\0"
        struct.pack_into("!H", v4, 10, adjust_checksum(struct.unpack("!H", ip[10:12])[0], ip[4:6], b"\0\0"))
        return bytes(v4)
    more, offset = bool(frag & 0x2000), frag & 0x1FFF
    src, dst = map4(ip[12:16]), map4(ip[16:20])
    payload = bytearray(ip[ihl:])
    if offset == 0 and proto == 6:
        lower_mss(payload)
    if offset == 0 and proto in (6, 17):
        pos = 16 if proto == 6 else 6
        if len(payload) >= pos + 2:
            old = struct.unpack("!H", payload[pos:pos + 2])[0]
            if not (proto == 17 and old == 0):  # UDP without a checksum stays without
                new = adjust_checksum(old, ip[12:20], src + dst)
                if proto == 17 and new == 0:
                    new = 0xFFFF
                struct.pack_into("!H", payload, pos, new)
    ext = b""
    next_header = proto
    if more or offset:
        ext = struct.pack("!BBHI", proto, 0, (offset << 3) | int(more), ident)
        next_header = 44
    # Total length 0 (a TSO segment captured before the NIC cut it) stays 0: the captured size.
    plen = total - ihl + len(ext) if total >= ihl else 0
    head = struct.pack("!IHBB", (6 << 28) | (tos << 20), plen, next_header, ttl) + src + dst
    return head + ext + bytes(payload)


def translate_frame(linktype, frame, to6):
    """(new frame, original-length change), or None to leave the packet out; IPv6 and
    non-IP frames come back unchanged."""
    ethertype = struct.pack("!H", ETH_IPV6 if to6 else ETH_IPV4)
    if linktype == LINKTYPE_ETHERNET:
        off = 12
        while len(frame) >= off + 2 and struct.unpack("!H", frame[off:off + 2])[0] in (0x8100, 0x88A8):
            off += 4
        if len(frame) < off + 2 or struct.unpack("!H", frame[off:off + 2])[0] != ETH_IPV4:
            return frame, 0
        ip, head = frame[off + 2:], frame[:off] + ethertype
    elif linktype == LINKTYPE_SLL:
        if len(frame) < 16 or struct.unpack("!H", frame[14:16])[0] != ETH_IPV4:
            return frame, 0
        ip, head = frame[16:], frame[:14] + ethertype
    elif linktype == LINKTYPE_SLL2:
        if len(frame) < 20 or struct.unpack("!H", frame[0:2])[0] != ETH_IPV4:
            return frame, 0
        ip, head = frame[20:], ethertype + frame[2:20]
    elif linktype in LINKTYPE_RAW:
        if not frame or frame[0] >> 4 != 4:
            return frame, 0
        ip, head = frame, b""
    else:
        return frame, 0
    out = translate_ip(ip, to6)
    if out is None:
        return None
    return head + out, len(out) - len(ip)


def read_capture(path):
    """Yields ("if", linktype) once per interface, then (ts_ns, ifindex, frame, orig_len)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else 0
    if magic == 0x0A0D0D0A:
        yield from _read_pcapng(data)
        return
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif struct.unpack(">I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
        e, magic = ">", struct.unpack(">I", data[:4])[0]
    else:
        raise ValueError(f"{path}: not a pcap or pcapng file")
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    yield ("if", linktype)
    pos = 24
    while pos + 16 <= len(data):
        s, frac, incl, orig = struct.unpack(e + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        if len(frame) < incl:
            break
        pos += 16 + incl
        yield (s * 1_000_000_000 + frac * (1 if nano else 1000), 0, frame, orig)


def _read_pcapng(data):
    pos, e = 0, "<"
    ifaces = []  # (linktype, ticks per second) per interface of the current section
    while pos + 12 <= len(data):
        btype = struct.unpack(e + "I", data[pos:pos + 4])[0]
        if btype == 0x0A0D0D0A:
            e = "<" if struct.unpack("<I", data[pos + 8:pos + 12])[0] == 0x1A2B3C4D else ">"
            ifaces = []
        blen = struct.unpack(e + "I", data[pos + 4:pos + 8])[0]
        if blen < 12 or pos + blen > len(data):
            break
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack(e + "H", body[0:2])[0]
            tsres = 1_000_000
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack(e + "HH", body[opt:opt + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = body[opt + 4]
                    tsres = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
                opt += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, tsres))
            yield ("if", linktype)
        elif btype == 6 and len(body) >= 20:  # Enhanced Packet Block
            ifid, hi, lo, incl, orig = struct.unpack(e + "IIIII", body[:20])
            if ifid < len(ifaces):
                ticks = (hi << 32) | lo
                ts = ticks * 1_000_000_000 // ifaces[ifid][1]
                yield (ts, ifid, body[20:20 + incl], orig)
        elif btype == 3 and ifaces and len(body) >= 4:  # Simple Packet Block: no time
            orig = struct.unpack(e + "I", body[:4])[0]
            yield (0, 0, body[4:4 + min(orig, len(body) - 4)], orig)
        pos += blen


def translate_capture(src, dst, reference=None):
    """Writes the IPv6 twin of `src` to `dst` and, if asked, the IPv4 reference (IDs zeroed,
    the same packets left out) to `reference`, both classic pcap with ns; returns counts."""
    linktypes, packets = [], []
    counts = {"translated": 0, "unchanged": 0, "left_out": 0}
    for item in read_capture(src):
        if item[0] == "if":
            linktypes.append(item[1])
            continue
        ts, ifid, frame, orig = item
        if linktypes[ifid] != linktypes[0]:
            raise ValueError(f"{src}: interfaces of different link types")
        v6 = translate_frame(linktypes[0], frame, True)
        if v6 is None:
            counts["left_out"] += 1
            continue
        counts["translated" if v6[0] is not frame else "unchanged"] += 1
        v4 = translate_frame(linktypes[0], frame, False)
        packets.append((ts, v6[0], max(orig + v6[1], len(v6[0])), v4[0], orig))
    if not linktypes:
        raise ValueError(f"{src}: no interface")
    write_pcap(dst, linktypes[0], [(p[0], p[1], p[2]) for p in packets])
    if reference:
        write_pcap(reference, linktypes[0], [(p[0], p[3], p[4]) for p in packets])
    return counts


V4_TOKEN = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\w.])")


def map_text(text):
    """Every IPv4 address or prefix in a config or list file, as its twin's."""
    def one(m):
        try:
            v6 = ipaddress.IPv6Address(map4(ipaddress.IPv4Address(m.group(1)).packed))
        except ValueError:
            return m.group(0)
        return f"{v6}/{96 + int(m.group(2))}" if m.group(2) else str(v6)
    return V4_TOKEN.sub(one, text)


def twin_config(config, work, tag):
    """The config for the twin: its IPv4 prefixes mapped, and the list files it names
    (`file: NAME`, relative to it) copied with theirs mapped."""
    if not config:
        return None
    base = os.path.dirname(os.path.abspath(config))
    with open(config) as f:
        text = map_text(f.read())

    def listed(m):
        path = os.path.join(base, m.group(2))
        if not os.path.exists(path):
            return m.group(0)
        out = os.path.join(work, f"{tag}-{os.path.basename(path)}")
        with open(path) as src, open(out, "w") as dst:
            dst.write(map_text(src.read()))
        return m.group(1) + out
    text = re.sub(r"(\bfile:\s*)([^\s,}]+)", listed, text)
    out = os.path.join(work, f"{tag}-config.yaml")
    with open(out, "w") as f:
        f.write(text)
    return out


def normalise(value):
    """The event with the twin's addresses mapped back and the family's own fields gone."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()
                if k not in FAMILY_FIELDS and not k.endswith("flow_id")}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        if STACK_SIGNATURE.match(value):
            # ver:ttl:hops:mss:window:options:quirks; the version, the MSS (20 bytes less
            # over IPv6) and the quirks (IPv4's DF and ID, IPv6's flow label) are the family's.
            f = value.split(":")
            return ":".join(["*"] + f[1:3] + ["*"] + f[4:-1] + ["*"])
        if ":" in value:
            addr, _, plen = value.partition("/")
            back = unmap6(addr)
            if back is not None:
                if plen.isdigit() and int(plen) >= 96:
                    return f"{back}/{int(plen) - 96}"
                return back + value[len(addr):]
            # "addr:port" or "[addr]:port" forms inside strings (a CONNECT target, a list).
            if value.startswith("[") and "]" in value:
                back = unmap6(value[1:value.index("]")])
                if back is not None:
                    return back + value[value.index("]") + 1:]
        return value
    return value


def lines(events):
    return [json.dumps(normalise(e), sort_keys=True) for e in events]


def inputs_of(paths):
    """(capture, its own config or None): a golden case's input.pcap brings the config.yaml
    beside it."""
    def with_config(path):
        cfg = os.path.join(os.path.dirname(path), "config.yaml")
        own = os.path.basename(path) == "input.pcap" and os.path.exists(cfg)
        return path, cfg if own else None

    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith((".pcap", ".pcapng", ".cap")):
                        yield with_config(os.path.join(root, name))
        else:
            yield with_config(p)


def write_pcap(path, linktype, packets):
    """A classic nanosecond pcap of (ts_ns, frame, original length) packets."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
        for ts, frame, orig in packets:
            f.write(struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000, len(frame), orig))
            f.write(frame)


def all_events_config(work):
    """A config writing every event type, so that flow, TLS, SSH, DNS and relay records are
    compared too."""
    path = os.path.join(work, "all-events.yaml")
    with open(path, "w") as f:
        f.write("outputs:\n  jsonl:\n    events: [" + ", ".join(ALL_EVENTS) + "]\n")
    return path


def report_difference(pcap, a, b, names, show):
    """Prints how the normalised events `a` and `b` of one capture differ (names: what each
    side is; the order of events that one packet time emits together does not count);
    returns whether they do."""
    if sorted(a) == sorted(b):
        return False
    only_a = [x for x in a if x not in set(b)]
    only_b = [x for x in b if x not in set(a)]
    print(f"DIFFER {pcap}: {len(a)} events {names[0]}, {len(b)} {names[1]}; "
          f"{len(only_a)} only {names[0]}, {len(only_b)} only {names[1]}")
    for side, only in zip(names, (only_a, only_b)):
        for x in only[:show]:
            print(f"  only {side}: {x[:600]}")
    return True


def prepare(args, prefix):
    """The work directory (args.keep or a new temporary one), with args.config set; or the
    exit status when an input is missing (77, a skip, with --skip-missing)."""
    missing = [p for p in args.inputs if not os.path.exists(p)]
    if missing:
        print(f"SKIP: not found: {' '.join(missing)}")
        return 77 if args.skip_missing else 2
    work = args.keep or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(work, exist_ok=True)
    if not args.keep:  # ctest runs these on every build: leave nothing in /tmp
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    args.config = args.config or all_events_config(work)
    return work


def exit_status(checked, failed, none_checked):
    """0 when captures were compared and none differed."""
    if checked == 0:
        print(f"FAIL: {none_checked}")
        return 1
    if failed:
        print("(--keep DIR keeps the copies to look at; without it they are removed)")
    return 1 if failed else 0


def twin_corpus(src, dst):
    """Every run of a lab corpus (quality_runs.sh's RUN/ or the shared lab's SET/SCENARIO/)
    twinned: OUT/ipv6/<run> with gw.pcap as IPv6 and truth.json's addresses mapped, and
    OUT/ipv4-no-id/<run> with the IPv4 reference, for tests/lab/quality_report.py."""
    runs = 0
    for root, _dirs, files in os.walk(src):
        if "truth.json" not in files or "gw.pcap" not in files:
            continue
        rel = os.path.relpath(root, src)
        out6, out4 = os.path.join(dst, "ipv6", rel), os.path.join(dst, "ipv4-no-id", rel)
        os.makedirs(out6, exist_ok=True)
        os.makedirs(out4, exist_ok=True)
        translate_capture(os.path.join(root, "gw.pcap"), os.path.join(out6, "gw.pcap"),
                          os.path.join(out4, "gw.pcap"))
        with open(os.path.join(root, "truth.json")) as f:
            truth = f.read()
        with open(os.path.join(out6, "truth.json"), "w") as f:
            f.write(map_text(truth))
        with open(os.path.join(out4, "truth.json"), "w") as f:
            f.write(truth)
        runs += 1
    print(f"{runs} runs twinned into {dst}/ipv6 and {dst}/ipv4-no-id")
    return 0 if runs else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relaywatch")
    ap.add_argument("--config", help="used where a case brings none (default: the built-in "
                    "configuration writing every event type)")
    ap.add_argument("--keep", help="write the twins here instead of a temporary directory")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("--show", type=int, default=6, help="differences printed per capture")
    ap.add_argument("--reference", choices=["no-id", "original"], default="no-id",
                    help="what the twin is compared with: the capture with its IPv4 IDs "
                    "zeroed (default; what IPv6 carries), or as recorded (shows what the IPv4 "
                    "ID adds: loss before the sensor)")
    ap.add_argument("--translate-only", nargs=2, metavar=("IN", "OUT"))
    ap.add_argument("--corpus", nargs=2, metavar=("IN", "OUT"),
                    help="twin a lab corpus (run directories with gw.pcap and truth.json) "
                    "into OUT/ipv6 and its IPv4 reference into OUT/ipv4-no-id, truth mapped")
    ap.add_argument("inputs", nargs="*")
    args = ap.parse_args()
    if args.translate_only:
        print(json.dumps(translate_capture(*args.translate_only)))
        return 0
    if args.corpus:
        return twin_corpus(*args.corpus)
    if not args.relaywatch or not args.inputs:
        ap.error("--relaywatch and at least one INPUT are needed")
    work = prepare(args, "rw-ipv6-twin-")
    if isinstance(work, int):
        return work
    checked = failed = 0
    totals = {"translated": 0, "unchanged": 0, "left_out": 0, "events": 0, "alerts": 0}
    for n, (pcap, case_cfg) in enumerate(inputs_of(args.inputs)):
        cfg = case_cfg or args.config
        twin = os.path.join(work, f"{n:04d}-{os.path.basename(pcap)}.v6.pcap")
        ref = os.path.join(work, f"{n:04d}-{os.path.basename(pcap)}.v4.pcap")
        try:
            counts = translate_capture(pcap, twin, ref)
        except ValueError as err:
            print(f"not translated: {err}")
            continue
        if counts["translated"] == 0:
            continue  # nothing IPv4 in it: the twin would be the capture itself
        for k, v in counts.items():
            totals[k] += v
        cfg6 = twin_config(cfg, work, f"{n:04d}")
        first = ref if args.reference == "no-id" else pcap
        a, b = lines(replay(args.relaywatch, first, cfg)), lines(replay(args.relaywatch, twin, cfg6))
        checked += 1
        totals["events"] += len(a)
        totals["alerts"] += sum(1 for x in a if '"event_type": "alert"' in x)
        failed += report_difference(pcap, a, b, ("in IPv4", "in IPv6"), args.show)
    print(f"{checked} captures with IPv4 checked, {failed} differ; {totals['translated']} packets "
          f"translated, {totals['left_out']} left out (ICMP, unparsable), {totals['events']} events "
          f"({totals['alerts']} alerts) compared")
    return exit_status(checked, failed, "no capture held IPv4 traffic")


if __name__ == "__main__":
    sys.exit(main())
