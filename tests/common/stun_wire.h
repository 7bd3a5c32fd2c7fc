#pragma once

// STUN wire builders for unit tests and fuzz targets: ICE checks and their answers (RFC 8489,
// RFC 8445 7.2.2) and TURN ChannelData (RFC 8656 12.4). No FINGERPRINT, and MESSAGE-INTEGRITY
// is filler: the parsers check sizes, not keys.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace relaywatch::detectors::stun_wire {

inline constexpr std::uint16_t kBindingRequest = 0x0001;
inline constexpr std::uint16_t kBindingSuccess = 0x0101;

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

// The message as TURN relays it on a bound channel.
inline std::string InChannel(const std::string& message, std::uint16_t channel = 0x4000) {
  return std::string{static_cast<char>(channel >> 8), static_cast<char>(channel & 0xff),
                     static_cast<char>((message.size() >> 8) & 0xff),
                     static_cast<char>(message.size() & 0xff)} +
         message;
}

}  // namespace relaywatch::detectors::stun_wire
