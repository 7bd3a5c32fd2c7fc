#pragma once

// Round trips from ICE checks (RFC 8445 7.2.2, and the consent checks of RFC 7675) in a UDP
// flow: a STUN Binding request and its success response share a transaction id, and the
// answering ICE agent sends the response at once (Chromium within 0.3 ms), so request ->
// response at the sensor is the round trip from the sensor to the agent that answered.
// WebRTC sessions (Chrome Remote Desktop, the WebRTC IP-KVMs, calls) keep sending them every
// few seconds for the whole session, end to end between the two agents: through a TURN
// server too, wrapped in Send and Data indications (RFC 8656 11) or, once the client has
// bound a channel, ChannelData (12.4). The round trip then includes the TURN server's
// detour, which is the path the session really takes, and the far agent's address, which
// the flow's own addresses hide, is the peer that the indications or the channel's binding
// name: `turn_peer`.
//
// Only ICE checks count: Binding requests with USERNAME and MESSAGE-INTEGRITY (ICE's
// short-term credential). A bare Binding request asks a STUN server for the client's
// reflexive address; a TURN client's own transactions (Allocate, Refresh, ...) are answered
// by the TURN server. Neither times the peer, and on a TURN flow both would read the near
// server instead of the far agent.
//
// Karn's rule: a request sent again keeps its transaction id (RFC 8489 6.2.1), so a response
// to it cannot tell which copy it answers; such transactions give no sample.
// Bad input: any bytes; only whole, strictly valid STUN messages are used.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "capture/base/packet_time.h"
#include "detectors/common/stun.h"
#include "detectors/relay/timing.h"

namespace relaywatch::detectors::relay {

class StunRtt {
 public:
  // Whether a datagram is a STUN message, bare or relayed by TURN: the test that decides
  // whether a UDP flow gets state at all.
  static bool Carries(std::span<const std::uint8_t> payload);

  // One datagram of the flow. `direction` 0 is originator -> responder.
  void OnDatagram(PacketTime ts, int direction, std::span<const std::uint8_t> payload);

  // By the direction of the requests, as AckRtt by that of the data: [0] is answered by the
  // responder, so it times the sensor <-> responder leg; [1] the sensor <-> originator leg.
  const RttSamples& rtt(int direction) const { return rtt_[direction]; }
  std::uint32_t checks() const { return checks_; }      // ICE Binding requests seen
  std::uint32_t answered() const { return answered_; }  // of those: sampled
  std::uint32_t resent() const { return resent_; }      // sent again (no sample)
  bool via_turn() const { return via_turn_; }           // checks came relayed by TURN
  // The far agent behind the TURN server: the peer of the latest answered check that came
  // relayed, as the TURN client named it (its server-reflexive or relayed address).
  const std::optional<common::StunAddress>& turn_peer() const { return turn_peer_; }

  static constexpr int kOutstanding = 16;  // per direction; older requests are forgotten
  // ICE checks are sparse (one every 2.5-5 s each way: 18-24 in a minute and a half), but
  // each is a clean sample: answered at once by the agent's network stack, never held by a
  // delayed ACK or behind other data. So their 15th percentile (the controller's round trip
  // under symmetric jitter, see AckRtt) is read from 10 of them, the third lowest of 19.
  static constexpr std::uint32_t kQuantileAfter = 10;
  static constexpr int kChannels = 4;  // bindings remembered; a session uses one per peer

 private:
  struct Request {
    std::array<std::uint8_t, 12> id{};
    PacketTime sent;
    bool resent = false;
    std::optional<common::StunAddress> peer;  // relayed by TURN for this peer
  };
  struct Binding {
    std::uint16_t channel = 0;
    common::StunAddress peer;
  };
  // Parses the STUN message a datagram carries, bare or relayed by TURN (then `peer` is
  // whom for, when known); false when it carries none. Notes channel bindings on the way.
  bool Read(std::span<const std::uint8_t> payload, common::StunMessage& m, bool& relayed,
            std::optional<common::StunAddress>& peer);
  // The outstanding request of `direction` with this transaction id, newest first; or null.
  Request* Find(int direction, const std::array<std::uint8_t, 12>& id);
  void OnRequest(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id,
                 const std::optional<common::StunAddress>& peer);
  void OnSuccess(PacketTime ts, int direction, const std::array<std::uint8_t, 12>& id,
                 const std::optional<common::StunAddress>& peer);

  std::array<std::array<Request, kOutstanding>, 2> outstanding_{};
  std::array<int, 2> count_ = {0, 0};  // the newest count_ entries, ending before next_
  std::array<int, 2> next_ = {0, 0};
  RttSamples rtt_[2] = {RttSamples(kQuantileAfter), RttSamples(kQuantileAfter)};
  std::uint32_t checks_ = 0;
  std::uint32_t answered_ = 0;
  std::uint32_t resent_ = 0;
  bool via_turn_ = false;
  std::optional<common::StunAddress> turn_peer_;
  std::array<Binding, kChannels> bindings_{};
  int next_binding_ = 0;
};

}  // namespace relaywatch::detectors::relay
