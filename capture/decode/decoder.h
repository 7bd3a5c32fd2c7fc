#pragma once

#include <cstdint>
#include <span>

#include "capture/base/packet_time.h"
#include "capture/decode/decode_counters.h"
#include "capture/decode/decoded_packet.h"

namespace relaywatch::decode {

// libpcap DLT_* values this decoder understands (pcap_datalink() numbering on Linux).
inline constexpr int kDltNull = 0;
inline constexpr int kDltEthernet = 1;
inline constexpr int kDltPpp = 9;
inline constexpr int kDltPppSerial = 50;  // PPP in HDLC-like framing (or Cisco HDLC)
inline constexpr int kDltPppEther = 51;   // PPPoE session frames without Ethernet
inline constexpr int kDltCiscoHdlc = 104;
inline constexpr int kDltIeee80211 = 105;  // 802.11 frames as a monitor-mode interface gives them
inline constexpr int kDltRadiotap = 127;   // 802.11 after a radiotap header (DLT_IEEE802_11_RADIO)
inline constexpr int kDltRaw = 12;
inline constexpr int kDltRawOpenBsd = 14;
inline constexpr int kDltLinktypeRaw = 101;
inline constexpr int kDltLoop = 108;
inline constexpr int kDltLinuxSll = 113;
inline constexpr int kDltPpi = 192;  // Per-Packet Information header, then any link type
inline constexpr int kDltLinuxSll2 = 276;
inline constexpr int kDltIpv4 = 228;
inline constexpr int kDltNflog = 239;
inline constexpr int kDltIpv6 = 229;

// Whether a link type can be decoded; pcap sources reject others at open time.
bool IsSupportedLinkType(int dlt);

// Layers of encapsulation (VLAN tags, MPLS labels, tunnels) followed before giving up.
inline constexpr int kMaxEncapsulationDepth = 8;

// Decodes one captured frame into `out`: link layer (Ethernet, cooked, raw IP, loopback,
// PPP, Cisco HDLC, NFLOG, PPI, 802.11 data frames with or without radiotap), VLAN/QinQ, MPLS,
// PPPoE, IPv4/IPv6 (extension headers), TCP/UDP/ICMP, and GRE, IP-in-IP, VXLAN (UDP 4789) and
// Geneve (UDP 6081) tunnels, whose innermost flow is the one reported.
//
// Returns true when `out` holds an IP packet with a decoded L4 header. Otherwise the reason
// is counted in `counters` and false is returned. Never reads past `frame`, never throws,
// never allocates. `out.payload` points into `frame`.
bool DecodeFrame(int dlt, std::span<const std::uint8_t> frame, std::uint32_t wire_length,
                 PacketTime ts, DecodedPacket& out, DecodeCounters& counters);

}  // namespace relaywatch::decode
