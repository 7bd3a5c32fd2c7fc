#include "detectors/dns/dns.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"
#include "detectors/common/dns.h"
#include "detectors/common/signatures.h"

namespace relaywatch::detectors {
namespace {

using common::Bytes;
using common::DnsMessage;
using common::DnsParseLimits;
using common::DnsParseStatus;
using ::testing::HasSubstr;

// Builds DNS messages byte by byte; counts are set by the caller.
class Msg {
 public:
  Msg(std::uint16_t id, std::uint16_t flags, std::uint16_t qd, std::uint16_t an,
      std::uint16_t ns = 0, std::uint16_t ar = 0) {
    U16(id);
    U16(flags);
    U16(qd);
    U16(an);
    U16(ns);
    U16(ar);
  }
  Msg& U8(std::uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  Msg& U16(std::uint16_t v) { return U8(v >> 8).U8(v & 0xff); }
  Msg& U32(std::uint32_t v) { return U16(v >> 16).U16(v & 0xffff); }
  Msg& Raw(std::string_view s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  // Writes "www.example.com" as labels; with `pointer` ends in a compression pointer instead
  // of the root label. Returns the offset the name starts at.
  std::size_t Name(std::string_view name, int pointer = -1) {
    const std::size_t at = b_.size();
    while (!name.empty()) {
      const std::size_t dot = name.find('.');
      const std::string_view label = name.substr(0, dot);
      U8(static_cast<std::uint8_t>(label.size())).Raw(label);
      name = dot == std::string_view::npos ? "" : name.substr(dot + 1);
    }
    if (pointer >= 0) {
      Pointer(static_cast<std::uint16_t>(pointer));
    } else {
      U8(0);
    }
    return at;
  }
  Msg& Pointer(std::uint16_t offset) { return U16(0xc000 | offset); }
  Msg& Question(std::string_view name, std::uint16_t type, std::uint16_t klass = 1) {
    Name(name);
    return U16(type).U16(klass);
  }
  // Record header after an owner name already written; rdata follows via U8/Raw/Name.
  Msg& Rr(std::uint16_t type, std::uint32_t ttl, std::uint16_t rdlength, std::uint16_t klass = 1) {
    return U16(type).U16(klass).U32(ttl).U16(rdlength);
  }
  std::size_t size() const { return b_.size(); }
  std::vector<std::uint8_t>& bytes() { return b_; }
  Bytes span() const { return Bytes(b_); }
  std::string str() const { return std::string(b_.begin(), b_.end()); }

 private:
  std::vector<std::uint8_t> b_;
};

constexpr std::uint16_t kQueryFlags = 0x0100;     // RD
constexpr std::uint16_t kResponseFlags = 0x8180;  // QR RD RA

// A response to "www.Example.com AAAA": a CNAME chain through two compressed names, then an
// AAAA and an A (an odd server, but legal).
Msg CnameChainResponse() {
  Msg m(0x1234, kResponseFlags, 1, 4);
  m.Question("www.Example.com", common::kDnsTypeAaaa);
  // www.example.com CNAME cdn.example.net
  m.Pointer(12).Rr(common::kDnsTypeCname, 300, 0);
  std::size_t rdlen_at = m.size() - 2;
  const std::size_t cdn = m.Name("cdn.example.net");
  m.bytes()[rdlen_at + 1] = static_cast<std::uint8_t>(m.size() - rdlen_at - 2);
  // cdn.example.net CNAME edge.<cdn.example.net>
  m.Pointer(static_cast<std::uint16_t>(cdn)).Rr(common::kDnsTypeCname, 60, 0);
  rdlen_at = m.size() - 2;
  const std::size_t edge = m.Name("edge", static_cast<int>(cdn));
  m.bytes()[rdlen_at + 1] = static_cast<std::uint8_t>(m.size() - rdlen_at - 2);
  // edge.cdn.example.net AAAA 2001:db8::1
  m.Pointer(static_cast<std::uint16_t>(edge)).Rr(common::kDnsTypeAaaa, 20, 16);
  m.U16(0x2001).U16(0x0db8).U32(0).U32(0).U32(1);
  m.Pointer(static_cast<std::uint16_t>(edge)).Rr(common::kDnsTypeA, 20, 4).U32(0xc0000201);
  return m;
}

TEST(DnsParse, QueryHeaderAndQuestion) {
  Msg m(0xbeef, kQueryFlags, 1, 0);
  m.Question("example.org", common::kDnsTypeA);
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_EQ(msg.header.id, 0xbeef);
  EXPECT_FALSE(msg.header.qr);
  EXPECT_TRUE(msg.header.rd);
  ASSERT_EQ(msg.questions.size(), 1u);
  EXPECT_EQ(msg.questions[0].name, "example.org");
  EXPECT_EQ(msg.questions[0].type, common::kDnsTypeA);
  EXPECT_EQ(msg.questions[0].klass, 1);
  EXPECT_EQ(msg.trailing_bytes, 0u);
}

TEST(DnsParse, CompressedCnameChainToAaaaAndA) {
  const Msg m = CnameChainResponse();
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_TRUE(msg.header.qr);
  EXPECT_EQ(msg.questions[0].name, "www.example.com");  // lower-cased
  ASSERT_EQ(msg.answers.size(), 4u);
  EXPECT_EQ(msg.answers[0].name, "www.example.com");
  EXPECT_EQ(msg.answers[0].data, "cdn.example.net");
  EXPECT_EQ(msg.answers[1].name, "cdn.example.net");
  EXPECT_EQ(msg.answers[1].data, "edge.cdn.example.net");
  EXPECT_EQ(msg.answers[1].ttl, 60u);
  EXPECT_EQ(msg.answers[2].name, "edge.cdn.example.net");
  EXPECT_EQ(common::DnsTypeName(msg.answers[2].type), "AAAA");
  EXPECT_EQ(msg.answers[2].data, "2001:db8::1");
  EXPECT_TRUE(msg.answers[2].address.is_v6());
  EXPECT_EQ(msg.answers[3].data, "192.0.2.1");
}

TEST(DnsParse, EveryTruncationFailsCleanly) {
  const Msg m = CnameChainResponse();
  const std::vector<std::uint8_t>& full = const_cast<Msg&>(m).bytes();
  DnsMessage msg;
  for (std::size_t n = 0; n < full.size(); ++n) {
    // A heap copy of exactly n bytes, so a read past the end is a sanitizer error.
    const std::vector<std::uint8_t> cut(full.begin(),
                                        full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(common::ParseDnsMessage(Bytes(cut), {}, msg), DnsParseStatus::kOk) << n;
  }
  EXPECT_EQ(common::ParseDnsMessage(Bytes(full), {}, msg), DnsParseStatus::kOk);
}

TEST(DnsParse, PointerToItselfIsALoop) {
  Msg m(1, kResponseFlags, 1, 0);
  m.Pointer(12).U16(1).U16(1);
  DnsMessage msg;
  EXPECT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kBadName);
}

TEST(DnsParse, TwoPointersToEachOtherAreALoop) {
  Msg m(1, kResponseFlags, 1, 0);
  // Offset 12: "a" then pointer to 16; offset 16: pointer back to 12.
  m.U8(1).Raw("a").Pointer(16).Pointer(12).U16(1).U16(1);
  std::string text;
  std::size_t next = 0;
  EXPECT_EQ(common::ReadDnsName(m.span(), 12, &text, &next), DnsParseStatus::kBadName);
  DnsMessage msg;
  EXPECT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kBadName);
}

TEST(DnsParse, PointerChainBeyondTheJumpLimitIsRejected) {
  Msg m(1, kResponseFlags, 1, 0);
  m.U8(0);  // offset 12: root
  for (int i = 0; i < common::kMaxDnsPointerJumps + 1; ++i) {
    m.Pointer(static_cast<std::uint16_t>(m.size() - (i == 0 ? 1 : 2)));
  }
  std::string text;
  std::size_t next = 0;
  // Each pointer points at the previous one: kMaxDnsPointerJumps + 1 jumps to the root.
  EXPECT_EQ(common::ReadDnsName(m.span(), m.size() - 2, &text, &next), DnsParseStatus::kBadName);
  EXPECT_EQ(common::ReadDnsName(m.span(), 13 + 2 * 10, &text, &next), DnsParseStatus::kOk);
  EXPECT_EQ(text, ".");
}

TEST(DnsParse, PointerOutsideTheMessageOrIntoTheHeaderIsRejected) {
  Msg m(1, kResponseFlags, 1, 0);
  m.Pointer(0x3fff).U16(1).U16(1);
  DnsMessage msg;
  EXPECT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kBadName);
  Msg h(1, kResponseFlags, 1, 0);
  h.Pointer(2).U16(1).U16(1);
  EXPECT_EQ(common::ParseDnsMessage(h.span(), {}, msg), DnsParseStatus::kBadName);
}

TEST(DnsParse, LabelOver63AndNameOver255AreRejected) {
  Msg m(1, kQueryFlags, 1, 0);
  m.U8(64).Raw(std::string(64, 'a')).U8(0).U16(1).U16(1);
  DnsMessage msg;
  EXPECT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kBadName);

  // Four 63-byte labels: 4 * 64 + 1 = 257 wire bytes.
  Msg l(1, kQueryFlags, 1, 0);
  for (int i = 0; i < 4; ++i) {
    l.U8(63).Raw(std::string(63, 'b'));
  }
  l.U8(0).U16(1).U16(1);
  EXPECT_EQ(common::ParseDnsMessage(l.span(), {}, msg), DnsParseStatus::kBadName);

  // 253 characters (255 wire bytes) is the longest legal name and is kept whole.
  Msg ok(1, kQueryFlags, 1, 0);
  std::string name;
  for (int i = 0; i < 3; ++i) {
    ok.U8(63).Raw(std::string(63, 'c'));
    name += std::string(63, 'c') + ".";
  }
  ok.U8(61).Raw(std::string(61, 'd')).U8(0).U16(1).U16(1);
  name += std::string(61, 'd');
  ASSERT_EQ(common::ParseDnsMessage(ok.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_EQ(msg.questions[0].name, name);
}

TEST(DnsParse, NamesAreLowerCasedEscapedAndCut) {
  Msg m(1, kQueryFlags, 1, 0);
  m.U8(6).Raw(std::string("AB.c\\\x01", 6)).U8(3).Raw("CoM").U8(0).U16(1).U16(1);
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_EQ(msg.questions[0].name, "ab\\.c\\\\\\001.com");

  // Binary labels escape to 4 characters per byte; the text stops at the cap, whole escapes.
  Msg b(1, kQueryFlags, 1, 0);
  for (int i = 0; i < 3; ++i) {
    b.U8(63).Raw(std::string(63, '\xff'));
  }
  b.U8(0).U16(1).U16(1);
  ASSERT_EQ(common::ParseDnsMessage(b.span(), {}, msg), DnsParseStatus::kOk);
  // 63 escaped bytes (252 characters) and the dot; the next escape would pass the cap.
  EXPECT_EQ(msg.questions[0].name.size(), 253u);
  EXPECT_EQ(msg.questions[0].name.substr(0, 8), "\\255\\255");
}

TEST(DnsParse, RootNameIsADot) {
  Msg m(1, kQueryFlags, 1, 0);
  m.U8(0).U16(common::kDnsTypeNs).U16(1);
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_EQ(msg.questions[0].name, ".");
}

TEST(DnsParse, TxtMxSrvHttpsAndUnknownTypes) {
  Msg m(7, kResponseFlags, 1, 5);
  m.Question("x.test", common::kDnsTypeTxt);
  m.Pointer(12).Rr(common::kDnsTypeTxt, 1, 9).U8(3).Raw("v=1").U8(4).Raw("more");
  m.Pointer(12).Rr(common::kDnsTypeMx, 1, 2 + 2).U16(10).Pointer(12);
  m.Pointer(12).Rr(common::kDnsTypeSrv, 1, 6 + 2).U16(0).U16(5).U16(8009).Pointer(12);
  // HTTPS priority 1, target "svc.x.test" (uncompressed), then one SvcParam (alpn=h2).
  m.Pointer(12).Rr(common::kDnsTypeHttps, 1, 2 + 12 + 7).U16(1);
  m.U8(3).Raw("svc").U8(1).Raw("x").U8(4).Raw("test").U8(0);
  m.U16(1).U16(3).U8(2).Raw("h2");
  m.Pointer(12).Rr(13, 1, 4).Raw("abcd");  // HINFO, not decoded
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  ASSERT_EQ(msg.answers.size(), 5u);
  EXPECT_EQ(msg.answers[0].data, "v=1");
  EXPECT_EQ(msg.answers[1].data, "10 x.test");
  EXPECT_EQ(msg.answers[2].data, "0 5 8009 x.test");
  EXPECT_EQ(msg.answers[3].data, "svc.x.test");
  EXPECT_EQ(common::DnsTypeName(msg.answers[3].type), "HTTPS");
  EXPECT_FALSE(msg.answers[4].has_data);
  EXPECT_EQ(common::DnsTypeName(msg.answers[4].type), "HINFO");
  EXPECT_EQ(common::DnsTypeName(65280), "TYPE65280");
}

TEST(DnsParse, RdataInconsistentWithItsTypeIsRejected) {
  DnsMessage msg;
  Msg a(1, kResponseFlags, 1, 1);
  a.Question("x.test", common::kDnsTypeA);
  a.Pointer(12).Rr(common::kDnsTypeA, 1, 5).U32(1).U8(2);
  EXPECT_EQ(common::ParseDnsMessage(a.span(), {}, msg), DnsParseStatus::kBadRdata);

  Msg t(1, kResponseFlags, 1, 1);
  t.Question("x.test", common::kDnsTypeTxt);
  t.Pointer(12).Rr(common::kDnsTypeTxt, 1, 3).U8(5).Raw("ab");  // string longer than rdata
  EXPECT_EQ(common::ParseDnsMessage(t.span(), {}, msg), DnsParseStatus::kBadRdata);

  Msg c(1, kResponseFlags, 1, 1);
  c.Question("x.test", common::kDnsTypeCname);
  c.Pointer(12).Rr(common::kDnsTypeCname, 1, 4).Pointer(12).U16(0);  // name shorter than rdata
  EXPECT_EQ(common::ParseDnsMessage(c.span(), {}, msg), DnsParseStatus::kBadRdata);
}

TEST(DnsParse, RecordsBeyondTheLimitsAreWalkedNotStored) {
  Msg m(1, kResponseFlags, 1, 5, 1, 1);
  m.Question("x.test", common::kDnsTypeA);
  for (std::uint32_t i = 0; i < 5; ++i) {
    m.Pointer(12).Rr(common::kDnsTypeA, 1, 4).U32(0x0a000001 + i);
  }
  m.Pointer(12).Rr(common::kDnsTypeSoa, 1, 2).U16(0);  // authority: not decoded
  m.U8(0).Rr(common::kDnsTypeOpt, 0, 0, 1232);         // EDNS OPT
  DnsParseLimits limits;
  limits.max_answers = 2;
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), limits, msg), DnsParseStatus::kOk);
  EXPECT_EQ(msg.answers.size(), 2u);
  EXPECT_EQ(msg.answers[1].data, "10.0.0.2");
  EXPECT_EQ(msg.not_stored, 5u);  // 3 answers + 1 authority + 1 additional
  // A bad record after the stored ones is still found.
  m.bytes().back() = 1;  // OPT rdlength 1 with no rdata
  EXPECT_EQ(common::ParseDnsMessage(m.span(), limits, msg), DnsParseStatus::kTruncatedRecord);
}

TEST(DnsParse, MdnsResponseWithCacheFlushAndNoQuestion) {
  Msg m(0, 0x8400, 0, 2);  // QR AA
  m.Name("KVM._http._tcp.local");
  m.Rr(common::kDnsTypeSrv, 120, 6 + 2, 0x8001).U16(0).U16(0).U16(80).Pointer(12);
  m.Name("pikvm.local");
  m.Rr(common::kDnsTypeA, 120, 4, 0x8001).U32(0xc0a80132);
  DnsMessage msg;
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  ASSERT_EQ(msg.answers.size(), 2u);
  EXPECT_TRUE(msg.answers[0].cache_flush);
  EXPECT_EQ(msg.answers[0].klass, 1);
  EXPECT_EQ(msg.answers[0].data, "0 0 80 kvm._http._tcp.local");
  EXPECT_EQ(msg.answers[1].name, "pikvm.local");
  EXPECT_EQ(msg.answers[1].data, "192.168.1.50");
  EXPECT_TRUE(common::IsPlausibleDns(msg, true));
}

TEST(DnsParse, PlausibilityRejectsOddHeaders) {
  DnsMessage msg;
  Msg m(1, 0x1800, 1, 0);  // opcode 3 (unassigned)
  m.Question("x.test", 1);
  ASSERT_EQ(common::ParseDnsMessage(m.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_FALSE(common::IsPlausibleDns(msg, false));

  Msg two(1, kQueryFlags, 2, 0);
  two.Question("x.test", 1).Question("y.test", 1);
  ASSERT_EQ(common::ParseDnsMessage(two.span(), {}, msg), DnsParseStatus::kOk);
  EXPECT_FALSE(common::IsPlausibleDns(msg, false));
  EXPECT_TRUE(common::IsPlausibleDns(msg, true));  // mDNS asks many questions at once
  EXPECT_EQ(msg.not_stored, 0u);

  EXPECT_EQ(common::DnsRcodeName(3), "NXDOMAIN");
  EXPECT_EQ(common::DnsRcodeName(15), "RCODE15");
}

// ---------------------------------------------------------------------------------------
// DNS over TCP framing.

std::vector<std::uint8_t> Framed(const Msg& m) {
  std::vector<std::uint8_t> out = {static_cast<std::uint8_t>(m.size() >> 8),
                                   static_cast<std::uint8_t>(m.size() & 0xff)};
  const std::vector<std::uint8_t>& b = const_cast<Msg&>(m).bytes();
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST(DnsTcpFramer, SeveralMessagesInOneSegment) {
  const Msg a = CnameChainResponse();
  Msg q(9, kQueryFlags, 1, 0);
  q.Question("x.test", 1);
  std::vector<std::uint8_t> stream = Framed(a);
  const std::vector<std::uint8_t> second = Framed(q);
  stream.insert(stream.end(), second.begin(), second.end());
  common::DnsTcpFramer framer(16384);
  std::vector<std::size_t> sizes;
  framer.Feed(Bytes(stream), [&](Bytes m) { sizes.push_back(m.size()); });
  EXPECT_EQ(sizes, (std::vector<std::size_t>{a.size(), q.size()}));
  EXPECT_EQ(framer.buffered_bytes(), 0u);
}

TEST(DnsTcpFramer, MessageSplitAtEveryPoint) {
  const Msg a = CnameChainResponse();
  const std::vector<std::uint8_t> stream = Framed(a);
  for (std::size_t cut1 = 0; cut1 <= stream.size(); ++cut1) {
    for (std::size_t cut2 = cut1; cut2 <= stream.size(); cut2 += 7) {
      common::DnsTcpFramer framer(16384);
      std::vector<std::string> got;
      auto on = [&](Bytes m) {
        got.emplace_back(m.begin(), m.end());
      };
      framer.Feed(Bytes(stream).subspan(0, cut1), on);
      framer.Feed(Bytes(stream).subspan(cut1, cut2 - cut1), on);
      framer.Feed(Bytes(stream).subspan(cut2), on);
      ASSERT_EQ(got.size(), 1u) << cut1 << " " << cut2;
      EXPECT_EQ(got[0], a.str());
    }
  }
}

TEST(DnsTcpFramer, OversizedMessageIsSkippedAndTheNextOneFound) {
  Msg big(1, kResponseFlags, 1, 1);
  big.Question("x.test", common::kDnsTypeTxt);
  big.Pointer(12).Rr(common::kDnsTypeTxt, 1, 1001).U8(255).Raw(std::string(255, 't'));
  for (int i = 0; i < 3; ++i) {
    big.U8(248).Raw(std::string(248, 'u'));
  }
  Msg small(2, kResponseFlags, 1, 0);
  small.Question("y.test", 1);
  std::vector<std::uint8_t> stream = Framed(big);
  const std::vector<std::uint8_t> tail = Framed(small);
  stream.insert(stream.end(), tail.begin(), tail.end());

  common::DnsTcpFramer framer(512);
  std::vector<std::size_t> sizes;
  for (std::size_t at = 0; at < stream.size(); at += 100) {
    framer.Feed(Bytes(stream).subspan(at, std::min<std::size_t>(100, stream.size() - at)),
                [&](Bytes m) { sizes.push_back(m.size()); });
    EXPECT_LE(framer.buffer_capacity(), 512u + 2);
  }
  EXPECT_EQ(sizes, std::vector<std::size_t>{small.size()});
  EXPECT_EQ(framer.oversized(), 1u);
}

// ---------------------------------------------------------------------------------------
// The detector.

namespace dnsd = dns;

dnsd::DnsConfig Defaults() {
  return dnsd::DnsConfig{};
}

// Drives one UDP or TCP conversation through a flow table and the detector, as a worker does.
class Conversation {
 public:
  Conversation(bool tcp, std::uint16_t client_port, std::uint16_t server_port,
               dnsd::DnsConfig config = Defaults(), const std::string& server = "192.0.2.53",
               DetectorContext context = {})
      : tcp_(tcp),
        client_{*IpAddress::Parse("10.0.0.5"), client_port},
        server_{*IpAddress::Parse(server), server_port},
        detector_(config, std::move(context)),
        table_(flow::FlowTableConfig{},
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }) {}

  Verdict Send(bool from_client, const std::vector<std::uint8_t>& payload,
               absl::Duration after = absl::Milliseconds(5), std::uint8_t flags = 0,
               bool retransmit = false) {
    decode::DecodedPacket p;
    p.ts = now_ += after;
    p.ip_version = 4;
    p.protocol = tcp_ ? decode::kProtoTcp : decode::kProtoUdp;
    const flow::Endpoint& src = from_client ? client_ : server_;
    const flow::Endpoint& dst = from_client ? server_ : client_;
    p.src = src.ip;
    p.dst = dst.ip;
    p.src_port = src.port;
    p.dst_port = dst.port;
    payloads_.push_back(payload);
    const std::vector<std::uint8_t>& stored = payloads_.back();
    p.payload = Bytes(stored);
    p.payload_length = static_cast<std::uint32_t>(stored.size());
    p.wire_length = 42 + p.payload_length;
    if (tcp_) {
      p.tcp_flags = flags != 0 ? flags : decode::kTcpAck | decode::kTcpPsh;
      std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
      if (retransmit) {
        p.seq = seq - static_cast<std::uint32_t>(stored.size());
      } else {
        p.seq = seq;
        seq += static_cast<std::uint32_t>(stored.size()) + (p.has(decode::kTcpSyn) ? 1 : 0);
      }
    }
    flow::Direction direction = flow::Direction::kToResponder;
    flow_ = &table_.Track(p, direction);
    if (done_) {
      return Verdict::kDone;
    }
    const Verdict v = detector_.OnPacket(p, *flow_, direction, events_);
    done_ = v == Verdict::kDone;
    return v;
  }
  Verdict Send(bool from_client, const Msg& m, absl::Duration after = absl::Milliseconds(5)) {
    return Send(from_client, tcp_ ? Framed(m) : const_cast<Msg&>(m).bytes(), after);
  }
  void Handshake() {
    Send(true, {}, absl::Milliseconds(1), decode::kTcpSyn);
    Send(false, {}, absl::Milliseconds(1), decode::kTcpSyn | decode::kTcpAck);
    Send(true, {}, absl::Milliseconds(1), decode::kTcpAck);
  }
  // Bytes sent but never captured.
  void Lose(bool from_client, std::size_t n) {
    (from_client ? client_seq_ : server_seq_) += static_cast<std::uint32_t>(n);
  }
  void End() { table_.EndAll(flow::EndReason::kShutdown); }
  std::vector<Event>& events() { return events_.events(); }
  const dnsd::DnsDetector& detector() const { return detector_; }
  std::size_t state_bytes() const { return detector_.FlowStateBytes(*flow_); }

 private:
  bool tcp_;
  flow::Endpoint client_, server_;
  dnsd::DnsDetector detector_;
  EventBuffer events_;
  flow::FlowTable table_;
  std::vector<std::vector<std::uint8_t>> payloads_ = {};
  PacketTime now_ = absl::FromUnixSeconds(1700000000);
  std::uint32_t client_seq_ = 1000, server_seq_ = 5000;
  flow::FlowState* flow_ = nullptr;
  bool done_ = false;
};

Msg Query(std::uint16_t id, std::string_view name, std::uint16_t type = common::kDnsTypeA) {
  Msg m(id, kQueryFlags, 1, 0);
  m.Question(name, type);
  return m;
}

Msg AResponse(std::uint16_t id, std::string_view name, std::uint32_t address,
              std::uint16_t rcode = 0) {
  Msg m(id, kResponseFlags | rcode, 1, rcode == 0 ? 1 : 0);
  m.Question(name, common::kDnsTypeA);
  if (rcode == 0) {
    m.Pointer(12).Rr(common::kDnsTypeA, 300, 4).U32(address);
  }
  return m;
}

TEST(DnsDetector, UdpQueryAndResponseGiveOneEventWithLatency) {
  Conversation c(false, 40000, 53);
  EXPECT_EQ(c.Send(true, Query(0x4242, "api.JetKVM.com")), Verdict::kContinue);
  EXPECT_EQ(c.Send(false, AResponse(0x4242, "api.jetkvm.com", 0xcb007107)), Verdict::kContinue);
  ASSERT_EQ(c.events().size(), 1u);
  const Event& e = c.events()[0];
  EXPECT_EQ(e.event_type, "dns");
  EXPECT_EQ(e.body["id"], 0x4242);
  EXPECT_EQ(e.body["rrname"], "api.jetkvm.com");
  EXPECT_EQ(e.body["rrtype"], "A");
  EXPECT_EQ(e.body["rcode"], "NOERROR");
  EXPECT_EQ(e.body["flags"], "8180");
  EXPECT_EQ(e.body["rd"], true);
  ASSERT_EQ(e.body["answers"].size(), 1u);
  EXPECT_EQ(e.body["answers"][0]["rrname"], "api.jetkvm.com");
  EXPECT_EQ(e.body["answers"][0]["rrtype"], "A");
  EXPECT_EQ(e.body["answers"][0]["ttl"], 300);
  EXPECT_EQ(e.body["answers"][0]["rdata"], "203.0.113.7");
  EXPECT_DOUBLE_EQ(e.body["latency_ms"].get<double>(), 5.0);
  EXPECT_EQ(e.body["query_ts"], "2023-11-14T22:13:20.005000Z");
  EXPECT_FALSE(e.body.contains("mdns"));
  EXPECT_EQ(e.flow->src_port, 40000);
  EXPECT_EQ(e.flow->dest_port, 53);
  EXPECT_EQ(c.detector().counters().matched.Read(), 1u);
}

TEST(DnsDetector, ResponseWithoutQueryHasNoLatency) {
  Conversation c(false, 40000, 53);
  c.Send(false, AResponse(7, "x.test", 0x0a000001, 3));
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["rcode"], "NXDOMAIN");
  EXPECT_TRUE(c.events()[0].body["answers"].empty());
  EXPECT_FALSE(c.events()[0].body.contains("latency_ms"));
}

TEST(DnsDetector, ResponseMustMatchIdNameAndType) {
  Conversation c(false, 40000, 53);
  c.Send(true, Query(1, "a.test"));
  c.Send(false, AResponse(1, "b.test", 1));  // same id, other name: spoof or stray
  c.Send(false, AResponse(1, "a.test", 1));
  ASSERT_EQ(c.events().size(), 2u);
  EXPECT_FALSE(c.events()[0].body.contains("latency_ms"));
  EXPECT_TRUE(c.events()[1].body.contains("latency_ms"));
}

TEST(DnsDetector, UdpFlowCarriesManyTransactionsAndIsNeverDone) {
  Conversation c(false, 5353 + 1, 53);
  for (std::uint16_t id = 0; id < 50; ++id) {
    EXPECT_EQ(c.Send(true, Query(id, "many.test")), Verdict::kContinue);
    EXPECT_EQ(c.Send(false, AResponse(id, "many.test", id)), Verdict::kContinue);
  }
  EXPECT_EQ(c.events().size(), 50u);
  EXPECT_EQ(c.detector().counters().matched.Read(), 50u);
}

TEST(DnsDetector, OutstandingQueriesAreCappedAndCounted) {
  dnsd::DnsConfig config;
  config.max_outstanding_queries = 8;
  Conversation c(false, 40000, 53, config);
  for (std::uint16_t id = 0; id < 100; ++id) {
    c.Send(true, Query(id, "flood.test"), absl::Microseconds(10));
    EXPECT_LE(c.state_bytes(), dnsd::DnsDetector::kMaxFlowStateBytes);
  }
  EXPECT_EQ(c.detector().counters().evicted.Read(), 92u);
  // The newest 8 are still waiting; the oldest are gone.
  c.Send(false, AResponse(99, "flood.test", 1));
  c.Send(false, AResponse(0, "flood.test", 1));
  EXPECT_TRUE(c.events()[0].body.contains("latency_ms"));
  EXPECT_FALSE(c.events()[1].body.contains("latency_ms"));
  c.End();
  EXPECT_EQ(c.detector().counters().unanswered.Read(), 92u + 7u);
}

TEST(DnsDetector, QueriesOlderThanTheTimeoutAreForgotten) {
  Conversation c(false, 40000, 53);
  c.Send(true, Query(1, "slow.test"));
  c.Send(false, AResponse(1, "slow.test", 1), absl::Seconds(31));
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_FALSE(c.events()[0].body.contains("latency_ms"));
  EXPECT_EQ(c.detector().counters().unanswered.Read(), 1u);
}

TEST(DnsDetector, OtherPortsAreDoneAtOnce) {
  Conversation c(false, 40000, 443);
  EXPECT_EQ(c.Send(true, Query(1, "x.test")), Verdict::kDone);
  EXPECT_TRUE(c.events().empty());
}

TEST(DnsDetector, NonDnsOnPort53IsGivenUp) {
  Conversation c(false, 40000, 53);
  const std::vector<std::uint8_t> junk = {0x38, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
  EXPECT_EQ(c.Send(true, junk), Verdict::kContinue);
  EXPECT_EQ(c.Send(false, junk), Verdict::kContinue);
  EXPECT_EQ(c.Send(true, junk), Verdict::kContinue);
  EXPECT_EQ(c.Send(false, junk), Verdict::kDone);
  EXPECT_TRUE(c.events().empty());
  EXPECT_EQ(c.detector()
                .counters()
                .parse_errors[static_cast<int>(DnsParseStatus::kTruncatedHeader)]
                .Read(),
            4u);
}

TEST(DnsDetector, TruncatedCaptureIsCountedNotParsed) {
  // Not a helper case: build the packet by hand with payload_length > captured bytes.
  decode::DecodedPacket p;
  const Msg m = AResponse(1, "x.test", 1);
  p.ts = absl::FromUnixSeconds(1);
  p.protocol = decode::kProtoUdp;
  p.src = *IpAddress::Parse("192.0.2.53");
  p.dst = *IpAddress::Parse("10.0.0.5");
  p.src_port = 53;
  p.dst_port = 40000;
  p.payload = m.span().first(20);
  p.payload_length = static_cast<std::uint32_t>(m.size());
  dnsd::DnsDetector d(Defaults(), DetectorContext{});
  flow::FlowState flow;
  EventBuffer out;
  EXPECT_EQ(d.OnPacket(p, flow, flow::Direction::kToOriginator, out), Verdict::kContinue);
  EXPECT_EQ(d.counters().truncated_capture.Read(), 1u);
  EXPECT_TRUE(out.events().empty());
  d.OnFlowEnd(flow, out);
}

TEST(DnsDetector, TcpResponsesSplitAcrossSegmentsAndBatched) {
  Conversation c(true, 40000, 53);
  c.Handshake();
  // Two queries in one segment (RFC 7766 pipelining).
  std::vector<std::uint8_t> queries = Framed(Query(1, "one.test"));
  const std::vector<std::uint8_t> q2 = Framed(Query(2, "two.test", common::kDnsTypeAaaa));
  queries.insert(queries.end(), q2.begin(), q2.end());
  c.Send(true, queries);
  // The first response split in three segments, the last segment also holding the second.
  const std::vector<std::uint8_t> r1 = Framed(AResponse(1, "one.test", 0x01020304));
  Msg aaaa(2, kResponseFlags, 1, 1);
  aaaa.Question("two.test", common::kDnsTypeAaaa);
  aaaa.Pointer(12).Rr(common::kDnsTypeAaaa, 5, 16).U32(0x20010db8).U32(0).U32(0).U32(2);
  const std::vector<std::uint8_t> r2 = Framed(aaaa);
  c.Send(false, std::vector<std::uint8_t>(r1.begin(), r1.begin() + 1));
  c.Send(false, std::vector<std::uint8_t>(r1.begin() + 1, r1.begin() + 9));
  std::vector<std::uint8_t> last(r1.begin() + 9, r1.end());
  last.insert(last.end(), r2.begin(), r2.end());
  EXPECT_EQ(c.Send(false, last), Verdict::kContinue);
  ASSERT_EQ(c.events().size(), 2u);
  EXPECT_EQ(c.events()[0].body["answers"][0]["rdata"], "1.2.3.4");
  EXPECT_TRUE(c.events()[0].body.contains("latency_ms"));
  EXPECT_EQ(c.events()[1].body["rrtype"], "AAAA");
  EXPECT_EQ(c.events()[1].body["answers"][0]["rdata"], "2001:db8::2");
  EXPECT_TRUE(c.events()[1].body.contains("latency_ms"));
  EXPECT_LE(c.state_bytes(), dnsd::DnsDetector::kMaxFlowStateBytes);
}

TEST(DnsDetector, TcpStateStaysUnderTheCapWithTheLargestMessages) {
  dnsd::DnsConfig config;
  config.max_tcp_message_bytes = dnsd::kMaxTcpMessageBytesLimit;
  config.max_outstanding_queries = dnsd::kMaxOutstandingQueriesLimit;
  Conversation c(true, 40000, 53, config);
  c.Handshake();
  for (std::uint16_t id = 0; id < 2000; ++id) {
    c.Send(true, Query(id, "x.test"), absl::Microseconds(1));
  }
  // Half of a 65535-byte message from each side.
  std::vector<std::uint8_t> half = {0xff, 0xff};
  half.resize(40000, 0);
  c.Send(true, half);
  c.Send(false, half);
  EXPECT_GT(c.state_bytes(), 2 * 40000u);
  EXPECT_LE(c.state_bytes(), dnsd::DnsDetector::kMaxFlowStateBytes);
}

TEST(DnsDetector, RetransmittedTcpSegmentIsNotParsedTwice) {
  Conversation c(true, 40000, 53);
  c.Handshake();
  const std::vector<std::uint8_t> r = Framed(AResponse(1, "x.test", 1));
  c.Send(false, r);
  c.Send(false, r, absl::Milliseconds(200), 0, /*retransmit=*/true);
  EXPECT_EQ(c.events().size(), 1u);
}

TEST(DnsDetector, TcpGapResynchronisesOnTheNextSegment) {
  Conversation c(true, 40000, 53);
  c.Handshake();
  const std::vector<std::uint8_t> r1 = Framed(AResponse(1, "lost.test", 1));
  c.Send(false, std::vector<std::uint8_t>(r1.begin(), r1.begin() + 10));
  c.Lose(false, r1.size() - 10);  // the rest of the first response never reaches the sensor
  c.Send(false, Framed(AResponse(2, "found.test", 2)));
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["rrname"], "found.test");
  EXPECT_EQ(c.detector().counters().tcp_gaps.Read(), 1u);
}

TEST(DnsDetector, MdnsResponsesAreMarkedAndNamedByTheirFirstAnswer) {
  Conversation c(false, 5353, 5353, Defaults(), "224.0.0.251");
  Msg m(0, 0x8400, 0, 1);
  m.Name("pikvm.local");
  m.Rr(common::kDnsTypeA, 120, 4, 0x8001).U32(0xc0a80132);
  c.Send(true, m);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["mdns"], true);
  EXPECT_EQ(c.events()[0].body["rrname"], "pikvm.local");
  EXPECT_EQ(c.events()[0].body["answers"][0]["rdata"], "192.168.1.50");

  dnsd::DnsConfig off;
  off.mdns = false;
  Conversation d(false, 5353, 5353, off, "224.0.0.251");
  EXPECT_EQ(d.Send(true, m), Verdict::kDone);
}

TEST(DnsDetector, AnswersBeyondMaxAnswersAreCounted) {
  dnsd::DnsConfig config;
  config.max_answers = 2;
  Conversation c(false, 40000, 53, config);
  Msg m(3, kResponseFlags, 1, 4);
  m.Question("many.test", 1);
  for (std::uint32_t i = 0; i < 4; ++i) {
    m.Pointer(12).Rr(1, 60, 4).U32(i);
  }
  c.Send(false, m);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["answers"].size(), 2u);
  EXPECT_EQ(c.events()[0].body["answers_total"], 4);
}

TEST(DnsDetector, WithNoOutputForDnsRecordsOnlyResponsesNamingAToolAreReported) {
  // The host stage reads a dns finding only when a name in it belongs to a remote-access
  // tool; with no output writing dns records, the others are not built at all.
  auto root = config::LoadString(
      "apps:\n  - name: anydesk\n    category: remote_desktop\n"
      "    dns: [\"*.anydesk.com\"]\n",
      "sig.yaml");
  ASSERT_TRUE(root.ok()) << root.status();
  auto set = SignatureSet::Parse(*root);
  ASSERT_TRUE(set.ok()) << set.status();
  DetectorContext context;
  context.dns_records_written = false;
  context.signatures = std::make_shared<const SignatureSet>(std::move(*set));
  Conversation c(false, 40001, 53, Defaults(), "192.0.2.53", context);
  c.Send(true, Query(1, "www.example.com"));
  c.Send(false, AResponse(1, "www.example.com", 0x5db8d822));
  c.Send(true, Query(2, "relay-1.net.AnyDesk.com"));
  c.Send(false, AResponse(2, "relay-1.net.AnyDesk.com", 0xc0000201));
  // A CNAME into the tool's domain names it in an answer only.
  Msg cname(3, kResponseFlags, 1, 2);
  cname.Question("remote.corp.example", common::kDnsTypeA);
  cname.Pointer(12).Rr(common::kDnsTypeCname, 300, 0);
  const std::size_t length_at = cname.size() - 2;
  const std::size_t target = cname.Name("boot.anydesk.com");
  const auto rdlength = static_cast<std::uint16_t>(cname.size() - target);
  cname.bytes()[length_at] = static_cast<std::uint8_t>(rdlength >> 8);
  cname.bytes()[length_at + 1] = static_cast<std::uint8_t>(rdlength & 0xff);
  cname.Pointer(static_cast<std::uint16_t>(target)).Rr(common::kDnsTypeA, 300, 4).U32(0xc0000202);
  c.Send(true, Query(3, "remote.corp.example"));
  c.Send(false, cname);
  ASSERT_EQ(c.events().size(), 2u);
  EXPECT_EQ(c.events()[0].body["rrname"], "relay-1.net.anydesk.com");
  EXPECT_EQ(c.events()[1].body["rrname"], "remote.corp.example");
  EXPECT_EQ(c.events()[1].body["answers"].size(), 2u);
  // Every response is still parsed and counted.
  EXPECT_EQ(c.detector().counters().responses.Read(), 3u);
  EXPECT_EQ(c.detector().counters().matched.Read(), 3u);

  // An output that writes dns records gets all three.
  context.dns_records_written = true;
  Conversation all(false, 40001, 53, Defaults(), "192.0.2.53", context);
  all.Send(true, Query(1, "www.example.com"));
  all.Send(false, AResponse(1, "www.example.com", 0x5db8d822));
  EXPECT_EQ(all.events().size(), 1u);
}

TEST(DnsDetector, UnansweredQueriesAreCountedAtFlowEnd) {
  Conversation c(false, 40000, 53);
  c.Send(true, Query(1, "lost.test"));
  c.Send(true, Query(2, "lost.test"));
  c.End();
  EXPECT_TRUE(c.events().empty());
  EXPECT_EQ(c.detector().counters().unanswered.Read(), 2u);
  EXPECT_EQ(c.detector().counters().queries.Read(), 2u);
}

// ---------------------------------------------------------------------------------------
// Config.

absl::StatusOr<dnsd::DnsConfig> ParseYaml(const std::string& text) {
  absl::StatusOr<config::Section> root = config::LoadString(text);
  if (!root.ok()) {
    return root.status();
  }
  return dnsd::ParseDnsConfig(root->Child("dns"));
}

TEST(DnsConfig, DefaultsWhenAbsent) {
  absl::StatusOr<dnsd::DnsConfig> c = ParseYaml("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->enabled);
  EXPECT_EQ(c->max_answers, 32u);
  EXPECT_EQ(c->max_outstanding_queries, 32u);
  EXPECT_EQ(c->max_tcp_message_bytes, 16384u);
  EXPECT_EQ(c->query_timeout, absl::Seconds(30));
  EXPECT_TRUE(c->mdns);
}

TEST(DnsConfig, ReadsEveryKey) {
  absl::StatusOr<dnsd::DnsConfig> c = ParseYaml(
      "dns: {enabled: true, max_answers: 4, max_outstanding_queries: 100,\n"
      "      max_tcp_message_bytes: 65535, query_timeout: 5s, mdns: false}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_answers, 4u);
  EXPECT_EQ(c->max_outstanding_queries, 100u);
  EXPECT_EQ(c->max_tcp_message_bytes, 65535u);
  EXPECT_EQ(c->query_timeout, absl::Seconds(5));
  EXPECT_FALSE(c->mdns);
}

TEST(DnsConfig, RejectsUnknownKey) {
  absl::StatusOr<dnsd::DnsConfig> c = ParseYaml("dns: {max_answer: 4}\n");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("max_answer"));
}

TEST(DnsConfig, RejectsOutOfRangeValues) {
  EXPECT_FALSE(ParseYaml("dns: {max_answers: 0}\n").ok());
  EXPECT_FALSE(ParseYaml("dns: {max_outstanding_queries: 5000}\n").ok());
  EXPECT_FALSE(ParseYaml("dns: {max_tcp_message_bytes: 100}\n").ok());
  EXPECT_FALSE(ParseYaml("dns: {query_timeout: 0s}\n").ok());
  EXPECT_FALSE(ParseYaml("dns: {mdns: maybe}\n").ok());
}

TEST(DnsConfig, DisabledDetectorIsNotBuilt) {
  absl::StatusOr<config::Section> root = config::LoadString("dns: {enabled: false}\n");
  ASSERT_TRUE(root.ok());
  absl::StatusOr<std::unique_ptr<Detector>> d = dnsd::Create(root->Child("dns"), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, nullptr);
  absl::StatusOr<config::Section> empty = config::LoadString("");
  ASSERT_TRUE(empty.ok());
  d = dnsd::Create(empty->Child("dns"), {});
  ASSERT_TRUE(d.ok());
  ASSERT_NE(*d, nullptr);
  EXPECT_EQ((*d)->name(), "dns");
}

}  // namespace
}  // namespace relaywatch::detectors
