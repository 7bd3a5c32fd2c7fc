#include "detectors/relay/ssh_kexinit.h"

#include <algorithm>
#include <cstring>

#include "capture/base/bytes.h"

namespace relaywatch::detectors::relay {

void SshPacketStarts::Identification(std::uint8_t byte) {
  if (++identification_bytes_ > kMaxIdentificationBytes) {
    state_ = State::kBroken;
    return;
  }
  if (byte == '\n') {  // CR LF, or a bare LF as some implementations send
    const bool version = line_bytes_ >= 4 && std::memcmp(line_start_, "SSH-", 4) == 0;
    line_bytes_ = 0;
    if (version)
      state_ = State::kPackets;
    return;
  }
  if (line_bytes_ < sizeof(line_start_))
    line_start_[line_bytes_] = byte;
  ++line_bytes_;
}

void SshPacketStarts::Feed(std::span<const std::uint8_t> bytes) {
  std::size_t i = 0;
  while (i < bytes.size() && state_ != State::kBroken) {
    if (state_ == State::kIdentification) {
      Identification(bytes[i++]);
      continue;
    }
    if (remaining_ > 0) {
      const std::size_t skip = std::min<std::size_t>(remaining_, bytes.size() - i);
      remaining_ -= static_cast<std::uint32_t>(skip);
      i += skip;
      continue;
    }
    if (header_size_ == 0)
      packets_ = std::min(packets_ + 1, 1u << 30);
    header_[header_size_++] = bytes[i++];
    if (header_size_ < sizeof(header_))
      continue;
    header_size_ = 0;
    const std::uint32_t length = Be32(header_);
    // Padding length, message number and at least 4 bytes of padding (RFC 4253 6).
    if (length < 6 || length > kMaxPacketLength || header_[4] + 2u > length) {
      state_ = State::kBroken;
      return;
    }
    remaining_ = length - 2;
    if (packets_ == 1)
      first_message_ = header_[5];
  }
}

bool SshKexInitOrder::OnSegment(const decode::DecodedPacket& p, bool from_client) {
  if (done_)
    return false;
  // Known once the server's first packet has begun; its header is still read to check that
  // it is a KEXINIT, then the server's stream says nothing more.
  const bool server_kexinit = stream_[0].packets() > 0;
  if (!from_client && stream_[0].first_message() != 0)
    return false;
  const int side = from_client ? 1 : 0;
  SshPacketStarts& stream = stream_[side];
  bool segment_start = false;
  bool gap = false;
  const std::span<const std::uint8_t> bytes = cursor_[side].Next(p, segment_start, gap);
  // A gap or a snaplen cut loses packet boundaries: what follows cannot be placed.
  if (gap || p.payload.size() < p.payload_length) {
    done_ = true;
    return false;
  }
  if (bytes.empty())
    return false;  // a retransmission: the turnarounds refuse it themselves
  stream.Feed(bytes);
  if (stream.state() == SshPacketStarts::State::kBroken ||
      (stream.first_message() != 0 && stream.first_message() != kKexInit)) {
    done_ = true;
    return false;
  }
  if (!from_client)
    return false;
  if (stream.packets() >= 2) {
    done_ = true;  // the segment holds the client's second packet: an answer can begin here
    return false;
  }
  return server_kexinit;
}

}  // namespace relaywatch::detectors::relay
