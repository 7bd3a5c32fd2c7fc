#pragma once

#include <cstdint>
#include <span>

#include "capture/base/ip_address.h"
#include "capture/base/packet_time.h"

namespace relaywatch::decode {

inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoGre = 47;
inline constexpr std::uint8_t kProtoIcmpV6 = 58;

// TCP header flag bits (RFC 9293).
inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;

// Options of a TCP header, kept for stack fingerprinting and RTT work.
struct TcpOptions {
  std::uint16_t mss = 0;
  std::uint8_t window_scale = 0;
  bool has_mss = false;
  bool has_window_scale = false;
  bool sack_permitted = false;
  bool has_timestamps = false;
  std::uint32_t ts_value = 0;
  std::uint32_t ts_echo = 0;
  // Option kinds in wire order (p0f-style layout), at most kMaxLayout of them.
  static constexpr int kMaxLayout = 16;
  std::uint8_t layout[kMaxLayout] = {};
  std::uint8_t layout_size = 0;
};

// One packet after decode. Views point into the capture buffer and live only as long as
// the frame they were decoded from (zero copy). For tunnelled traffic the addresses, ports
// and payload are those of the innermost flow.
struct DecodedPacket {
  PacketTime ts;
  std::uint32_t wire_length = 0;  // length on the wire, not the captured length
  std::uint8_t ip_version = 0;
  IpAddress src;
  IpAddress dst;
  std::uint8_t ttl = 0;  // IPv4 TTL or IPv6 hop limit
  std::uint16_t ip_id = 0;
  bool dont_fragment = false;
  std::uint8_t protocol = 0;  // innermost L4 protocol number
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  // TCP only.
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint16_t window = 0;
  std::uint8_t tcp_flags = 0;
  TcpOptions tcp_options;
  // ICMP only.
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  // L4 payload bytes that were captured; payload_length is what the headers announce.
  std::span<const std::uint8_t> payload;
  std::uint32_t payload_length = 0;
  std::uint8_t tunnel_depth = 0;  // 0 = not tunnelled
  // Of tunnel_depth, the encapsulations carrying IP itself (GRE or Geneve with IP, IP in IP):
  // a host's or a router's tunnel. The others carry Ethernet frames (VXLAN, ERSPAN, GRE or
  // Geneve bridging): a traffic mirror's copy to the sensor or a data-centre fabric.
  std::uint8_t ip_tunnel_depth = 0;
  std::uint16_t vlan_id = 0;      // outermost 802.1Q tag, 0 when untagged

  bool is_tcp() const { return protocol == kProtoTcp; }
  bool is_udp() const { return protocol == kProtoUdp; }
  bool has(std::uint8_t flag) const { return (tcp_flags & flag) != 0; }
};

}  // namespace relaywatch::decode
