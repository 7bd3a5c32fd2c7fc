#pragma once

// The first ServerHello of a TLS-over-TCP stream, read from the server's segments: what a
// reader of a flow's setup learns from it (its version, its cipher suite).
//
// Bad input: the records are read by common::HandshakeStream; a gap after the stream was
// found to be TLS, a snaplen cut, a stream that is not TLS within kMaxSearchSegments, or a
// ServerHello that does not parse (or is longer than kMaxMessageBytes) ends the reading (kLost).
// Memory: one handshake message of at most kMaxMessageBytes while reading.

#include <cstddef>
#include <cstdint>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"
#include "detectors/common/tls.h"

namespace relaywatch::detectors::relay {

class ServerHelloReader {
 public:
  enum class State : std::uint8_t { kReading, kRead, kLost };

  ServerHelloReader() : stream_(kMaxMessageBytes) {}

  // One segment of the server's that carries payload, retransmissions included (bytes seen
  // before are skipped). Once kRead or kLost, later segments change nothing.
  State OnSegment(const decode::DecodedPacket& p);
  State state() const { return state_; }
  // The ServerHello (a HelloRetryRequest, if the server sent one first), once kRead.
  const common::ServerHello& hello() const { return hello_; }

  // A ServerHello with a post-quantum key share (X25519MLKEM768: 1120 bytes) fits.
  static constexpr std::size_t kMaxMessageBytes = 2048;
  // Segments the server may send before its stream is found to be TLS.
  static constexpr int kMaxSearchSegments = 4;

 private:
  common::TcpCursor cursor_;
  common::HandshakeStream stream_;
  int segments_ = 0;
  State state_ = State::kReading;
  common::ServerHello hello_;
};

}  // namespace relaywatch::detectors::relay
