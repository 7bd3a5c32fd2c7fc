#include "detectors/common/stun.h"

#include <zlib.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "capture/base/bytes.h"

namespace relaywatch::detectors::common {
namespace {

// Offsets are checked by the callers (capture/base/bytes.h readers do not check).
std::uint16_t Be16(Bytes b, std::size_t at) {
  return relaywatch::Be16(b.data() + at);
}

std::uint32_t Be32(Bytes b, std::size_t at) {
  return relaywatch::Be32(b.data() + at);
}

std::size_t Padded(std::size_t n) {
  return (n + 3) & ~std::size_t{3};
}

std::string Text(Bytes value) {
  const std::size_t n = std::min(value.size(), kMaxStunTextBytes);
  return std::string(reinterpret_cast<const char*>(value.data()), n);
}

// RFC 8489 14.1/14.2: reserved byte, family (1 = IPv4, 2 = IPv6), port, address. For the XOR
// forms the port is XORed with the cookie's top 16 bits, an IPv4 address with the cookie and
// an IPv6 address with the cookie followed by the transaction id, i.e. header bytes 4-19.
bool DecodeAddress(Bytes value, Bytes header, bool xored, StunAddress& out) {
  if (value.size() < 4) {
    return false;
  }
  const std::uint8_t family = value[1];
  const std::size_t address_bytes = family == 0x01 ? 4 : family == 0x02 ? 16 : 0;
  if (address_bytes == 0 || value.size() != 4 + address_bytes) {
    return false;
  }
  std::uint8_t address[16];
  for (std::size_t i = 0; i < address_bytes; ++i) {
    address[i] = value[4 + i] ^ (xored ? header[4 + i] : 0);
  }
  out.port = Be16(value, 2) ^ (xored ? Be16(header, 4) : 0);
  out.ip = address_bytes == 4 ? IpAddress::FromV4(address) : IpAddress::FromV6(address);
  return true;
}

bool IsClassicAttribute(std::uint16_t type) {
  // RFC 3489 11.2: 0x0001-0x000B, plus XOR-MAPPED-ADDRESS (0x8020) and SERVER (0x8022) that
  // pre-RFC 5389 implementations (Vovida, early libjingle) sent.
  return (type >= 0x0001 && type <= 0x000b) || type == kStunAttrXorMappedAddressOld ||
         type == kStunAttrSoftware;
}

bool IsClassicType(std::uint16_t type) {
  switch (type) {
    case 0x0001:  // Binding Request
    case 0x0101:  // Binding Response
    case 0x0111:  // Binding Error Response
    case 0x0002:  // Shared Secret Request
    case 0x0102:  // Shared Secret Response
    case 0x0112:  // Shared Secret Error Response
      return true;
    default:
      return false;
  }
}

StunParseStatus ParseAttribute(std::uint16_t type, Bytes value, Bytes message, StunMessage& out) {
  const Bytes header = message.first(kStunHeaderBytes);
  switch (type) {
    case kStunAttrMappedAddress:
      return DecodeAddress(value, header, false, out.mapped_address.emplace())
                 ? StunParseStatus::kOk
                 : StunParseStatus::kBadAttribute;
    case kStunAttrXorMappedAddress:
    case kStunAttrXorMappedAddressOld:
      return DecodeAddress(value, header, true, out.xor_mapped_address.emplace())
                 ? StunParseStatus::kOk
                 : StunParseStatus::kBadAttribute;
    case kStunAttrXorPeerAddress:
      return DecodeAddress(value, header, true, out.xor_peer_address.emplace())
                 ? StunParseStatus::kOk
                 : StunParseStatus::kBadAttribute;
    case kStunAttrXorRelayedAddress:
      return DecodeAddress(value, header, true, out.xor_relayed_address.emplace())
                 ? StunParseStatus::kOk
                 : StunParseStatus::kBadAttribute;
    case kStunAttrAlternateServer:
      return DecodeAddress(value, header, false, out.alternate_server.emplace())
                 ? StunParseStatus::kOk
                 : StunParseStatus::kBadAttribute;
    case kStunAttrUsername:
      out.username = Text(value);
      out.has_username = true;
      return StunParseStatus::kOk;
    case kStunAttrSoftware:
      out.software = Text(value);
      out.has_software = true;
      return StunParseStatus::kOk;
    case kStunAttrRealm:
      out.realm = Text(value);
      out.has_realm = true;
      return StunParseStatus::kOk;
    case kStunAttrNonce:
      out.nonce = Text(value);
      out.has_nonce = true;
      return StunParseStatus::kOk;
    case kStunAttrErrorCode: {
      // RFC 8489 14.8: 21 reserved bits, class (3-6) in 3 bits, number (0-99) in 8 bits.
      if (value.size() < 4) {
        return StunParseStatus::kBadAttribute;
      }
      const int error_class = value[2] & 0x07;
      const int number = value[3];
      if (error_class < 3 || error_class > 6 || number > 99) {
        return StunParseStatus::kBadAttribute;
      }
      out.error_code = StunErrorCode{static_cast<std::uint16_t>(error_class * 100 + number),
                                     Text(value.subspan(4))};
      return StunParseStatus::kOk;
    }
    case kStunAttrMessageIntegrity:
      if (value.size() != 20) {  // HMAC-SHA1
        return StunParseStatus::kBadAttribute;
      }
      out.message_integrity = true;
      return StunParseStatus::kOk;
    case kStunAttrMessageIntegritySha256:
      // RFC 8489 14.6: a truncated HMAC-SHA256 of 16 to 32 bytes, a multiple of 4.
      if (value.size() < 16 || value.size() > 32 || value.size() % 4 != 0) {
        return StunParseStatus::kBadAttribute;
      }
      out.message_integrity_sha256 = true;
      return StunParseStatus::kOk;
    case kStunAttrPriority:
      if (value.size() != 4) {
        return StunParseStatus::kBadAttribute;
      }
      out.priority = Be32(value, 0);
      return StunParseStatus::kOk;
    case kStunAttrUseCandidate:
      if (!value.empty()) {
        return StunParseStatus::kBadAttribute;
      }
      out.use_candidate = true;
      return StunParseStatus::kOk;
    case kStunAttrIceControlling:
    case kStunAttrIceControlled:
      if (value.size() != 8) {
        return StunParseStatus::kBadAttribute;
      }
      (type == kStunAttrIceControlling ? out.ice_controlling : out.ice_controlled) = true;
      out.ice_tiebreaker = (std::uint64_t{Be32(value, 0)} << 32) | Be32(value, 4);
      return StunParseStatus::kOk;
    case kStunAttrLifetime:
      if (value.size() != 4) {
        return StunParseStatus::kBadAttribute;
      }
      out.lifetime_seconds = Be32(value, 0);
      return StunParseStatus::kOk;
    case kStunAttrRequestedTransport:
      if (value.size() != 4) {
        return StunParseStatus::kBadAttribute;
      }
      out.requested_transport = value[0];
      return StunParseStatus::kOk;
    case kStunAttrChannelNumber:
      // RFC 8656 14.1: the channel number is 0x4000-0x7FFF (RFC 5766's range).
      if (value.size() != 4 || Be16(value, 0) < 0x4000 || Be16(value, 0) > 0x7fff) {
        return StunParseStatus::kBadAttribute;
      }
      out.channel_number = Be16(value, 0);
      return StunParseStatus::kOk;
    case kStunAttrData:
      out.has_data = true;
      out.data = value;
      return StunParseStatus::kOk;
    default:
      if (type < 0x8000) {
        ++out.unknown_required_attributes;
      }
      return StunParseStatus::kOk;
  }
}

}  // namespace

std::string_view StunParseStatusName(StunParseStatus status) {
  switch (status) {
    case StunParseStatus::kOk:
      return "ok";
    case StunParseStatus::kTooShort:
      return "too_short";
    case StunParseStatus::kBadTopBits:
      return "bad_top_bits";
    case StunParseStatus::kBadLength:
      return "bad_length";
    case StunParseStatus::kNoMagicCookie:
      return "no_magic_cookie";
    case StunParseStatus::kTruncatedAttribute:
      return "truncated_attribute";
    case StunParseStatus::kBadAttribute:
      return "bad_attribute";
    case StunParseStatus::kBadFingerprint:
      return "bad_fingerprint";
  }
  return "unknown";
}

bool IsStun(Bytes message) {
  if (message.size() < kStunHeaderBytes || (message[0] & 0xc0) != 0) {
    return false;
  }
  const std::size_t length = Be16(message, 2);
  return length % 4 == 0 && length == message.size() - kStunHeaderBytes &&
         Be32(message, 4) == kStunMagicCookie;
}

StunParseStatus ParseStun(Bytes message, StunMessage& out, StunParseOptions options) {
  out = StunMessage{};
  if (message.size() < kStunHeaderBytes) {
    return StunParseStatus::kTooShort;
  }
  if ((message[0] & 0xc0) != 0) {
    return StunParseStatus::kBadTopBits;
  }
  out.type = Be16(message, 0);
  out.length = Be16(message, 2);
  out.cookie = Be32(message, 4);
  std::copy(message.begin() + 8, message.begin() + 20, out.transaction_id.begin());
  // Type bits: M11-M7 C1 M6-M4 C0 M3-M0 (RFC 8489 5).
  const std::uint16_t t = out.type;
  out.method = static_cast<std::uint16_t>((t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2));
  out.message_class = static_cast<StunClass>(((t >> 4) & 0x1) | ((t >> 7) & 0x2));
  if (out.length % 4 != 0 || out.length != message.size() - kStunHeaderBytes) {
    return StunParseStatus::kBadLength;
  }
  if (out.cookie != kStunMagicCookie) {
    if (!options.allow_classic || !IsClassicType(out.type)) {
      return StunParseStatus::kNoMagicCookie;
    }
    out.classic = true;
  }

  std::size_t pos = kStunHeaderBytes;
  while (pos < message.size()) {
    if (pos + 4 > message.size()) {
      return StunParseStatus::kTruncatedAttribute;
    }
    const std::uint16_t type = Be16(message, pos);
    const std::size_t length = Be16(message, pos + 2);
    const std::size_t value_at = pos + 4;
    // RFC 8489 14: values are padded to a multiple of 4; the padding is not in `length`.
    if (value_at + Padded(length) > message.size()) {
      return StunParseStatus::kTruncatedAttribute;
    }
    if (out.fingerprint) {
      return StunParseStatus::kBadFingerprint;  // RFC 8489 14.7: FINGERPRINT comes last
    }
    if (out.classic && (!IsClassicAttribute(type) || length % 4 != 0)) {
      return StunParseStatus::kNoMagicCookie;
    }
    if (out.attribute_count < kMaxStunAttributeOrder) {
      out.attribute_order[out.attribute_count] = type;
    }
    if (out.attribute_count < 0xffff) {
      ++out.attribute_count;
    }
    const Bytes value = message.subspan(value_at, length);
    if (type == kStunAttrFingerprint) {
      if (length != 4 || out.classic) {
        return StunParseStatus::kBadFingerprint;
      }
      const auto crc = static_cast<std::uint32_t>(
          crc32(0L, reinterpret_cast<const Bytef*>(message.data()), static_cast<uInt>(pos)));
      if ((crc ^ kStunFingerprintXor) != Be32(value, 0)) {
        return StunParseStatus::kBadFingerprint;
      }
      out.fingerprint = true;
    } else if (StunParseStatus s = ParseAttribute(type, value, message, out);
               s != StunParseStatus::kOk) {
      return s;
    }
    pos = value_at + Padded(length);
  }
  if (out.classic) {
    // RFC 3489 11.1: a Binding Response carries MAPPED-ADDRESS, an error response ERROR-CODE.
    if ((out.message_class == StunClass::kSuccessResponse && !out.mapped_address &&
         out.method == kStunMethodBinding) ||
        (out.message_class == StunClass::kErrorResponse && !out.error_code)) {
      return StunParseStatus::kNoMagicCookie;
    }
  }
  return StunParseStatus::kOk;
}

bool ParseChannelData(Bytes bytes, ChannelData& out, bool stream) {
  if (bytes.size() < 4) {
    return false;
  }
  const std::uint16_t channel = Be16(bytes, 0);
  if (channel < 0x4000 || channel > 0x7fff) {
    return false;
  }
  const std::size_t length = Be16(bytes, 2);
  const std::size_t available = bytes.size() - 4;
  if (stream) {
    if (Padded(length) > available) {
      return false;
    }
  } else if (length > available || available > Padded(length)) {
    return false;  // one message per datagram; only padding may follow
  }
  out.channel = channel;
  out.data = bytes.subspan(4, length);
  return true;
}

bool ParseTurnRelayed(Bytes datagram, TurnRelayed& out) {
  out = {};
  ChannelData channel;
  if (ParseChannelData(datagram, channel)) {
    out.data = channel.data;
    out.channel = channel.channel;
    return true;
  }
  if (!IsStun(datagram)) {
    return false;
  }
  StunMessage m;
  if (ParseStun(datagram, m) != StunParseStatus::kOk || m.message_class != StunClass::kIndication ||
      (m.method != kTurnMethodSend && m.method != kTurnMethodData) || !m.has_data ||
      !m.xor_peer_address) {
    return false;  // RFC 8656 11.1/11.4: both carry the peer and the data
  }
  out.data = m.data;
  out.peer = m.xor_peer_address;
  return true;
}

std::size_t StunFrameLength(Bytes stream) {
  if (stream.size() < 4) {
    return 0;
  }
  const std::uint16_t first = Be16(stream, 0);
  const std::size_t length = Be16(stream, 2);
  if (first >= 0x4000 && first <= 0x7fff) {
    return 4 + Padded(length);
  }
  if ((stream[0] & 0xc0) == 0 && length % 4 == 0 && stream.size() >= 8 &&
      Be32(stream, 4) == kStunMagicCookie) {
    return kStunHeaderBytes + length;
  }
  return 0;
}

std::string StunMethodName(std::uint16_t method) {
  switch (method) {
    case kStunMethodBinding:
      return "binding";
    case kStunMethodSharedSecret:
      return "shared_secret";
    case kTurnMethodAllocate:
      return "allocate";
    case kTurnMethodRefresh:
      return "refresh";
    case kTurnMethodSend:
      return "send";
    case kTurnMethodData:
      return "data";
    case kTurnMethodCreatePermission:
      return "create_permission";
    case kTurnMethodChannelBind:
      return "channel_bind";
    case kTurnMethodConnect:
      return "connect";
    case kTurnMethodConnectionBind:
      return "connection_bind";
    case kTurnMethodConnectionAttempt:
      return "connection_attempt";
    default:
      return absl::StrCat("0x", absl::Hex(method));
  }
}

std::string_view StunClassName(StunClass message_class) {
  switch (message_class) {
    case StunClass::kRequest:
      return "request";
    case StunClass::kIndication:
      return "indication";
    case StunClass::kSuccessResponse:
      return "success";
    case StunClass::kErrorResponse:
      return "error";
  }
  return "unknown";
}

}  // namespace relaywatch::detectors::common
