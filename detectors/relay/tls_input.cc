#include "detectors/relay/tls_input.h"

#include <algorithm>
#include <array>

#include "capture/base/bytes.h"

namespace relaywatch::detectors::relay {
namespace {

constexpr std::array<std::uint16_t, 1> kRfbAnswers = {10};  // FramebufferUpdateRequest
// TS_FRAME_ACKNOWLEDGE_PDU; RDPGFX_(QOE_)FRAME_ACKNOWLEDGE_PDU in a DVC data PDU.
constexpr std::array<std::uint16_t, 7> kRdpAnswers = {36, 37, 44, 45, 46, 47, 48};

}  // namespace

std::span<const std::uint16_t> TlsInput::AnswerBytes(Protocol protocol) {
  return protocol == Protocol::kRfb ? std::span<const std::uint16_t>(kRfbAnswers)
                                    : std::span<const std::uint16_t>(kRdpAnswers);
}

TlsInput::TlsInput(Protocol protocol) : answers_(AnswerBytes(protocol)) {}

bool TlsInput::IsAnswer(std::size_t record_length) const {
  return overhead_ && record_length > *overhead_ &&
         std::find(answers_.begin(), answers_.end(), record_length - *overhead_) != answers_.end();
}

void TlsInput::OnServerSegment(const decode::DecodedPacket& p) {
  if (!server_)
    return;
  const ServerHelloReader::State state = server_->OnSegment(p);
  if (state == ServerHelloReader::State::kRead)
    overhead_ =
        common::AeadRecordOverhead(server_->hello().version(), server_->hello().cipher_suite);
  if (state != ServerHelloReader::State::kReading)
    server_.reset();  // read, or its place lost: nothing more to learn
}

bool TlsInput::OnClientSegment(const decode::DecodedPacket& p) {
  bool segment_start = false;
  bool gap = false;
  common::Bytes bytes = client_cursor_.Next(p, segment_start, gap);
  if (bytes.empty())
    return false;  // a repeat: nothing new to tell
  if (gap || p.payload.size() < p.payload_length)
    synced_ = false;
  if (!synced_) {
    // Records of a few bytes each start their own segment: the next such is a place again.
    if (!segment_start || p.payload.size() < p.payload_length || !common::IsTlsRecordHeader(bytes))
      return false;
    synced_ = true;
    header_size_ = 0;
    remaining_ = 0;
  }
  const bool at_boundary = header_size_ == 0 && remaining_ == 0;
  int answers = 0;
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
      if (!common::IsTlsRecordHeader(common::Bytes(header_, common::kTlsRecordHeaderBytes))) {
        synced_ = false;  // not TLS here: the walk is lost
        return false;
      }
      remaining_ = Be16(&header_[3]);
      if (header_[0] == common::kTlsApplicationData && IsAnswer(remaining_)) {
        ++answers;
      } else {
        other = true;
      }
      continue;
    }
    const std::size_t n = std::min(remaining_, bytes.size());
    remaining_ -= n;
    bytes = bytes.subspan(n);
  }
  return at_boundary && answers > 0 && !other && header_size_ == 0 && remaining_ == 0;
}

}  // namespace relaywatch::detectors::relay
