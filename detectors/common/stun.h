#pragma once

// STUN (RFC 5389 / RFC 8489), its TURN methods and attributes (RFC 8656, RFC 6062), the ICE
// attributes (RFC 8445) and TURN ChannelData framing, shared by detectors (WebRTC tools,
// IP-KVMs that use STUN for NAT traversal).
//
// Strictness: a datagram is STUN only when the first two bits are zero, the length field is a
// multiple of 4 and equals the datagram size minus the 20-byte header, the magic cookie is
// present, the attributes exactly fill the message, every decoded attribute has the size its
// RFC gives, and a FINGERPRINT (if any) is last and matches. Classic RFC 3489 messages (no
// cookie) are accepted only on request and only with a stricter shape (see ParseStun).
// Bad input: reads only inside the given span, returns a status, never throws.
// Thread-safety: pure functions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "capture/base/ip_address.h"

namespace relaywatch::detectors::common {

using Bytes = std::span<const std::uint8_t>;

inline constexpr std::size_t kStunHeaderBytes = 20;
inline constexpr std::uint32_t kStunMagicCookie = 0x2112a442;
// RFC 8489 14.7: FINGERPRINT = CRC-32 (ISO 3309, as zlib) of the message XOR this.
inline constexpr std::uint32_t kStunFingerprintXor = 0x5354554e;
// USERNAME, REALM, NONCE, SOFTWARE and the ERROR-CODE reason are cut to this many bytes.
inline constexpr std::size_t kMaxStunTextBytes = 256;
// Attribute types remembered in wire order (an implementation's fingerprint).
inline constexpr std::size_t kMaxStunAttributeOrder = 16;

// Methods (12 bits).
inline constexpr std::uint16_t kStunMethodBinding = 0x001;
inline constexpr std::uint16_t kStunMethodSharedSecret = 0x002;  // RFC 3489 only
inline constexpr std::uint16_t kTurnMethodAllocate = 0x003;
inline constexpr std::uint16_t kTurnMethodRefresh = 0x004;
inline constexpr std::uint16_t kTurnMethodSend = 0x006;
inline constexpr std::uint16_t kTurnMethodData = 0x007;
inline constexpr std::uint16_t kTurnMethodCreatePermission = 0x008;
inline constexpr std::uint16_t kTurnMethodChannelBind = 0x009;
inline constexpr std::uint16_t kTurnMethodConnect = 0x00a;            // RFC 6062
inline constexpr std::uint16_t kTurnMethodConnectionBind = 0x00b;     // RFC 6062
inline constexpr std::uint16_t kTurnMethodConnectionAttempt = 0x00c;  // RFC 6062

// Attribute types.
inline constexpr std::uint16_t kStunAttrMappedAddress = 0x0001;
inline constexpr std::uint16_t kStunAttrChangeRequest = 0x0003;
inline constexpr std::uint16_t kStunAttrUsername = 0x0006;
inline constexpr std::uint16_t kStunAttrMessageIntegrity = 0x0008;
inline constexpr std::uint16_t kStunAttrErrorCode = 0x0009;
inline constexpr std::uint16_t kStunAttrUnknownAttributes = 0x000a;
inline constexpr std::uint16_t kStunAttrChannelNumber = 0x000c;
inline constexpr std::uint16_t kStunAttrLifetime = 0x000d;
inline constexpr std::uint16_t kStunAttrXorPeerAddress = 0x0012;
inline constexpr std::uint16_t kStunAttrData = 0x0013;
inline constexpr std::uint16_t kStunAttrRealm = 0x0014;
inline constexpr std::uint16_t kStunAttrNonce = 0x0015;
inline constexpr std::uint16_t kStunAttrXorRelayedAddress = 0x0016;
inline constexpr std::uint16_t kStunAttrRequestedTransport = 0x0019;
inline constexpr std::uint16_t kStunAttrMessageIntegritySha256 = 0x001c;
inline constexpr std::uint16_t kStunAttrXorMappedAddress = 0x0020;
inline constexpr std::uint16_t kStunAttrPriority = 0x0024;
inline constexpr std::uint16_t kStunAttrUseCandidate = 0x0025;
inline constexpr std::uint16_t kStunAttrXorMappedAddressOld = 0x8020;  // pre-RFC 5389 drafts
inline constexpr std::uint16_t kStunAttrSoftware = 0x8022;             // SERVER in RFC 3489
inline constexpr std::uint16_t kStunAttrAlternateServer = 0x8023;
inline constexpr std::uint16_t kStunAttrFingerprint = 0x8028;
inline constexpr std::uint16_t kStunAttrIceControlled = 0x8029;
inline constexpr std::uint16_t kStunAttrIceControlling = 0x802a;

enum class StunClass : std::uint8_t {
  kRequest = 0,
  kIndication = 1,
  kSuccessResponse = 2,
  kErrorResponse = 3,
};

// Why a datagram is not (acceptable) STUN. Stable values: they index counters.
enum class StunParseStatus : std::uint8_t {
  kOk = 0,
  kTooShort,            // under 20 bytes
  kBadTopBits,          // first two bits not 00 (RFC 7983: not STUN)
  kBadLength,           // length not a multiple of 4, or not the datagram size minus 20
  kNoMagicCookie,       // no cookie, and not an acceptable RFC 3489 message
  kTruncatedAttribute,  // an attribute runs past the message end
  kBadAttribute,        // a decoded attribute has the wrong size or an invalid value
  kBadFingerprint,      // FINGERPRINT not last, wrong size, or CRC mismatch
};
inline constexpr int kStunParseStatusCount = 8;
std::string_view StunParseStatusName(StunParseStatus status);

struct StunAddress {
  IpAddress ip;
  std::uint16_t port = 0;
};

struct StunErrorCode {
  std::uint16_t code = 0;  // class * 100 + number, 300..699
  std::string reason;      // raw bytes, cut to kMaxStunTextBytes
};

struct StunMessage {
  std::uint16_t type = 0;    // the 14-bit message type
  std::uint16_t method = 0;  // 12 bits, decoded from the type
  StunClass message_class = StunClass::kRequest;
  std::uint16_t length = 0;  // the header's length field (bytes after the header)
  // RFC 3489 message without the magic cookie. Its 128-bit transaction id is `cookie`
  // followed by `transaction_id`.
  bool classic = false;
  std::uint32_t cookie = 0;  // bytes 4-7: kStunMagicCookie unless classic
  std::array<std::uint8_t, 12> transaction_id{};

  // Addresses, already un-XORed for the XOR-* attributes.
  std::optional<StunAddress> mapped_address;
  std::optional<StunAddress> xor_mapped_address;
  std::optional<StunAddress> xor_peer_address;     // TURN
  std::optional<StunAddress> xor_relayed_address;  // TURN
  std::optional<StunAddress> alternate_server;
  // Text attributes: raw bytes (not necessarily UTF-8), cut to kMaxStunTextBytes.
  std::string username;
  std::string software;
  std::string realm;
  std::string nonce;
  bool has_username = false;
  bool has_software = false;
  bool has_realm = false;
  bool has_nonce = false;
  std::optional<StunErrorCode> error_code;
  // ICE (RFC 8445 16.1).
  std::optional<std::uint32_t> priority;
  bool use_candidate = false;
  bool ice_controlling = false;
  bool ice_controlled = false;
  std::uint64_t ice_tiebreaker = 0;
  // TURN.
  std::optional<std::uint32_t> lifetime_seconds;
  std::optional<std::uint8_t> requested_transport;  // IP protocol number (17 = UDP)
  std::optional<std::uint16_t> channel_number;
  bool has_data = false;
  Bytes data;  // DATA's value (a Send or Data indication's datagram); points into the input
  // Integrity and fingerprint. A present FINGERPRINT has been verified (a mismatch fails the
  // parse); MESSAGE-INTEGRITY cannot be verified without the password and is only noted.
  bool message_integrity = false;
  bool message_integrity_sha256 = false;
  bool fingerprint = false;

  std::uint16_t attribute_count = 0;
  // Comprehension-required (type < 0x8000) attributes this parser does not know.
  std::uint16_t unknown_required_attributes = 0;
  std::array<std::uint16_t, kMaxStunAttributeOrder> attribute_order{};  // first types, in order
};

struct StunParseOptions {
  // Also accept RFC 3489 messages without the magic cookie, when their type is a Binding or
  // Shared Secret request/response, every attribute is an RFC 3489 one (or the old
  // XOR-MAPPED-ADDRESS/SERVER) with a length that is a multiple of 4, success responses
  // carry MAPPED-ADDRESS and error responses ERROR-CODE. A bare 20-byte Binding request
  // still passes, so use this only where the port or the exchange corroborates it.
  bool allow_classic = false;
};

// Parses one whole STUN message (a UDP payload, or one frame cut by StunFrameLength).
// On a status other than kOk, `out` holds what was decoded before the error.
[[nodiscard]] StunParseStatus ParseStun(Bytes message, StunMessage& out,
                                        StunParseOptions options = {});

// The strict RFC 5389 header test alone (top bits, length, magic cookie); no attributes.
bool IsStun(Bytes message);

// TURN ChannelData (RFC 8656 12.4): channel number 0x4000-0x7FFF, 16-bit length, data.
struct ChannelData {
  std::uint16_t channel = 0;
  Bytes data;  // points into the input
};
// Over UDP the datagram holds exactly one ChannelData message whose padding (to a multiple
// of 4) may be present or not; `stream` = true requires the padding (TCP/TLS, RFC 8656
// 12.5) and accepts bytes after the message.
[[nodiscard]] bool ParseChannelData(Bytes bytes, ChannelData& out, bool stream = false);

// What a TURN client and its server relay for a peer over UDP (RFC 8656): the data of a
// ChannelData message (`channel` set), or of a Send or Data indication (`peer` set: the
// indication names the peer, a channel only its binding). False for anything else,
// including the TURN client's own transactions with the server.
struct TurnRelayed {
  Bytes data;  // points into the input
  std::optional<std::uint16_t> channel;
  std::optional<StunAddress> peer;
};
[[nodiscard]] bool ParseTurnRelayed(Bytes datagram, TurnRelayed& out);

// For STUN/TURN over TCP or TLS: the size of the frame (STUN message or padded ChannelData)
// starting at `stream`, from its header alone; 0 when the bytes start neither. The frame may
// extend past the bytes given.
std::size_t StunFrameLength(Bytes stream);

// "binding", "allocate", ... or "0x<hex>"; "request", "indication", "success", "error".
std::string StunMethodName(std::uint16_t method);
std::string_view StunClassName(StunClass message_class);

}  // namespace relaywatch::detectors::common
