#include "detectors/common/tcp_cursor.h"

namespace relaywatch::detectors::common {

std::span<const std::uint8_t> TcpCursor::Next(const decode::DecodedPacket& p, bool& segment_start,
                                              bool& gap) {
  segment_start = false;
  gap = false;
  // RFC 9293 3.4: a SYN occupies one sequence number before the data (TCP Fast Open).
  const std::uint32_t seq = p.seq + (p.has(decode::kTcpSyn) ? 1U : 0U);
  if (!seq_known_) {
    seq_known_ = true;
    next_seq_ = seq;
  }
  // Serial-number arithmetic (RFC 1982) so wrap-around is handled.
  const auto offset = static_cast<std::int32_t>(next_seq_ - seq);
  std::span<const std::uint8_t> payload = p.payload;
  if (offset < 0) {
    gap = true;
    next_seq_ = seq;
  } else if (static_cast<std::size_t>(offset) >= payload.size()) {
    return {};  // a retransmission of bytes already seen
  } else {
    payload = payload.subspan(static_cast<std::size_t>(offset));
  }
  segment_start = payload.size() == p.payload.size();
  next_seq_ += static_cast<std::uint32_t>(payload.size());
  if (p.payload.size() < p.payload_length) {
    // Cut by the snaplen: what follows these bytes is missing.
    next_seq_ += static_cast<std::uint32_t>(p.payload_length - p.payload.size());
  }
  return payload;
}

}  // namespace relaywatch::detectors::common
