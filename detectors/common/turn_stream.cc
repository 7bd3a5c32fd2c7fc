#include "detectors/common/turn_stream.h"

#include <algorithm>

namespace relaywatch::detectors::common {
namespace {

// A frame's length is known from its first 4 bytes (ChannelData) or 8 (STUN: the cookie
// tells it from other bytes).
std::uint32_t HeaderNeeds(std::uint8_t first) {
  return first >= 0x40 ? 4 : 8;
}

// Up to `want` of `bytes`.
std::uint32_t Take(std::uint32_t want, Bytes bytes) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(want, bytes.size()));
}

}  // namespace

bool WholeTurnFrames(Bytes segment) {
  std::size_t at = 0;
  while (at < segment.size()) {
    const std::size_t n = StunFrameLength(segment.subspan(at));
    if (n == 0 || n > segment.size() - at) {
      return false;
    }
    at += n;
  }
  return at > 0;
}

namespace internal {

void TurnFramer::LoseSync() {
  synced_ = false;
  ++lost_sync_;
  have_ = length_ = consumed_ = 0;
  head_told_ = false;
}

void TurnFramer::Skip(std::size_t keep, std::size_t n) {
  if (!synced_ || n == 0) {
    return;
  }
  if (length_ == 0 || consumed_ + n > length_) {
    LoseSync();  // a header, or the next one, is among the missing bytes
    return;
  }
  consumed_ += static_cast<std::uint32_t>(n);
  if (length_ <= keep) {
    LoseSync();  // a frame kept whole cannot be completed
  } else if (consumed_ == length_) {
    have_ = length_ = consumed_ = 0;
    head_told_ = false;
  }
}

void TurnFramer::Feed(std::span<std::uint8_t> buffer, Bytes bytes, bool segment_start, bool gap,
                      absl::FunctionRef<void(const TurnFrame&)> on_frame) {
  const std::size_t keep = buffer.size();
  if (gap && synced_) {
    LoseSync();
  }
  if (!synced_) {
    if (!segment_start || !WholeTurnFrames(bytes)) {
      return;
    }
    synced_ = true;
    have_ = length_ = consumed_ = 0;
    head_told_ = false;
  }
  while (!bytes.empty()) {
    if (length_ == 0) {
      // The header: buffered until the frame's length is known.
      const std::uint32_t needs = have_ == 0 ? HeaderNeeds(bytes[0]) : HeaderNeeds(buffer[0]);
      const std::uint32_t take = Take(needs - have_, bytes);
      std::copy_n(bytes.begin(), take, buffer.begin() + static_cast<std::ptrdiff_t>(have_));
      have_ += take;
      consumed_ = have_;
      bytes = bytes.subspan(take);
      if (have_ < needs) {
        return;
      }
      length_ = static_cast<std::uint32_t>(StunFrameLength(Bytes(buffer.data(), have_)));
      if (length_ == 0) {
        LoseSync();
        return;
      }
    }
    // The frame's body: kept, or up to its head.
    const std::uint32_t room = length_ <= keep ? length_ : std::uint32_t{kTurnFrameHeadBytes};
    if (have_ < room) {
      const std::uint32_t take = Take(room - have_, bytes);
      std::copy_n(bytes.begin(), take, buffer.begin() + static_cast<std::ptrdiff_t>(have_));
      have_ += take;
      consumed_ += take;
      bytes = bytes.subspan(take);
    }
    if (length_ > keep && have_ >= kTurnFrameHeadBytes && !head_told_) {
      head_told_ = true;
      ++frames_;
      on_frame({length_, Bytes(buffer.data(), kTurnFrameHeadBytes), Bytes()});
    }
    if (length_ > keep) {
      const std::uint32_t skip = Take(length_ - consumed_, bytes);
      consumed_ += skip;
      bytes = bytes.subspan(skip);
    } else if (have_ == length_) {
      ++frames_;
      const Bytes whole(buffer.data(), length_);
      on_frame({length_, whole.first(std::min<std::size_t>(length_, kTurnFrameHeadBytes)), whole});
    }
    if (consumed_ < length_) {
      return;  // the rest comes in later segments
    }
    have_ = length_ = consumed_ = 0;
    head_told_ = false;
  }
}

}  // namespace internal
}  // namespace relaywatch::detectors::common
