#pragma once

// SSH wire builders for unit tests and fuzz targets: the binary packets of a setup before
// NEWKEYS (RFC 4253 6), unencrypted and without a MAC.

#include <cstddef>
#include <cstdint>
#include <string>

namespace relaywatch::detectors::ssh_wire {

inline constexpr char kBanner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n";

// A packet's first six bytes: its length (what follows the length field), the padding
// length and the message number.
inline std::string PacketHeader(std::uint32_t length, std::uint8_t padding, std::uint8_t message) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16),
          static_cast<char>(length >> 8),  static_cast<char>(length),
          static_cast<char>(padding),      static_cast<char>(message)};
}

// A whole packet: `body` bytes of payload after the message number, 4 bytes of padding.
inline std::string Packet(std::uint8_t message, std::size_t body) {
  std::string p = PacketHeader(static_cast<std::uint32_t>(1 + 1 + body + 4), 4, message);
  p.append(body, 'x');
  p.append(4, '\0');
  return p;
}

// A KEXINIT of `body` bytes after its message number (at least 5): filler, then its
// first_kex_packet_follows boolean and the reserved uint32 (RFC 4253 7.1).
inline std::string KexInit(std::size_t body, bool first_kex_packet_follows = false) {
  std::string p = Packet(20, body);
  const std::size_t flag = p.size() - 4 - 5;  // before the padding: boolean, uint32
  p[flag] = first_kex_packet_follows ? '\1' : '\0';
  p.replace(flag + 1, 4, 4, '\0');
  return p;
}

}  // namespace relaywatch::detectors::ssh_wire
