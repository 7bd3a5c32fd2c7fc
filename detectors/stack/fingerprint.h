#pragma once

// TCP/IP stack facts from a SYN, free of flows (p0f-style; detection-research.md 7.1-7.3).

#include <cstdint>
#include <optional>
#include <string>

#include "capture/decode/decoded_packet.h"

namespace relaywatch::detectors::stack {

// The initial TTL a sender most likely used: the smallest of 32, 64, 128, 255 at or above
// the observed one (Linux/macOS/IoT 64, Windows 128, network gear 255).
std::uint8_t InitialTtl(std::uint8_t observed);

// The largest IP packet one standard Ethernet frame carries.
inline constexpr std::uint32_t kEthernetMtu = 1500;

// The link MTU a SYN's MSS implies (p0f fp_mtu.c: MSS + 40 for IPv4, + 60 for IPv6).
std::uint32_t MtuFromMss(std::uint16_t mss, int ip_version);

// What sits on a path with this MTU. nullopt for plain Ethernet (1500), jumbo frames and
// loopback, which are no finding. Values from p0f's [mtu] table and the tunnels in
// detection-research.md 7.3.
struct LinkKind {
  std::string kind;    // "pppoe", "ipip", "gre_ipsec", "wireguard", "openvpn", "vpn", ...
  bool tunnel = true;  // false for link types that are not an overlay (PPPoE/DSL, VLAN)
};
std::optional<LinkKind> ClassifyMtu(std::uint32_t mtu);

// Option kinds in wire order as p0f writes them: "mss,nop,ws,sok,ts,eol".
std::string OptionLayout(const decode::TcpOptions& options);

// A SYN's signature (p0f's ver:ittl:olen:mss:wsize,scale:olayout:quirks), without the MSS
// when `with_mss` is false, so the same stack behind two tunnels still compares equal.
struct SynSignature {
  int ip_version = 4;
  std::uint8_t initial_ttl = 0;
  std::uint8_t hops = 0;
  std::uint16_t window = 0;
  std::uint16_t mss = 0;  // 0: no MSS option
  int window_scale = -1;  // -1: no option
  bool timestamps = false;
  bool sack = false;
  bool df = false;
  std::string layout;
  std::string Key(bool with_mss) const;
};
SynSignature SignatureOf(const decode::DecodedPacket& syn);

}  // namespace relaywatch::detectors::stack
