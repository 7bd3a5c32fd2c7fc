#pragma once

// STUN wire builders for unit tests and fuzz targets: ICE checks and their answers (RFC 8489,
// RFC 8445 7.2.2) and how TURN relays them: Send and Data indications, a channel's binding
// and ChannelData (RFC 8656 11, 12). No FINGERPRINT, and MESSAGE-INTEGRITY
// is filler: the parsers check sizes, not keys.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace relaywatch::detectors::stun_wire {

inline constexpr std::uint16_t kBindingRequest = 0x0001;
inline constexpr std::uint16_t kBindingSuccess = 0x0101;
inline constexpr std::uint16_t kSendIndication = 0x0016;
inline constexpr std::uint16_t kDataIndication = 0x0017;
inline constexpr std::uint16_t kChannelBindRequest = 0x0009;

// One attribute: type, length, value, padding to a multiple of 4.
inline std::string Attribute(std::uint16_t type, std::string_view value) {
  std::string a = {static_cast<char>(type >> 8), static_cast<char>(type & 0xff),
                   static_cast<char>((value.size() >> 8) & 0xff),
                   static_cast<char>(value.size() & 0xff)};
  a += value;
  a.append((4 - value.size() % 4) % 4, '\0');
  return a;
}

// XOR-PEER-ADDRESS (RFC 8656 14.3) of an IPv4 peer a.b.c.d:port, XORed with the cookie.
inline std::string XorPeerAddress(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d,
                                  std::uint16_t port) {
  const std::uint16_t x_port = port ^ 0x2112;
  const std::string value = {0,
                             1,
                             static_cast<char>(x_port >> 8),
                             static_cast<char>(x_port & 0xff),
                             static_cast<char>(a ^ 0x21),
                             static_cast<char>(b ^ 0x12),
                             static_cast<char>(c ^ 0xa4),
                             static_cast<char>(d ^ 0x42)};
  return Attribute(0x0012, value);
}

// A message of `type` whose 12-byte transaction id starts with `id`. An ICE check carries
// USERNAME and MESSAGE-INTEGRITY; `extra` bytes follow as further attributes (a fuzzer's,
// valid or not), and the header's length covers them.
inline std::string Message(std::uint16_t type, std::uint8_t id, bool ice = false,
                           std::string_view extra = {}) {
  std::string attributes;
  if (ice) {
    attributes += std::string("\x00\x06\x00\x09", 4) + "abcd:efgh" + std::string(3, '\0');
    attributes += std::string("\x00\x08\x00\x14", 4) + std::string(20, 'm');
  }
  attributes += extra;
  std::string m = {static_cast<char>(type >> 8), static_cast<char>(type & 0xff),
                   static_cast<char>((attributes.size() >> 8) & 0xff),
                   static_cast<char>(attributes.size() & 0xff)};
  m += std::string("\x21\x12\xa4\x42", 4);
  m.push_back(static_cast<char>(id));
  m += std::string(11, 'x');
  return m + attributes;
}

inline std::string IceCheck(std::uint8_t id) {
  return Message(kBindingRequest, id, true);
}
inline std::string IceAnswer(std::uint8_t id) {
  return Message(kBindingSuccess, id);
}

// The message as a TURN client sends it for a peer (kSendIndication) or its server hands it
// over from the peer (kDataIndication), before a channel is bound: `peer` is an
// XorPeerAddress.
inline std::string InIndication(std::uint16_t type, const std::string& peer,
                                const std::string& message, std::uint8_t id = 0xee) {
  return Message(type, id, false, peer + Attribute(0x0013, message));
}

// The TURN client's request binding `channel` to `peer`.
inline std::string ChannelBind(std::uint16_t channel, const std::string& peer,
                               std::uint8_t id = 0xcb) {
  const std::string number = {static_cast<char>(channel >> 8), static_cast<char>(channel & 0xff), 0,
                              0};
  return Message(kChannelBindRequest, id, false, Attribute(0x000c, number) + peer);
}

// The message as TURN relays it on a bound channel.
inline std::string InChannel(const std::string& message, std::uint16_t channel = 0x4000) {
  return std::string{static_cast<char>(channel >> 8), static_cast<char>(channel & 0xff),
                     static_cast<char>((message.size() >> 8) & 0xff),
                     static_cast<char>(message.size() & 0xff)} +
         message;
}

}  // namespace relaywatch::detectors::stun_wire
