#pragma once

// The new bytes of one direction of a TCP stream, segment by segment, for parsers that read
// a byte stream (the TLS record layer) from packets that may repeat or skip data.

#include <cstdint>
#include <span>

#include "capture/decode/decoded_packet.h"

namespace relaywatch::detectors::common {

class TcpCursor {
 public:
  // The bytes of `p` not seen before, in sequence order. `segment_start` is true when they
  // begin at the segment's first byte; `gap` when data is missing before them (the stream
  // skips ahead to them). A retransmission of bytes already seen gives none.
  std::span<const std::uint8_t> Next(const decode::DecodedPacket& p, bool& segment_start,
                                     bool& gap);

 private:
  bool seq_known_ = false;
  std::uint32_t next_seq_ = 0;
};

}  // namespace relaywatch::detectors::common
