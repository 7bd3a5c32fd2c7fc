#include "detectors/relay/stun_rtt.h"

#include "detectors/common/stun.h"

namespace relaywatch::detectors::relay {
namespace {

using common::ChannelData;
using common::StunClass;
using common::StunMessage;

// The STUN message a datagram carries, bare or as the data of a ChannelData message;
// an empty span when it carries none.
std::span<const std::uint8_t> StunIn(std::span<const std::uint8_t> payload, bool& wrapped) {
  wrapped = false;
  if (common::IsStun(payload))
    return payload;
  ChannelData channel;
  if (common::ParseChannelData(payload, channel) && common::IsStun(channel.data)) {
    wrapped = true;
    return channel.data;
  }
  return {};
}

}  // namespace

bool StunRtt::Carries(std::span<const std::uint8_t> payload) {
  bool wrapped = false;
  return !StunIn(payload, wrapped).empty();
}

void StunRtt::OnDatagram(PacketTime ts, int direction, std::span<const std::uint8_t> payload) {
  bool wrapped = false;
  const std::span<const std::uint8_t> message = StunIn(payload, wrapped);
  if (message.empty())
    return;
  StunMessage m;
  if (common::ParseStun(message, m) != common::StunParseStatus::kOk ||
      m.method != common::kStunMethodBinding) {
    return;
  }
  if (m.message_class == StunClass::kRequest) {
    if (!m.has_username || !m.message_integrity)
      return;  // not an ICE check: a reflexive-address lookup, answered by a STUN server
    via_turn_ = via_turn_ || wrapped;
    OnRequest(ts, direction, m.transaction_id);
  } else if (m.message_class == StunClass::kSuccessResponse) {
    OnSuccess(ts, direction, m.transaction_id);
  }
}

StunRtt::Request* StunRtt::Find(int direction, const std::array<std::uint8_t, 12>& id) {
  auto& ring = outstanding_[direction];
  for (int i = 0; i < count_[direction]; ++i) {
    Request& r = ring[(next_[direction] + kOutstanding - 1 - i) % kOutstanding];
    if (r.id == id)
      return &r;
  }
  return nullptr;
}

void StunRtt::OnRequest(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id) {
  if (Request* r = Find(direction, id)) {
    if (!r->resent)
      ++resent_;
    r->resent = true;
    return;
  }
  ++checks_;
  auto& ring = outstanding_[direction];
  ring[next_[direction]] = {id, ts, false};
  next_[direction] = (next_[direction] + 1) % kOutstanding;
  if (count_[direction] < kOutstanding)
    ++count_[direction];
}

void StunRtt::OnSuccess(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id) {
  // The answer goes the other way: it answers a request of the other direction.
  const int asker = 1 - direction;
  Request* r = Find(asker, id);
  if (r == nullptr)
    return;
  if (!r->resent && ts >= r->sent) {
    rtt_[asker].Add(ts - r->sent);
    ++answered_;
  }
  // Answered (or ambiguous): later copies of the response say nothing more.
  r->id = {};
  r->resent = true;
}

}  // namespace relaywatch::detectors::relay
