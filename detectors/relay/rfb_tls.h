#pragma once

// An RFB session encrypted by VeNCrypt's TLS: which of the viewer's segments are only
// requests for screen updates, told by the length of the records that carry them.
//
// A viewer asks for the next update after each one, whatever its person does, so a blinking
// caret or a clock on the screen keeps requests coming every few hundred ms and merges the
// person's pauses into one ON period (stepping stones). In clear RFB the messages are read
// (remote_access::ParseRfbClientMessages); under TLS only their sizes show. Of the client
// messages (RFC 6143 7.5) only FramebufferUpdateRequest is 10 bytes (so is the
// EnableContinuousUpdates extension, no input either); a KeyEvent is 8, a PointerEvent 6,
// ClientCutText 8 and more, QEMU's extended key event 12. TigerVNC and libvncclient flush each
// message on its own, so each is a record of its own, and under an AEAD cipher suite a
// record's length is its plaintext's plus a constant (common::AeadRecordOverhead) that the
// ServerHello names. A segment of nothing but such 10-byte records is no input.
//
// Bad input: the server's records are read by ServerHelloReader; the viewer's by a walk over record headers that gives up at a header that is not
// TLS, a gap or a snaplen cut and picks up again at the next segment that begins with one.
// Until the ServerHello has named an AEAD suite, and whenever the walk is lost, every
// segment counts as input, as before this reader.
// Memory: a ServerHelloReader until the ServerHello is read, and a few words. Made only for
// RFB flows whose viewer starts TLS.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"
#include "detectors/common/tls.h"
#include "detectors/relay/server_hello.h"

namespace relaywatch::detectors::relay {

class RfbTlsInput {
 public:
  // A segment of the RFB server's, from the viewer's ClientHello on: its ServerHello names
  // the cipher suite.
  void OnServerSegment(const decode::DecodedPacket& p);
  // A segment of the viewer's, from its ClientHello on, repeats included. True when its new
  // bytes are whole records that each hold one update request and nothing else.
  bool OnViewerSegment(const decode::DecodedPacket& p);
  // The record overhead, once a ServerHello named an AEAD suite.
  std::optional<std::size_t> overhead() const { return overhead_; }

  // FramebufferUpdateRequest (RFC 6143 7.5.3).
  static constexpr std::size_t kRequestBytes = 10;

 private:
  std::optional<ServerHelloReader> server_{std::in_place};  // reset once it has read
  std::optional<std::size_t> overhead_;

  common::TcpCursor viewer_cursor_;
  bool synced_ = false;                                      // at a known place in the records
  std::uint8_t header_[common::kTlsRecordHeaderBytes] = {};  // a header split over segments
  std::size_t header_size_ = 0;
  std::size_t remaining_ = 0;  // bytes of the current record still to come
};

}  // namespace relaywatch::detectors::relay
