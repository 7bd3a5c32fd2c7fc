#pragma once

// STUN and TURN over TCP (RFC 8489 6.2.2, RFC 8656 12.5): one direction's byte stream holds
// STUN messages and ChannelData messages padded to a multiple of four, back to back. A TURN
// client reaches its server this way where a network lets no UDP out (Chrome Remote
// Desktop's relays, a KVM vendor's cloud on TCP 443); the server relays to the far peer over
// UDP, so the frames carry what a UDP flow's datagrams would: ICE checks, DTLS, SRTP.
//
// TurnStreamReader cuts such a stream, given segment by segment (OnSegment, which takes each
// segment's new bytes from a TcpCursor) or as bytes (Feed), into frames again. It starts
// unsynchronised and takes up the stream at a segment that begins with a frame and holds only whole
// frames (WholeTurnFrames): senders of real-time data write each frame at once (TCP_NODELAY), so
// most segments do, and a reader that picks a stream up mid-way, or loses bytes to a gap, finds its
// place again at the next one. Bytes that do not frame (a length that is no frame's) drop it out of
// sync, counted. Bad input: any bytes; state is fixed-size (no allocation), at most kKeep bytes
// buffered.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/functional/function_ref.h"

#include "capture/decode/decoded_packet.h"
#include "detectors/common/stun.h"
#include "detectors/common/tcp_cursor.h"

namespace relaywatch::detectors::common {

struct TurnFrame {
  std::size_t length = 0;  // on the wire, ChannelData's padding included
  Bytes head;              // its first min(length, kTurnFrameHeadBytes) bytes
  Bytes whole;             // the whole frame, when it was kept (see TurnStreamReader)
};
// A ChannelData header and its data's first four bytes (an RTP or DTLS header's first bytes);
// a STUN header's type, length and cookie.
inline constexpr std::size_t kTurnFrameHeadBytes = 8;

// Whether `segment` (a TCP segment's payload from its first byte) is a run of whole frames,
// at least one: where a reader can take up a stream. A STUN message must have the magic
// cookie; a ChannelData message a channel number of 0x4000-0x7FFF.
bool WholeTurnFrames(Bytes segment);

namespace internal {

// TurnStreamReader's state, apart from the buffer its owner sizes.
class TurnFramer {
 public:
  void Feed(std::span<std::uint8_t> buffer, Bytes bytes, bool segment_start, bool gap,
            absl::FunctionRef<void(const TurnFrame&)> on_frame);
  void Skip(std::size_t keep, std::size_t n);
  bool synced() const { return synced_; }
  std::uint32_t frames() const { return frames_; }
  std::uint32_t lost_sync() const { return lost_sync_; }

 private:
  void LoseSync();

  // Frames are at most 65555 bytes (a STUN header and a 16-bit length).
  std::uint32_t have_ = 0;      // bytes of the current frame in the buffer
  std::uint32_t length_ = 0;    // the current frame's length; 0 while its header is incomplete
  std::uint32_t consumed_ = 0;  // bytes of the current frame read (kept or not)
  bool head_told_ = false;      // a frame longer than the buffer: its head was handed over
  bool synced_ = false;
  std::uint32_t frames_ = 0;
  std::uint32_t lost_sync_ = 0;
};

}  // namespace internal

// Frames up to `Keep` bytes are handed over whole; longer ones only by their head, at once.
// The relay detector keeps ICE checks, TURN's own transactions and indications (100-300
// bytes); flow_shape, which needs only sizes and the data's first bytes, keeps none.
template <std::size_t Keep>
class TurnStreamReader {
  static_assert(Keep >= kTurnFrameHeadBytes);

 public:
  static constexpr std::size_t kKeep = Keep;

  // The stream's next bytes. `segment_start`: they begin a segment (where it may be taken
  // up); `gap`: bytes before them were never seen (the frame in progress is lost). Calls
  // `on_frame` for each frame: one kept whole when it is complete, a longer one when its
  // head is in.
  void Feed(Bytes bytes, bool segment_start, bool gap,
            absl::FunctionRef<void(const TurnFrame&)> on_frame) {
    framer_.Feed(buffer_, bytes, segment_start, gap, on_frame);
  }
  // `n` bytes of the stream were not captured (a segment cut by the snaplen): skipped in the
  // frame in progress, or out of sync if they held a header or a frame kept whole.
  void Skip(std::size_t n) { framer_.Skip(Keep, n); }
  // One TCP segment of this direction: its bytes not seen before (TcpCursor), fed as above,
  // and those the snaplen cut skipped.
  void OnSegment(const decode::DecodedPacket& segment,
                 absl::FunctionRef<void(const TurnFrame&)> on_frame) {
    bool segment_start = false;
    bool gap = false;
    const Bytes bytes = cursor_.Next(segment, segment_start, gap);
    Feed(bytes, segment_start, gap, on_frame);
    if (!bytes.empty() && segment.payload.size() < segment.payload_length)
      Skip(segment.payload_length - segment.payload.size());
  }

  bool synced() const { return framer_.synced(); }
  std::uint32_t frames() const { return framer_.frames(); }
  // Times the stream stopped framing (bytes that are no frame, or a header lost).
  std::uint32_t lost_sync() const { return framer_.lost_sync(); }

 private:
  std::array<std::uint8_t, Keep> buffer_{};
  internal::TurnFramer framer_;
  TcpCursor cursor_;  // OnSegment's
};

}  // namespace relaywatch::detectors::common
