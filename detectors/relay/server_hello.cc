#include "detectors/relay/server_hello.h"

namespace relaywatch::detectors::relay {

ServerHelloReader::State ServerHelloReader::OnSegment(const decode::DecodedPacket& p) {
  if (state_ != State::kReading)
    return state_;
  bool segment_start = false;
  bool gap = false;
  const common::Bytes bytes = cursor_.Next(p, segment_start, gap);
  // A gap or a snaplen cut loses record boundaries: what follows cannot be read.
  if ((gap && stream_.state() != common::HandshakeStream::State::kSearching) ||
      p.payload.size() < p.payload_length) {
    state_ = State::kLost;
    return state_;
  }
  stream_.Feed(bytes, segment_start, [&](const common::TlsStreamEvent& e) {
    if (state_ != State::kReading || e.kind != common::TlsStreamEvent::Kind::kHandshake ||
        e.message->type != common::kHandshakeServerHello)
      return;
    state_ = !e.message->truncated && common::ParseServerHello(e.message->body, false, hello_) ==
                                          common::TlsParseStatus::kOk
                 ? State::kRead
                 : State::kLost;
  });
  if (state_ == State::kReading &&
      (stream_.state() == common::HandshakeStream::State::kBroken ||
       (stream_.state() == common::HandshakeStream::State::kSearching &&
        ++segments_ >= kMaxSearchSegments)))
    state_ = State::kLost;
  return state_;
}

}  // namespace relaywatch::detectors::relay
