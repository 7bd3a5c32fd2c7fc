#!/usr/bin/env python3
"""gro_twin.py merges the same segments whatever link layer carries them.

A golden capture (Ethernet) is rewritten with Linux cooked headers, v1 (SLL, 113) and v2
(SLL2, 276, what `tcpdump -i any` writes since libpcap 1.10), and as raw IP; each must merge
exactly the segments the Ethernet capture merges, into the same IP packets.
"""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gro_twin import ip_offset, merge_packets  # noqa: E402
from ipv6_twin import read_capture  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
CASE = "proxied_tls"  # TLS through dante: back-to-back segments both ways


def ethernet_packets():
    items = list(read_capture(os.path.join(GOLDEN, CASE, "input.pcap")))
    assert [i[1] for i in items if i[0] == "if"] == [1], "the case is one Ethernet interface"
    # IP only: raw IP carries nothing else (the case's ARP would not survive the move).
    return [(ts, frame, orig) for ts, _if, frame, orig in (i for i in items if i[0] != "if")
            if frame[12:14] in (b"\x08\x00", b"\x86\xdd")]


def relink(frame, linktype):
    """The frame's IP packet behind another link layer's header."""
    ethertype, ip = frame[12:14], frame[14:]
    if linktype == 113:  # packet type, ARPHRD, address length, address (8), protocol
        return struct.pack("!HHH", 0, 1, 6) + frame[6:12] + b"\0\0" + ethertype + ip
    if linktype == 276:  # protocol, reserved, interface index, ARPHRD, packet type, length, address
        return ethertype + b"\0\0" + struct.pack("!IHBB", 2, 1, 0, 6) + frame[6:12] + b"\0\0" + ip
    return ip  # raw IP


def ip_packets(linktype, packets):
    return [frame[ip_offset(linktype, frame):] for _ts, frame, _orig in packets
            if ip_offset(linktype, frame) is not None]


class LinkTypes(unittest.TestCase):
    def test_every_link_type_merges_as_ethernet(self):
        packets = ethernet_packets()
        want, want_merged = merge_packets(1, packets, 1000)
        self.assertGreater(want_merged, 10, "the case must exercise the merge")
        for linktype in (113, 276, 101):
            with self.subTest(linktype=linktype):
                moved = [(ts, relink(f, linktype), orig - len(f) + len(relink(f, linktype)))
                         for ts, f, orig in packets]
                got, merged = merge_packets(linktype, moved, 1000)
                self.assertEqual(merged, want_merged)
                self.assertEqual([ts for ts, _f, _o in got], [ts for ts, _f, _o in want])
                self.assertEqual(ip_packets(linktype, got), ip_packets(1, want))

    def test_a_cooked_v2_frame_of_another_protocol_passes(self):
        arp = struct.pack("!H", 0x0806) + b"\0" * 40
        self.assertIsNone(ip_offset(276, arp))
        self.assertIsNone(ip_offset(276, b"\x08\x00"))  # shorter than its header


if __name__ == "__main__":
    unittest.main()
