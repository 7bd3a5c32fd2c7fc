#pragma once

// Ethernet/IPv4 frames and DNS messages built in code, for the daemon tests. Checksums are
// left zero: the decoder does not verify them.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "capture/base/ip_address.h"

namespace relaywatch::daemon::test_frames {

inline void Put16(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

inline void Put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  Put16(out, v >> 16);
  Put16(out, v);
}

inline std::vector<std::uint8_t> Ipv4Frame(const char* src, const char* dst, std::uint8_t protocol,
                                           const std::vector<std::uint8_t>& l4) {
  std::vector<std::uint8_t> f(12, 0);  // MAC addresses
  Put16(f, 0x0800);                    // EtherType IPv4
  f.push_back(0x45);                   // version 4, 20-byte header
  f.push_back(0);
  Put16(f, static_cast<std::uint32_t>(20 + l4.size()));
  Put32(f, 0x00014000);  // id 1, don't fragment
  f.push_back(64);       // TTL
  f.push_back(protocol);
  Put16(f, 0);  // header checksum
  const IpAddress s = *IpAddress::Parse(src);
  const IpAddress d = *IpAddress::Parse(dst);
  f.insert(f.end(), s.data(), s.data() + 4);
  f.insert(f.end(), d.data(), d.data() + 4);
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

inline std::vector<std::uint8_t> TcpFrame(const char* src, int sport, const char* dst, int dport,
                                          std::uint8_t flags, std::uint32_t seq,
                                          const std::string& payload, std::uint32_t ack = 0) {
  std::vector<std::uint8_t> tcp;
  Put16(tcp, sport);
  Put16(tcp, dport);
  Put32(tcp, seq);
  Put32(tcp, ack);
  tcp.push_back(0x50);  // 20-byte header
  tcp.push_back(flags);
  Put16(tcp, 0xffff);  // window
  Put32(tcp, 0);       // checksum, urgent pointer
  tcp.insert(tcp.end(), payload.begin(), payload.end());
  return Ipv4Frame(src, dst, 6, tcp);
}

inline std::vector<std::uint8_t> UdpFrame(const char* src, int sport, const char* dst, int dport,
                                          const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> udp;
  Put16(udp, sport);
  Put16(udp, dport);
  Put16(udp, static_cast<std::uint32_t>(8 + payload.size()));
  Put16(udp, 0);  // no checksum
  udp.insert(udp.end(), payload.begin(), payload.end());
  return Ipv4Frame(src, dst, 17, udp);
}

// A query for example.com/A with transaction id `id`, or its answer (93.184.216.34).
inline std::vector<std::uint8_t> DnsMessage(std::uint16_t id, bool response) {
  std::vector<std::uint8_t> m;
  Put16(m, id);
  Put16(m, response ? 0x8180 : 0x0100);  // QR, RD (and RA)
  Put16(m, 1);                           // questions
  Put16(m, response ? 1 : 0);            // answers
  Put32(m, 0);                           // authority, additional
  for (const std::string label : {"example", "com"}) {
    m.push_back(static_cast<std::uint8_t>(label.size()));
    m.insert(m.end(), label.begin(), label.end());
  }
  m.push_back(0);
  Put32(m, 0x00010001);  // A, IN
  if (response) {
    Put16(m, 0xc00c);      // the question's name
    Put32(m, 0x00010001);  // A, IN
    Put32(m, 60);          // TTL
    Put16(m, 4);
    Put32(m, 0x5db8d822);  // 93.184.216.34
  }
  return m;
}

}  // namespace relaywatch::daemon::test_frames
