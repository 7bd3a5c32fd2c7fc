#pragma once

// The two legs of a QUIC connection's opening, as HandshakeSplit times TCP's: the client's
// Initial -> the server's first datagram (sensor <-> responder), and the server's handshake
// flight -> the client's answer to it (sensor <-> originator). QUIC has no kernel to answer
// for the client, but the client must acknowledge Initial and Handshake packets at once (RFC
// 9000 13.2.1): ngtcp2 does so 0.9 ms after the server's flight on loopback, 20 ms before
// its Finished. So the originator leg is the round trip to whoever holds the connection's
// keys: the laptop for its own connections, the far device for those a laptop routes (a VPN
// exit node with NAT), whose TTL the laptop's forwarding decremented. That is what the host
// stage's routed relay compares (docs/detectors/relay.md).
//
// The flight is the server's first datagram with a Handshake packet (or a Retry): a server
// may first acknowledge part of a ClientHello split over two datagrams (Chromium's) in an
// Initial that asks for no answer. The answer is the client's first datagram after the
// flight that could only be sent once the flight had arrived: a Handshake or 1-RTT packet
// (they need keys the flight gives), or an Initial to the connection ID the server chose
// (its Source Connection ID, RFC 9000 7.2; also after a Retry). Google's servers often keep
// the client's own ID: there only the first test tells. A client datagram after the flight
// that is neither (its Initial sent again by its timer: the flight was lost after the
// sensor, or crossed it) leaves the flow without an originator leg.
//
// Which flight packet it answers: packet numbers are never reused (RFC 9000 12.3), and the
// Initial packets of both ends can be read by anyone who saw the client's first (RFC 9001
// 5.2), so where the answer holds an Initial with an ACK frame, its Largest Acknowledged
// names the server's Initial it answers, and the leg runs from that packet. This is how a
// QUIC endpoint itself times a round trip, and what Karn's rule cannot: Chromium, 150 ms
// away, resends its Initial (its first estimate of a round trip is 100 ms) before the
// server's flight reaches it; the server sends its flight again; the answer then names the
// first flight (lab, routed_quic).
//
// Without that, Karn's rule: a client that sent its Initial again before the server answered
// (datagrams more than kBurst apart) leaves the responder leg ambiguous; a server whose
// datagrams from the flight to the client's answer spread over more than kBurst (its own
// resend), or a client datagram to its old ID after the flight (one crossed it), the
// originator leg.
// Bad input: any bytes. Long headers (RFC 8999 5.1, RFC 9000 17.2) of the versions the TLS
// detector knows are read, and Initial packets decrypted with the keys anyone can derive;
// a packet that does not decrypt is not used.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/time/time.h"

#include "capture/base/packet_time.h"
#include "detectors/common/quic.h"

namespace relaywatch::detectors::relay {

class QuicHandshake {
 public:
  // Datagrams of one flight (a ClientHello split in two, a server's Initial, Handshake and
  // 1-RTT packets) leave together; a sender's resend waits for a timer of at least a
  // round trip's estimate (RFC 9002 6.2: 999 ms before any sample; Chromium's ~300 ms).
  static constexpr absl::Duration kBurst = absl::Milliseconds(10);
  // The server's Initial packets remembered (number and time), from its first datagram on.
  static constexpr int kMaxServerInitials = 8;

  // Whether a datagram opens a QUIC connection: a long-header Initial of a version whose
  // Initials the TLS detector reads, in a datagram of at least 1200 bytes (RFC 9000 14.1).
  static bool OpensConnection(std::span<const std::uint8_t> payload);

  // One datagram of the flow. `direction` 0 is the client's (the flow's originator).
  void OnDatagram(PacketTime ts, int direction, std::span<const std::uint8_t> payload,
                  std::uint8_t ttl);

  // Client Initial -> server's first datagram. Nullopt when unseen or resent.
  std::optional<absl::Duration> responder_leg() const;
  // The server's flight (its first datagram with a Handshake packet, or a Retry), or the
  // Initial the client's answer acknowledges, -> that answer.
  std::optional<absl::Duration> originator_leg() const;
  // IP TTL of the client's first Initial and of the server's first datagram (0: unseen).
  std::uint8_t originator_ttl() const { return client_ttl_; }
  std::uint8_t responder_ttl() const { return server_ttl_; }
  // A side sent again before the answer (the legs may still be timed by acknowledgement).
  bool resent() const { return client_resent_ || server_resent_ || crossed_; }
  // The answer named the server's packet it acknowledges.
  bool by_acknowledgement() const { return acked_ != absl::InfinitePast(); }
  // Nothing more to learn: the client answered, or cannot any more.
  bool settled() const { return answer_ != absl::InfinitePast() || refused_; }

 private:
  static constexpr std::size_t kMaxIdBytes = 20;  // RFC 9000 17.2
  struct ConnectionId {
    std::array<std::uint8_t, kMaxIdBytes> bytes{};
    std::uint8_t size = 0;
  };
  struct Sent {
    std::uint64_t number = 0;
    PacketTime ts;
  };

  // Whether a client datagram (after the server's flight) could only be sent once the
  // flight had arrived.
  bool Answers(std::span<const std::uint8_t> payload) const;
  // A datagram holding a Handshake or 1-RTT packet.
  static bool CarriesHandshake(std::span<const std::uint8_t> payload);
  // The number of the datagram's first packet, an Initial, decrypted with `keys`; when asked
  // for, whether it carries CRYPTO data (a ServerHello: the flight) and its ACK frame's
  // Largest Acknowledged.
  bool ReadInitial(std::span<const std::uint8_t> payload, const common::QuicInitialKeys& keys,
                   std::uint64_t& number, bool* crypto, std::optional<std::uint64_t>* largest);

  PacketTime client_first_ = absl::InfinitePast();
  PacketTime client_last_ = absl::InfinitePast();  // before the server's first datagram
  PacketTime server_first_ = absl::InfinitePast();
  // The server's first datagram that the client must answer at once: its handshake flight
  // (or a Retry). Chromium splits its ClientHello in two datagrams, and ngtcp2's server
  // acknowledges the first at once in an Initial that asks for no answer.
  PacketTime flight_ = absl::InfinitePast();
  PacketTime server_last_ = absl::InfinitePast();  // from the flight to the client's answer
  PacketTime answer_ = absl::InfinitePast();
  PacketTime acked_ = absl::InfinitePast();  // the server's Initial the answer acknowledges
  ConnectionId client_id_;  // the Destination Connection ID of its first Initial
  ConnectionId server_id_;  // the Source Connection ID of the server's flight
  // Initial keys of each end, from the client's first Destination Connection ID (none after
  // a Retry, which changes them, or for a version without them).
  std::optional<common::QuicInitialKeys> client_keys_;
  std::optional<common::QuicInitialKeys> server_keys_;
  std::array<Sent, kMaxServerInitials> server_initials_{};
  int server_initial_count_ = 0;
  std::vector<std::uint8_t> scratch_;  // decrypted frames, freed with the flow's state
  std::uint8_t client_ttl_ = 0;
  std::uint8_t server_ttl_ = 0;
  bool client_resent_ = false;
  bool server_resent_ = false;
  bool crossed_ = false;  // a client datagram to its old ID came after the flight
  bool refused_ = false;  // nothing can answer any more, or the opening was not seen
};

}  // namespace relaywatch::detectors::relay
