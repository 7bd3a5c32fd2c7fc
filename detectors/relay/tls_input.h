#pragma once

// A remote desktop encrypted by TLS: which of its client's segments its software sends on
// its own, after each screen update, told by the length of the records that carry them.
//
// A remote-desktop client answers each screen update whatever its person does, so a blinking
// caret or a clock on the screen keeps those answers coming every few hundred ms and merges
// the person's pauses into one ON period (stepping stones). In clear RFB the messages are
// read (remote_access::ParseRfbClientMessages); under TLS only their sizes show, and the
// clients write each message as a record of its own. Under an AEAD cipher suite a record's
// length is its plaintext's plus a constant (common::AeadRecordOverhead) that the
// ServerHello names. A segment of nothing but records of the protocol's answer sizes is no
// input:
// - RFB under VeNCrypt (RFC 6143 7.5): FramebufferUpdateRequest is 10 bytes (so is the
//   EnableContinuousUpdates extension, no input either); a KeyEvent is 8, a PointerEvent 6,
//   ClientCutText 8 and more, QEMU's extended key event 12.
// - RDP under TLS or CredSSP: the frame acknowledgements. TS_FRAME_ACKNOWLEDGE_PDU (surface
//   commands, MS-RDPBCGR 2.2.14.3) is a slow-path data PDU of 36-37 bytes (TPKT 4, X.224 3,
//   MCS send-data request 7 or 8 by its length's encoding, share data header 18, frame id 4);
//   RDPGFX_FRAME_ACKNOWLEDGE_PDU and RDPGFX_QOE_FRAME_ACKNOWLEDGE_PDU (the graphics pipeline,
//   MS-RDPEGFX 2.2.2.13 and 2.2.2.21) are 20 bytes each in a dynamic channel's data PDU:
//   44-48 with TPKT, X.224, MCS 7-8, the channel PDU header 8 and the DVC header 2-5. Keys
//   and pointer moves go as fast-path input, 2 bytes plus 2-7 per event; only a batch of
//   5-6 pointer moves or 17 and more keys in one PDU is as long.
//
// Bad input: the server's records are read by ServerHelloReader; the client's by a walk over
// record headers that gives up at a header that is not TLS, a gap or a snaplen cut and picks
// up again at the next segment that begins with one. Until the ServerHello has named an AEAD
// suite, and whenever the walk is lost, every segment counts as input.
// Memory: a ServerHelloReader until the ServerHello is read, and a few words. Made only for
// RFB and RDP flows whose client (the originator) starts TLS.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"
#include "detectors/common/tls.h"
#include "detectors/relay/server_hello.h"

namespace relaywatch::detectors::relay {

class TlsInput {
 public:
  enum class Protocol { kRfb, kRdp };

  explicit TlsInput(Protocol protocol);

  // A segment of the server's, from the client's ClientHello on: its ServerHello names the
  // cipher suite.
  void OnServerSegment(const decode::DecodedPacket& p);
  // A segment of the client's, from its ClientHello on, repeats included. True when its new
  // bytes are whole records that each hold one of the protocol's answers to an update.
  bool OnClientSegment(const decode::DecodedPacket& p);
  // The record overhead, once a ServerHello named an AEAD suite.
  std::optional<std::size_t> overhead() const { return overhead_; }

  // The plaintext lengths of the answers, by protocol (see above).
  static std::span<const std::uint16_t> AnswerBytes(Protocol protocol);

 private:
  bool IsAnswer(std::size_t record_length) const;

  std::span<const std::uint16_t> answers_;
  std::optional<ServerHelloReader> server_{std::in_place};  // reset once it has read
  std::optional<std::size_t> overhead_;

  common::TcpCursor client_cursor_;
  bool synced_ = false;                                      // at a known place in the records
  std::uint8_t header_[common::kTlsRecordHeaderBytes] = {};  // a header split over segments
  std::size_t header_size_ = 0;
  std::size_t remaining_ = 0;  // bytes of the current record still to come
};

}  // namespace relaywatch::detectors::relay
