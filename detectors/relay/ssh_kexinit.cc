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
      if (guess_flag_in_) {
        if (*guess_flag_in_ < skip) {
          guess_follows_ = bytes[i + *guess_flag_in_] != 0;
          guess_flag_in_.reset();
        } else {
          *guess_flag_in_ -= static_cast<std::uint32_t>(skip);
        }
      }
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
    if (packets_ == 1) {
      first_message_ = header_[5];
      // The payload (length - padding - 1 bytes from the message number on) ends with the
      // boolean and a reserved uint32; a payload too short for a KEXINIT has no flag.
      const std::uint32_t payload = length - header_[4] - 1;
      constexpr std::uint32_t kFlagFromEnd = 5;
      constexpr std::uint32_t kHeaderPayloadBytes = 1;  // the message number
      if (first_message_ == kKexInit && payload >= kFlagFromEnd + kHeaderPayloadBytes)
        guess_flag_in_ = payload - kFlagFromEnd - kHeaderPayloadBytes;
    }
  }
}

SshKexInitOrder::Segment SshKexInitOrder::OnSegment(const decode::DecodedPacket& p,
                                                    bool from_client) {
  if (done_)
    return Segment::kTimed;
  // Known once the server's first packet has begun; its header is still read to check that
  // it is a KEXINIT, then the server's stream says nothing more.
  const bool server_kexinit = stream_[0].packets() > 0;
  if (!from_client && stream_[0].first_message() != 0)
    return Segment::kTimed;
  const int side = from_client ? 1 : 0;
  SshPacketStarts& stream = stream_[side];
  const bool identification = stream.state() == SshPacketStarts::State::kIdentification;
  bool segment_start = false;
  bool gap = false;
  const std::span<const std::uint8_t> bytes = cursor_[side].Next(p, segment_start, gap);
  // A gap or a snaplen cut loses packet boundaries: what follows cannot be placed.
  if (gap || p.payload.size() < p.payload_length) {
    done_ = true;
    return Segment::kTimed;
  }
  if (bytes.empty())
    return Segment::kTimed;  // a retransmission: the turnarounds refuse it themselves
  stream.Feed(bytes);
  if (stream.state() == SshPacketStarts::State::kBroken ||
      (stream.first_message() != 0 && stream.first_message() != kKexInit)) {
    done_ = true;
    return Segment::kTimed;
  }
  if (!from_client)
    return Segment::kTimed;
  // The key exchange init: the second packet, or the third after a guessed one.
  const std::uint32_t exchange_init = stream.guess_follows() ? 3 : 2;
  if (stream.packets() >= exchange_init) {
    done_ = true;  // the segment holds the exchange init: an answer can begin here
    return Segment::kTimed;
  }
  if (server_kexinit)
    return Segment::kUnasked;
  return identification ? Segment::kUnawaited : Segment::kTimed;
}

}  // namespace relaywatch::detectors::relay
