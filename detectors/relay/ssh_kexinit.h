#pragma once

// An SSH client's identification and KEXINIT, told apart from an answer to the server's
// KEXINIT (RFC 4253 4.2, 7.1): each side sends its KEXINIT once it has the other's
// identification string, without waiting for the other's KEXINIT; what the client sends in
// answer to the server's KEXINIT is its key exchange init. A far client's KEXINIT lands
// after the server's in two common ways. The server is the laptop (an operator's ssh into
// it): sshd's KEXINIT is held by Nagle until its banner is acknowledged, and the far
// client's ACK of the banner comes a fraction of a millisecond before its KEXINIT. The
// client is behind a jump host: its banner and KEXINIT leave together, the server's KEXINIT
// answers the banner one server round trip later, and jitter on the far path that holds the
// KEXINIT back longer lets it land behind. Either way the KEXINIT looks like an answer as
// quick as the split; sequence numbers cannot tell (the server's next data acknowledges it).
// The binary packet layer can: the client's bytes before its second packet answer nothing
// the server sent from its KEXINIT on, and that flight waits on for the key exchange init.
// Two more things a client sends without waiting. Its identification goes out on connecting
// (RFC 4253 4.2), so behind a proxy it lands a far round trip after the connection opened,
// however late the server's banner was (sshd sent it 17-37 ms after accepting in the lab):
// as an answer to that banner it read 61 ms for a 100 ms round trip. And a KEXINIT whose
// first_kex_packet_follows is set comes with a guessed key exchange init (RFC 4253 7.1;
// Dropbear's client sends banner, KEXINIT and guess in one segment): the answer then begins
// at the third packet.
//
// Bad input: a gap or a snaplen cut in either direction, an identification longer than
// kMaxIdentificationBytes, a packet length outside the RFC's bounds or a first packet that
// is not a KEXINIT ends the watch (done()), so the turnarounds go on as without it.
// Memory: a few bytes of packet header per direction; the owner releases it once done(),
// at the latest at the client's second packet.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "capture/decode/decoded_packet.h"
#include "detectors/common/tcp_cursor.h"

namespace relaywatch::detectors::relay {

// Where an SSH stream's binary packets begin (RFC 4253 4.2, 6): the identification lines,
// then packets of a 4-byte length, a padding length and the message number. Reads the
// lengths only; nothing is buffered but a header.
class SshPacketStarts {
 public:
  enum class State : std::uint8_t { kIdentification, kPackets, kBroken };

  void Feed(std::span<const std::uint8_t> bytes);
  State state() const { return state_; }
  // Binary packets begun so far, and the first one's message number (0 before it).
  std::uint32_t packets() const { return packets_; }
  std::uint8_t first_message() const { return first_message_; }
  // The first packet is a KEXINIT whose first_kex_packet_follows is set (known once the
  // packet has passed): the second is a guessed key exchange packet.
  bool guess_follows() const { return guess_follows_; }

  static constexpr std::uint8_t kKexInit = 20;  // SSH_MSG_KEXINIT

  // RFC 4253 4.2: a server may send other lines before its version line, each at most 255
  // bytes with its CR LF; this bounds them all.
  static constexpr std::size_t kMaxIdentificationBytes = 8192;
  // RFC 4253 6.1 asks for 35000 bytes at least; OpenSSH accepts up to 256 KiB.
  static constexpr std::uint32_t kMaxPacketLength = 256 * 1024;

 private:
  void Identification(std::uint8_t byte);

  State state_ = State::kIdentification;
  std::size_t identification_bytes_ = 0;
  std::uint8_t line_start_[4] = {};
  std::size_t line_bytes_ = 0;
  // The packet header being read: length (4), padding length, message number.
  std::uint8_t header_[6] = {};
  std::size_t header_size_ = 0;
  std::uint32_t remaining_ = 0;  // bytes of the current packet after its header
  std::uint32_t packets_ = 0;
  std::uint8_t first_message_ = 0;
  // Bytes of the first packet's body (after its header) before its first_kex_packet_follows
  // boolean, while that byte is still to come: the payload's fifth byte from its end.
  std::optional<std::uint32_t> guess_flag_in_;
  bool guess_follows_ = false;
};

class SshKexInitOrder {
 public:
  enum class Segment : std::uint8_t {
    // May answer the server: timed as any other. Every server segment is one.
    kTimed,
    // New bytes all before the client's key exchange init, and the server's KEXINIT began in
    // an earlier segment: no answer to it, and that flight waits on for the exchange init.
    kUnasked,
    // The client's identification, before the server's KEXINIT: sent on connecting, it
    // answers nothing, and the server's banner is left unanswered.
    kUnawaited,
  };

  // One TCP segment of the flow that carries payload, retransmissions included (bytes seen
  // before are skipped).
  Segment OnSegment(const decode::DecodedPacket& p, bool from_client);
  // Nothing more to learn: the client's key exchange init begun, or the packet layer lost.
  bool done() const { return done_; }

  static constexpr std::uint8_t kKexInit = SshPacketStarts::kKexInit;

 private:
  // By side: [0] the server, [1] the client.
  common::TcpCursor cursor_[2];
  SshPacketStarts stream_[2];
  bool done_ = false;
};

}  // namespace relaywatch::detectors::relay
