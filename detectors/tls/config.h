#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

#include "capture/base/config_reader.h"

namespace relaywatch::detectors::tls {

// Bounds of detectors.tls.max_client_hello_bytes. 1 KiB holds any ClientHello of the
// pre-post-quantum era; 64 KiB is well above the largest real one (ML-KEM key shares bring
// Chrome's to about 1.8 KiB) and is the per-direction worst case the state cap is sized for.
inline constexpr std::uint64_t kMinClientHelloBytes = 1024;
inline constexpr std::uint64_t kMaxClientHelloBytesLimit = 65536;

struct TlsConfig {
  bool enabled = true;
  // Largest handshake message reassembled per direction. A longer ClientHello is counted and
  // not fingerprinted; of a longer certificate chain only the first certificate is read.
  std::uint64_t max_client_hello_bytes = 16384;
  // Packets per direction searched for the first handshake record (after a proxy preamble,
  // STUN, ...); once a ClientHello is seen, twice this many payload packets are waited for
  // the server's answer.
  std::uint64_t inspect_packets = 16;
  // Decrypt QUIC Initial packets (RFC 9001) to fingerprint the ClientHello inside.
  bool quic = true;
};

// Reads detectors.tls; unknown keys and bad values are errors with file:line:col.
absl::StatusOr<TlsConfig> ParseTlsConfig(const config::Section& section);

}  // namespace relaywatch::detectors::tls
