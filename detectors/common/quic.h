#pragma once

// QUIC Initial packets (RFC 9000 17.2.2, RFC 9001 5): long-header parsing, Initial key
// derivation, header-protection removal and AES-128-GCM decryption with OpenSSL, CRYPTO
// frame extraction, and reassembly of the CRYPTO stream by offset. What comes out is the
// TLS handshake byte stream (ClientHello, ServerHello) that HandshakeMessageAssembler reads.
//
// Versions: QUIC v1 (RFC 9000), v2 (RFC 9369), IETF drafts 22..34 and mvfst's
// 0xfaceb001/0xfaceb002. Google QUIC (Q0xx) carries no TLS and is not handled.
// Bad input: every function reads only inside its span and fails closed (returns false);
// a packet that does not decrypt is dropped, never partly used.
// Cost: per Initial packet one AES-ECB block, one AES-GCM decryption, and for the first
// packet of a flow four HMAC-SHA256. Thread-safety: pure functions, one owner per stream.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"

#include "detectors/common/tls.h"

namespace relaywatch::detectors::common {

inline constexpr std::size_t kMaxQuicConnectionIdBytes = 20;  // RFC 9000 17.2

struct QuicInitialKeys {
  std::array<std::uint8_t, 16> key{};
  std::array<std::uint8_t, 12> iv{};
  std::array<std::uint8_t, 16> hp{};
};

// True for versions whose Initial packets this file can decrypt.
bool IsSupportedQuicVersion(std::uint32_t version);

// RFC 9001 5.2 (RFC 9369 3.3.1 for v2): keys of the client's (`server` false) or server's
// Initial packets, from the Destination Connection ID of the client's first Initial.
bool DeriveQuicInitialKeys(std::uint32_t version, Bytes client_dcid, bool server,
                           QuicInitialKeys& out);

struct QuicLongHeader {
  std::uint32_t version = 0;
  bool initial = false;
  bool handshake = false;  // a Handshake packet (else 0-RTT, when not `initial`)
  Bytes dcid;
  Bytes scid;
  std::size_t pn_offset = 0;     // where the (protected) packet number starts
  std::size_t packet_bytes = 0;  // the whole packet; a coalesced packet may follow
};

// What every long header has in every version (RFC 8999 5.1): the version and the two
// connection IDs (at most kMaxQuicConnectionIdBytes each, as QUIC v1 allows), and where the
// rest of the header begins. False for short headers and truncated ones.
struct QuicLongHeaderIds {
  std::uint32_t version = 0;
  Bytes dcid;
  Bytes scid;
  std::size_t end = 0;
};
bool ParseQuicLongHeaderIds(Bytes datagram, QuicLongHeaderIds& out);

// A Retry packet of a version ParseQuicLongHeader knows.
bool IsQuicRetry(Bytes datagram);

// Parses the long header of the packet at the start of `datagram` (Initial, 0-RTT or
// Handshake; `initial` tells which). False for short headers, Version Negotiation, Retry,
// unsupported versions and truncated packets.
bool ParseQuicLongHeader(Bytes datagram, QuicLongHeader& out);

// Removes header protection from and decrypts the Initial packet `packet` (its first
// header.packet_bytes bytes). On success `plaintext` holds the frames and, when given,
// `packet_number` the packet's number (as sent: exact for the first 2^8..2^32 packets, by
// its encoded length, which covers every Initial a connection sends).
bool DecryptQuicInitial(Bytes packet, const QuicLongHeader& header, const QuicInitialKeys& keys,
                        std::vector<std::uint8_t>& plaintext,
                        std::uint64_t* packet_number = nullptr);

// Calls `on_crypto` for each CRYPTO frame of an Initial packet's plaintext (frames may come
// in any order). Returns false at a malformed frame or one not allowed in Initial packets.
bool ForEachQuicCryptoFrame(Bytes plaintext,
                            absl::FunctionRef<void(std::uint64_t offset, Bytes data)> on_crypto);

// The Largest Acknowledged of the (first) ACK frame in an Initial packet's plaintext
// (RFC 9000 19.3): which of the peer's packets the sender had when it wrote this one.
// Nullopt without an ACK frame, or at a malformed frame before it.
std::optional<std::uint64_t> QuicLargestAcknowledged(Bytes plaintext);

// Puts CRYPTO frame data back in stream order. Only the first `max_bytes` of the stream are
// kept; data beyond, and holes beyond kMaxRanges pieces, are dropped and counted.
class QuicCryptoStream {
 public:
  static constexpr std::size_t kMaxRanges = 64;

  explicit QuicCryptoStream(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  // `on_contiguous` receives, in order and once, each run of bytes that became contiguous
  // with the start of the stream.
  void Add(std::uint64_t offset, Bytes data, absl::FunctionRef<void(Bytes)> on_contiguous);
  std::uint64_t delivered() const { return delivered_; }
  std::uint64_t dropped() const { return dropped_; }
  std::size_t buffered_bytes() const {
    return window_.capacity() + ranges_.capacity() * sizeof(ranges_[0]) + sizeof(*this);
  }

 private:
  std::size_t max_bytes_;
  std::uint64_t delivered_ = 0;  // stream offset up to which bytes were handed out
  // Bytes from `delivered_` on, with holes; `ranges_` lists the filled [begin, end).
  std::vector<std::uint8_t> window_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_;
  std::uint64_t dropped_ = 0;
};

}  // namespace relaywatch::detectors::common
