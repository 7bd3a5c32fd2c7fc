#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/.

Seeds are small valid inputs that get the fuzzer past the first checks of each parser:
frames for every link type and encapsulation the decoder handles, the opening messages of
SSH, RDP (X.224 and RDPEUDP) and VNC, and a few YAML configs. Run from anywhere:

    python3 tests/fuzz/make_seeds.py

Existing seed files with the same names are overwritten; other files (inputs saved from
fuzzing runs) are left alone.
"""

import ipaddress
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

# ------------------------------------------------------------------------------------------
# decoder_fuzz: byte 0 selects the link type, as kLinkTypes in decoder_fuzz.cc.

LINK = {"ethernet": 0, "null": 1, "loop": 2, "raw": 3, "sll": 4, "sll2": 5,
        "linktype_raw": 6, "raw_openbsd": 7, "ipv4": 8, "ipv6": 9, "ppp": 10,
        "ppp_serial": 11, "ppp_ether": 12, "c_hdlc": 13, "ppi": 14,
        "nflog": 15, "ieee80211": 16, "radiotap": 17}

TCP, UDP, ICMP, GRE, ICMP6 = 6, 17, 1, 47, 58
SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def addr(text):
    return ipaddress.ip_address(text).packed


def wlan(flags, header):
    """An 802.11 QoS data header of `header` bytes (addresses, QoS, HT control, padding)."""
    return bytes([0x88, flags, 0x2c, 0]) + bytes(header - 4)


def snap(ether_type, payload):
    return b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", ether_type) + payload


def radiotap(flags):
    """Radiotap with TSFT (aligned to 8) and Flags, 24 bytes."""
    return struct.pack("<BBHI", 0, 0, 24, 0x3) + bytes(8) + bytes([flags]) + bytes(7)


def ipv4(proto, src, dst, payload, ttl=64, ident=0x1234, frag=0x4000):
    return struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), ident, frag, ttl, proto, 0) + \
        addr(src) + addr(dst) + payload


def ipv6(nxt, src, dst, payload, hop=64):
    return struct.pack("!IHBB", 0x60000000, len(payload), nxt, hop) + addr(src) + addr(dst) + \
        payload


def tcp(sport, dport, flags=ACK, payload=b"", options=b"", seq=1000, ack=0, window=64240):
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0) + \
        options + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def eth(ethertype, payload):
    return bytes.fromhex("020000000002020000000001") + struct.pack("!H", ethertype) + payload


def tag(tci, next_type, payload):
    return struct.pack("!HH", tci, next_type) + payload


def mpls(label, bottom):
    return struct.pack("!I", (label << 12) | (0x100 if bottom else 0) | 64)


SYN_OPTIONS = struct.pack("!BBH", 2, 4, 1460) + bytes([4, 2]) + \
    struct.pack("!BBII", 8, 10, 0x01020304, 0) + bytes([1, 3, 3, 7])

SYN4 = ipv4(TCP, "192.0.2.10", "198.51.100.20",
            tcp(51000, 3389, SYN, options=SYN_OPTIONS, ack=0))
DATA4 = ipv4(TCP, "10.0.0.1", "10.0.0.2", tcp(40000, 22, ACK | PSH, b"SSH-2.0-OpenSSH_9.2p1\r\n"))
UDP4 = ipv4(UDP, "10.0.0.1", "10.0.0.53", udp(5353, 53, b"\x12\x34\x01\x00\x00\x01"))
TCP6 = ipv6(TCP, "2001:db8::1", "2001:db8::2", tcp(40000, 5900, ACK | PSH, b"RFB 003.008\n"))
SLL = struct.pack("!HHH", 0, 1, 6) + bytes(8)
SLL2_V6 = struct.pack("!HHIHBB", 0x86DD, 0, 3, 1, 4, 6) + bytes(8)


def decoder_seeds():
    hop_by_hop = bytes([60, 0, 1, 4, 0, 0, 0, 0])
    dest_opts = bytes([TCP, 1, 1, 12]) + bytes(12)
    geneve_opt = struct.pack("!HBBI", 0x0102, 0x80, 1, 0xCAFEF00D)
    inner = eth(0x0800, DATA4)
    seeds = {
        "eth_ipv4_tcp_syn_options": ("ethernet", eth(0x0800, SYN4)),
        "eth_ipv4_tcp_padded": ("ethernet",
                                eth(0x0800, ipv4(TCP, "10.0.0.1", "10.0.0.2",
                                                 tcp(40000, 22, ACK, b"hi"))).ljust(60, b"\xaa")),
        "eth_ipv4_udp": ("ethernet", eth(0x0800, UDP4)),
        "eth_ipv4_icmp": ("ethernet", eth(0x0800, ipv4(ICMP, "10.0.0.1", "10.0.0.2",
                                                       bytes([8, 0, 0, 0, 0, 7, 0, 1])))),
        "eth_vlan": ("ethernet", eth(0x8100, tag(0xA064, 0x0800, DATA4))),
        "eth_qinq": ("ethernet", eth(0x88A8, tag(200, 0x8100, tag(100, 0x0800, UDP4)))),
        "eth_ipv6_ext": ("ethernet", eth(0x86DD, ipv6(0, "2001:db8::1", "2001:db8::2",
                                                      hop_by_hop + dest_opts +
                                                      tcp(40000, 22, ACK, b"x")))),
        "eth_ipv6_icmp": ("ethernet", eth(0x86DD, ipv6(ICMP6, "fe80::1", "fe80::2",
                                                       bytes([128, 0, 0, 0, 0, 1, 0, 1])))),
        "sll_ipv4": ("sll", SLL + struct.pack("!H", 0x0800) + DATA4),
        "sll2_ipv6": ("sll2", SLL2_V6 + TCP6),
        "null_le_ipv4": ("null", struct.pack("<I", 2) + DATA4),
        "null_be_ipv6": ("null", struct.pack(">I", 30) + TCP6),
        "loop_ipv4": ("loop", struct.pack(">I", 2) + UDP4),
        "raw_ipv4": ("raw", SYN4),
        "raw_ipv6": ("linktype_raw", TCP6),
        "raw_openbsd_ipv4": ("raw_openbsd", UDP4),
        "dlt_ipv4": ("ipv4", DATA4),
        "dlt_ipv6": ("ipv6", TCP6),
        "ipv4_fragment": ("raw", ipv4(UDP, "10.0.0.1", "10.0.0.2", udp(1, 2, bytes(32)),
                                      frag=0x2000)),
        "ipv6_fragment": ("raw", ipv6(44, "2001:db8::1", "2001:db8::2",
                                      bytes([UDP, 0]) + struct.pack("!HI", 1, 7) +
                                      udp(1, 2, bytes(16)))),
        "gre_key_seq": ("ethernet", eth(0x0800, ipv4(GRE, "203.0.113.1", "203.0.113.2",
                                                     struct.pack("!HHII", 0x3000, 0x0800, 7, 1) +
                                                     DATA4))),
        "gre_teb": ("raw", ipv4(GRE, "203.0.113.1", "203.0.113.2",
                                struct.pack("!HH", 0, 0x6558) + inner)),
        "gre_erspan": ("raw", ipv4(GRE, "203.0.113.1", "203.0.113.2",
                                   struct.pack("!HHI", 0x1000, 0x88BE, 1) + bytes(8) + inner)),
        "vxlan": ("ethernet", eth(0x0800, ipv4(UDP, "198.51.100.1", "198.51.100.2",
                                               udp(49152, 4789, bytes([8, 0, 0, 0]) +
                                                   struct.pack("!I", 5001 << 8) + inner)))),
        "geneve": ("ethernet", eth(0x86DD, ipv6(UDP, "2001:db8::a", "2001:db8::b",
                                                udp(50000, 6081,
                                                    bytes([len(geneve_opt) // 4, 0]) +
                                                    struct.pack("!HI", 0x6558, 0x123400) +
                                                    geneve_opt + inner)))),
        "ipip": ("raw", ipv4(4, "192.0.2.1", "192.0.2.2", DATA4)),
        "6in4": ("raw", ipv4(41, "192.0.2.1", "192.0.2.2", TCP6)),
        "mpls": ("ethernet", eth(0x8847, mpls(16, False) + mpls(17, True) + UDP4)),
        "pppoe": ("ethernet", eth(0x8864, struct.pack("!BBHHH", 0x11, 0, 0x42, 2 + len(DATA4),
                                                      0x0021) + DATA4)),
        "ppp_hdlc": ("ppp", b"\xff\x03\x00\x21" + DATA4),
        "ppp_compressed": ("ppp", b"\x57" + TCP6),
        "ppp_serial_cisco": ("ppp_serial", b"\x0f\x00\x08\x00" + DATA4),
        "ppp_ether": ("ppp_ether", struct.pack("!BBHHH", 0x11, 0, 0x42, 2 + len(DATA4), 0x0021)
                      + DATA4),
        "c_hdlc_ipv6": ("c_hdlc", b"\x8f\x00\x86\xdd" + TCP6),
        "nflog": ("nflog", bytes([2, 0, 0, 42]) + struct.pack("<HH", 8, 1) + bytes(4) +
                  struct.pack("<HH", 5, 10) + b"\0\0\0\0" + struct.pack("<HH", 4 + len(DATA4), 9) +
                  DATA4),
        "ppi_ethernet": ("ppi", struct.pack("<BBHI", 0, 0, 8, 1) + eth(0x0800, DATA4)),
        # QoS data to the AP with HT control, RFC 1042 SNAP; then after radiotap (TSFT and
        # Flags: padding after the MAC header, FCS at the end) with four addresses.
        "wlan_qos_htc": ("ieee80211", wlan(0x81, 26 + 4) + snap(0x0800, DATA4)),
        "radiotap_wlan_fcs": ("radiotap", radiotap(0x30) + wlan(0x03, 32) + snap(0x86dd, TCP6)
                              + b"\xde\xad\xbe\xef"),
        "vlan_stack_deep": ("ethernet", eth(0x8100, b"".join(tag(i, 0x8100, b"")
                                                             for i in range(1, 10)) + DATA4)),
    }
    return {name: bytes([LINK[link]]) + frame for name, (link, frame) in seeds.items()}


# ------------------------------------------------------------------------------------------
# remote_access_fuzz: a setup byte, then records (control, length, payload); see the header
# comment of remote_access_fuzz.cc.

PORT_INDEX = {22: 0, 3389: 1, 5900: 2, 443: 3, 5938: 4, 4000: 5, 4899: 6, 1494: 7}
TO_SERVER, TO_CLIENT = 0, 1
FLAGS_PSH_ACK = 1 << 1
FLAGS_FIN_ACK = 4 << 1
FLAGS_RST = 5 << 1


def setup(port, udp_flow=False, handshake=True, inspect_index=1):
    index = PORT_INDEX[port]
    return bytes([(1 if udp_flow else 0) | (index & 3) << 1 | inspect_index << 3 |
                  (0x20 if handshake else 0) | (index & 4) << 4])


def record(direction, payload, flags=FLAGS_PSH_ACK):
    assert len(payload) < 256
    return bytes([direction | flags, len(payload)]) + payload


def x224_request(cookie=b"Cookie: mstshash=alice\r\n", protocols=3):
    body = cookie + struct.pack("<BBHI", 1, 0, 8, protocols)
    x224 = bytes([6 + len(body), 0xE0, 0, 0, 0, 0, 0]) + body
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def x224_confirm(neg_type=2, value=2):
    body = struct.pack("<BBHI", neg_type, 0, 8, value)
    x224 = bytes([6 + len(body), 0xD0, 0, 0, 0x12, 0x34, 0]) + body
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def rdpudp_syn(ack, source_ack, isn):
    flags = 0x0001 | (0x0004 if ack else 0)
    return struct.pack("!IHHIHH", source_ack, 64, flags, isn, 1232, 1232) + bytes(16)


def rdpudp_ack(source_ack, sn_coded):
    # ACK | DATA, an empty ACK vector padded to 4 bytes, then snCoded and snSourceStart.
    return struct.pack("!IHHHH", source_ack, 64, 0x000C, 0, 0) + \
        struct.pack("!II", sn_coded, sn_coded) + b"payload"


def teamviewer_frame(cmd, data):
    return bytes([0x17, 0x24, cmd]) + struct.pack("<H", len(data)) + data


ICA = bytes([0x7F, 0x7F]) + b"ICA\x00"
RADMIN_CLIENT = bytes([1, 0, 0, 0, 1, 0, 0, 0, 8, 8])
RADMIN_SERVER = bytes([1, 0, 0, 0, 0x25, 0, 0, 2, 0x12, 8, 2, 0, 0, 0x0A]) + bytes(32)

SSH_SERVER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_CLIENT = b"SSH-2.0-OpenSSH_9.2p1\r\n"


def remote_access_seeds():
    return {
        "ssh_session": setup(22) + record(TO_CLIENT, SSH_SERVER) + record(TO_SERVER, SSH_CLIENT),
        "ssh_preamble_lines": setup(22, handshake=False) +
        record(TO_CLIENT, b"Welcome\r\nnotice: monitored\r\n" + SSH_SERVER[:20]) +
        record(TO_CLIENT, SSH_SERVER[20:]) + record(TO_SERVER, SSH_CLIENT),
        "ssh_long_preamble": setup(22) + record(TO_SERVER, SSH_CLIENT) +
        b"".join(record(TO_CLIENT, b"\t| \xc3\xa9 notice line %d of the preamble --\r\n" % i)
                 for i in range(40)) + record(TO_CLIENT, SSH_SERVER),
        "ssh_probed_by_http": setup(22) + record(TO_SERVER, b"GET / HTTP/1.1\r\n\r\n") +
        record(TO_CLIENT, SSH_SERVER) + record(TO_CLIENT, b"", FLAGS_FIN_ACK),
        "ssh_server_only": setup(22) + record(TO_CLIENT, SSH_SERVER) +
        record(TO_SERVER, b"", FLAGS_RST),
        "rdp_x224": setup(3389) + record(TO_SERVER, x224_request()) +
        record(TO_CLIENT, x224_confirm()),
        "rdp_x224_failure": setup(3389) + record(TO_SERVER, x224_request(b"", 8)) +
        record(TO_CLIENT, x224_confirm(3, 5)),
        "rdp_routing_token": setup(3389) +
        record(TO_SERVER, x224_request(b"Cookie: msts=3640205228.15629.0000\r\n", 0)) +
        record(TO_CLIENT, x224_confirm()) + record(TO_CLIENT, b"", FLAGS_FIN_ACK),
        "vnc_rfb": setup(5900) + record(TO_CLIENT, b"RFB 003.008\n") +
        record(TO_SERVER, b"RFB 003.008\n") + record(TO_CLIENT, bytes([1, 2])),
        "vnc_split": setup(5900, inspect_index=0) + record(TO_CLIENT, b"RFB 00") +
        record(TO_CLIENT, b"3.889\n") + record(TO_SERVER, b"RFB 003.003\n"),
        "rdpudp_syn": setup(3389, udp_flow=True) +
        record(TO_SERVER, rdpudp_syn(False, 0xFFFFFFFF, 0x11223344)) +
        record(TO_CLIENT, rdpudp_syn(True, 0x11223344, 0x55667788)),
        "rdpudp_mid_session": setup(3389, udp_flow=True, handshake=False) +
        record(TO_SERVER, rdpudp_ack(0x100, 0x200)) + record(TO_CLIENT, rdpudp_ack(0x200, 0x100)),
        "teamviewer_tcp": setup(5938) +
        record(TO_SERVER, teamviewer_frame(0x0A, b"") + teamviewer_frame(0x10, b"\x01\x02")) +
        record(TO_CLIENT, teamviewer_frame(0x0B, bytes(4))),
        "teamviewer_udp": setup(5938, udp_flow=True, handshake=False) +
        record(TO_SERVER, bytes(11) + teamviewer_frame(0x1E, bytes(4))) +
        record(TO_CLIENT, bytes(11) + teamviewer_frame(0x1F, b"")),
        "nomachine": setup(4000) + record(TO_SERVER, b"NXSH-8.10.1\n") +
        record(TO_CLIENT, b"NXD-8.10.1\n"),
        "radmin": setup(4899) + record(TO_SERVER, RADMIN_CLIENT) + record(TO_CLIENT, RADMIN_SERVER),
        "citrix_ica": setup(1494) + record(TO_CLIENT, ICA) + record(TO_SERVER, ICA),
        "citrix_cgp": setup(1494) + record(TO_SERVER, b"\x1aCGP/01" + bytes(8)) +
        record(TO_CLIENT, b"\x1aCGP/01" + bytes(8)),
        "https_not_remote": setup(443) + record(TO_SERVER, bytes.fromhex("160301020001")) +
        record(TO_CLIENT, bytes.fromhex("160303007a02")),
        # Proxy setups before the tunnelled protocol (Arkime's socks5-rdp.pcap; HTTP CONNECT
        # after a 407; SOCKS 4a with the proxy's answer and the server's banner together).
        "socks5_rdp": setup(3389) + record(TO_SERVER, b"\x05\x01\x00") +
        record(TO_CLIENT, b"\x05\x00") +
        record(TO_SERVER, bytes.fromhex("050100010a0000010d3d")) +
        record(TO_CLIENT, bytes.fromhex("05000001000000000000")) +
        record(TO_SERVER, x224_request()) + record(TO_CLIENT, x224_confirm()),
        "http_connect_ssh": setup(22) +
        record(TO_SERVER, b"CONNECT git.example:22 HTTP/1.1\r\nHost: git.example:22\r\n\r\n") +
        record(TO_CLIENT, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n") +
        record(TO_SERVER, b"CONNECT git.example:22 HTTP/1.1\r\nProxy-Authorization: x\r\n\r\n") +
        record(TO_CLIENT, b"HTTP/1.1 200 Connection established\r\n\r\n" + SSH_SERVER) +
        record(TO_SERVER, SSH_CLIENT),
        "socks4a_vnc": setup(5900) + record(TO_SERVER, b"\x04\x01\x17\x0c\x00\x00\x00\x01u\x00vnc\x00") +
        record(TO_CLIENT, bytes([0, 90]) + bytes(6) + b"RFB 003.008\n") +
        record(TO_SERVER, b"RFB 003.008\n"),
    }


# ------------------------------------------------------------------------------------------
# config_fuzz: YAML documents.

FULL_CONFIG = b"""\
home_networks: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7]
capture:
  interfaces: [eth0, eth1]
  bpf: "tcp port 22 or (vlan and tcp port 3389) or udp port 3389"
  snaplen: 65535
  buffer_size_mib: 64
  promiscuous: true
  workers: 2
flows:
  max_flows: 262144
  tcp_idle_timeout: 10m
  udp_idle_timeout: 2m
  closed_timeout: 10s
  community_id_seed: 0
outputs:
  jsonl:
    enabled: true
    path: "-"
    events: [alert, remote_session, flow]
  syslog:
    enabled: false
    transport: tcp
    address: 127.0.0.1:514
    facility: local4
    app_name: relaywatch
    enterprise_id: 32473
    events: [alert]
  prometheus:
    enabled: true
    listen: 127.0.0.1:9781
alerting:
  dedup_window: 1h
  max_alerts_per_host_per_hour: 20
  max_hosts: 65536
detectors:
  remote_access:
    enabled: true
    inspect_bytes: 1024
    inspect_packets: 16
"""

CONFIG_SEEDS = {
    "full": FULL_CONFIG,
    "minimal": b"capture:\n  interfaces: [eth0]\n",
    "empty": b"",
    "syslog_udp": b"outputs:\n  syslog:\n    transport: udp\n    address: \"[2001:db8::1]:514\"\n"
                  b"    facility: authpriv\n",
    "anchors": b"outputs:\n  jsonl: {events: &ev [alert]}\n  syslog: {events: *ev}\n",
    "duplicate_key": b"flows:\n  max_flows: 2048\n  max_flows: 4096\n",
    "bad_values": b"capture:\n  snaplen: lots\nflows:\n  tcp_idle_timeout: 30\n",
    "flow_style": b"{capture: {bpf: 'udp', workers: 1}, alerting: {dedup_window: 0s}}\n",
    # Address-prefix lists in four places (sites, entry points, allow rules, relay).
    "prefixes": b"sites:\n  - {name: hq, networks: [10.1.0.0/16], location: Seattle, local_rtt: 40ms}\n"
                b"entry_points: [192.0.2.1, 2001:db8::/32]\n"
                b"alerting:\n  allow:\n    - {app: rdp, controller: [198.51.100.0/24]}\n"
                b"detectors:\n  relay:\n    min_flows: 3\n    hidden_leg_max_opening_ratio: 3\n"
                b"    hidden_leg_exempt_servers: [203.0.113.9/32, 2001:db8:1::/48]\n",
}


def relay_record(direction, step_ms, length, first=0x61, syn=False, ack=True, psh=True,
                 resend=False, seconds=False, ack_perturb=0):
    control = direction | (syn << 1) | (ack << 2) | (psh << 3) | (resend << 6) | (seconds << 7)
    return bytes([control, step_ms, length, first, ack_perturb >> 8, ack_perturb & 0xFF])


def relay_seeds():
    """relay_fuzz: byte 0 setup (bit 0 handshake, bit 1 inbound, bits 2-3 samples, bit 4
    HTTP, bit 5 TLS 1.3, bit 6 SSH packets), then 6-byte records (see relay_fuzz.cc)."""
    tls = bytes([0x01 | 0x0C]) + b"".join([
        relay_record(0, 1, 200, 0x16),            # ClientHello
        relay_record(1, 10, 255, 0x16),           # server flight
        relay_record(1, 0, 255, 0x17),
        relay_record(0, 0, 0, psh=False),         # the near end's ACK
        relay_record(0, 120, 80, 0x17),           # the relayed client's answer
        relay_record(1, 11, 255, 0x17),
        relay_record(0, 121, 30, 0x15),
    ])
    ssh = bytes([0x01 | 0x02 | 0x08]) + b"".join(
        [relay_record(0, 1, 30, ord("S")), relay_record(1, 10, 30, ord("S"))] +
        [relay_record(d, 60 if d == 0 else 10, 36) for _ in range(20) for d in (0, 1)] +
        [relay_record(0, 1, 1, seconds=True), relay_record(1, 10, 200)])
    lossy = bytes([0x01]) + b"".join([
        relay_record(0, 1, 100, 0x16), relay_record(1, 10, 100, 0x16),
        relay_record(1, 200, 100, 0x16, resend=True), relay_record(0, 5, 100, resend=True),
        relay_record(0, 5, 0, syn=True, psh=False), relay_record(1, 5, 0, ack_perturb=0xFFFF),
    ])
    # TLS 1.3 (bit 5): real hellos; the far client's request lands after the ticket.
    tls13 = bytes([0x01 | 0x0C | 0x20]) + b"".join([
        relay_record(0, 1, 0, 0x16),              # ClientHello
        relay_record(1, 10, 0, 0x16),             # ServerHello
        relay_record(1, 0, 255, 0x17),            # the encrypted rest of the flight
        relay_record(0, 0, 0, psh=False),
        relay_record(0, 200, 58, 0x17),           # Finished
        relay_record(1, 11, 255, 0x17),           # session ticket
        relay_record(0, 9, 90, 0x17),             # the request, sent behind the Finished
        relay_record(1, 11, 200, 0x17),           # the response
        relay_record(0, 201, 24, 0x17),           # close_notify
    ])
    # A proxy's tunnel (bit 7): HTTP CONNECT and its 200, then the relayed TLS client.
    proxied_tls = bytes([0x01 | 0x0C | 0x80]) + b"".join([
        relay_record(0, 1, 255, ord("C")),        # CONNECT
        relay_record(1, 10, 255, ord("C")),       # 200 Connection established
        relay_record(0, 120, 200, 0x16),          # ClientHello
        relay_record(1, 10, 255, 0x16),           # server flight
        relay_record(0, 0, 0, psh=False),
        relay_record(0, 120, 80, 0x17),           # the relayed client's answer
        relay_record(1, 11, 255, 0x17),
    ])
    # SSH packets (bit 6): the far client's KEXINIT, in two segments, lands behind the
    # server's; its key exchange init answers 218 ms later.
    ssh_kex = bytes([0x01 | 0x0C | 0x40]) + b"".join([
        relay_record(0, 1, 30, ord("S")),         # banner
        relay_record(1, 44, 30, ord("S")),
        relay_record(0, 120, 0, psh=False),       # its ACK releases the server's KEXINIT
        relay_record(1, 1, 200, 0),               # the server's KEXINIT
        relay_record(0, 0, 200, 0, ack_perturb=100 << 8),  # KEXINIT, 100 bytes more to come
        relay_record(0, 0, 100, 0x78),
        relay_record(0, 218, 200, 0, ack_perturb=1),       # key exchange init
        relay_record(1, 26, 255, 0x72),
        relay_record(0, 160, 16, 0x6E),           # NEWKEYS
        relay_record(1, 1, 44, 0x61),
        relay_record(0, 121, 60, 0x75),
    ])
    # RFB into the host (bit 1) from a viewer 90 ms beyond its forwarder: versions, security,
    # ClientInit, ServerInit, then updates each answered by the next request, with a key
    # pressed between.
    rfb = bytes([0x01 | 0x02 | 0x0C]) + b"".join([
        relay_record(1, 10, 12, ord("R")), relay_record(0, 90, 12, ord("R")),
        relay_record(1, 1, 2, 1), relay_record(0, 90, 1, 1),
        relay_record(1, 1, 4, 0), relay_record(0, 90, 1, 1),
        relay_record(1, 1, 24, 0), relay_record(0, 90, 10, 3)] + [
        r for _ in range(8) for r in (relay_record(1, 200, 255, 0),
                                      relay_record(0, 2, 0, psh=False),
                                      relay_record(0, 1, 8, 4),
                                      relay_record(0, 90, 10, 3))])
    # RFB under TLS (bit 5: real hellos, TLS 1.3 with a 17-byte record overhead): versions,
    # the viewer's ClientHello, the ServerHello, then a blinking cursor's updates each
    # answered by a request (a record of 10 + 17 bytes, payload 32) and now and then a key
    # (8 + 17, payload 30); every third of those 3 bytes that are no record, where the walk
    # loses its place and finds it again at the next request.
    rfb_tls = bytes([0x01 | 0x0C | 0x20]) + b"".join([
        relay_record(1, 10, 12, ord("R")), relay_record(0, 2, 12, ord("R")),
        relay_record(0, 3, 0, 0x16), relay_record(1, 1, 0, 0x16),
        relay_record(0, 3, 80, 0x17)] + [
        r for k in range(10) for r in (relay_record(1, 250, 200, 0x17),
                                       relay_record(0, 4, 32, 0x17),
                                       relay_record(0, 40, 30 if k % 3 else 3, 0x17))])
    # RDP under TLS 1.3 (bit 5): the X.224 exchange (19-byte payloads beginning 3), the
    # hellos, then a blinking screen's frames each acknowledged (RDPGFX_FRAME_ACKNOWLEDGE_PDU,
    # 45 + 17 bytes a record, payload 67) and now and then a key (fast-path, 5 + 17: 27);
    # every fourth of those 3 bytes that are no record.
    rdp_tls = bytes([0x01 | 0x0C | 0x20]) + b"".join([
        relay_record(0, 2, 19, 3), relay_record(1, 1, 19, 3),
        relay_record(0, 2, 0, 0x16), relay_record(1, 1, 0, 0x16),
        relay_record(0, 3, 80, 0x17)] + [
        r for k in range(10) for r in (relay_record(1, 250, 200, 0x17),
                                       relay_record(0, 4, 67, 0x17),
                                       relay_record(0, 40, 27 if k % 4 else 3, 0x17))])
    # TURN over TCP (payloads beginning 1): the laptop's bare ICE check opens the flow, then
    # checks and answers in ChannelData (odd sixth byte) 90 ms apart, one answer cut short.
    turn_tcp = bytes([0x01 | 0x0C]) + b"".join(
        [relay_record(0, 1, 255, 1, ack_perturb=0 << 8), relay_record(1, 90, 255, 1, ack_perturb=0 << 8)] +
        [r for k in range(1, 13) for r in (relay_record(0, 250, 255, 1, ack_perturb=k << 8 | 1),
                                           relay_record(1, 90, 255 if k != 5 else 30, 1,
                                                        ack_perturb=k << 8 | 1))])
    return {"tls_through_relay": tls, "ssh_interactive": ssh, "lossy": lossy,
            "tls13_ticket_split": tls13, "ssh_kexinit_behind": ssh_kex, "proxied_tls": proxied_tls,
            "rfb_beyond_forwarder": rfb, "rfb_tls": rfb_tls, "rdp_tls": rdp_tls,
            "turn_over_tcp": turn_tcp}


# ------------------------------------------------------------------------------------------
# inventory_fuzz, address_list_fuzz, geoip_fuzz: the context files (detectors/context).

REPO = pathlib.Path(__file__).resolve().parents[2]
INVENTORY_HEADER = b"address,hostname,mac,person,location,timezone\r\n"

INVENTORY_SEEDS = {
    "example": (REPO / "conf" / "inventory.example.csv").read_bytes(),
    "header_only": INVENTORY_HEADER,
    "reordered_bom_crlf": b"\xef\xbb\xbftimezone,mac,person,location,hostname,address\r\n"
                          b"America/Phoenix,aa-bb-cc-dd-ee-ff,Ann,HQ,ws-1,192.0.2.1\r\n",
    "quoted": INVENTORY_HEADER +
              b'"192.0.2.0/24","a.example.","","Doe, ""JD"" Jane","Line\nbreak",UTC\n',
    "ipv6_and_mapped": INVENTORY_HEADER + b"2001:db8::/32,,,,,Europe/Berlin\n"
                                          b"::ffff:198.51.100.7,,,,,Asia/Kolkata\n",
    "duplicate": INVENTORY_HEADER + b"192.0.2.1,a,,,,\n192.0.2.1,b,,,,\n",
    "bad_zone": INVENTORY_HEADER + b"192.0.2.1,a,,,,../../etc/passwd\n",
    "unterminated": INVENTORY_HEADER + b'192.0.2.1,"a,,,,\n',
}

ADDRESS_LIST_SEEDS = {
    "example": (REPO / "conf" / "lists" / "consumer_vpn.example.txt").read_bytes(),
    "mixed": b"# exits\n192.0.2.0/24\n  198.51.100.7  # one\r\n\t2001:db8:100::/40\n"
             b"::ffff:203.0.113.0/120\n0.0.0.0/0\n::/0\n",
    "duplicates": b"10.0.0.0/8\n10.0.0.0/8\n10.1.0.0/16\n",
    "host_bits": b"192.0.2.1/24\n",
    "range": b"192.0.2.1 - 192.0.2.9\n",
}


def stun_attr(attr_type, value):
    return struct.pack(">HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def stun_message(message_type, attributes, transaction_id):
    return struct.pack(">HHI", message_type, len(attributes), 0x2112A442) + transaction_id + attributes


TURN_PEER = stun_attr(0x0012, b"\x00\x01" + struct.pack(">H", 50000 ^ 0x2112) +
                      bytes(a ^ b for a, b in zip([203, 0, 113, 9], b"\x21\x12\xa4\x42")))
ICE_ATTRS = stun_attr(0x0006, b"abcd:efgh") + stun_attr(0x0008, b"m" * 20)


def turn_indication(message_type, inner, transaction_id):
    """A Send (0x0016) or Data (0x0017) indication relaying `inner` for TURN_PEER."""
    return stun_message(message_type, TURN_PEER + stun_attr(0x0013, inner), transaction_id)


def stun_turn_seeds():
    """stun_fuzz: what TURN relays for a peer before a channel is bound."""
    check = stun_message(0x0001, ICE_ATTRS, b"i" * 12)

    def channel(data):  # padded, as over TCP
        return struct.pack(">HH", 0x4001, len(data)) + data + bytes(-len(data) % 4)

    # TURN over TCP (byte 0: segments of 4 bytes after the first frame, a gap every second
    # segment in the lossy pass): a check, one in ChannelData, media longer than kept.
    stream = bytes([0x03 | 0x10]) + check + channel(check) + channel(b"\x80\x60" + bytes(700)) + \
        channel(stun_message(0x0101, b"", b"i" * 12))
    return {"turn_send_indication": turn_indication(0x0016, check, b"s" * 12),
            "turn_data_indication": turn_indication(0x0017, stun_message(0x0101, b"", b"i" * 12),
                                                    b"d" * 12),
            "turn_tcp_stream": stream}


def relay_udp_record(direction, kind, step, payload=b"", resend=False):
    control = direction | (kind << 1) | (resend << 3) | (step << 4)
    return bytes([control, len(payload)]) + payload


def relay_udp_seeds():
    """relay_udp_fuzz: records of a control byte (bit 0 direction, bits 1-2 raw / ICE check /
    success / check in ChannelData, bit 3 resend, bits 4-7 step x 8 ms, 15 = 40 s), a length
    and the payload (its first byte the transaction id), see relay_udp_fuzz.cc."""
    media = b"\x80\x60" + bytes(60)
    session = b"".join(
        relay_udp_record(0, 1, 1, bytes([i])) + relay_udp_record(0, 0, 0, media) +
        relay_udp_record(1, 2, 10, bytes([i])) + relay_udp_record(1, 1, 5, bytes([128 + i])) +
        relay_udp_record(0, 2, 0, bytes([128 + i]))
        for i in range(12))
    turn = b"".join(
        relay_udp_record(0, 3, 1, bytes([i])) + relay_udp_record(1, 2, 12, bytes([i])) +
        relay_udp_record(0, 1, 2, bytes([i + 1]), resend=True)
        for i in range(6))
    late = relay_udp_record(0, 0, 1, media) + relay_udp_record(0, 0, 15, media) + \
        relay_udp_record(0, 1, 1, b"\x07") + relay_udp_record(1, 2, 15, b"\x07")
    # Before a channel is bound: checks in Send indications, answers in Data indications
    # (raw records: the whole datagram as given), then the client's ChannelBind.
    indications = b"".join(
        relay_udp_record(0, 0, 1, turn_indication(
            0x0016, stun_message(0x0001, ICE_ATTRS, bytes([i]) * 12), b"s" * 12)) +
        relay_udp_record(1, 0, 12, turn_indication(
            0x0017, stun_message(0x0101, b"", bytes([i]) * 12), b"d" * 12))
        for i in range(4)) + relay_udp_record(
            0, 0, 1, stun_message(0x0009, stun_attr(0x000c, b"\x40\x01\x00\x00") + TURN_PEER,
                                  b"c" * 12))
    # QUIC (raw records whose first byte has its top bit set, see Quic in relay_udp_fuzz.cc):
    # the client's padded Initial, the server's Initial from its own ID, the client's
    # Handshake packet to it; a Retry answered by a new Initial; an Initial sent again.
    client_initial = relay_udp_record(0, 0, 0, b"\xc0\x1c" + b"h" * 40)
    quic = client_initial + relay_udp_record(1, 0, 3, b"\xc0\x07" + b"s" * 40) + \
        relay_udp_record(1, 0, 0, b"\xe0\x07" + b"s" * 200) + \
        relay_udp_record(0, 0, 10, b"\xe0\x0d" + b"a" * 20)
    retry = client_initial + relay_udp_record(1, 0, 3, b"\xf0\x0b" + b"r" * 20) + \
        relay_udp_record(0, 0, 1, b"\xc0\x1e" + b"h" * 40) + \
        relay_udp_record(1, 0, 3, b"\xc0\x0b" + b"s" * 40) + \
        relay_udp_record(0, 0, 10, b"\x40\x02" + b"a" * 20)
    resent = client_initial + relay_udp_record(0, 0, 14, b"\xc0\x1c" + b"h" * 40) + \
        relay_udp_record(1, 0, 3, b"\xc0\x07" + b"s" * 40) + \
        relay_udp_record(0, 0, 10, b"\xe0\x0d" + b"a" * 20)
    return {"session": session, "turn_and_resent": turn, "late": late,
            "turn_indications": indications, "quic_opening": quic, "quic_retry": retry,
            "quic_resent": resent}


def geoip_seeds():
    """The unit tests' databases, written by their Perl script (skipped without it)."""
    import subprocess
    import tempfile
    script = REPO / "tests" / "unit" / "detectors" / "context" / "make_test_mmdb.pl"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["perl", str(script), tmp], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"geoip_fuzz seeds not rewritten ({e}); "
                  "apt-get install libmaxmind-db-writer-perl")
            return {}
        return {name: (pathlib.Path(tmp) / name).read_bytes()
                for name in ("context_test.mmdb", "context_test_v4.mmdb")}


# ------------------------------------------------------------------------------------------
# pcapng_fuzz: whole pcapng files.

def pcapng_block(block_type, body, order="<"):
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def pcapng_section(order="<"):
    return pcapng_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def pcapng_interface(link_type, snaplen, order="<", tsresol=None, tsoffset=None):
    options = b""
    if tsresol is not None:
        options += struct.pack(order + "HHB3x", 9, 1, tsresol)
    if tsoffset is not None:
        options += struct.pack(order + "HHq", 14, 8, tsoffset)
    options += struct.pack(order + "HH", 0, 0)
    return pcapng_block(1, struct.pack(order + "HHI", link_type, 0, snaplen) + options, order)


def pcapng_enhanced(interface, units, frame, order="<"):
    return pcapng_block(6, struct.pack(order + "IIIII", interface, units >> 32,
                                       units & 0xffffffff, len(frame), len(frame)) + frame, order)


def pcapng_seeds():
    """Two link types in one section, both byte orders, simple/obsolete/skipped blocks; and,
    with Wireshark's mergecap installed, the file it writes from two captures."""
    syn = ipv4(TCP, "10.0.0.1", "10.0.0.2", tcp(40000, 443, SYN))
    hello = ipv4(UDP, "10.0.0.1", "10.0.0.2", udp(5353, 53, b"\x12\x34\x01\x00"))
    seeds = {
        "two_link_types.pcapng":
            pcapng_section() + pcapng_interface(1, 262144) +
            pcapng_interface(101, 1500, tsresol=9) +
            pcapng_enhanced(0, 1700000000000000, eth(0x0800, syn)) +
            pcapng_enhanced(1, 1700000000500000000, hello),
        "big_endian_sll.pcapng":
            pcapng_section(">") + pcapng_interface(113, 65535, ">", tsresol=0x8a,
                                                   tsoffset=1700000000) +
            pcapng_enhanced(0, 5 * 1024, b"\0\0\0\1\0\6" + b"\0" * 8 + b"\x08\x00" + syn,
                            ">"),
        "simple_obsolete_skipped.pcapng":
            pcapng_section() + pcapng_interface(101, 96) +
            pcapng_block(2, struct.pack("<HHIIII", 0, 0, 0, 1000000, len(syn), len(syn)) + syn) +
            pcapng_block(3, struct.pack("<I", len(hello)) + hello) +
            pcapng_block(4, struct.pack("<HH", 0, 0)) +
            pcapng_block(5, struct.pack("<IIIHH", 0, 0, 0, 0, 0)),
        "two_sections.pcapng":
            pcapng_section() + pcapng_interface(1, 0) +
            pcapng_enhanced(0, 1000000, eth(0x0800, syn)) +
            pcapng_section(">") + pcapng_interface(101, 0, ">") +
            pcapng_enhanced(0, 2000000, hello, ">"),
    }
    import shutil
    import subprocess
    import tempfile
    if shutil.which("mergecap") and shutil.which("editcap"):
        # One capture as Ethernet, one cut to raw IP (editcap -C 14 -T rawip): mergecap keeps
        # both link types, each with its interface description.
        golden = REPO / "tests" / "golden"
        with tempfile.TemporaryDirectory() as tmp:
            rdp, vnc = pathlib.Path(tmp) / "rdp.pcap", pathlib.Path(tmp) / "vnc.pcap"
            raw, out = pathlib.Path(tmp) / "raw.pcap", pathlib.Path(tmp) / "merged.pcapng"
            subprocess.run(["editcap", "-r", str(golden / "rdp_session" / "input.pcap"),
                            str(rdp), "1-12"], check=True)
            subprocess.run(["editcap", "-r", str(golden / "vnc_session" / "input.pcap"),
                            str(vnc), "1-12"], check=True)
            subprocess.run(["editcap", "-C", "14", "-T", "rawip", str(vnc), str(raw)],
                           check=True)
            subprocess.run(["mergecap", "-F", "pcapng", "-w", str(out), str(rdp), str(raw)],
                           check=True)
            seeds["mergecap_ether_rawip.pcapng"] = out.read_bytes()
    else:
        print("pcapng_fuzz: mergecap seed not rewritten (apt-get install tshark)")
    return seeds


def write(target, seeds):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (directory / name).write_bytes(data)


def quic_handshake_seed(pcap, client_port, datagrams=12):
    """quic_handshake_fuzz: the first datagrams of one QUIC connection of a capture (the flow
    of the client's UDP port), as records of a control byte (bit 0 direction, 0 the client;
    bits 1-7 the time step x 2 ms), a 2-byte length and the datagram. Needs tshark."""
    import subprocess
    rows = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", f"udp.port == {client_port}",
         "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.srcport", "-e", "udp.payload"],
        capture_output=True, text=True, check=True).stdout.split("\n")[:datagrams]
    out, last = b"", None
    for row in filter(None, rows):
        t, sport, payload = row.split("\t")
        data = bytes.fromhex(payload.replace(":", ""))
        step = 0 if last is None else min(127, round((float(t) - last) * 1000 / 2))
        last = float(t)
        out += bytes([(0 if int(sport) == client_port else 1) | (step << 1)]) + \
            struct.pack("!H", len(data)) + data
    return out


def main():
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "--quic-seed":
        # python3 tests/fuzz/make_seeds.py --quic-seed NAME PCAP CLIENT_PORT: one seed of
        # quic_handshake_fuzz from a real capture (the committed ones: see that target).
        write("quic_handshake_fuzz", {sys.argv[2]: quic_handshake_seed(sys.argv[3], int(sys.argv[4]))})
        return
    write("decoder_fuzz", decoder_seeds())
    write("remote_access_fuzz", remote_access_seeds())
    write("config_fuzz", CONFIG_SEEDS)
    write("relay_fuzz", relay_seeds())
    write("relay_udp_fuzz", relay_udp_seeds())
    write("stun_fuzz", stun_turn_seeds())
    write("inventory_fuzz", INVENTORY_SEEDS)
    write("address_list_fuzz", ADDRESS_LIST_SEEDS)
    write("geoip_fuzz", geoip_seeds())
    write("pcapng_fuzz", pcapng_seeds())
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"seed corpora in {CORPUS}: {total} bytes")


if __name__ == "__main__":
    main()
