#pragma once

// JA4, the TLS client fingerprint of FoxIO (BSD-3-Clause, technical_details/JA4.md), and its
// raw (JA4_r), original-order (JA4_o) and raw original-order (JA4_ro) forms, which are part
// of the same BSD specification. No other JA4+ method (JA4S, JA4X, ...) is implemented here:
// they are under a different licence (docs/detection-research.md section 1).
//
// Cost: two SHA-256 over short strings per form. Thread-safety: pure functions.

#include <cstdint>
#include <string>

#include "detectors/common/tls.h"

namespace relaywatch::detectors::common {

enum class Ja4Transport : char { kTcp = 't', kQuic = 'q', kDtls = 'd' };

struct Ja4 {
  std::string ja4;     // a_b_c with b, c hashed over sorted lists
  std::string ja4_r;   // a_ciphers_extensions[_sigalgs], sorted, SNI/ALPN removed
  std::string ja4_o;   // a_b_c with b, c hashed over wire-order lists (SNI/ALPN kept)
  std::string ja4_ro;  // raw wire-order lists
};

// Lists of more than this many values make the raw forms (ja4_r, ja4_ro) empty; the hashed
// forms are always complete. Real ClientHellos carry fewer than 100 of each.
inline constexpr std::size_t kMaxJa4RawListValues = 512;

Ja4 ComputeJa4(const ClientHello& hello, Ja4Transport transport);

// The two characters for a protocol version: "13", "12", "11", "10", "s3", "s2", "d1",
// "d2", "d3", or "00" when unknown.
std::string Ja4VersionCode(std::uint16_t version);

// The two characters for the first ALPN value (`has_alpn` false or an empty value: "00").
std::string Ja4AlpnCode(const std::string& first_alpn_raw);

}  // namespace relaywatch::detectors::common
