#pragma once

// A TLS 1.3 client's first application data, told apart from an answer (RFC 8446 2, 4.6.1):
// the client writes it right behind its Finished without waiting for the server, and the
// NewSessionTicket messages that the server sends on receipt of the Finished ask for no
// answer. When jitter on a far client's path splits the two, the tickets land between them
// and the data looks like an answer to the tickets, as quick as the split was long (a few ms
// for a hidden leg of hundreds). Sequence numbers cannot tell (the server's next data
// acknowledges the data either way); the record layer can: the client's first encrypted
// record after the ServerHello is its Finished, the next one its data.
//
// Bad input: the server's records are read by ServerHelloReader, the client's by
// common::HandshakeStream; a gap in either direction, a stream that is not TLS or a
// ServerHello that does not parse ends the watch (done()), so the turnarounds go on as
// without it.
// Memory: two record-layer readers; the server's holds at most one handshake message of
// ServerHelloReader::kMaxMessageBytes (the ServerHello is the one read), the client's none
// (only its record boundaries count). For the setup of a TLS flow only: the owner releases it
// once done(), at the latest when the ServerHello is read for TLS 1.2 or the client's first
// data for 1.3.

#include <cstddef>
#include <cstdint>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"
#include "detectors/common/tls.h"
#include "detectors/relay/server_hello.h"

namespace relaywatch::detectors::relay {

class Tls13FirstData {
 public:
  // One TCP segment of the flow that carries payload, retransmissions included (bytes seen
  // before are skipped). Returns true for the client segment that begins the client's first
  // application data when its Finished went in an earlier segment: it answers nothing.
  bool OnSegment(const decode::DecodedPacket& p, bool from_client);
  // Nothing more to learn: not TLS 1.3, the first data seen, or the record layer lost.
  bool done() const { return done_; }

  // Segments the client may send before its stream is found to be TLS.
  static constexpr int kMaxSearchSegments = ServerHelloReader::kMaxSearchSegments;

 private:
  ServerHelloReader server_;
  common::TcpCursor client_cursor_;
  common::HandshakeStream client_stream_{0};
  int client_segments_ = 0;
  bool tls13_ = false;
  int client_records_ = 0;  // application_data records the client began since the ServerHello
  bool done_ = false;
};

}  // namespace relaywatch::detectors::relay
