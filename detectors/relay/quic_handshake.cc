#include "detectors/relay/quic_handshake.h"

#include <algorithm>
#include <cstddef>

#include "detectors/common/quic.h"

namespace relaywatch::detectors::relay {
namespace {

// RFC 9000 14.1: a client pads every datagram that carries an Initial to this size.
constexpr std::size_t kMinInitialDatagram = 1200;
// Packets of one datagram looked at: Initial, 0-RTT, Handshake, then 1-RTT.
constexpr int kMaxCoalesced = 4;

}  // namespace

bool QuicHandshake::OpensConnection(std::span<const std::uint8_t> payload) {
  common::QuicLongHeader header;
  return payload.size() >= kMinInitialDatagram && common::ParseQuicLongHeader(payload, header) &&
         header.initial;
}

bool QuicHandshake::Answers(std::span<const std::uint8_t> payload) const {
  if (CarriesHandshake(payload))
    return true;
  // An Initial (or 0-RTT) packet: to the server's ID, unless the server kept the client's.
  const auto same = [](std::span<const std::uint8_t> a, const ConnectionId& id) {
    return std::equal(a.begin(), a.end(), id.bytes.begin(), id.bytes.begin() + id.size);
  };
  common::QuicLongHeaderIds ids;
  return common::ParseQuicLongHeaderIds(payload, ids) && same(ids.dcid, server_id_) &&
         !same(std::span<const std::uint8_t>(client_id_.bytes.data(), client_id_.size), server_id_);
}

bool QuicHandshake::CarriesHandshake(std::span<const std::uint8_t> payload) {
  // A 1-RTT or Handshake packet, also behind an Initial (coalesced packets, RFC 9000 12.2).
  std::span<const std::uint8_t> rest = payload;
  for (int i = 0; i < kMaxCoalesced && !rest.empty(); ++i) {
    if ((rest[0] & 0x80) == 0)
      return true;
    common::QuicLongHeader header;
    if (!common::ParseQuicLongHeader(rest, header))
      return false;
    if (header.handshake)
      return true;
    rest = rest.subspan(header.packet_bytes);
  }
  return false;
}

bool QuicHandshake::ReadInitial(std::span<const std::uint8_t> payload,
                                const common::QuicInitialKeys& keys, std::uint64_t& number,
                                bool* crypto, std::optional<std::uint64_t>* largest) {
  common::QuicLongHeader header;
  if (!common::ParseQuicLongHeader(payload, header) || !header.initial ||
      !common::DecryptQuicInitial(payload, header, keys, scratch_, &number)) {
    return false;
  }
  if (crypto != nullptr) {
    *crypto = false;
    common::ForEachQuicCryptoFrame(scratch_, [&](std::uint64_t, common::Bytes) { *crypto = true; });
  }
  if (largest != nullptr)
    *largest = common::QuicLargestAcknowledged(scratch_);
  return true;
}

void QuicHandshake::OnDatagram(PacketTime ts, int direction, std::span<const std::uint8_t> payload,
                               std::uint8_t ttl) {
  if (settled())
    return;
  std::uint64_t number = 0;
  if (direction == 0) {
    if (client_first_ == absl::InfinitePast()) {
      common::QuicLongHeader header;
      if (payload.size() < kMinInitialDatagram || !common::ParseQuicLongHeader(payload, header) ||
          !header.initial) {
        refused_ = true;  // picked up after its opening
        return;
      }
      client_first_ = ts;
      client_last_ = ts;
      client_ttl_ = ttl;
      client_id_.size = static_cast<std::uint8_t>(header.dcid.size());
      std::copy(header.dcid.begin(), header.dcid.end(), client_id_.bytes.begin());
      common::QuicInitialKeys keys;
      if (common::DeriveQuicInitialKeys(header.version, header.dcid, /*server=*/false, keys))
        client_keys_ = keys;
      if (common::DeriveQuicInitialKeys(header.version, header.dcid, /*server=*/true, keys))
        server_keys_ = keys;
      return;
    }
    if (server_first_ == absl::InfinitePast()) {
      if (ts - client_first_ > kBurst)
        client_resent_ = true;  // its timer sent the Initial again
      client_last_ = ts;
      return;
    }
    // Before the server's flight: the rest of the client's own (a ClientHello in two
    // datagrams, the server having acknowledged the first at once).
    if (flight_ == absl::InfinitePast())
      return;
    // An Initial that acknowledges one of the server's names what it answers.
    std::optional<std::uint64_t> largest;
    bool before_flight = false;
    if (client_keys_ && ReadInitial(payload, *client_keys_, number, nullptr, &largest) && largest) {
      for (int i = 0; i < server_initial_count_; ++i) {
        if (server_initials_[i].number != *largest)
          continue;
        if (server_initials_[i].ts < flight_) {
          before_flight = true;  // it has only what came before the flight: no answer
          break;
        }
        acked_ = server_initials_[i].ts;
        answer_ = ts;
        return;
      }
    }
    if (!before_flight && Answers(payload)) {
      answer_ = ts;
      server_resent_ = server_last_ - flight_ > kBurst;
      return;
    }
    // Sent before the flight reached the client (or the flight was lost after the sensor):
    // only an acknowledgement can tell what a later answer answers.
    crossed_ = true;
    if (!server_keys_)
      refused_ = true;
    return;
  }
  if (client_first_ == absl::InfinitePast())
    return;  // the client's opening was not seen
  common::QuicLongHeaderIds ids;
  if (server_first_ == absl::InfinitePast()) {
    if (!common::ParseQuicLongHeaderIds(payload, ids)) {
      refused_ = true;  // a server's first packet has a long header
      return;
    }
    server_first_ = ts;
    server_ttl_ = ttl;
  }
  bool crypto = false;
  const bool initial =
      server_keys_ && ReadInitial(payload, *server_keys_, number, &crypto, nullptr);
  if (initial && server_initial_count_ < kMaxServerInitials)
    server_initials_[server_initial_count_++] = {number, ts};
  if (flight_ != absl::InfinitePast()) {
    server_last_ = ts;
    return;
  }
  // The flight a client answers at once: its ServerHello, its Handshake packets, or a Retry.
  // An Initial that only acknowledges the client's asks for nothing.
  const bool retry = common::IsQuicRetry(payload);
  if ((crypto || retry || CarriesHandshake(payload)) &&
      common::ParseQuicLongHeaderIds(payload, ids)) {
    flight_ = ts;
    server_last_ = ts;
    server_id_.size = static_cast<std::uint8_t>(ids.scid.size());
    std::copy(ids.scid.begin(), ids.scid.end(), server_id_.bytes.begin());
    if (retry) {
      // The client's next Initials are sealed with keys from the Retry's ID.
      client_keys_.reset();
      server_keys_.reset();
    }
  }
}

std::optional<absl::Duration> QuicHandshake::responder_leg() const {
  if (server_first_ == absl::InfinitePast() || client_resent_)
    return std::nullopt;
  return server_first_ - client_last_;
}

std::optional<absl::Duration> QuicHandshake::originator_leg() const {
  if (answer_ == absl::InfinitePast())
    return std::nullopt;
  if (acked_ != absl::InfinitePast())
    return answer_ - acked_;
  if (client_resent_ || server_resent_ || crossed_)
    return std::nullopt;
  return answer_ - flight_;
}

}  // namespace relaywatch::detectors::relay
