#include "detectors/relay/rfb_tls.h"

#include <algorithm>

namespace relaywatch::detectors::relay {

RfbTlsInput::RfbTlsInput() : server_stream_(std::in_place, kMaxMessageBytes) {}

void RfbTlsInput::OnServerSegment(const decode::DecodedPacket& p) {
  if (!server_stream_)
    return;
  bool segment_start = false;
  bool gap = false;
  const common::Bytes bytes = server_cursor_.Next(p, segment_start, gap);
  if ((gap && server_stream_->state() != common::HandshakeStream::State::kSearching) ||
      p.payload.size() < p.payload_length) {
    server_stream_.reset();  // the hello's place is lost: nothing is told apart
    return;
  }
  bool read = false;
  server_stream_->Feed(bytes, segment_start, [&](const common::TlsStreamEvent& e) {
    if (read || e.kind != common::TlsStreamEvent::Kind::kHandshake ||
        e.message->type != common::kHandshakeServerHello)
      return;
    read = true;
    common::ServerHello hello;
    if (!e.message->truncated &&
        common::ParseServerHello(e.message->body, false, hello) == common::TlsParseStatus::kOk)
      overhead_ = common::AeadRecordOverhead(hello.version(), hello.cipher_suite);
  });
  if (read || server_stream_->state() == common::HandshakeStream::State::kBroken ||
      (server_stream_->state() == common::HandshakeStream::State::kSearching &&
       ++server_segments_ >= kMaxSearchSegments))
    server_stream_.reset();
}

bool RfbTlsInput::StartsWithRecord(common::Bytes bytes) {
  if (bytes.size() < common::kTlsRecordHeaderBytes)
    return false;
  const std::size_t length = (std::size_t{bytes[3]} << 8) | bytes[4];
  return bytes[0] >= common::kTlsChangeCipherSpec && bytes[0] <= common::kTlsHeartbeat &&
         bytes[1] == 3 && bytes[2] <= 4 && length <= common::kMaxTlsRecordPayloadBytes;
}

bool RfbTlsInput::OnViewerSegment(const decode::DecodedPacket& p) {
  bool segment_start = false;
  bool gap = false;
  common::Bytes bytes = viewer_cursor_.Next(p, segment_start, gap);
  if (bytes.empty())
    return false;  // a repeat: nothing new to tell
  if (gap || p.payload.size() < p.payload_length)
    synced_ = false;
  if (!synced_) {
    // Records of a few bytes each start their own segment: the next such is a place again.
    if (!segment_start || p.payload.size() < p.payload_length || !StartsWithRecord(bytes))
      return false;
    synced_ = true;
    header_size_ = 0;
    remaining_ = 0;
  }
  const bool at_boundary = header_size_ == 0 && remaining_ == 0;
  int requests = 0;
  bool other = false;
  while (!bytes.empty()) {
    if (remaining_ == 0) {
      const std::size_t n = std::min(common::kTlsRecordHeaderBytes - header_size_, bytes.size());
      std::copy_n(bytes.begin(), n, header_ + header_size_);
      header_size_ += n;
      bytes = bytes.subspan(n);
      if (header_size_ < common::kTlsRecordHeaderBytes)
        break;
      header_size_ = 0;
      if (!StartsWithRecord(common::Bytes(header_, common::kTlsRecordHeaderBytes))) {
        synced_ = false;  // not TLS here: the walk is lost
        return false;
      }
      remaining_ = (std::size_t{header_[3]} << 8) | header_[4];
      if (header_[0] == common::kTlsApplicationData && overhead_ &&
          remaining_ == *overhead_ + kRequestBytes) {
        ++requests;
      } else {
        other = true;
      }
      continue;
    }
    const std::size_t n = std::min(remaining_, bytes.size());
    remaining_ -= n;
    bytes = bytes.subspan(n);
  }
  return at_boundary && requests > 0 && !other && header_size_ == 0 && remaining_ == 0;
}

}  // namespace relaywatch::detectors::relay
