#include "detectors/relay/tls13.h"

namespace relaywatch::detectors::relay {

bool Tls13FirstData::OnSegment(const decode::DecodedPacket& p, bool from_client) {
  // Once the ServerHello said TLS 1.3, the server's records say nothing more.
  if (done_ || (tls13_ && !from_client))
    return false;
  if (!from_client) {
    const ServerHelloReader::State state = server_.OnSegment(p);
    // TLS 1.2 and before: a client waits for the server's Finished. A HelloRetryRequest says
    // TLS 1.3 as well as the ServerHello after it.
    tls13_ = state == ServerHelloReader::State::kRead && server_.hello().version() == common::kTls13;
    done_ = state != ServerHelloReader::State::kReading && !tls13_;
    return false;
  }
  bool segment_start = false;
  bool gap = false;
  const common::Bytes bytes = client_cursor_.Next(p, segment_start, gap);
  // A gap or a snaplen cut loses record boundaries: what follows cannot be counted.
  if ((gap && client_stream_.state() != common::HandshakeStream::State::kSearching) ||
      p.payload.size() < p.payload_length) {
    done_ = true;
    return false;
  }
  const int before = client_records_;
  client_stream_.Feed(bytes, segment_start, [&](const common::TlsStreamEvent& e) {
    if (tls13_ && e.kind == common::TlsStreamEvent::Kind::kApplicationData)
      ++client_records_;
  });
  if (client_stream_.state() == common::HandshakeStream::State::kBroken ||
      (client_stream_.state() == common::HandshakeStream::State::kSearching &&
       ++client_segments_ >= kMaxSearchSegments)) {
    done_ = true;
    return false;
  }
  if (client_records_ >= 2)
    done_ = true;
  return before == 1 && client_records_ >= 2;
}

}  // namespace relaywatch::detectors::relay
