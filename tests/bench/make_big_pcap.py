#!/usr/bin/env python3
"""Writes a large, deterministic, synthetic Ethernet pcap for the throughput bench.

The traffic is a mix that looks like an enterprise uplink: mostly HTTPS-like TCP
(handshake, TLS ClientHello with SNI, request/response rounds with bulk downloads and a
few uploads, FIN or RST), some plain HTTP, chatty small-message TCP, SSH (interactive and
scp-like bulk), RDP and VNC sessions with their real openings, DNS over UDP, QUIC-like
UDP/443, RTP-like calls, about 15% IPv6 flows and about 25% of flows 802.1Q-tagged. Frames are 60..1518 bytes (short frames are
padded to 60 as on the wire), IPv4 header, TCP and UDP checksums are correct, TCP sequence
and acknowledgement numbers are consistent, and packets are written in time order.

The same --packets and --seed always give the same bytes (random.Random(seed) only; no
dict/set iteration order or wall clock is involved). Standard library only.

Usage: make_big_pcap.py --out FILE [--packets N] [--seed S] [--concurrency C]
"""

import argparse
import bisect
import heapq
import itertools
import math
import os
import random
import struct
import sys
import time

M32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PA = PSH | ACK

PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_MAGIC_NSEC = 0xA1B23C4D
DLT_EN10MB = 1
REC = struct.Struct("<IIII")
IP4 = struct.Struct(">BBHHHBBH4s4s")
IP6 = struct.Struct(">IHBB16s16s")
TCP = struct.Struct(">HHIIHHHH")
TSOPT = struct.Struct(">HHII")  # NOP, NOP, kind 8 len 10, TSval, TSecr
UDP = struct.Struct(">HHHH")
ZPAD = bytes(60)

START_NS = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z

R = random.Random(1)  # reseeded in main()


def csum_bytes(b):
    """Unfolded one's-complement sum of `b` as big-endian 16-bit words (mod 0xffff)."""
    if len(b) & 1:
        b += b"\0"
    return int.from_bytes(b, "big") % 0xFFFF


def addr_sum(a):
    return sum(struct.unpack(">%dH" % (len(a) // 2), a))


class PayloadPool:
    """Random bytes with prefix sums, so any slice's checksum costs O(1)."""

    SIZE = (1 << 20) + 4096

    def __init__(self, rng):
        self.buf = rng.randbytes(self.SIZE)
        words = struct.unpack(">%dH" % (self.SIZE // 2), self.buf)
        self.w = list(itertools.accumulate(words, initial=0))

    def take(self, n):
        off = R.getrandbits(19) << 1  # even, below 2^20, and off + 1518 fits
        w = self.w
        if n & 1:
            return self.buf[off:off + n], w[(off + n - 1) >> 1] - w[off >> 1] + (self.buf[off + n - 1] << 8)
        return self.buf[off:off + n], w[(off + n) >> 1] - w[off >> 1]

    def raw(self, n):
        off = R.getrandbits(19) << 1
        return self.buf[off:off + n]


PAY = None  # PayloadPool, built in main()


class Dir:
    """Header constants of one direction of one flow."""

    __slots__ = ("eth", "v6", "src", "dst", "sport", "dport", "proto", "ttl", "ipid",
                 "ip_sum", "pseudo", "v6w0", "win", "tsoff")

    def __init__(self, src_mac, dst_mac, vlan, src, dst, sport, dport, proto, ttl, win):
        self.v6 = len(src) == 16
        ethertype = b"\x86\xdd" if self.v6 else b"\x08\x00"
        tag = struct.pack(">HH", 0x8100, vlan) if vlan else b""
        self.eth = dst_mac + src_mac + tag + ethertype
        self.src, self.dst = src, dst
        self.sport, self.dport, self.proto, self.ttl, self.win = sport, dport, proto, ttl, win
        self.ipid = R.getrandbits(16)
        asum = addr_sum(src) + addr_sum(dst)
        self.ip_sum = 0x4500 + 0x4000 + ((ttl << 8) | proto) + asum
        self.pseudo = asum + proto + sport + dport
        self.v6w0 = 0x60000000 | R.getrandbits(20)
        self.tsoff = R.getrandbits(32)

    def ip(self, l4len):
        if self.v6:
            return IP6.pack(self.v6w0, l4len, self.proto, self.ttl, self.src, self.dst)
        total = 20 + l4len
        self.ipid = ipid = (self.ipid + 1) & 0xFFFF
        return IP4.pack(0x45, 0, total, ipid, 0x4000, self.ttl, self.proto,
                        0xFFFE - (self.ip_sum + total + ipid - 1) % 0xFFFF, self.src, self.dst)


def tcp_frame(d, flags, seq, ack, opts, osum, payload, psum):
    hl = 20 + len(opts)
    tl = hl + len(payload)
    offfl = (hl << 10) | flags
    s = (d.pseudo + tl + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + offfl +
         d.win + osum + psum)
    f = (d.eth + d.ip(tl) + TCP.pack(d.sport, d.dport, seq, ack, offfl, d.win, 0xFFFE - (s - 1) % 0xFFFF, 0) +
         opts + payload)
    n = len(f)
    return f if n >= 60 else f + ZPAD[n:]


def udp_frame(d, payload, psum):
    ul = 8 + len(payload)
    s = d.pseudo + ul + ul + psum
    f = d.eth + d.ip(ul) + UDP.pack(d.sport, d.dport, ul, 0xFFFE - (s - 1) % 0xFFFF or 0xFFFF) + payload
    n = len(f)
    return f if n >= 60 else f + ZPAD[n:]


# ---------------------------------------------------------------------------------------
# Hosts


def mac(prefix, i):
    return bytes([prefix, 0x16, 0x3E, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


GW_MAC = bytes.fromhex("00005e000101")
EXT4_PREFIXES = [(142, 250), (172, 217), (151, 101), (104, 16), (13, 107), (20, 190), (52, 84),
                 (34, 120), (185, 199), (93, 184), (23, 45), (3, 33), (31, 13), (157, 240),
                 (199, 232), (64, 233), (216, 58), (40, 126), (108, 177), (198, 41)]
EXT6_PREFIXES = ["2a0014504001", "260647000000", "2a03288020f1", "26200100e000", "200148604860",
                 "2a0498c00001"]


class Hosts:
    def __init__(self):
        self.int4 = [bytes([10, 1 + i // 4000, (i // 250) % 16 + 16, i % 250 + 2]) for i in range(6000)]
        self.int6 = [bytes.fromhex("fd12345678900001") + R.getrandbits(64).to_bytes(8, "big")
                     for _ in range(2000)]
        self.ext4 = [bytes([a, b, R.randrange(256), R.randrange(1, 255)])
                     for a, b in (R.choice(EXT4_PREFIXES) for _ in range(8000))]
        self.ext6 = [bytes.fromhex(R.choice(EXT6_PREFIXES)) + R.getrandbits(16).to_bytes(2, "big") +
                     R.getrandbits(64).to_bytes(8, "big") for _ in range(3000)]
        self.next_port = {}

    def ephemeral(self, addr):
        p = self.next_port.get(addr)
        if p is None:
            p = R.randrange(32768, 60999)
        p = 32768 if p >= 60999 else p + 1 + R.randrange(3)
        self.next_port[addr] = p
        return p

    def pick(self, v6, internal):
        if v6:
            pool = self.int6 if internal else self.ext6
        else:
            pool = self.int4 if internal else self.ext4
        i = R.randrange(len(pool))
        return pool[i], mac(0x02 if internal else 0x06, i) if internal else GW_MAC


def endpoints(hosts, proto, dport, v6, client_internal, server_internal, win_c, win_s):
    """Client and server Dir objects for one new flow."""
    caddr, cmac = hosts.pick(v6, client_internal)
    saddr, smac = hosts.pick(v6, server_internal)
    if caddr == saddr:
        saddr, smac = hosts.pick(v6, server_internal)
    vlan = R.choice((10, 20, 30, 100, 200)) if R.random() < 0.25 else 0
    sport = hosts.ephemeral(caddr)
    windows_client = R.random() < 0.35
    cttl = (128 if windows_client else 64) - (0 if client_internal else R.randrange(6, 20))
    sttl = 64 - (0 if server_internal else R.randrange(6, 20))
    c = Dir(cmac, smac, vlan, caddr, saddr, sport, dport, proto, cttl, win_c)
    s = Dir(smac, cmac, vlan, saddr, caddr, dport, sport, proto, sttl, win_s)
    return c, s, windows_client


def lognormal_clip(median, sigma, lo, hi):
    return min(hi, max(lo, median * math.exp(R.gauss(0.0, sigma))))


# ---------------------------------------------------------------------------------------
# TCP


class Tcp:
    """One TCP connection; pkt() returns (gap_ns, frame) for the scheduler."""

    def __init__(self, c, s, rtt_ns, use_ts, mss, rate_bps):
        self.c, self.s = c, s
        self.cseq, self.sseq = R.getrandbits(32), R.getrandbits(32)
        self.t = 0
        self.rtt = rtt_ns
        self.use_ts = use_ts
        self.mss = mss - 12 if use_ts else mss
        self.rate = rate_bps
        self.seg_gap = max(1000, int((self.mss + 66) * 8 * 1e9 / rate_bps))
        self.rtt_ms = rtt_ns // 1_000_000
        # Receivers ACK every segment (quick-ACK) or every second one (delayed ACK).
        self.ack_every = 1 if R.random() < 0.7 else 2

    def pkt(self, gap, from_client, flags, payload=b"", psum=0, opts=None, osum=0):
        self.t += gap
        if from_client:
            d, o, seq, ack = self.c, self.s, self.cseq, self.sseq
            self.cseq = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & M32
        else:
            d, o, seq, ack = self.s, self.c, self.sseq, self.cseq
            self.sseq = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & M32
        if not flags & ACK:
            ack = 0
        if opts is None:
            if self.use_ts:
                ms = self.t // 1_000_000
                tsval = (d.tsoff + ms) & M32
                tsecr = (o.tsoff + ms - self.rtt_ms) & M32
                opts = TSOPT.pack(0x0101, 0x080A, tsval, tsecr)
                osum = 0x0101 + 0x080A + (tsval >> 16) + (tsval & 0xFFFF) + (tsecr >> 16) + (tsecr & 0xFFFF)
            else:
                opts = b""
        return gap, tcp_frame(d, flags, seq, ack, opts, osum, payload, psum)

    def syn_opts(self, from_client, t):
        """SYN options as Linux (MSS, SACK, TS, WS) or Windows (no TS) sends them at time t."""
        d, o = (self.c, self.s) if from_client else (self.s, self.c)
        mss = struct.pack(">BBH", 2, 4, 1460)
        if self.use_ts:
            ms = t // 1_000_000
            tsecr = 0 if from_client else (o.tsoff + ms - self.rtt_ms) & M32
            opts = mss + b"\x04\x02" + struct.pack(">BBII", 8, 10, (d.tsoff + ms) & M32, tsecr) + b"\x01\x03\x03\x07"
        else:
            opts = mss + b"\x01\x03\x03\x08\x01\x01\x04\x02"
        return opts, csum_bytes(opts)

    def handshake(self):
        o, s = self.syn_opts(True, self.t)
        yield self.pkt(0, True, SYN, opts=o, osum=s)
        o, s = self.syn_opts(False, self.t + self.rtt)
        yield self.pkt(self.rtt, False, SYN | ACK, opts=o, osum=s)
        yield self.pkt(R.randrange(30_000, 120_000), True, ACK)

    def message(self, gap, from_client, data):
        """Sends `data` (bytes) in MSS segments, each ACKed per the flow's ack_every."""
        mss = self.mss
        n = len(data)
        i = 0
        seg = 0
        while i < n:
            chunk = data[i:i + mss]
            i += len(chunk)
            yield self.pkt(gap, from_client, PA if i >= n else ACK, chunk, csum_bytes(chunk))
            seg += 1
            gap = self.seg_gap
            if seg % self.ack_every == 0 or i >= n:
                ack_gap = R.randrange(20_000, 200_000)
                yield self.pkt(ack_gap, not from_client, ACK)
                gap = max(1000, gap - ack_gap)

    def bulk(self, gap, from_client, nbytes, head=b""):
        """Sends `head` then random bytes, `nbytes` in total, at the flow's rate."""
        mss = self.mss
        take = PAY.take
        pkt = self.pkt
        seg_gap = self.seg_gap
        ack_every = self.ack_every
        sent = 0
        seg = 0
        if head:
            first = min(nbytes, mss)
            body = head[:first] + PAY.raw(max(0, first - len(head)))
            yield pkt(gap, from_client, PA if first >= nbytes else ACK, body, csum_bytes(body))
            sent = first
            seg = 1
            gap = seg_gap
        while sent < nbytes:
            n = nbytes - sent
            if n > mss:
                n = mss
            payload, ps = take(n)
            sent += n
            yield pkt(gap, from_client, PA if sent >= nbytes else ACK, payload, ps)
            seg += 1
            gap = seg_gap
            if seg % ack_every == 0 or sent >= nbytes:
                ack_gap = 20_000 + (seg & 0xFF) * 300
                yield pkt(ack_gap, not from_client, ACK)
                gap = seg_gap - ack_gap if seg_gap > ack_gap + 1000 else 1000

    def close(self, gap):
        r = R.random()
        if r < 0.06:
            yield self.pkt(gap, r < 0.03, RST | ACK)
            return
        first = r < 0.6  # the client closes first
        yield self.pkt(gap, first, FIN | ACK)
        yield self.pkt(self.rtt, not first, FIN | ACK)
        yield self.pkt(R.randrange(20_000, 80_000), first, ACK)


def new_tcp(hosts, dport, v6, client_internal=True, server_internal=False):
    c, s, windows = endpoints(hosts, 6, dport, v6, client_internal, server_internal,
                              R.choice((502, 501, 64240, 2052, 1026)), R.choice((501, 509, 65535, 1040)))
    rtt = int(lognormal_clip(18e6, 0.9, 0.3e6, 300e6))
    rate = lognormal_clip(12e6, 1.1, 1e6, 900e6)
    return Tcp(c, s, rtt, not windows, 1460, rate)


# ---------------------------------------------------------------------------------------
# Protocol openings


SNI_NAMES = [b"www.google.com", b"outlook.office365.com", b"teams.microsoft.com", b"github.com",
             b"api.github.com", b"slack.com", b"edge.slack.com", b"www.youtube.com",
             b"rr3---sn-4g5e6nz7.googlevideo.com", b"update.googleapis.com", b"login.microsoftonline.com",
             b"cdn.jsdelivr.net", b"fonts.gstatic.com", b"www.wikipedia.org", b"s3.amazonaws.com",
             b"d1.awsstatic.com", b"zoom.us", b"api.stripe.com", b"www.bbc.co.uk", b"deb.debian.org",
             b"security.debian.org", b"registry.npmjs.org", b"pypi.org", b"files.pythonhosted.org",
             b"clients4.google.com", b"graph.microsoft.com", b"onedrive.live.com", b"www.linkedin.com",
             b"static.xx.fbcdn.net", b"www.dropbox.com"]


def tls_client_hello(sni, target_len):
    def ext(t, body):
        return struct.pack(">HH", t, len(body)) + body

    exts = b""
    if sni:
        exts += ext(0, struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni)
    exts += ext(23, b"") + ext(0xFF01, b"\x00")
    exts += ext(10, struct.pack(">H", 8) + bytes.fromhex("001d00170018001e"))
    exts += ext(11, b"\x01\x00")
    exts += ext(35, b"")
    exts += ext(16, bytes.fromhex("000c02683208687474702f312e31"))
    exts += ext(13, struct.pack(">H", 16) + bytes.fromhex("04030804040105030805050108060601"))
    exts += ext(43, bytes.fromhex("0403040303"))
    exts += ext(45, b"\x01\x01")
    exts += ext(51, struct.pack(">HHH", 36, 0x001D, 32) + PAY.raw(32))
    suites = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    head_len = 4 + 2 + 32 + 1 + 32 + 2 + len(suites) + 2 + 2 + len(exts)
    pad = target_len - 5 - head_len - 4
    if pad >= 0:
        exts += ext(21, bytes(pad))
    body = (b"\x03\x03" + PAY.raw(32) + b"\x20" + PAY.raw(32) + struct.pack(">H", len(suites)) + suites +
            b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def tls_server_hello():
    exts = bytes.fromhex("002b00020304") + struct.pack(">HHHH", 51, 36, 0x001D, 32) + PAY.raw(32)
    body = b"\x03\x03" + PAY.raw(32) + b"\x20" + PAY.raw(32) + b"\x13\x01\x00" + struct.pack(">H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs + bytes.fromhex("140303000101")


def tls_record(n):
    return b"\x17\x03\x03" + struct.pack(">H", min(max(0, n - 5), 16384))


def ssh_kexinit(client):
    lists = [b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"
             b"diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,ext-info-c" if client else
             b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,sntrup761x25519-sha512@openssh.com",
             b"ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256,ssh-ed25519,rsa-sha2-512,rsa-sha2-256",
             b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
             b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
             b"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com",
             b"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com",
             b"none,zlib@openssh.com", b"none,zlib@openssh.com", b"", b""]
    payload = b"\x14" + PAY.raw(16) + b"".join(struct.pack(">I", len(x)) + x for x in lists) + b"\x00" + bytes(4)
    pad = 8 - (len(payload) + 5) % 8
    if pad < 4:
        pad += 8
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + bytes(pad)


def ssh_encrypted(n):
    return PAY.raw(n)


def rdp_connection_request():
    cookie = b"Cookie: mstshash=" + R.choice((b"admin", b"jdoe", b"svc_backup", b"a.martin")) + b"\r\n"
    x224 = bytes([6 + len(cookie) + 8, 0xE0, 0, 0, 0, 0, 0]) + cookie + bytes.fromhex("0100080003000000")
    return struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224


def rdp_connection_confirm():
    x224 = bytes([14, 0xD0, 0, 0, 0x12, 0x34, 0]) + bytes.fromhex("0200080002000000")
    return struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224


def vnc_server_init():
    name = R.choice((b"farm-pc-07:0 (operator)", b"QEMU (win10)", b"raspberrypi", b"x11vnc"))
    return (struct.pack(">HH", 1920, 1080) + bytes.fromhex("2018000100ff00ff00ff100800000000") +
            struct.pack(">I", len(name)) + name)


def dns_name(name):
    return b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0"


# ---------------------------------------------------------------------------------------
# Flows: generators yielding (gap_ns, frame); the first gap is from the flow's start.


def flow_https(hosts, v6, plain_http=False, dport=None):
    conn = new_tcp(hosts, dport or (80 if plain_http else 443), v6)
    yield from conn.handshake()
    host = R.choice(SNI_NAMES)
    if not plain_http:
        yield from conn.message(R.randrange(50_000, 400_000), True,
                                tls_client_hello(host, R.choice((517, 517, 583, 260, 1700))))
        yield from conn.bulk(conn.rtt, False, R.randrange(2600, 6500), tls_server_hello())
        yield from conn.message(R.randrange(200_000, 2_000_000), True, b"\x14\x03\x03\x00\x01\x01" + tls_record(74) + PAY.raw(69))
    rounds = 1 + min(40, int(R.expovariate(1 / 2.0)))
    gap = R.randrange(100_000, 3_000_000)
    for _ in range(rounds):
        if plain_http:
            req = (b"GET /" + PAY.raw(R.randrange(4, 40)).hex().encode() + b" HTTP/1.1\r\nHost: " + host +
                   b"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n")
        else:
            n = int(lognormal_clip(300, 0.8, 40, 1400))
            req = tls_record(n) + PAY.raw(n - 5)
        yield from conn.message(gap, True, req)
        if R.random() < 0.06:  # upload
            yield from conn.bulk(R.randrange(100_000, 1_000_000), True, int(lognormal_clip(200e3, 1.5, 2e3, 30e6)))
        size = int(lognormal_clip(1.6e3, 2.0, 120, 8e6))
        if plain_http:
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                    str(size).encode() + b"\r\n\r\n")
            size += len(head)
        else:
            head = tls_record(size)
        yield from conn.bulk(conn.rtt + R.randrange(100_000, 20_000_000), False, size, head)
        gap = int(R.expovariate(1 / 300e6)) + 1000
    yield from conn.close(R.randrange(1_000_000, 2_000_000_000))


def flow_ssh(hosts, v6, bulk):
    inbound = R.random() < 0.5  # an outside operator on an inside host
    conn = new_tcp(hosts, 22, v6, client_internal=not inbound, server_internal=True)
    yield from conn.handshake()
    yield from conn.message(R.randrange(1_000_000, 5_000_000), False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2\r\n")
    yield from conn.message(R.randrange(50_000, 500_000), True,
                            R.choice((b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-PuTTY_Release_0.80\r\n",
                                      b"SSH-2.0-OpenSSH_for_Windows_8.6\r\n")))
    yield from conn.message(R.randrange(50_000, 500_000), True, ssh_kexinit(True))
    yield from conn.message(conn.rtt, False, ssh_kexinit(False))
    yield from conn.message(R.randrange(50_000, 500_000), True, ssh_encrypted(48))
    yield from conn.message(conn.rtt, False, ssh_encrypted(R.randrange(500, 1100)))
    for n in (16, 44, 84, 100, 412):  # newkeys, service request, auth
        yield from conn.message(R.randrange(1_000_000, 20_000_000), True, ssh_encrypted(n))
        yield from conn.message(conn.rtt, False, ssh_encrypted(R.choice((44, 52, 84, 28))))
    if bulk:  # scp/sftp transfer one way
        yield from conn.bulk(R.randrange(1_000_000, 50_000_000), R.random() < 0.5,
                             int(lognormal_clip(1e6, 1.5, 50e3, 50e6)))
    else:
        for _ in range(int(lognormal_clip(150, 0.9, 10, 2000))):
            yield conn.pkt(int(R.expovariate(1 / 180e6)) + 20_000_000, True, PA, *PAY.take(36))
            if R.random() < 0.06:  # command output
                yield from conn.bulk(conn.rtt, False, int(lognormal_clip(1500, 1.4, 100, 200e3)))
            else:
                yield conn.pkt(conn.rtt, False, PA, *PAY.take(36))
                yield conn.pkt(R.randrange(20_000_000, 45_000_000), True, ACK)
    yield from conn.close(R.randrange(1_000_000, 500_000_000))


def flow_remote_desktop(hosts, v6, vnc):
    inbound = R.random() < 0.5
    conn = new_tcp(hosts, 5900 if vnc else 3389, v6, client_internal=not inbound, server_internal=True)
    yield from conn.handshake()
    if vnc:
        yield from conn.message(R.randrange(500_000, 3_000_000), False, b"RFB 003.008\n")
        yield from conn.message(conn.rtt, True, b"RFB 003.008\n")
        yield from conn.message(conn.rtt, False, b"\x01\x02")
        yield from conn.message(conn.rtt, True, b"\x02")
        yield from conn.message(conn.rtt, False, PAY.raw(16))
        yield from conn.message(R.randrange(500_000_000, 3_000_000_000), True, PAY.raw(16))
        yield from conn.message(conn.rtt, False, b"\x00\x00\x00\x00")
        yield from conn.message(conn.rtt, True, b"\x01")
        yield from conn.message(conn.rtt, False, vnc_server_init())
        yield from conn.message(conn.rtt, True, bytes.fromhex("020000050000000700000010fffffef0fffffef1ffffff21") +
                                bytes.fromhex("03000000000007800438"))
    else:
        yield from conn.message(R.randrange(50_000, 500_000), True, rdp_connection_request())
        yield from conn.message(conn.rtt, False, rdp_connection_confirm())
        yield from conn.message(R.randrange(50_000, 500_000), True, tls_client_hello(b"", 220))
        yield from conn.bulk(conn.rtt, False, R.randrange(1500, 3000), tls_server_hello())
        yield from conn.message(R.randrange(1_000_000, 5_000_000), True, tls_record(400) + PAY.raw(395))
    # Screen updates one way, input events the other.
    for _ in range(int(lognormal_clip(200, 1.0, 10, 4000))):
        if R.random() < 0.5:
            yield conn.pkt(int(R.expovariate(1 / 80e6)) + 1_000_000, True, PA, *PAY.take(R.choice((10, 10, 6, 20, 43, 59))))
        yield from conn.bulk(conn.rtt // 2 + 1000, False, int(lognormal_clip(2e3, 1.6, 60, 2e6)),
                             b"\x00\x00\x00\x01" if vnc else tls_record(1400))
    yield from conn.close(R.randrange(1_000_000, 500_000_000))


def flow_dns(hosts, v6):
    c, s, _ = endpoints(hosts, 17, 53, v6, True, R.random() < 0.7, 0, 0)
    rtt = int(lognormal_clip(2e6, 1.2, 0.1e6, 200e6))
    name = dns_name(R.choice(SNI_NAMES)) if R.random() < 0.7 else dns_name(
        PAY.raw(6).hex().encode() + b"." + R.choice(SNI_NAMES))
    both = R.random() < 0.45  # glibc asks A and AAAA from one socket
    gap = 0
    for qtype in ((1, 28) if both else (R.choice((1, 1, 28, 65)),)):
        qid = R.getrandbits(16)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", qtype, 1)
        yield gap, udp_frame(c, q, csum_bytes(q))
        answers = b""
        nans = R.choice((1, 1, 1, 2, 4, 8))
        for _ in range(nans):
            if qtype == 65:  # SVCB/HTTPS: priority 1, target ".", alpn=h2,h3
                rdata = b"\x00\x01\x00\x00\x01\x00\x06\x02h2\x02h3"
            else:
                rdata = PAY.raw(16 if qtype == 28 else 4)
            answers += struct.pack(">HHHIH", 0xC00C, qtype, 1, R.randrange(30, 3600), len(rdata)) + rdata
        r = struct.pack(">HHHHHH", qid, 0x8180, 1, nans, 0, 0) + name + struct.pack(">HH", qtype, 1) + answers
        yield rtt, udp_frame(s, r, csum_bytes(r))
        gap = R.randrange(10_000, 200_000)


def flow_quic(hosts, v6):
    c, s, _ = endpoints(hosts, 17, 443, v6, True, False, 0, 0)
    rtt = int(lognormal_clip(15e6, 0.8, 0.3e6, 300e6))
    rate = lognormal_clip(30e6, 1.1, 1e6, 900e6)
    dcid, scid = PAY.raw(8), PAY.raw(8)

    def long_hdr(ptype, dc, sc, size, token=True):
        h = bytes([0xC3 | (ptype << 4)]) + b"\x00\x00\x00\x01" + bytes([len(dc)]) + dc + bytes([len(sc)]) + sc
        if token:
            h += b"\x00"
        rest = size - len(h) - 2
        return h + struct.pack(">H", 0x4000 | rest) + PAY.raw(rest)

    def pk(d, data):
        return udp_frame(d, data, csum_bytes(data))

    yield 0, pk(c, long_hdr(0, dcid, b"", 1250))
    yield rtt, pk(s, long_hdr(0, scid, dcid, 1200))
    yield 30_000, pk(s, long_hdr(2, scid, dcid, 1200, token=False))
    yield 30_000, pk(s, long_hdr(2, scid, dcid, R.randrange(300, 1100), token=False))
    yield R.randrange(50_000, 300_000), pk(c, long_hdr(2, scid, b"", 90, token=False))
    seg_gap = max(1000, int(1292 * 8 * 1e9 / rate))
    take = PAY.take
    short_hdr = b"\x45" + scid + b"\x00"  # even length keeps the pool's word alignment
    short_sum = csum_bytes(short_hdr)
    for _ in range(1 + min(30, int(R.expovariate(1 / 3.0)))):
        req = b"\x41" + scid + PAY.raw(R.randrange(30, 500))
        yield R.randrange(100_000, 30_000_000), pk(c, req)
        size = int(lognormal_clip(4.5e3, 2.0, 200, 8e6))
        gap = rtt
        n = 0
        while size > 0:
            m = min(max(size, 24), 1250)
            size -= m
            body, ps = take(m)
            yield gap, udp_frame(s, short_hdr + body, ps + short_sum)
            n += 1
            gap = seg_gap
            if n % 2 == 0 or size <= 0:
                a = b"\x52" + dcid + PAY.raw(R.randrange(20, 40))
                yield 25_000, pk(c, a)
                gap = max(1000, seg_gap - 25_000)


def flow_other_tcp(hosts, v6):
    port = R.choice((8443, 8080, 993, 25, 587, 5222, 1433, 3306, 9000, 445, 8883,
                     R.randrange(10000, 30000)))
    return flow_https(hosts, v6, plain_http=R.random() < 0.4, dport=port)


def flow_chatty(hosts, v6):
    """Small request/response exchanges: databases, message brokers, websockets, SMB."""
    port = R.choice((3306, 5432, 1433, 6379, 8883, 5671, 445, 443, 9092))
    conn = new_tcp(hosts, port, v6, server_internal=R.random() < 0.6)
    yield from conn.handshake()
    gap = R.randrange(100_000, 2_000_000)
    for _ in range(int(lognormal_clip(40, 1.0, 2, 1500))):
        yield conn.pkt(gap, True, PA, *PAY.take(int(lognormal_clip(120, 0.7, 20, 1400))))
        size = int(lognormal_clip(250, 1.2, 10, 20000))
        if size <= conn.mss:
            yield conn.pkt(conn.rtt // 4 + R.randrange(50_000, 2_000_000), False, PA, *PAY.take(size))
            if R.random() < 0.5:
                yield conn.pkt(R.randrange(30_000, 40_000_000), True, ACK)
        else:
            yield from conn.bulk(conn.rtt // 4 + 50_000, False, size)
        gap = int(R.expovariate(1 / 40e6)) + 100_000
    yield from conn.close(R.randrange(1_000_000, 1_000_000_000))


def flow_rtp(hosts, v6):
    """A call: 20 ms audio both ways, sometimes video one way, over UDP."""
    peer_internal = R.random() < 0.2
    port = R.choice((3478, 3479, 3480, 3481, 8801, R.randrange(16384, 32768)))
    c, s, _ = endpoints(hosts, 17, port, v6, True, peer_internal, 0, 0)
    video = R.random() < 0.15
    pt = R.choice((111, 0, 8, 96))
    hdr = struct.Struct(">BBHII")
    ssrc_c, ssrc_s = R.getrandbits(32), R.getrandbits(32)
    seq_c, seq_s, ts = R.getrandbits(16), R.getrandbits(16), R.getrandbits(32)
    audio = R.choice((80, 100, 120, 160, 172))
    take = PAY.take
    off = R.randrange(1_000_000, 18_000_000)
    gap = 0
    for tick in range(int(lognormal_clip(400, 1.0, 20, 5000))):
        h = hdr.pack(0x80, pt, seq_c, ts, ssrc_c)
        body, ps = take(audio + R.randrange(-8, 9) * 2)
        yield gap + R.randrange(0, 300_000), udp_frame(c, h + body, ps + csum_bytes(h))
        h = hdr.pack(0x80, pt, seq_s, ts, ssrc_s)
        body, ps = take(audio + R.randrange(-8, 9) * 2)
        yield off, udp_frame(s, h + body, ps + csum_bytes(h))
        seq_c, seq_s, ts = (seq_c + 1) & 0xFFFF, (seq_s + 1) & 0xFFFF, (ts + 160) & M32
        gap = 20_000_000 - off
        if video and tick & 1:
            for _ in range(R.randrange(1, 4)):
                h = hdr.pack(0x80, 102, seq_s, ts, ssrc_s ^ 1)
                body, ps = take(R.randrange(400, 600) * 2)
                yield 200_000, udp_frame(s, h + body, ps + csum_bytes(h))
                gap -= 200_000


# (weight, name, factory) by number of flows started.
KINDS = [
    (40.0, "https", lambda h, v6: flow_https(h, v6)),
    (4.0, "http", lambda h, v6: flow_https(h, v6, plain_http=True)),
    (5.0, "other_tcp", flow_other_tcp),
    (28.0, "chatty_tcp", flow_chatty),
    (8.0, "rtp", flow_rtp),
    (200.0, "dns", flow_dns),
    (9.0, "quic", flow_quic),
    (1.0, "ssh_interactive", lambda h, v6: flow_ssh(h, v6, bulk=False)),
    (0.3, "ssh_bulk", lambda h, v6: flow_ssh(h, v6, bulk=True)),
    (0.5, "rdp", lambda h, v6: flow_remote_desktop(h, v6, vnc=False)),
    (0.3, "vnc", lambda h, v6: flow_remote_desktop(h, v6, vnc=True)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="pcap to write (written to OUT.tmp, then renamed)")
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=3000, help="flows open at any time")
    ap.add_argument("--ipv6-share", type=float, default=0.15)
    args = ap.parse_args()

    global PAY
    R.seed(args.seed)
    PAY = PayloadPool(R)
    hosts = Hosts()
    weights = list(itertools.accumulate(k[0] for k in KINDS))
    total_w = weights[-1]

    stats = {name: [0, 0, 0] for _, name, _ in KINDS}  # flows, packets, bytes
    heap = []
    serial = itertools.count()

    def spawn(t):
        while True:
            i = bisect.bisect_right(weights, R.random() * total_w)
            _, name, factory = KINDS[i]
            g = factory(hosts, R.random() < args.ipv6_share)
            try:
                gap, frame = next(g)
            except StopIteration:
                continue
            st = stats[name]
            st[0] += 1
            return (t + gap, next(serial), g, frame, st)

    for _ in range(args.concurrency):
        heapq.heappush(heap, spawn(START_NS + R.randrange(0, 2_000_000_000)))

    tmp = args.out + ".tmp"
    started = time.monotonic()
    total_bytes = 0
    rec = REC.pack
    heapreplace, heappop, heappush = heapq.heapreplace, heapq.heappop, heapq.heappush
    expo = R.expovariate
    with open(tmp, "wb", buffering=0) as f:
        f.write(PCAP_HEADER.pack(PCAP_MAGIC_NSEC, 2, 4, 0, 0, 262144, DLT_EN10MB))
        out = []
        written = 0
        first_t = heap[0][0]
        t = first_t
        while written < args.packets:
            t, _, g, frame, st = heap[0]
            n = len(frame)
            out.append(rec(t // 1_000_000_000, t % 1_000_000_000, n, n))
            out.append(frame)
            st[1] += 1
            st[2] += n
            total_bytes += n
            written += 1
            try:
                gap, nxt = next(g)
                heapreplace(heap, (t + gap, next(serial), g, nxt, st))
            except StopIteration:
                heappop(heap)
                heappush(heap, spawn(t + int(expo(1 / 5e6))))
            if len(out) >= 16384:
                f.write(b"".join(out))
                out.clear()
                if written % 1_000_000 < 8192:
                    print("  %d packets, %.1f s" % (written, time.monotonic() - started),
                          file=sys.stderr, flush=True)
        f.write(b"".join(out))
    os.replace(tmp, args.out)

    elapsed = time.monotonic() - started
    span = (t - first_t) / 1e9
    print("wrote %s: %d packets, %d frame bytes (avg %.0f B), %.1f s of traffic (%.2f Gbit/s), "
          "generated in %.1f s" % (args.out, written, total_bytes, total_bytes / written, span,
                                   total_bytes * 8 / max(span, 1e-9) / 1e9, elapsed), file=sys.stderr)
    print("  %-16s %9s %11s %7s %8s" % ("kind", "flows", "packets", "pkt%", "avg B"), file=sys.stderr)
    for _, name, _ in KINDS:
        fl, pk, by = stats[name]
        print("  %-16s %9d %11d %6.1f%% %8.0f" % (name, fl, pk, 100.0 * pk / written, by / max(pk, 1)),
              file=sys.stderr)


if __name__ == "__main__":
    main()
