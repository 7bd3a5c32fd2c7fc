#include "detectors/common/stun.h"

#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "detectors/common/turn_stream.h"
#include "tests/common/stun_wire.h"

namespace relaywatch::detectors::common {
namespace {

std::vector<std::uint8_t> Hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  int nibbles = 0;
  std::uint8_t byte = 0;
  for (char c : hex) {
    int v = 0;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      continue;
    }
    byte = static_cast<std::uint8_t>(byte << 4 | v);
    if (++nibbles % 2 == 0) {
      out.push_back(byte);
      byte = 0;
    }
  }
  return out;
}

// RFC 5769 2.1: Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
// MESSAGE-INTEGRITY and FINGERPRINT.
const std::vector<std::uint8_t> kRfc5769Request =
    Hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
        "00 24 00 04 6e 00 01 ff"
        "80 29 00 08 93 2f f9 b1 51 26 3b 36"
        "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
        "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
        "80 28 00 04 e5 7a 3b cf");

// RFC 5769 2.2: Binding success response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
const std::vector<std::uint8_t> kRfc5769ResponseV4 =
    Hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
        "00 20 00 08 00 01 a1 47 e1 12 a6 43"
        "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
        "80 28 00 04 c0 7d 4c 96");

// RFC 5769 2.3: the same with XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const std::vector<std::uint8_t> kRfc5769ResponseV6 =
    Hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
        "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
        "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
        "80 28 00 04 c8 fb 0b 4c");

// Builds STUN messages in code; Finish() sets the length and, if asked, appends FINGERPRINT.
class Stun {
 public:
  explicit Stun(std::uint16_t type, std::uint32_t cookie = kStunMagicCookie) {
    U16(type).U16(0).U32(cookie);
    for (int i = 0; i < 12; ++i) {
      U8(static_cast<std::uint8_t>(0xa0 + i));
    }
  }
  Stun& U8(std::uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  Stun& U16(std::uint16_t v) { return U8(v >> 8).U8(v & 0xff); }
  Stun& U32(std::uint32_t v) { return U16(v >> 16).U16(v & 0xffff); }
  Stun& Attr(std::uint16_t type, std::string_view value) {
    U16(type).U16(static_cast<std::uint16_t>(value.size()));
    b_.insert(b_.end(), value.begin(), value.end());
    while (b_.size() % 4 != 0) {
      U8(0);
    }
    return *this;
  }
  Stun& Attr(std::uint16_t type, const std::vector<std::uint8_t>& value) {
    return Attr(type, std::string_view(reinterpret_cast<const char*>(value.data()), value.size()));
  }
  std::vector<std::uint8_t> Finish(bool fingerprint = false) {
    if (fingerprint) {
      SetLength(b_.size() - kStunHeaderBytes + 8);
      const auto crc =
          static_cast<std::uint32_t>(crc32(0L, b_.data(), static_cast<uInt>(b_.size())));
      U16(kStunAttrFingerprint).U16(4).U32(crc ^ kStunFingerprintXor);
    }
    SetLength(b_.size() - kStunHeaderBytes);
    return b_;
  }

 private:
  void SetLength(std::size_t n) {
    b_[2] = static_cast<std::uint8_t>(n >> 8);
    b_[3] = static_cast<std::uint8_t>(n & 0xff);
  }
  std::vector<std::uint8_t> b_;
};

std::vector<std::uint8_t> XorAddressV4(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                       std::uint8_t d, std::uint16_t port) {
  const std::uint16_t xport = port ^ 0x2112;
  return {0,
          1,
          static_cast<std::uint8_t>(xport >> 8),
          static_cast<std::uint8_t>(xport & 0xff),
          static_cast<std::uint8_t>(a ^ 0x21),
          static_cast<std::uint8_t>(b ^ 0x12),
          static_cast<std::uint8_t>(c ^ 0xa4),
          static_cast<std::uint8_t>(d ^ 0x42)};
}

TEST(Stun, Rfc5769RequestParsesWithValidFingerprint) {
  StunMessage m;
  ASSERT_EQ(ParseStun(Bytes(kRfc5769Request), m), StunParseStatus::kOk);
  EXPECT_TRUE(IsStun(Bytes(kRfc5769Request)));
  EXPECT_EQ(m.method, kStunMethodBinding);
  EXPECT_EQ(m.message_class, StunClass::kRequest);
  EXPECT_FALSE(m.classic);
  EXPECT_EQ(m.transaction_id[0], 0xb7);
  EXPECT_EQ(m.transaction_id[11], 0xae);
  EXPECT_EQ(m.software, "STUN test client");
  EXPECT_EQ(m.username, "evtj:h6vY");
  ASSERT_TRUE(m.priority.has_value());
  EXPECT_EQ(*m.priority, 0x6e0001ffu);
  EXPECT_TRUE(m.ice_controlled);
  EXPECT_FALSE(m.ice_controlling);
  EXPECT_EQ(m.ice_tiebreaker, 0x932ff9b151263b36u);
  EXPECT_TRUE(m.message_integrity);
  EXPECT_TRUE(m.fingerprint);
  EXPECT_EQ(m.attribute_count, 6);
  EXPECT_EQ(m.attribute_order[0], kStunAttrSoftware);
  EXPECT_EQ(m.attribute_order[5], kStunAttrFingerprint);
}

TEST(Stun, Rfc5769ResponsesDecodeXorMappedAddressV4AndV6) {
  StunMessage m;
  ASSERT_EQ(ParseStun(Bytes(kRfc5769ResponseV4), m), StunParseStatus::kOk);
  EXPECT_EQ(m.message_class, StunClass::kSuccessResponse);
  EXPECT_EQ(m.software, "test vector");
  ASSERT_TRUE(m.xor_mapped_address.has_value());
  EXPECT_EQ(m.xor_mapped_address->ip.ToString(), "192.0.2.1");
  EXPECT_EQ(m.xor_mapped_address->port, 32853);
  EXPECT_TRUE(m.fingerprint);

  ASSERT_EQ(ParseStun(Bytes(kRfc5769ResponseV6), m), StunParseStatus::kOk);
  ASSERT_TRUE(m.xor_mapped_address.has_value());
  EXPECT_EQ(m.xor_mapped_address->ip.ToString(), "2001:db8:1234:5678:11:2233:4455:6677");
  EXPECT_EQ(m.xor_mapped_address->port, 32853);
}

TEST(Stun, FingerprintMismatchIsRejected) {
  std::vector<std::uint8_t> bad = kRfc5769ResponseV4;
  bad.back() ^= 0x01;
  StunMessage m;
  EXPECT_EQ(ParseStun(Bytes(bad), m), StunParseStatus::kBadFingerprint);
  // A changed byte elsewhere (the SOFTWARE text) breaks the CRC as well.
  bad = kRfc5769ResponseV4;
  bad[24] = 'T';
  EXPECT_EQ(ParseStun(Bytes(bad), m), StunParseStatus::kBadFingerprint);
}

TEST(Stun, AttributeAfterFingerprintIsRejected) {
  std::vector<std::uint8_t> msg = Stun(0x0001).Finish(true);
  // Append a SOFTWARE attribute after the FINGERPRINT and fix the length.
  const std::uint8_t software[] = {0x80, 0x22, 0x00, 0x04, 'a', 'b', 'c', 'd'};
  msg.insert(msg.end(), std::begin(software), std::end(software));
  msg[3] = static_cast<std::uint8_t>(msg.size() - kStunHeaderBytes);
  StunMessage m;
  EXPECT_EQ(ParseStun(Bytes(msg), m), StunParseStatus::kBadFingerprint);
}

TEST(Stun, BuiltBindingRequestWithIceAttributes) {
  const std::vector<std::uint8_t> msg = Stun(0x0001)
                                            .Attr(kStunAttrUsername, "abcd:efgh")
                                            .Attr(kStunAttrPriority, "\x6e\x7f\x1e\xff")
                                            .Attr(kStunAttrUseCandidate, "")
                                            .Attr(kStunAttrIceControlling, "12345678")
                                            .Attr(kStunAttrMessageIntegrity, std::string(20, 'm'))
                                            .Finish(true);
  StunMessage m;
  ASSERT_EQ(ParseStun(Bytes(msg), m), StunParseStatus::kOk);
  EXPECT_EQ(m.username, "abcd:efgh");
  EXPECT_TRUE(m.use_candidate);
  EXPECT_TRUE(m.ice_controlling);
  EXPECT_TRUE(m.message_integrity);
  EXPECT_TRUE(m.fingerprint);
  EXPECT_EQ(StunMethodName(m.method), "binding");
  EXPECT_EQ(StunClassName(m.message_class), "request");
}

TEST(Stun, TurnAllocateExchange) {
  // Allocate request: REQUESTED-TRANSPORT UDP, LIFETIME 600 s.
  const std::vector<std::uint8_t> request =
      Stun(0x0003)
          .Attr(kStunAttrRequestedTransport, std::string("\x11\0\0\0", 4))
          .Attr(kStunAttrLifetime, std::string("\0\0\x02\x58", 4))
          .Attr(kStunAttrSoftware, "relaywatch test")
          .Finish(true);
  StunMessage m;
  ASSERT_EQ(ParseStun(Bytes(request), m), StunParseStatus::kOk);
  EXPECT_EQ(m.method, kTurnMethodAllocate);
  EXPECT_EQ(StunMethodName(m.method), "allocate");
  EXPECT_EQ(m.message_class, StunClass::kRequest);
  EXPECT_EQ(m.requested_transport, 17);
  EXPECT_EQ(m.lifetime_seconds, 600u);

  // 401 error response (type 0x0113) with REALM and NONCE.
  const std::vector<std::uint8_t> challenge =
      Stun(0x0113)
          .Attr(kStunAttrErrorCode, std::string("\0\0\x04\x01Unauthorized", 16))
          .Attr(kStunAttrRealm, "example.org")
          .Attr(kStunAttrNonce, "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA")
          .Finish(true);
  ASSERT_EQ(ParseStun(Bytes(challenge), m), StunParseStatus::kOk);
  EXPECT_EQ(m.method, kTurnMethodAllocate);
  EXPECT_EQ(m.message_class, StunClass::kErrorResponse);
  ASSERT_TRUE(m.error_code.has_value());
  EXPECT_EQ(m.error_code->code, 401);
  EXPECT_EQ(m.error_code->reason, "Unauthorized");
  EXPECT_EQ(m.realm, "example.org");
  EXPECT_TRUE(m.has_nonce);

  // Success response (0x0103): relayed and mapped addresses, lifetime.
  const std::vector<std::uint8_t> success =
      Stun(0x0103)
          .Attr(kStunAttrXorRelayedAddress, XorAddressV4(198, 51, 100, 7, 49152))
          .Attr(kStunAttrXorMappedAddress, XorAddressV4(203, 0, 113, 9, 61000))
          .Attr(kStunAttrLifetime, std::string("\0\0\x02\x58", 4))
          .Attr(kStunAttrMessageIntegrity, std::string(20, 'i'))
          .Finish(true);
  ASSERT_EQ(ParseStun(Bytes(success), m), StunParseStatus::kOk);
  EXPECT_EQ(m.message_class, StunClass::kSuccessResponse);
  ASSERT_TRUE(m.xor_relayed_address.has_value());
  EXPECT_EQ(m.xor_relayed_address->ip.ToString(), "198.51.100.7");
  EXPECT_EQ(m.xor_relayed_address->port, 49152);
  EXPECT_EQ(m.xor_mapped_address->ip.ToString(), "203.0.113.9");
  EXPECT_EQ(m.xor_mapped_address->port, 61000);

  // ChannelBind request (0x0009) and a Send indication (0x0016) with DATA.
  const std::vector<std::uint8_t> bind =
      Stun(0x0009)
          .Attr(kStunAttrChannelNumber, std::string("\x40\x01\0\0", 4))
          .Attr(kStunAttrXorPeerAddress, XorAddressV4(192, 0, 2, 77, 5000))
          .Finish();
  ASSERT_EQ(ParseStun(Bytes(bind), m), StunParseStatus::kOk);
  EXPECT_EQ(m.method, kTurnMethodChannelBind);
  EXPECT_EQ(m.channel_number, 0x4001);
  EXPECT_EQ(m.xor_peer_address->ip.ToString(), "192.0.2.77");
  const std::vector<std::uint8_t> send =
      Stun(0x0016)
          .Attr(kStunAttrXorPeerAddress, XorAddressV4(192, 0, 2, 77, 5000))
          .Attr(kStunAttrData, "hello")
          .Finish();
  ASSERT_EQ(ParseStun(Bytes(send), m), StunParseStatus::kOk);
  EXPECT_EQ(m.method, kTurnMethodSend);
  EXPECT_EQ(m.message_class, StunClass::kIndication);
  EXPECT_TRUE(m.has_data);
  EXPECT_EQ(std::string(m.data.begin(), m.data.end()), "hello");

  // What the server relays: the indication's data and its peer; a channel's data and number.
  TurnRelayed relayed;
  ASSERT_TRUE(ParseTurnRelayed(Bytes(send), relayed));
  EXPECT_EQ(std::string(relayed.data.begin(), relayed.data.end()), "hello");
  ASSERT_TRUE(relayed.peer.has_value());
  EXPECT_EQ(relayed.peer->ip.ToString(), "192.0.2.77");
  EXPECT_EQ(relayed.peer->port, 5000);
  EXPECT_FALSE(relayed.channel.has_value());
  const std::vector<std::uint8_t> channel = {0x40, 0x01, 0x00, 0x02, 'h', 'i', 0, 0};
  ASSERT_TRUE(ParseTurnRelayed(Bytes(channel), relayed));
  EXPECT_EQ(relayed.channel, 0x4001);
  EXPECT_FALSE(relayed.peer.has_value());
  EXPECT_EQ(relayed.data.size(), 2u);
  // Not relayed for a peer: the client's own requests, an indication without its peer,
  // media.
  EXPECT_FALSE(ParseTurnRelayed(Bytes(bind), relayed));
  EXPECT_FALSE(
      ParseTurnRelayed(Bytes(Stun(0x0016).Attr(kStunAttrData, "hello").Finish()), relayed));
  EXPECT_FALSE(ParseTurnRelayed(
      Bytes(Stun(0x0017).Attr(kStunAttrXorPeerAddress, XorAddressV4(192, 0, 2, 77, 5000)).Finish()),
      relayed));
  const std::vector<std::uint8_t> rtp = {0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(ParseTurnRelayed(Bytes(rtp), relayed));
}

TEST(Stun, ChannelData) {
  const std::vector<std::uint8_t> unpadded = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
  ChannelData cd;
  ASSERT_TRUE(ParseChannelData(Bytes(unpadded), cd));
  EXPECT_EQ(cd.channel, 0x4001);
  EXPECT_EQ(std::string(cd.data.begin(), cd.data.end()), "hello");
  std::vector<std::uint8_t> padded = unpadded;
  padded.insert(padded.end(), {0, 0, 0});
  EXPECT_TRUE(ParseChannelData(Bytes(padded), cd));
  EXPECT_FALSE(ParseChannelData(Bytes(unpadded), cd, /*stream=*/true));  // TCP needs padding
  EXPECT_TRUE(ParseChannelData(Bytes(padded), cd, /*stream=*/true));
  EXPECT_EQ(StunFrameLength(Bytes(padded)), 12u);

  std::vector<std::uint8_t> extra = padded;
  extra.push_back(0);  // more than padding after the data: not one ChannelData message
  EXPECT_FALSE(ParseChannelData(Bytes(extra), cd));
  std::vector<std::uint8_t> short_data = unpadded;
  short_data.pop_back();  // length says 5, 4 bytes present
  EXPECT_FALSE(ParseChannelData(Bytes(short_data), cd));
  for (std::uint16_t channel : {0x3fff, 0x8000, 0x0001}) {
    std::vector<std::uint8_t> other = unpadded;
    other[0] = static_cast<std::uint8_t>(channel >> 8);
    other[1] = static_cast<std::uint8_t>(channel & 0xff);
    EXPECT_FALSE(ParseChannelData(Bytes(other), cd)) << channel;
  }
  EXPECT_EQ(StunFrameLength(Bytes(kRfc5769Request)), kRfc5769Request.size());
}

TEST(Stun, NonStunIsRejected) {
  StunMessage m;
  // DTLS 1.2 ClientHello record header, RTP, a DNS response, QUIC long header.
  const std::vector<std::vector<std::uint8_t>> others = {
      Hex("16 fe fd 00 00 00 00 00 00 00 00 00 8a 01 00 00 7e 00 00 00 00 00 00 00"),
      Hex("80 60 12 34 00 00 10 00 de ad be ef 00 01 02 03 04 05 06 07"),
      Hex("12 34 81 80 00 01 00 01 00 00 00 00 01 78 04 74 65 73 74 00 00 01 00 01"),
      Hex("c3 00 00 00 01 08 01 02 03 04 05 06 07 08 00 00 44 d0 00 00"),
  };
  for (const auto& o : others) {
    EXPECT_FALSE(IsStun(Bytes(o)));
    EXPECT_NE(ParseStun(Bytes(o), m), StunParseStatus::kOk);
    EXPECT_NE(ParseStun(Bytes(o), m, {.allow_classic = true}), StunParseStatus::kOk);
  }
  EXPECT_EQ(ParseStun(Bytes(others[1]), m), StunParseStatus::kBadTopBits);

  std::vector<std::uint8_t> msg = Stun(0x0001).Attr(kStunAttrSoftware, "x").Finish();
  std::vector<std::uint8_t> wrong_length = msg;
  wrong_length[3] += 4;
  EXPECT_EQ(ParseStun(Bytes(wrong_length), m), StunParseStatus::kBadLength);
  wrong_length[3] -= 2;  // not a multiple of 4
  EXPECT_EQ(ParseStun(Bytes(wrong_length), m), StunParseStatus::kBadLength);
  std::vector<std::uint8_t> no_cookie = msg;
  no_cookie[4] = 0;
  EXPECT_EQ(ParseStun(Bytes(no_cookie), m), StunParseStatus::kNoMagicCookie);
  std::vector<std::uint8_t> overrun = msg;
  overrun[23] = 9;  // SOFTWARE claims 9 bytes in an 8-byte message body
  EXPECT_EQ(ParseStun(Bytes(overrun), m), StunParseStatus::kTruncatedAttribute);

  // Attributes with the wrong size for their type.
  EXPECT_EQ(ParseStun(Bytes(Stun(1).Attr(kStunAttrPriority, "abc").Finish()), m),
            StunParseStatus::kBadAttribute);
  EXPECT_EQ(
      ParseStun(
          Bytes(Stun(1).Attr(kStunAttrXorMappedAddress, std::string("\0\x03\0\0abcd", 8)).Finish()),
          m),
      StunParseStatus::kBadAttribute);
  EXPECT_EQ(
      ParseStun(
          Bytes(Stun(0x0111).Attr(kStunAttrErrorCode, std::string("\0\0\x07\x01", 4)).Finish()), m),
      StunParseStatus::kBadAttribute);
}

TEST(Stun, EveryTruncationIsRejected) {
  StunMessage m;
  for (const auto* full : {&kRfc5769Request, &kRfc5769ResponseV6}) {
    for (std::size_t n = 0; n < full->size(); ++n) {
      const std::vector<std::uint8_t> cut(full->begin(),
                                          full->begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_NE(ParseStun(Bytes(cut), m, {.allow_classic = true}), StunParseStatus::kOk) << n;
      EXPECT_FALSE(IsStun(Bytes(cut)));
    }
  }
}

TEST(Stun, ClassicRfc3489OnlyWhenAskedAndStrict) {
  // Binding response without cookie: MAPPED-ADDRESS 192.0.2.5:3478, SOURCE-ADDRESS.
  const std::string mapped("\0\x01\x0d\x96\xc0\x00\x02\x05", 8);
  const std::vector<std::uint8_t> response =
      Stun(0x0101, 0x0badcafe).Attr(kStunAttrMappedAddress, mapped).Attr(0x0004, mapped).Finish();
  StunMessage m;
  EXPECT_EQ(ParseStun(Bytes(response), m), StunParseStatus::kNoMagicCookie);
  ASSERT_EQ(ParseStun(Bytes(response), m, {.allow_classic = true}), StunParseStatus::kOk);
  EXPECT_TRUE(m.classic);
  EXPECT_EQ(m.cookie, 0x0badcafeu);
  EXPECT_EQ(m.mapped_address->ip.ToString(), "192.0.2.5");
  EXPECT_EQ(m.mapped_address->port, 3478);

  // Classic responses must carry MAPPED-ADDRESS; unknown or RFC 5389-only attributes and
  // non-Binding/Shared-Secret types are not classic.
  const StunParseOptions classic{.allow_classic = true};
  EXPECT_NE(ParseStun(Bytes(Stun(0x0101, 1).Attr(0x0004, mapped).Finish()), m, classic),
            StunParseStatus::kOk);
  EXPECT_NE(
      ParseStun(
          Bytes(Stun(0x0101, 1).Attr(kStunAttrMappedAddress, mapped).Attr(0x0024, "abcd").Finish()),
          m, classic),
      StunParseStatus::kOk);
  EXPECT_NE(ParseStun(Bytes(Stun(0x0003, 1).Finish()), m, classic), StunParseStatus::kOk);
  EXPECT_NE(ParseStun(Bytes(Stun(0x0001, 1).Attr(kStunAttrUsername, "abc").Finish()), m, classic),
            StunParseStatus::kOk);  // classic attribute lengths are multiples of 4
  EXPECT_EQ(ParseStun(Bytes(Stun(0x0001, 1).Finish()), m, classic), StunParseStatus::kOk);
  EXPECT_EQ(ParseStun(Bytes(Stun(0x0001, 1).Finish(true)), m, classic),
            StunParseStatus::kNoMagicCookie);  // FINGERPRINT is not an RFC 3489 attribute
}

// ---- TURN over TCP: the stream cut into frames again ---------------------------------

// Padded to four, as ChannelData goes over TCP (RFC 8656 12.5).
std::string OverTcp(std::string frame) {
  frame.append((4 - frame.size() % 4) % 4, '\0');
  return frame;
}

struct Seen {
  std::vector<std::size_t> lengths;
  std::vector<std::string> whole;  // empty: handed over by its head only
  std::vector<std::string> heads;
};

template <std::size_t Keep>
void FeedAll(TurnStreamReader<Keep>& reader, const std::string& bytes, bool segment_start, bool gap,
             Seen& seen) {
  reader.Feed(Bytes(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()),
              segment_start, gap, [&](const TurnFrame& f) {
                seen.lengths.push_back(f.length);
                seen.whole.emplace_back(f.whole.begin(), f.whole.end());
                seen.heads.emplace_back(f.head.begin(), f.head.end());
              });
}

TEST(TurnStream, WholeFramesAreWhereAStreamCanBeTakenUp) {
  const std::string check = stun_wire::IceCheck(1);
  const auto whole = [](const std::string& s) {
    return WholeTurnFrames(Bytes(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
  };
  EXPECT_TRUE(whole(check));
  EXPECT_TRUE(whole(OverTcp(stun_wire::InChannel(check))));
  EXPECT_TRUE(whole(check + OverTcp(stun_wire::InChannel(std::string(5, 'v')))));
  EXPECT_FALSE(whole(""));
  EXPECT_FALSE(whole(check.substr(0, 30)));                        // a frame's first part
  EXPECT_FALSE(whole(check + "x"));                                // and a byte more
  EXPECT_FALSE(whole(stun_wire::InChannel(std::string(5, 'v'))));  // unpadded: not over TCP
  EXPECT_FALSE(whole(std::string("\x17\x03\x03\x00\x10", 5) + std::string(16, 't')));  // TLS
}

TEST(TurnStream, FramesAreCutAcrossAndWithinSegments) {
  const std::string check = stun_wire::IceCheck(1);
  const std::string media = OverTcp(stun_wire::InChannel("\x80\x60" + std::string(1100, 'v')));
  const std::string answer = OverTcp(stun_wire::InChannel(stun_wire::IceAnswer(2), 0x4001));
  TurnStreamReader<512> reader;
  Seen seen;
  // Taken up at the first segment of whole frames; the check, then media and an answer
  // coalesced and cut mid-header, mid-body.
  FeedAll(reader, check, true, false, seen);
  const std::string rest = media + answer + check;
  FeedAll(reader, rest.substr(0, 2), true, false, seen);    // half a header
  FeedAll(reader, rest.substr(2, 600), true, false, seen);  // the media's head
  FeedAll(reader, rest.substr(602, media.size() - 602 + 10), true, false, seen);
  FeedAll(reader, rest.substr(media.size() + 10), true, false, seen);
  ASSERT_EQ(seen.lengths.size(), 4u);
  EXPECT_EQ(seen.lengths[0], check.size());
  EXPECT_EQ(seen.whole[0], check);
  EXPECT_EQ(seen.lengths[1], media.size());  // padding included
  EXPECT_TRUE(seen.whole[1].empty());        // longer than kept: by its head
  EXPECT_EQ(seen.heads[1], media.substr(0, kTurnFrameHeadBytes));
  EXPECT_EQ(seen.whole[2], answer);
  EXPECT_EQ(seen.whole[3], check);
  EXPECT_EQ(reader.frames(), 4u);
  EXPECT_EQ(reader.lost_sync(), 0u);

  // A reader that keeps nothing hands every frame over by its head.
  TurnStreamReader<kTurnFrameHeadBytes> heads;
  Seen only;
  FeedAll(heads, check + media + answer, true, false, only);
  ASSERT_EQ(only.lengths.size(), 3u);
  for (const std::string& w : only.whole)
    EXPECT_TRUE(w.empty());
  EXPECT_EQ(only.heads[2], answer.substr(0, kTurnFrameHeadBytes));
}

TEST(TurnStream, AGapOrBytesThatDoNotFrameLoseItUntilTheNextWholeSegment) {
  const std::string check = stun_wire::IceCheck(1);
  const std::string media = OverTcp(stun_wire::InChannel("\x80\x60" + std::string(700, 'v')));
  TurnStreamReader<512> reader;
  Seen seen;
  // Picked up mid-stream: nothing until a segment begins with a frame and holds only frames.
  FeedAll(reader, media.substr(100), true, false, seen);
  FeedAll(reader, check + media.substr(0, 20), true, false, seen);
  EXPECT_FALSE(reader.synced());
  FeedAll(reader, check, true, false, seen);
  EXPECT_TRUE(reader.synced());
  ASSERT_EQ(seen.lengths.size(), 1u);
  // Data lost before the sensor: out of step until the next whole segment.
  FeedAll(reader, media.substr(0, 300), true, false, seen);
  FeedAll(reader, media.substr(500), true, /*gap=*/true, seen);
  EXPECT_FALSE(reader.synced());
  EXPECT_EQ(reader.lost_sync(), 1u);
  FeedAll(reader, check, true, false, seen);
  EXPECT_TRUE(reader.synced());
  // Bytes that are no frame (a header of neither kind).
  FeedAll(reader, std::string(24, '\x99'), true, false, seen);
  EXPECT_FALSE(reader.synced());
  EXPECT_EQ(reader.lost_sync(), 2u);
  EXPECT_EQ(seen.lengths.size(), 3u);  // check, media (by its head), check
  // A segment cut by the snaplen: its frame skipped through, or lost if kept whole.
  FeedAll(reader, check, true, false, seen);
  FeedAll(reader, media.substr(0, 100), true, false, seen);
  reader.Skip(media.size() - 100);
  EXPECT_TRUE(reader.synced());
  FeedAll(reader, check.substr(0, 40), true, false, seen);
  reader.Skip(check.size() - 40);
  EXPECT_FALSE(reader.synced());
  EXPECT_EQ(seen.lengths.size(), 5u);
}

}  // namespace
}  // namespace relaywatch::detectors::common
