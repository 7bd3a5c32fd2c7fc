#include "detectors/relay/tls13.h"

namespace relaywatch::detectors::relay {

Tls13FirstData::Tls13FirstData()
    : stream_{common::HandshakeStream(kMaxMessageBytes), common::HandshakeStream(0)} {}

bool Tls13FirstData::OnSegment(const decode::DecodedPacket& p, bool from_client) {
  // Once the ServerHello said TLS 1.3, the server's records say nothing more.
  if (done_ || (tls13_ && !from_client))
    return false;
  const int side = from_client ? 1 : 0;
  common::HandshakeStream& stream = stream_[side];
  bool segment_start = false;
  bool gap = false;
  const common::Bytes bytes = cursor_[side].Next(p, segment_start, gap);
  // A gap or a snaplen cut loses record boundaries: what follows cannot be counted.
  if ((gap && stream.state() != common::HandshakeStream::State::kSearching) ||
      p.payload.size() < p.payload_length) {
    done_ = true;
    return false;
  }
  const int before = client_records_;
  stream.Feed(bytes, segment_start, [&](const common::TlsStreamEvent& e) {
    if (from_client) {
      if (tls13_ && e.kind == common::TlsStreamEvent::Kind::kApplicationData)
        ++client_records_;
      return;
    }
    if (e.kind != common::TlsStreamEvent::Kind::kHandshake ||
        e.message->type != common::kHandshakeServerHello || tls13_ || done_) {
      return;
    }
    common::ServerHello hello;
    if (e.message->truncated ||
        common::ParseServerHello(e.message->body, false, hello) != common::TlsParseStatus::kOk ||
        hello.version() != common::kTls13) {
      done_ = true;  // TLS 1.2 and before: a client waits for the server's Finished
      return;
    }
    tls13_ = true;  // a HelloRetryRequest says so as well as the ServerHello after it
  });
  if (stream.state() == common::HandshakeStream::State::kBroken ||
      (stream.state() == common::HandshakeStream::State::kSearching &&
       ++segments_[side] >= kMaxSearchSegments)) {
    done_ = true;
    return false;
  }
  if (client_records_ >= 2)
    done_ = true;
  return from_client && before == 1 && client_records_ >= 2;
}

}  // namespace relaywatch::detectors::relay
