#!/usr/bin/env python3
"""Interop check: relaywatch's `dns` records against tshark's DNS dissector.

For a handful of shared captures with DNS and mDNS, every DNS response tshark decodes on
UDP/TCP port 53 or UDP 5353 must have a relaywatch `dns` event at the same packet time with
the same transaction id, the same query name, and the same answer section (count, and for
each answer its name, type and, for A/AAAA/CNAME/PTR/NS, its data), in order.

Responses tshark itself marks malformed, and responses it reassembled from IP fragments
(relaywatch does not reassemble IP), are listed as exempt, not failed. Names are compared in
relaywatch's presentation form (ASCII lower-cased, bytes outside 0x20-0x7e as \\DDD).

Prints one line per capture and a closing "N passed, M failed" line. Exit 0 when nothing
failed, 77 when the corpus or tshark is absent (ctest reports a skip), 1 otherwise.
"""
import argparse
import datetime
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

# Captures with unicast DNS over UDP (plain, EDNS, NSID, NXDOMAIN, tunnelling-like names,
# trailing bytes) and mDNS. Missing ones are skipped; all missing means skip.
DEFAULT_CAPTURES = [
    "negatives/dns.pcap",
    "negatives/dns-google-nsid.pcapng",
    "negatives/bad-dns-traffic.pcap",
    "negatives/dns-exf.pcap",
    "negatives/netflix.pcap",
    "negatives/signal.pcap",
    "negatives/whatsapp_login_chat.pcap",
    "negatives/telegram.pcap",
    "negatives/anyconnect-vpn.pcap",
]

CONFIG = """\
outputs:
  jsonl:
    events: [dns]
detectors:
  dns:
    max_answers: 256
"""

# tshark field holding the rdata we compare, per record type.
RDATA_FIELDS = {"1": "dns.a", "28": "dns.aaaa", "5": "dns.cname", "12": "dns.ptr.domain_name",
                "2": "dns.ns"}
TYPE_NAMES = {"1": "A", "2": "NS", "5": "CNAME", "6": "SOA", "12": "PTR", "13": "HINFO",
              "15": "MX", "16": "TXT", "28": "AAAA", "33": "SRV", "41": "OPT", "47": "NSEC",
              "64": "SVCB", "65": "HTTPS", "255": "ANY"}


class Pairs(list):
    """A JSON object as its ordered (key, value) pairs: tshark repeats keys."""

    def get(self, key, default=None):
        for k, v in self:
            if k == key:
                return v
        return default

    def all(self, key):
        return [v for k, v in self if k == key]


def presentation(name):
    """tshark's name text -> relaywatch's presentation form."""
    if name in ("<Root>", ""):
        return "."
    out = []
    for b in name.encode("utf-8", "surrogateescape"):
        if b < 0x20 or b > 0x7e:
            out.append("\\%03d" % b)
        elif b == 0x5c:
            out.append("\\\\")
        else:
            c = chr(b)
            out.append(c.lower() if "A" <= c <= "Z" else c)
    return "".join(out)[:256]


def epoch_us(text):
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


def ts_us(text):
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def tshark_responses(tshark, pcap):
    """Yields dicts for each DNS/mDNS response PDU tshark decodes on ports 53/5353."""
    proc = subprocess.run([tshark, "-r", pcap, "-Y", "dns.flags.response == 1", "-T", "json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    packets = json.loads(proc.stdout.decode("utf-8", "surrogateescape") or "[]",
                         object_pairs_hook=Pairs)
    for packet in packets:
        layers = packet.get("_source").get("layers")
        frame = layers.get("frame")
        t = epoch_us(frame.get("frame.time_epoch"))
        ports = set()
        for l4, keys in (("udp", ("udp.srcport", "udp.dstport")),
                         ("tcp", ("tcp.srcport", "tcp.dstport"))):
            for layer in layers.all(l4):
                ports.update(int(layer.get(k)) for k in keys if layer.get(k) is not None)
        fragmented = any(layer.get("ip.fragments") is not None for layer in layers.all("ip")) \
            or layers.get("ip.fragments") is not None
        malformed = layers.get("_ws.malformed") is not None
        pdus = layers.all("dns") + layers.all("mdns")
        for pdu in pdus:
            if pdu.get("dns.flags_tree", Pairs()).get("dns.flags.response") != "1":
                continue
            queries = pdu.get("Queries", Pairs())
            answers = []
            for _, rr in pdu.get("Answers", Pairs()):
                rtype = rr.get("dns.resp.type")
                field = RDATA_FIELDS.get(rtype)
                owner = rr.get("dns.resp.name")
                if owner is None:
                    # tshark splits an SRV owner into _service, _proto and the rest.
                    owner = ".".join(rr.get(k) for k in
                                     ("dns.srv.service", "dns.srv.proto", "dns.srv.name")
                                     if rr.get(k) is not None)
                answers.append({
                    "rrname": presentation(owner),
                    "rrtype": TYPE_NAMES.get(rtype, "TYPE" + str(rtype)),
                    "rdata": rr.get(field) if field else None,
                    "ttl": rr.get("dns.resp.ttl"),
                })
            rrname = None
            if queries:
                rrname = presentation(queries[0][1].get("dns.qry.name", ""))
            elif answers:
                rrname = answers[0]["rrname"]
            yield {
                "frame": frame.get("frame.number"),
                "ts": t,
                "id": int(pdu.get("dns.id"), 16),
                "rrname": rrname,
                "ancount": int(pdu.get("dns.count.answers", "0")),
                "answers": answers,
                "ports": ports,
                "exempt": "malformed" if malformed else "ip fragments" if fragmented else None,
            }


# ---------------------------------------------------------------------------------------
# A synthetic capture for what the shared corpus lacks: DNS over TCP (two pipelined queries in
# one segment, a response split over segments, two responses in one segment) and DNS over
# IPv6 with a CNAME chain. Written here so the check needs no extra files.

def _dns_name(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"


def _dns(msg_id, flags, qname, qtype, answers=()):
    out = struct.pack("!6H", msg_id, flags, 1, len(answers), 0, 0)
    out += _dns_name(qname) + struct.pack("!HH", qtype, 1)
    for owner, rtype, ttl, rdata in answers:
        out += owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return out


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def _ipv4(src, dst, proto, payload):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                         bytes(src), bytes(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return b"\x00\x00\x5e\x00\x53\x01\x00\x00\x5e\x00\x53\x02\x08\x00" + header + payload


def _udp6(src, dst, sport, dport, payload):
    # RFC 8200 8.1: the UDP checksum is mandatory over IPv6.
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    return udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xffff) + udp[8:]


def _ipv6(src, dst, proto, payload):
    header = struct.pack("!IHBB16s16s", 0x60000000, len(payload), proto, 64, src, dst)
    return b"\x00\x00\x5e\x00\x53\x01\x00\x00\x5e\x00\x53\x02\x86\xdd" + header + payload


def write_synthetic_pcap(path):
    client, server = [10, 9, 0, 5], [10, 9, 0, 53]
    seq = {0: 1000, 1: 5000}
    frames = []

    def tcp(from_client, flags, payload=b""):
        d = 0 if from_client else 1
        sport, dport = (40001, 53) if from_client else (53, 40001)
        ack = 0 if flags == 0x02 else seq[1 - d]
        seg = struct.pack("!HHIIBBHHH", sport, dport, seq[d], ack, 0x50, flags, 65535, 0,
                          0) + payload
        seq[d] += len(payload) + (1 if flags & 0x02 else 0)
        src, dst = (client, server) if from_client else (server, client)
        frames.append(_ipv4(src, dst, 6, seg))

    def framed(msg):
        return struct.pack("!H", len(msg)) + msg

    ptr = b"\xc0\x0c"
    tcp(True, 0x02)
    tcp(False, 0x12)
    tcp(True, 0x10)
    tcp(True, 0x18, framed(_dns(0x0101, 0x0100, "tcp-one.example", 1)) +
        framed(_dns(0x0202, 0x0100, "tcp-two.example", 28)))
    r1 = framed(_dns(0x0101, 0x8180, "tcp-one.example", 1,
                     [(ptr, 1, 60, bytes([192, 0, 2, i])) for i in range(1, 40)]))
    r2 = framed(_dns(0x0202, 0x8180, "tcp-two.example", 28,
                     [(ptr, 28, 60, bytes.fromhex("20010db8000000000000000000000002"))]))
    tcp(False, 0x10, r1[:7])
    tcp(False, 0x18, r1[7:300])
    tcp(False, 0x18, r1[300:] + r2)
    tcp(True, 0x11)
    tcp(False, 0x11)

    c6 = bytes.fromhex("20010db8000000000000000000000005")
    s6 = bytes.fromhex("20010db8000000000000000000000053")
    q = _dns(0x0303, 0x0100, "v6.Example.org", 28)
    cname_target = _dns_name("edge.cdn.example.net")
    r = _dns(0x0303, 0x8180, "v6.Example.org", 28,
             [(ptr, 5, 300, cname_target),
              (b"\xc0" + bytes([12 + len(_dns_name("v6.example.org")) + 4 + 12]), 28, 20,
               bytes.fromhex("20010db8000000000000000000000006"))])
    frames.append(_ipv6(c6, s6, 17, _udp6(c6, s6, 40002, 53, q)))
    frames.append(_ipv6(s6, c6, 17, _udp6(s6, c6, 53, 40002, r)))

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000, i * 1000, len(frame), len(frame)) + frame)


def relaywatch_events(binary, pcap, workdir):
    cfg = os.path.join(workdir, "dns.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    out = os.path.join(workdir, "out.jsonl")
    if os.path.exists(out):
        os.unlink(out)
    proc = subprocess.run([binary, "-c", cfg, "-r", pcap, "--jsonl", out, "--workers", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"relaywatch exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    events = []
    with open(out) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event_type") == "dns":
                events.append(e)
    return events


def compare(resp, event):
    """Differences between a tshark response and a relaywatch event, as text ('' = same)."""
    d = event["dns"]
    problems = []
    if d.get("rrname") != resp["rrname"]:
        problems.append(f"rrname {d.get('rrname')!r} != tshark {resp['rrname']!r}")
    got = d.get("answers", [])
    if d.get("answers_total", len(got)) != resp["ancount"]:
        problems.append(f"answer count {d.get('answers_total', len(got))} != {resp['ancount']}")
    for i, (a, b) in enumerate(zip(got, resp["answers"])):
        if a.get("rrname") != b["rrname"] or a.get("rrtype") != b["rrtype"]:
            problems.append(f"answer {i}: {a.get('rrname')} {a.get('rrtype')} != "
                            f"{b['rrname']} {b['rrtype']}")
        elif b["rdata"] is not None:
            want = b["rdata"] if b["rrtype"] in ("A", "AAAA") else presentation(b["rdata"])
            if a.get("rdata") != want:
                problems.append(f"answer {i} rdata {a.get('rdata')!r} != {want!r}")
        if b["ttl"] is not None and str(a.get("ttl")) != b["ttl"]:
            problems.append(f"answer {i} ttl {a.get('ttl')} != {b['ttl']}")
    return "; ".join(problems)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--pcaps", default=os.path.join(here, "..", "..", "..", "shared", "pcaps"))
    parser.add_argument("--tshark", default=shutil.which("tshark"))
    parser.add_argument("captures", nargs="*", help="paths relative to --pcaps")
    args = parser.parse_args()

    if not args.tshark:
        print("SKIP: tshark not found")
        return 77
    captures = [c for c in (args.captures or DEFAULT_CAPTURES)
                if os.path.isfile(os.path.join(args.pcaps, c))]
    if not captures:
        print(f"SKIP: none of the captures found under {args.pcaps}")
        return 77

    passed = failed = exempt = 0
    with tempfile.TemporaryDirectory() as work:
        synthetic = os.path.join(work, "synthetic_tcp_ipv6.pcap")
        write_synthetic_pcap(synthetic)
        for capture in captures + [synthetic]:
            pcap = os.path.join(args.pcaps, capture)
            try:
                events = relaywatch_events(args.relaywatch, pcap, work)
            except RuntimeError as err:
                print(f"FAIL {capture}: {err}")
                failed += 1
                continue
            by_key = {}
            for e in events:
                by_key.setdefault((ts_us(e["timestamp"]), e["dns"]["id"]), []).append(e)
            ok = bad = skipped = 0
            for resp in tshark_responses(args.tshark, pcap):
                if not resp["ports"] & {53, 5353}:
                    continue  # tshark decoded DNS on another port; relaywatch is port-based
                if resp["exempt"]:
                    skipped += 1
                    print(f"  exempt {capture} frame {resp['frame']}: {resp['exempt']}")
                    continue
                candidates = by_key.get((resp["ts"], resp["id"]), [])
                problems = None
                for i, e in enumerate(candidates):
                    problems = compare(resp, e)
                    if not problems:
                        del candidates[i]
                        break
                if candidates is not None and problems == "":
                    ok += 1
                else:
                    bad += 1
                    why = problems or "no dns event with this time and id"
                    print(f"  FAIL {capture} frame {resp['frame']} id {resp['id']} "
                          f"{resp['rrname']}: {why}")
            extra = sum(len(v) for v in by_key.values())
            print(f"{capture}: {ok} responses matched, {bad} failed, {skipped} exempt, "
                  f"{extra} relaywatch events without a tshark response")
            passed += ok
            failed += bad
            exempt += skipped
    print(f"{passed} passed, {failed} failed ({exempt} exempt)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
