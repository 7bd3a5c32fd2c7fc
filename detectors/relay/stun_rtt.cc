#include "detectors/relay/stun_rtt.h"

#include "detectors/common/stun.h"

namespace relaywatch::detectors::relay {

using common::StunAddress;
using common::StunClass;
using common::StunMessage;
using common::TurnRelayed;

bool StunRtt::Carries(std::span<const std::uint8_t> payload) {
  if (common::IsStun(payload))
    return true;
  TurnRelayed relayed;
  return common::ParseTurnRelayed(payload, relayed) && common::IsStun(relayed.data);
}

bool StunRtt::Read(std::span<const std::uint8_t> payload, StunMessage& m, bool& relayed,
                   std::optional<StunAddress>& peer) {
  TurnRelayed turn;
  relayed = common::ParseTurnRelayed(payload, turn);
  if (relayed) {
    peer = turn.peer;
    for (const Binding& b : bindings_) {
      if (!peer && turn.channel && b.channel == *turn.channel)
        peer = b.peer;
    }
    // Media or DTLS for the peer is no STUN.
    return common::IsStun(turn.data) &&
           common::ParseStun(turn.data, m) == common::StunParseStatus::kOk;
  }
  if (!common::IsStun(payload) || common::ParseStun(payload, m) != common::StunParseStatus::kOk)
    return false;
  // The TURN client binds a channel to a peer (RFC 8656 12.1); ChannelData names only the
  // channel. Noted from the request: a binding refused leaves the channel unused.
  if (m.method == common::kTurnMethodChannelBind && m.message_class == StunClass::kRequest &&
      m.channel_number && m.xor_peer_address) {
    Binding* slot = nullptr;
    for (Binding& b : bindings_) {
      if (b.channel == *m.channel_number)
        slot = &b;  // a refresh, or the channel bound anew
    }
    if (slot == nullptr) {
      slot = &bindings_[next_binding_];
      next_binding_ = (next_binding_ + 1) % kChannels;
    }
    *slot = {*m.channel_number, *m.xor_peer_address};
  }
  return true;
}

void StunRtt::OnDatagram(PacketTime ts, int direction, std::span<const std::uint8_t> payload) {
  StunMessage m;
  bool relayed = false;
  std::optional<StunAddress> peer;
  if (!Read(payload, m, relayed, peer) || m.method != common::kStunMethodBinding)
    return;
  if (m.message_class == StunClass::kRequest) {
    if (!m.has_username || !m.message_integrity)
      return;  // not an ICE check: a reflexive-address lookup, answered by a STUN server
    via_turn_ = via_turn_ || relayed;
    OnRequest(ts, direction, m.transaction_id, peer);
  } else if (m.message_class == StunClass::kSuccessResponse) {
    OnSuccess(ts, direction, m.transaction_id, peer);
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

void StunRtt::OnRequest(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id,
                        const std::optional<StunAddress>& peer) {
  if (Request* r = Find(direction, id)) {
    if (!r->resent)
      ++resent_;
    r->resent = true;
    return;
  }
  ++checks_;
  auto& ring = outstanding_[direction];
  ring[next_[direction]] = {id, ts, false, peer};
  next_[direction] = (next_[direction] + 1) % kOutstanding;
  if (count_[direction] < kOutstanding)
    ++count_[direction];
}

void StunRtt::OnSuccess(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id,
                        const std::optional<StunAddress>& peer) {
  // The answer goes the other way: it answers a request of the other direction.
  const int asker = 1 - direction;
  Request* r = Find(asker, id);
  if (r == nullptr)
    return;
  if (!r->resent && ts >= r->sent) {
    rtt_[asker].Add(ts - r->sent);
    ++answered_;
    if (peer || r->peer)
      turn_peer_ = peer ? peer : r->peer;
  }
  // Answered (or ambiguous): later copies of the response say nothing more.
  r->id = {};
  r->resent = true;
}

}  // namespace relaywatch::detectors::relay
