#include "capture/decode/decoder.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relaywatch::decode {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// ---------------------------------------------------------------------------------------
// Frame builders. Checksums are left at zero: the decoder does not verify them.

using Frame = std::vector<std::uint8_t>;

Frame Cat(std::initializer_list<Frame> parts) {
  Frame out;
  for (const Frame& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

Frame B16(std::uint16_t v) {
  return {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}
Frame B32(std::uint32_t v) {
  return Cat({B16(static_cast<std::uint16_t>(v >> 16)), B16(static_cast<std::uint16_t>(v))});
}
Frame Le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}
Frame Text(const std::string& s) {
  return Frame(s.begin(), s.end());
}

IpAddress Ip(const char* text) {
  return *IpAddress::Parse(text);
}
Frame Addr(const char* text) {
  const IpAddress a = Ip(text);
  return Frame(a.data(), a.data() + a.size());
}

struct Ipv4Options {
  std::uint8_t ttl = 64;
  std::uint16_t id = 0x1234;
  std::uint16_t flags_fragment = 0x4000;  // DF
};

Frame Ipv4(std::uint8_t protocol, const char* src, const char* dst, const Frame& payload,
           Ipv4Options o = {}) {
  return Cat({{0x45, 0x00},
              B16(static_cast<std::uint16_t>(20 + payload.size())),
              B16(o.id),
              B16(o.flags_fragment),
              {o.ttl, protocol, 0, 0},
              Addr(src),
              Addr(dst),
              payload});
}

Frame Ipv6(std::uint8_t next, const char* src, const char* dst, const Frame& payload,
           std::uint8_t hop_limit = 64) {
  return Cat({{0x60, 0x00, 0x00, 0x00},
              B16(static_cast<std::uint16_t>(payload.size())),
              {next, hop_limit},
              Addr(src),
              Addr(dst),
              payload});
}

struct TcpFields {
  std::uint16_t src_port = 40000;
  std::uint16_t dst_port = 22;
  std::uint8_t flags = kTcpAck;
  std::uint32_t seq = 1000;
  std::uint32_t ack = 2000;
  std::uint16_t window = 502;
  Frame options;  // a multiple of 4 bytes
};

Frame Tcp(const TcpFields& t, const Frame& payload = {}) {
  EXPECT_EQ(t.options.size() % 4, 0u);
  const auto offset = static_cast<std::uint8_t>((20 + t.options.size()) / 4);
  return Cat({B16(t.src_port),
              B16(t.dst_port),
              B32(t.seq),
              B32(t.ack),
              {static_cast<std::uint8_t>(offset << 4), t.flags},
              B16(t.window),
              {0, 0, 0, 0},
              t.options,
              payload});
}

Frame Tcp(std::uint16_t src_port, std::uint16_t dst_port, const Frame& payload = {}) {
  TcpFields t;
  t.src_port = src_port;
  t.dst_port = dst_port;
  return Tcp(t, payload);
}

Frame Udp(std::uint16_t src_port, std::uint16_t dst_port, const Frame& payload) {
  return Cat({B16(src_port),
              B16(dst_port),
              B16(static_cast<std::uint16_t>(8 + payload.size())),
              {0, 0},
              payload});
}

Frame Eth(std::uint16_t type, const Frame& payload) {
  return Cat({{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01}, B16(type), payload});
}

// An 802.1Q/802.1ad tag body (TCI, then the next EtherType) followed by `payload`.
Frame Tag(std::uint16_t tci, std::uint16_t next_type, const Frame& payload) {
  return Cat({B16(tci), B16(next_type), payload});
}

Frame MplsLabel(std::uint32_t label, bool bottom) {
  return B32((label << 12) | (bottom ? 0x100U : 0U) | 64U);
}

Frame Vxlan(std::uint32_t vni, const Frame& inner_ethernet) {
  return Cat({{0x08, 0, 0, 0}, B32(vni << 8), inner_ethernet});
}

// An 802.11 data frame: frame control (type 2, `subtype`; `flags` as the second byte),
// duration, three addresses, sequence control (`fragment` in its low bits), the fourth
// address when both DS bits are set, QoS control (`qos`, for QoS subtypes), HT control when
// QoS has the Order bit, then `body`.
struct WlanHeader {
  std::uint8_t subtype = 8;   // QoS Data
  std::uint8_t flags = 0x01;  // to the distribution system: a station's upload
  std::uint8_t fragment = 0;
  std::uint8_t qos = 0;
};
Frame Wlan(const WlanHeader& h, const Frame& body) {
  Frame f = Cat({{static_cast<std::uint8_t>(0x08 | (h.subtype << 4)), h.flags, 0x2c, 0x00},
                 Frame(18, 0x02),
                 {static_cast<std::uint8_t>(0x10 | h.fragment), 0x00}});
  if ((h.flags & 0x03) == 0x03) {
    f = Cat({f, Frame(6, 0x03)});
  }
  if ((h.subtype & 0x08) != 0) {
    f = Cat({f, {h.qos, 0x00}});
    if ((h.flags & 0x80) != 0) {
      f = Cat({f, Le32(0)});
    }
  }
  return Cat({f, body});
}

// RFC 1042 encapsulation: LLC AA AA 03, organisation 00 00 00, the EtherType.
Frame Snap(std::uint16_t type, const Frame& payload) {
  return Cat({{0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00}, B16(type), payload});
}

// A radiotap header with TSFT (after one extended presence word) and Flags, as Linux writes
// for a monitor interface: the TSFT field is aligned to 8 from the header's start.
Frame Radiotap(std::uint8_t flags, const Frame& frame) {
  const Frame fields = Cat({Le32(0), Le32(0), Le32(0), {flags}, Frame(3, 0)});  // pad, TSFT, Flags
  const Frame presence = Cat({Le32(0x80000003), Le32(0)});
  const std::size_t length = 4 + presence.size() + fields.size();
  return Cat({{0, 0, static_cast<std::uint8_t>(length), 0}, presence, fields, frame});
}

Frame Payload(std::size_t n, std::uint8_t first = 'a') {
  Frame f(n);
  for (std::size_t i = 0; i < n; ++i) {
    f[i] = static_cast<std::uint8_t>(first + i % 26);
  }
  return f;
}

// The options of a Linux SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
Frame LinuxSynOptions() {
  return Cat({{2, 4}, B16(1460), {4, 2}, {8, 10}, B32(0x01020304), B32(0), {1, 3, 3, 7}});
}

std::uint64_t TotalReasons(const DecodeCounters& c) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < kDecodeReasonCount; ++i) {
    sum += c.Get(static_cast<DecodeReason>(i));
  }
  return sum;
}

const PacketTime kTs = PacketTimeFromTimespec(1700000000, 123456789);

class DecoderTest : public ::testing::Test {
 protected:
  // Decodes a copy kept in frame_, so p_.payload stays valid until the next Decode.
  bool Decode(int dlt, Frame frame) {
    frame_ = std::move(frame);
    return DecodeFrame(dlt, frame_, static_cast<std::uint32_t>(frame_.size() + 4), kTs, p_,
                       counters_);
  }
  // Asserts that exactly one reason was counted, and that it was `reason`.
  void ExpectOnly(DecodeReason reason) {
    EXPECT_EQ(counters_.Get(reason), 1u) << DecodeReasonName(reason);
    EXPECT_EQ(TotalReasons(counters_), 1u);
  }
  void ExpectTcpFlow(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport) {
    EXPECT_EQ(p_.src, Ip(src));
    EXPECT_EQ(p_.dst, Ip(dst));
    EXPECT_EQ(p_.protocol, kProtoTcp);
    EXPECT_EQ(p_.src_port, sport);
    EXPECT_EQ(p_.dst_port, dport);
  }

  Frame frame_;
  DecodedPacket p_;
  DecodeCounters counters_;
};

// ---------------------------------------------------------------------------------------
// Ethernet, IPv4, TCP.

TEST_F(DecoderTest, EthernetIpv4TcpSynWithOptions) {
  TcpFields t;
  t.src_port = 51000;
  t.dst_port = 3389;
  t.flags = kTcpSyn;
  t.seq = 0xdeadbeef;
  t.ack = 0;
  t.window = 64240;
  t.options = LinuxSynOptions();
  Ipv4Options ip;
  ip.ttl = 63;
  ip.id = 0xabcd;
  const Frame frame = Eth(0x0800, Ipv4(kProtoTcp, "192.0.2.10", "198.51.100.20", Tcp(t), ip));

  ASSERT_TRUE(Decode(kDltEthernet, frame));
  EXPECT_EQ(p_.ts, kTs);
  EXPECT_EQ(p_.wire_length, frame.size() + 4);
  EXPECT_EQ(p_.ip_version, 4);
  ExpectTcpFlow("192.0.2.10", 51000, "198.51.100.20", 3389);
  EXPECT_EQ(p_.ttl, 63);
  EXPECT_EQ(p_.ip_id, 0xabcd);
  EXPECT_TRUE(p_.dont_fragment);
  EXPECT_EQ(p_.seq, 0xdeadbeefU);
  EXPECT_EQ(p_.ack, 0u);
  EXPECT_EQ(p_.window, 64240);
  EXPECT_EQ(p_.tcp_flags, kTcpSyn);
  EXPECT_TRUE(p_.has(kTcpSyn));
  EXPECT_FALSE(p_.has(kTcpAck));
  EXPECT_TRUE(p_.is_tcp());

  const TcpOptions& o = p_.tcp_options;
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_TRUE(o.has_timestamps);
  EXPECT_EQ(o.ts_value, 0x01020304U);
  EXPECT_EQ(o.ts_echo, 0u);
  EXPECT_TRUE(o.has_window_scale);
  EXPECT_EQ(o.window_scale, 7);
  ASSERT_EQ(o.layout_size, 5);
  EXPECT_THAT(std::vector<int>(o.layout, o.layout + o.layout_size), ElementsAre(2, 4, 8, 1, 3));

  EXPECT_TRUE(p_.payload.empty());
  EXPECT_EQ(p_.payload_length, 0u);
  EXPECT_EQ(p_.tunnel_depth, 0);
  EXPECT_EQ(p_.vlan_id, 0);
  EXPECT_EQ(counters_.decoded.Read(), 1u);
  EXPECT_EQ(counters_.tunnelled.Read(), 0u);
  EXPECT_EQ(TotalReasons(counters_), 0u);
}

TEST_F(DecoderTest, TcpOptionsEndAtEolAndLayoutIsCapped) {
  TcpFields t;
  t.options = Cat({{2, 4}, B16(536), {1, 1, 1, 0}});
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(t)))));
  EXPECT_EQ(p_.tcp_options.mss, 536);
  EXPECT_FALSE(p_.tcp_options.has_timestamps);
  EXPECT_THAT(
      std::vector<int>(p_.tcp_options.layout, p_.tcp_options.layout + p_.tcp_options.layout_size),
      ElementsAre(2, 1, 1, 1, 0));

  t.options = Frame(40, 1);  // 40 NOPs: more kinds than the layout keeps
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(t)))));
  EXPECT_EQ(p_.tcp_options.layout_size, TcpOptions::kMaxLayout);
  EXPECT_EQ(TotalReasons(counters_), 0u);
}

TEST_F(DecoderTest, MalformedTcpOptionIsCountedButPacketKept) {
  TcpFields t;
  t.options = Cat({{2, 4}, B16(1400), {8, 10, 0, 0}});  // timestamps option overruns header
  const Frame payload = Text("data");
  ASSERT_TRUE(
      Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(t, payload)))));
  EXPECT_TRUE(p_.tcp_options.has_mss);
  EXPECT_FALSE(p_.tcp_options.has_timestamps);
  EXPECT_THAT(p_.payload, ElementsAreArray(payload));
  ExpectOnly(DecodeReason::kTcpBadOption);

  DecodeCounters fresh;
  t.options = {3, 0, 0, 0};  // a zero option length would loop forever if accepted
  const Frame frame = Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(t, payload)));
  ASSERT_TRUE(DecodeFrame(kDltEthernet, frame, 0, kTs, p_, fresh));
  EXPECT_FALSE(p_.tcp_options.has_window_scale);
  EXPECT_EQ(fresh.Get(DecodeReason::kTcpBadOption), 1u);
  EXPECT_THAT(p_.payload, ElementsAreArray(payload));
}

TEST_F(DecoderTest, PayloadViewPointsIntoFrameAndEthernetPaddingIsTrimmed) {
  const Frame payload = Text("hi");
  Frame frame = Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22, payload)));
  const std::size_t payload_offset = frame.size() - payload.size();
  ASSERT_LT(frame.size(), 60u);
  frame.resize(60, 0xaa);  // minimum Ethernet frame: the NIC pads after the IP datagram

  ASSERT_TRUE(Decode(kDltEthernet, frame));
  EXPECT_EQ(p_.payload.data(), frame_.data() + payload_offset);
  EXPECT_THAT(p_.payload, ElementsAre('h', 'i'));
  EXPECT_EQ(p_.payload_length, 2u);
}

TEST_F(DecoderTest, UdpPayloadTrimmedToUdpLength) {
  Frame frame = Eth(0x0800, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Udp(5353, 53, Text("x"))));
  frame.resize(60, 0x55);
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  EXPECT_TRUE(p_.is_udp());
  EXPECT_EQ(p_.src_port, 5353);
  EXPECT_EQ(p_.dst_port, 53);
  EXPECT_THAT(p_.payload, ElementsAre('x'));
  EXPECT_EQ(p_.payload_length, 1u);
}

TEST_F(DecoderTest, UdpLengthShorterThanIpPayloadBoundsPayload) {
  // Bytes after the UDP length but inside the IP datagram are not UDP payload.
  const Frame udp = Cat({Udp(5353, 53, Text("x")), Text("zzz")});
  ASSERT_TRUE(Decode(kDltRaw, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", udp)));
  EXPECT_THAT(p_.payload, ElementsAre('x'));
  EXPECT_EQ(p_.payload_length, 1u);
}

TEST_F(DecoderTest, SnaplenCutPayloadKeepsAnnouncedLength) {
  const Frame payload = Payload(100);
  Frame frame = Eth(0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22, payload)));
  frame.resize(frame.size() - 70);
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  EXPECT_EQ(p_.payload.size(), 30u);
  EXPECT_EQ(p_.payload_length, 100u);
  EXPECT_THAT(p_.payload, ElementsAreArray(payload.data(), 30));
}

// A capture on the sending host sees a TSO/GSO segment before the NIC cuts it; one longer
// than 65535 bytes, or from some drivers any, carries total length 0 (anydesk.pcapng in the
// shared captures). Its captured bytes are the packet, as IPv6's payload length 0 is read.
TEST_F(DecoderTest, Ipv4TotalLengthZeroIsTheCapturedSegment) {
  const Frame payload = Payload(3000);
  Frame ip = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 443, payload));
  ip[2] = 0;
  ip[3] = 0;
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, ip)));
  EXPECT_EQ(p_.payload_length, 3000u);
  EXPECT_EQ(p_.payload.size(), 3000u);
  EXPECT_EQ(p_.dst_port, 443);
}
TEST_F(DecoderTest, IcmpEcho) {
  const Frame icmp = Cat({{8, 0, 0, 0}, B16(7), B16(1), Text("ping")});
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoIcmp, "10.0.0.1", "10.0.0.2", icmp))));
  EXPECT_EQ(p_.protocol, kProtoIcmp);
  EXPECT_EQ(p_.icmp_type, 8);
  EXPECT_EQ(p_.icmp_code, 0);
  EXPECT_EQ(p_.payload.size(), 8u);

  const Frame icmp6 = {128, 0, 0, 0, 0, 1, 0, 1};
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x86dd, Ipv6(kProtoIcmpV6, "fe80::1", "fe80::2", icmp6))));
  EXPECT_EQ(p_.protocol, kProtoIcmpV6);
  EXPECT_EQ(p_.icmp_type, 128);
  EXPECT_EQ(p_.ip_version, 6);
}

TEST_F(DecoderTest, OtherIpProtocolIsKeptWithoutPorts) {
  const Frame ospf = Payload(24);
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(89, "10.0.0.1", "224.0.0.5", ospf))));
  EXPECT_EQ(p_.protocol, 89);
  EXPECT_EQ(p_.src_port, 0);
  EXPECT_EQ(p_.dst_port, 0);
  EXPECT_EQ(p_.payload.size(), 24u);
}

TEST_F(DecoderTest, RejectsNonIpEtherType) {
  const Frame arp = Eth(0x0806, Payload(28));
  EXPECT_FALSE(Decode(kDltEthernet, arp));
  ExpectOnly(DecodeReason::kNonIp);
}

TEST_F(DecoderTest, RejectsBadIpv4Headers) {
  Frame frame = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(1, 2));
  Frame bad_version = frame;
  bad_version[0] = 0x55;
  EXPECT_FALSE(Decode(kDltRaw, bad_version));
  ExpectOnly(DecodeReason::kIpv4BadVersion);

  DecodeCounters c2;
  Frame short_ihl = frame;
  short_ihl[0] = 0x44;
  EXPECT_FALSE(DecodeFrame(kDltRaw, short_ihl, 0, kTs, p_, c2));
  EXPECT_EQ(c2.Get(DecodeReason::kIpv4BadHeaderLength), 1u);

  DecodeCounters c3;
  Frame long_ihl = Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", {});  // 20 bytes, IHL says 60
  long_ihl[0] = 0x4f;
  EXPECT_FALSE(DecodeFrame(kDltRaw, long_ihl, 0, kTs, p_, c3));
  EXPECT_EQ(c3.Get(DecodeReason::kIpv4BadHeaderLength), 1u);

  DecodeCounters c4;
  Frame short_total = frame;
  short_total[2] = 0;
  short_total[3] = 19;
  EXPECT_FALSE(DecodeFrame(kDltRaw, short_total, 0, kTs, p_, c4));
  EXPECT_EQ(c4.Get(DecodeReason::kIpv4BadTotalLength), 1u);
}

TEST_F(DecoderTest, RejectsBadTransportHeaders) {
  Frame tcp = Tcp(1, 2);
  tcp[12] = 0x40;  // data offset 16 bytes
  EXPECT_FALSE(Decode(kDltRaw, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", tcp)));
  ExpectOnly(DecodeReason::kTcpBadHeaderLength);

  DecodeCounters c2;
  Frame udp = Udp(1, 2, {});
  udp[5] = 7;  // UDP length below its own header
  EXPECT_FALSE(DecodeFrame(kDltRaw, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", udp), 0, kTs, p_, c2));
  EXPECT_EQ(c2.Get(DecodeReason::kUdpBadLength), 1u);

  DecodeCounters c3;
  EXPECT_FALSE(
      DecodeFrame(kDltRaw, Ipv4(kProtoIcmp, "10.0.0.1", "10.0.0.2", {8, 0}), 0, kTs, p_, c3));
  EXPECT_EQ(c3.Get(DecodeReason::kIcmpTruncated), 1u);
}

// ---------------------------------------------------------------------------------------
// VLAN, MPLS, PPPoE.

TEST_F(DecoderTest, Vlan8021QTag) {
  // PCP 5, VID 100.
  const Frame frame =
      Eth(0x8100, Tag(0xa064, 0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22))));
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  EXPECT_EQ(p_.vlan_id, 100);
  ExpectTcpFlow("10.0.0.1", 40000, "10.0.0.2", 22);
}

TEST_F(DecoderTest, QinQReportsOuterVlan) {
  const Frame ip = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22));
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x88a8, Tag(200, 0x8100, Tag(100, 0x0800, ip)))));
  EXPECT_EQ(p_.vlan_id, 200);
  ExpectTcpFlow("10.0.0.1", 40000, "10.0.0.2", 22);

  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x9100, Tag(0x0fff, 0x8100, Tag(7, 0x0800, ip)))));
  EXPECT_EQ(p_.vlan_id, 0x0fff);
}

TEST_F(DecoderTest, Mpls) {
  const Frame ip = Ipv4(kProtoUdp, "10.1.0.1", "10.2.0.1", Udp(1000, 2000, Text("m")));
  ASSERT_TRUE(
      Decode(kDltEthernet, Eth(0x8847, Cat({MplsLabel(16, false), MplsLabel(17, true), ip}))));
  EXPECT_EQ(p_.src, Ip("10.1.0.1"));
  EXPECT_EQ(p_.dst_port, 2000);
  EXPECT_THAT(p_.payload, ElementsAre('m'));

  const Frame ip6 = Ipv6(kProtoTcp, "2001:db8::1", "2001:db8::2", Tcp(40000, 443));
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x8847, Cat({MplsLabel(3, true), ip6}))));
  EXPECT_EQ(p_.ip_version, 6);
  EXPECT_EQ(p_.dst_port, 443);
}

TEST_F(DecoderTest, MplsWithNonIpPayloadIsSkipped) {
  // A pseudowire control word (first nibble 0) is not IP.
  EXPECT_FALSE(Decode(kDltEthernet, Eth(0x8847, Cat({MplsLabel(16, true), Frame(40, 0)}))));
  ExpectOnly(DecodeReason::kNonIp);
}

Frame Pppoe(std::uint16_t ppp_protocol, const Frame& payload) {
  return Cat({{0x11, 0x00},
              B16(0x0042),
              B16(static_cast<std::uint16_t>(2 + payload.size())),
              B16(ppp_protocol),
              payload});
}

TEST_F(DecoderTest, PppoeSession) {
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x8864, Pppoe(0x0021, Ipv4(kProtoTcp, "100.64.0.1",
                                                                  "192.0.2.1", Tcp(50000, 22))))));
  ExpectTcpFlow("100.64.0.1", 50000, "192.0.2.1", 22);

  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x8864, Pppoe(0x0057, Ipv6(kProtoTcp, "2001:db8::1",
                                                                  "2001:db8::2", Tcp(1, 2))))));
  EXPECT_EQ(p_.ip_version, 6);

  EXPECT_FALSE(Decode(kDltEthernet, Eth(0x8864, Pppoe(0xc021, Payload(10)))));  // LCP
  ExpectOnly(DecodeReason::kNonIp);
}

// ---------------------------------------------------------------------------------------
// Other link types.

// Serial links (routers' captures, BSD's ppp): PPP with and without HDLC-like framing and
// with a compressed protocol field, Cisco HDLC under either link type, PPPoE without its
// Ethernet header.
TEST_F(DecoderTest, PppAndCiscoHdlc) {
  const Frame ip4 = Ipv4(kProtoTcp, "100.64.0.1", "192.0.2.1", Tcp(50000, 22));
  const Frame ip6 = Ipv6(kProtoTcp, "2001:db8::1", "2001:db8::2", Tcp(40000, 443));
  struct Case {
    int dlt;
    Frame frame;
    int ip_version;
  };
  const Case cases[] = {
      {kDltPpp, Cat({{0xff, 0x03}, B16(0x0021), ip4}), 4},
      {kDltPpp, Cat({B16(0x0057), ip6}), 6},
      {kDltPpp, Cat({{0x21}, ip4}), 4},  // protocol field compressed
      {kDltPppSerial, Cat({{0xff, 0x03}, B16(0x0057), ip6}), 6},
      {kDltPppSerial, Cat({{0x0f, 0x00}, B16(0x0800), ip4}), 4},
      {kDltCiscoHdlc, Cat({{0x8f, 0x00}, B16(0x86dd), ip6}), 6},
      {kDltCiscoHdlc, Cat({{0x0f, 0x00}, B16(0x0800), ip4}), 4},
      {kDltPppEther, Pppoe(0x0021, ip4), 4},
      // NFLOG: header, a packet-header TLV, a 5-byte prefix TLV padded to 8, the payload.
      {kDltNflog,
       Cat({{2, 0, 0, 42},
            {8, 0, 1, 0},
            B32(0),
            {5, 0, 10, 0},
            {0, 0, 0, 0},
            {static_cast<std::uint8_t>(4 + ip4.size()), 0, 9, 0},
            ip4}),
       4},
      // PPI (little-endian length 12 with a 4-byte field, then Ethernet).
      {kDltPpi, Cat({{0, 0, 12, 0, 1, 0, 0, 0}, B32(0), Eth(0x0800, ip4)}), 4},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dlt);
    ASSERT_TRUE(Decode(c.dlt, c.frame));
    EXPECT_EQ(p_.ip_version, c.ip_version);
    EXPECT_EQ(p_.dst_port, c.ip_version == 4 ? 22 : 443);
  }
  EXPECT_FALSE(Decode(kDltPpp, Cat({{0xff, 0x03}, B16(0xc021), Payload(10)})));        // LCP
  EXPECT_FALSE(Decode(kDltCiscoHdlc, Cat({{0x8f, 0x00}, B16(0x8035), Payload(10)})));  // SLARP
  EXPECT_EQ(counters_.Get(DecodeReason::kNonIp), 2u);
  // PPI around a link type not decoded (USER0, 147), and a header longer than the frame.
  EXPECT_FALSE(Decode(kDltPpi, Cat({{0, 0, 8, 0, 147, 0, 0, 0}, Payload(30)})));
  EXPECT_FALSE(Decode(kDltPpi, Cat({{0, 0, 40, 0, 1, 0, 0, 0}, Payload(30)})));
  EXPECT_EQ(counters_.Get(DecodeReason::kUnsupportedLinkType), 1u);
  EXPECT_EQ(TotalReasons(counters_), 4u);
  // NFLOG: a TLV longer than the frame (Zeek's nflog-bad-tlv-len.pcap), and no payload TLV.
  EXPECT_FALSE(Decode(kDltNflog, Cat({{2, 0, 0, 1}, {200, 0, 1, 0}, Payload(20)})));
  EXPECT_FALSE(Decode(kDltNflog, Cat({{2, 0, 0, 1}, {8, 0, 1, 0}, B32(0)})));
  EXPECT_EQ(counters_.Get(DecodeReason::kNonIp), 3u);
  EXPECT_EQ(TotalReasons(counters_), 6u);
}

// 802.11 from a monitor-mode interface, bare or after radiotap (the layout of Zeek's
// wlanmon.pcap and radiotap.pcap: QoS data, RFC 1042 SNAP, DNS over IPv4; plain data with
// IPv6), and the header variants a data frame can have.
TEST_F(DecoderTest, Ieee80211DataFrames) {
  const Frame ip4 = Ipv4(kProtoTcp, "192.168.1.20", "192.0.2.1", Tcp(50000, 443));
  const Frame ip6 = Ipv6(kProtoTcp, "2001:db8::1", "2001:db8::2", Tcp(50000, 443));
  struct Case {
    const char* name;
    int dlt;
    Frame frame;
    int ip_version;
  };
  const Case cases[] = {
      {"qos_to_ds", kDltIeee80211, Wlan({}, Snap(0x0800, ip4)), 4},
      {"data_from_ds", kDltIeee80211, Wlan({.subtype = 0, .flags = 0x02}, Snap(0x86dd, ip6)), 6},
      {"four_addresses", kDltIeee80211, Wlan({.flags = 0x03}, Snap(0x0800, ip4)), 4},
      {"qos_with_ht_control", kDltIeee80211, Wlan({.flags = 0x81}, Snap(0x0800, ip4)), 4},
      {"retry_and_power_save", kDltIeee80211, Wlan({.flags = 0x19}, Snap(0x0800, ip4)), 4},
      {"bridge_tunnel_oui", kDltIeee80211,
       Wlan({}, Cat({{0xaa, 0xaa, 0x03, 0x00, 0x00, 0xf8}, B16(0x0800), ip4})), 4},
      {"radiotap", kDltRadiotap, Radiotap(0x00, Wlan({}, Snap(0x0800, ip4))), 4},
      // A checksum at the end, which is not the packet's.
      {"radiotap_fcs", kDltRadiotap,
       Radiotap(0x10, Cat({Wlan({}, Snap(0x86dd, ip6)), Le32(0xdeadbeef)})), 6},
      // Padding after the 26-byte QoS header to 28.
      {"radiotap_data_pad", kDltRadiotap,
       Radiotap(0x20, Cat({Wlan({}, {0, 0}), Snap(0x0800, ip4)})), 4},
      {"ppi", kDltPpi, Cat({{0, 0, 8, 0, 105, 0, 0, 0}, Wlan({}, Snap(0x0800, ip4))}), 4},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(Decode(c.dlt, c.frame));
    EXPECT_EQ(p_.ip_version, c.ip_version);
    ExpectTcpFlow(c.ip_version == 4 ? "192.168.1.20" : "2001:db8::1", 50000,
                  c.ip_version == 4 ? "192.0.2.1" : "2001:db8::2", 443);
    EXPECT_TRUE(p_.payload.empty());
  }
  EXPECT_EQ(TotalReasons(counters_), 0u);
}

TEST_F(DecoderTest, Ieee80211FramesWithoutAnIpPacketAreCountedByReason) {
  const Frame ip4 = Ipv4(kProtoUdp, "192.168.1.20", "192.0.2.1", Udp(5353, 53, Payload(8)));
  struct Case {
    const char* name;
    int dlt;
    Frame frame;
    DecodeReason reason;
  };
  const Case cases[] = {
      {"beacon", kDltIeee80211, Cat({{0x80, 0x00, 0, 0}, Frame(20, 0xff), Payload(40)}),
       DecodeReason::kWlanNotData},
      {"ack", kDltIeee80211, Cat({{0xd4, 0x00, 0, 0}, Frame(6, 0)}), DecodeReason::kWlanNotData},
      {"cts_with_fcs", kDltRadiotap,
       Radiotap(0x10, Cat({{0xc4, 0x00, 0, 0}, Frame(6, 0), Le32(0)})), DecodeReason::kWlanNotData},
      {"one_byte", kDltIeee80211, {0x88}, DecodeReason::kWlanTruncated},
      {"qos_null", kDltIeee80211, Wlan({.subtype = 12}, {}), DecodeReason::kWlanNotData},
      {"protected", kDltIeee80211, Wlan({.flags = 0x41}, Payload(60)),
       DecodeReason::kWlanProtected},
      {"a_msdu", kDltIeee80211, Wlan({.qos = 0x80}, Payload(60)), DecodeReason::kWlanUnsupported},
      {"more_fragments", kDltIeee80211, Wlan({.flags = 0x05}, Snap(0x0800, ip4)),
       DecodeReason::kWlanUnsupported},
      {"later_fragment", kDltIeee80211, Wlan({.fragment = 1}, Payload(20)),
       DecodeReason::kWlanUnsupported},
      {"protocol_version_1", kDltIeee80211, Cat({{0x89, 0x01}, Frame(40, 0)}),
       DecodeReason::kWlanUnsupported},
      {"arp", kDltIeee80211, Wlan({}, Snap(0x0806, Payload(28))), DecodeReason::kNonIp},
      {"spanning_tree_llc", kDltIeee80211, Wlan({}, Cat({{0x42, 0x42, 0x03}, Payload(35)})),
       DecodeReason::kNonIp},
      {"short_data_header", kDltIeee80211, Frame(23, 0x08), DecodeReason::kWlanTruncated},
      {"four_addresses_cut", kDltIeee80211, Cat({{0x88, 0x03}, Frame(28, 0)}),
       DecodeReason::kWlanTruncated},
      {"snap_cut", kDltIeee80211, Wlan({}, {0xaa, 0xaa, 0x03, 0, 0, 0, 0x08}),
       DecodeReason::kWlanTruncated},
      {"radiotap_bad_fcs", kDltRadiotap,
       Radiotap(0x50, Cat({Wlan({}, Snap(0x0800, ip4)), Le32(0)})), DecodeReason::kWlanBadFcs},
      {"radiotap_version_1", kDltRadiotap,
       Cat({{1, 0, 8, 0}, Le32(0), Wlan({}, Snap(0x0800, ip4))}), DecodeReason::kWlanUnsupported},
      {"radiotap_longer_than_frame", kDltRadiotap, Cat({{0, 0, 200, 0}, Le32(0), Frame(30, 0)}),
       DecodeReason::kWlanTruncated},
      // Presence words that never end within the header.
      {"radiotap_presence_runs_on", kDltRadiotap,
       Cat({{0, 0, 16, 0}, Le32(0x80000000), Le32(0x80000000), Le32(0x80000000), Frame(30, 0)}),
       DecodeReason::kWlanTruncated},
      // Flags announced but the header ends before them.
      {"radiotap_flags_cut", kDltRadiotap, Cat({{0, 0, 16, 0}, Le32(0x00000003), Frame(40, 0)}),
       DecodeReason::kWlanTruncated},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::uint64_t before = counters_.Get(c.reason);
    const std::uint64_t total = TotalReasons(counters_);
    EXPECT_FALSE(Decode(c.dlt, c.frame));
    EXPECT_EQ(counters_.Get(c.reason), before + 1) << DecodeReasonName(c.reason);
    EXPECT_EQ(TotalReasons(counters_), total + 1);
  }
  EXPECT_TRUE(IsDecodeError(DecodeReason::kWlanTruncated));
  EXPECT_TRUE(IsDecodeError(DecodeReason::kWlanBadFcs));
  EXPECT_FALSE(IsDecodeError(DecodeReason::kWlanProtected));
  EXPECT_EQ(DecodeReasonName(DecodeReason::kWlanNotData), "wlan_not_data");
}

// Radiotap's FCS flag: the last four bytes of a whole frame are the checksum; of a frame the
// snapshot length cut, they are frame (a headers-only capture keeps its TCP header).
TEST(DecoderRadiotap, TheChecksumIsCutOnlyFromAWholeFrame) {
  const Frame tcp = Ipv4(kProtoTcp, "192.168.1.20", "192.0.2.1", Tcp(50000, 443));
  const Frame air = Radiotap(0x10, Wlan({}, Snap(0x0800, tcp)));
  const auto decode = [](const Frame& f, std::size_t wire_length, DecodedPacket& p,
                         DecodeCounters& counters) {
    return DecodeFrame(kDltRadiotap, f, static_cast<std::uint32_t>(wire_length), kTs, p, counters);
  };
  DecodedPacket p;
  DecodeCounters counters;
  // Whole, with its checksum.
  const Frame whole = Cat({air, Le32(0x12345678)});
  ASSERT_TRUE(decode(whole, whole.size(), p, counters));
  EXPECT_EQ(p.dst_port, 443);
  // Cut right after the TCP header: the checksum was never captured.
  ASSERT_TRUE(decode(air, whole.size(), p, counters));
  EXPECT_EQ(p.dst_port, 443);
  EXPECT_EQ(TotalReasons(counters), 0u);
  // The same bytes as a whole frame: the checksum would be the TCP header's last four.
  EXPECT_FALSE(decode(air, air.size(), p, counters));
  EXPECT_EQ(counters.Get(DecodeReason::kTcpTruncated), 1u);
  // A whole frame too short to hold a checksum.
  const Frame tiny = Cat({{0, 0, 9, 0}, Le32(0x2), {0x10}, {1, 2}});
  EXPECT_FALSE(decode(tiny, tiny.size(), p, counters));
  EXPECT_EQ(counters.Get(DecodeReason::kWlanTruncated), 1u);
  EXPECT_EQ(TotalReasons(counters), 2u);
}

TEST_F(DecoderTest, LinuxSll) {
  const Frame sll = Cat({B16(0), B16(1), B16(6), {2, 0, 0, 0, 0, 1, 0, 0}, B16(0x0800)});
  ASSERT_EQ(sll.size(), 16u);
  ASSERT_TRUE(
      Decode(kDltLinuxSll, Cat({sll, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22))})));
  ExpectTcpFlow("10.0.0.1", 40000, "10.0.0.2", 22);

  const Frame sll_vlan = Cat({B16(0), B16(1), B16(6), {2, 0, 0, 0, 0, 1, 0, 0}, B16(0x8100)});
  ASSERT_TRUE(
      Decode(kDltLinuxSll,
             Cat({sll_vlan,
                  Tag(42, 0x86dd, Ipv6(kProtoUdp, "2001:db8::1", "2001:db8::2", Udp(1, 2, {})))})));
  EXPECT_EQ(p_.vlan_id, 42);
  EXPECT_TRUE(p_.is_udp());
}

TEST_F(DecoderTest, LinuxSll2) {
  // protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
  const Frame sll2 = Cat({B16(0x86dd), B16(0), B32(3), B16(1), {4, 6}, {2, 0, 0, 0, 0, 1, 0, 0}});
  ASSERT_EQ(sll2.size(), 20u);
  ASSERT_TRUE(Decode(kDltLinuxSll2, Cat({sll2, Ipv6(kProtoTcp, "2001:db8::10", "2001:db8::20",
                                                    Tcp(40000, 5900))})));
  EXPECT_EQ(p_.ip_version, 6);
  ExpectTcpFlow("2001:db8::10", 40000, "2001:db8::20", 5900);
}

TEST_F(DecoderTest, NullLinkTypeInBothByteOrders) {
  const Frame ip = Ipv4(kProtoTcp, "127.0.0.1", "127.0.0.2", Tcp(40000, 22));
  // AF_INET written by a little-endian host, then by a big-endian one.
  ASSERT_TRUE(Decode(kDltNull, Cat({Le32(2), ip})));
  ExpectTcpFlow("127.0.0.1", 40000, "127.0.0.2", 22);
  ASSERT_TRUE(Decode(kDltNull, Cat({B32(2), ip})));
  ExpectTcpFlow("127.0.0.1", 40000, "127.0.0.2", 22);
  // AF_INET6 is 30 on macOS, 24 on NetBSD/OpenBSD.
  const Frame ip6 = Ipv6(kProtoUdp, "::1", "::1", Udp(5000, 53, Text("q")));
  ASSERT_TRUE(Decode(kDltNull, Cat({Le32(30), ip6})));
  EXPECT_EQ(p_.ip_version, 6);
  ASSERT_TRUE(Decode(kDltNull, Cat({B32(24), ip6})));
  EXPECT_EQ(p_.dst_port, 53);
  EXPECT_EQ(TotalReasons(counters_), 0u);
}

TEST_F(DecoderTest, LoopLinkType) {
  ASSERT_TRUE(
      Decode(kDltLoop, Cat({B32(2), Ipv4(kProtoUdp, "127.0.0.1", "127.0.0.1", Udp(1, 2, {}))})));
  EXPECT_EQ(p_.src, Ip("127.0.0.1"));
  EXPECT_FALSE(Decode(kDltLoop, {0, 0, 0}));
  ExpectOnly(DecodeReason::kLinkTruncated);
}

TEST_F(DecoderTest, RawIpLinkTypes) {
  const Frame ip4 = Ipv4(kProtoTcp, "10.8.0.2", "10.8.0.1", Tcp(40000, 22));
  const Frame ip6 = Ipv6(kProtoTcp, "fd00::2", "fd00::1", Tcp(40000, 22));
  for (int dlt : {kDltRaw, kDltRawOpenBsd, kDltLinktypeRaw, kDltIpv4}) {
    ASSERT_TRUE(Decode(dlt, ip4)) << dlt;
    EXPECT_EQ(p_.ip_version, 4) << dlt;
    EXPECT_EQ(p_.src, Ip("10.8.0.2")) << dlt;
  }
  for (int dlt : {kDltRaw, kDltRawOpenBsd, kDltLinktypeRaw, kDltIpv6}) {
    ASSERT_TRUE(Decode(dlt, ip6)) << dlt;
    EXPECT_EQ(p_.ip_version, 6) << dlt;
    EXPECT_EQ(p_.dst, Ip("fd00::1")) << dlt;
  }
}

TEST_F(DecoderTest, UnsupportedLinkTypeIsCounted) {
  EXPECT_FALSE(IsSupportedLinkType(147));  // USER0
  EXPECT_FALSE(IsSupportedLinkType(195));  // IEEE 802.15.4
  for (int dlt : {kDltNull, kDltEthernet, kDltRaw, kDltRawOpenBsd, kDltLinktypeRaw, kDltLoop,
                  kDltLinuxSll, kDltLinuxSll2, kDltIpv4, kDltIpv6, kDltPpp, kDltPppSerial,
                  kDltPppEther, kDltCiscoHdlc, kDltIeee80211, kDltRadiotap}) {
    EXPECT_TRUE(IsSupportedLinkType(dlt)) << dlt;
  }
  EXPECT_FALSE(Decode(195, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(1, 2))));
  ExpectOnly(DecodeReason::kUnsupportedLinkType);
  EXPECT_FALSE(IsDecodeError(DecodeReason::kUnsupportedLinkType));
  EXPECT_EQ(DecodeReasonName(DecodeReason::kUnsupportedLinkType), "unsupported_link_type");
}

// ---------------------------------------------------------------------------------------
// IPv6 extension headers and fragments.

Frame HopByHop(std::uint8_t next) {
  return {next, 0, 1, 4, 0, 0, 0, 0};
}  // PadN
Frame DestinationOptions(std::uint8_t next) {
  Frame f = {next, 1, 1, 12};  // 16 bytes: PadN of 12
  f.resize(16, 0);
  return f;
}

TEST_F(DecoderTest, Ipv6ExtensionHeadersAreSkipped) {
  const Frame payload = Text("payload");
  const Frame frame =
      Eth(0x86dd,
          Ipv6(0, "2001:db8::1", "2001:db8::2",
               Cat({HopByHop(60), DestinationOptions(kProtoTcp), Tcp(40000, 22, payload)}), 17));
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  ExpectTcpFlow("2001:db8::1", 40000, "2001:db8::2", 22);
  EXPECT_EQ(p_.ttl, 17);
  EXPECT_THAT(p_.payload, ElementsAreArray(payload));
  EXPECT_EQ(p_.payload_length, payload.size());
  EXPECT_EQ(TotalReasons(counters_), 0u);
}

TEST_F(DecoderTest, Ipv6ExtensionLongerThanPacketIsCounted) {
  Frame ext = HopByHop(kProtoTcp);
  ext[1] = 10;  // 88 bytes announced
  EXPECT_FALSE(Decode(kDltRaw, Ipv6(0, "2001:db8::1", "2001:db8::2", Cat({ext, Tcp(1, 2)}))));
  ExpectOnly(DecodeReason::kIpv6ExtensionTruncated);
}

TEST_F(DecoderTest, Ipv4FragmentsAreCountedNotDecoded) {
  const Frame udp = Udp(5000, 53, Payload(32));
  Ipv4Options first;
  first.flags_fragment = 0x2000;  // MF, offset 0
  EXPECT_FALSE(Decode(kDltRaw, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", udp, first)));
  ExpectOnly(DecodeReason::kIpFragment);

  Ipv4Options last;
  last.flags_fragment = 0x0005;  // offset 40 bytes, no MF
  EXPECT_FALSE(Decode(kDltRaw, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Payload(16), last)));
  EXPECT_EQ(counters_.Get(DecodeReason::kIpFragment), 2u);
  EXPECT_EQ(counters_.decoded.Read(), 0u);

  Ipv4Options whole;
  whole.flags_fragment = 0x0000;  // neither DF nor MF: an ordinary packet
  ASSERT_TRUE(Decode(kDltRaw, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", udp, whole)));
  EXPECT_FALSE(p_.dont_fragment);
}

Frame Ipv6Fragment(std::uint8_t next, std::uint16_t offset_units, bool more) {
  return Cat({{next, 0},
              B16(static_cast<std::uint16_t>(offset_units << 3 | (more ? 1 : 0))),
              B32(0x01020304)});
}

TEST_F(DecoderTest, Ipv6FragmentHeaderCountedAsFragment) {
  const Frame udp = Udp(5000, 53, Payload(32));
  EXPECT_FALSE(Decode(kDltRaw, Ipv6(44, "2001:db8::1", "2001:db8::2",
                                    Cat({Ipv6Fragment(kProtoUdp, 0, true), udp}))));
  ExpectOnly(DecodeReason::kIpFragment);
  EXPECT_FALSE(Decode(kDltRaw, Ipv6(44, "2001:db8::1", "2001:db8::2",
                                    Cat({Ipv6Fragment(kProtoUdp, 185, false), Payload(16)}))));
  EXPECT_EQ(counters_.Get(DecodeReason::kIpFragment), 2u);

  // RFC 6946 atomic fragment: offset 0 and no more fragments is a whole packet.
  ASSERT_TRUE(Decode(kDltRaw, Ipv6(44, "2001:db8::1", "2001:db8::2",
                                   Cat({Ipv6Fragment(kProtoUdp, 0, false), udp}))));
  EXPECT_EQ(p_.dst_port, 53);
  EXPECT_EQ(p_.payload.size(), 32u);
}

// ---------------------------------------------------------------------------------------
// Tunnels.

TEST_F(DecoderTest, GreWithKeyAndSequenceToInnerIpv4) {
  const Frame inner = Ipv4(kProtoTcp, "172.16.0.1", "172.16.0.2", Tcp(40000, 3389, Text("x")));
  const Frame gre = Cat({B16(0x3000), B16(0x0800), B32(0x0000abcd), B32(7), inner});
  ASSERT_TRUE(
      Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoGre, "203.0.113.1", "203.0.113.2", gre))));
  ExpectTcpFlow("172.16.0.1", 40000, "172.16.0.2", 3389);
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 1);  // GRE carrying IP: a tunnel of its own
  EXPECT_THAT(p_.payload, ElementsAre('x'));
  EXPECT_EQ(counters_.tunnelled.Read(), 1u);

  // Checksum present too: four more header bytes.
  const Frame gre_csum = Cat({B16(0xb000), B16(0x0800), B32(0), B32(1), B32(2), inner});
  ASSERT_TRUE(
      Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoGre, "203.0.113.1", "203.0.113.2", gre_csum))));
  ExpectTcpFlow("172.16.0.1", 40000, "172.16.0.2", 3389);
}

TEST_F(DecoderTest, GreTransparentEthernetBridging) {
  const Frame inner =
      Eth(0x0800, Ipv4(kProtoUdp, "192.168.5.1", "192.168.5.2", Udp(3389, 50000, Payload(16))));
  const Frame gre = Cat({B16(0x0000), B16(0x6558), inner});
  ASSERT_TRUE(
      Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoGre, "203.0.113.1", "203.0.113.2", gre))));
  EXPECT_EQ(p_.src, Ip("192.168.5.1"));
  EXPECT_EQ(p_.src_port, 3389);
  EXPECT_TRUE(p_.is_udp());
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 0);  // Ethernet frames: a bridge or a mirror
}

// ERSPAN type II (a switch's mirror to the sensor): GRE with a sequence number, protocol
// 0x88BE, an 8-byte ERSPAN header, then the mirrored frame.
TEST_F(DecoderTest, ErspanTypeIIDecodesTheMirroredFrame) {
  const Frame inner =
      Eth(0x0800, Ipv4(kProtoTcp, "10.77.1.10", "198.18.2.10", Tcp(40000, 443, Text("x"))));
  const Frame gre = Cat({B16(0x1000), B16(0x88be), B32(42), B16(0x1000), B16(7), B32(0), inner});
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(kProtoGre, "192.0.2.1", "192.0.2.2", gre))));
  ExpectTcpFlow("10.77.1.10", 40000, "198.18.2.10", 443);
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 0);
  EXPECT_THAT(p_.payload, ElementsAre('x'));
}

TEST_F(DecoderTest, GreUnsupportedVariantsAreCounted) {
  // Enhanced GRE (version 1, PPTP).
  const Frame pptp = Cat({B16(0x3001), B16(0x880b), B16(4), B16(0), B32(1), Payload(4)});
  EXPECT_FALSE(Decode(kDltRaw, Ipv4(kProtoGre, "10.0.0.1", "10.0.0.2", pptp)));
  ExpectOnly(DecodeReason::kGreUnsupported);
  EXPECT_FALSE(Decode(
      kDltRaw, Ipv4(kProtoGre, "10.0.0.1", "10.0.0.2", Cat({B16(0), B16(0x0806), Payload(28)}))));
  EXPECT_EQ(counters_.Get(DecodeReason::kGreUnsupported), 2u);
}

TEST_F(DecoderTest, VxlanDecodesInnerFlow) {
  const Frame inner =
      Eth(0x0800, Ipv4(kProtoTcp, "10.200.0.1", "10.200.0.2", Tcp(40000, 5900, Text("RFB"))));
  const Frame frame = Eth(0x0800, Ipv4(kProtoUdp, "198.51.100.1", "198.51.100.2",
                                       Udp(49152, 4789, Vxlan(5001, inner))));
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  ExpectTcpFlow("10.200.0.1", 40000, "10.200.0.2", 5900);
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 0);
  EXPECT_THAT(p_.payload, ElementsAre('R', 'F', 'B'));
  EXPECT_EQ(counters_.tunnelled.Read(), 1u);
}

TEST_F(DecoderTest, Port4789WithoutVniFlagStaysUdp) {
  Frame vxlan = Vxlan(5001, Eth(0x0800, Ipv4(kProtoTcp, "10.200.0.1", "10.200.0.2", Tcp(1, 2))));
  vxlan[0] = 0;
  ASSERT_TRUE(
      Decode(kDltRaw, Ipv4(kProtoUdp, "198.51.100.1", "198.51.100.2", Udp(49152, 4789, vxlan))));
  EXPECT_EQ(p_.src, Ip("198.51.100.1"));
  EXPECT_TRUE(p_.is_udp());
  EXPECT_EQ(p_.dst_port, 4789);
  EXPECT_EQ(p_.tunnel_depth, 0);
}

Frame Geneve(std::uint16_t protocol, const Frame& options, const Frame& inner) {
  EXPECT_EQ(options.size() % 4, 0u);
  return Cat({{static_cast<std::uint8_t>(options.size() / 4), 0x00},
              B16(protocol),
              B32(0x00123400),
              options,
              inner});
}

TEST_F(DecoderTest, GeneveWithOptionsDecodesInnerFlow) {
  // One option: class 0x0102, type 0x80, 4 bytes of data.
  const Frame options = Cat({B16(0x0102), {0x80, 0x01}, B32(0xcafef00d)});
  const Frame inner =
      Eth(0x0800, Ipv4(kProtoTcp, "10.9.0.1", "10.9.0.2", Tcp(40000, 22, Text("SSH-"))));
  const Frame frame = Eth(0x86dd, Ipv6(kProtoUdp, "2001:db8::a", "2001:db8::b",
                                       Udp(50000, 6081, Geneve(0x6558, options, inner))));
  ASSERT_TRUE(Decode(kDltEthernet, frame));
  ExpectTcpFlow("10.9.0.1", 40000, "10.9.0.2", 22);
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 0);
  EXPECT_THAT(p_.payload, ElementsAreArray(Text("SSH-")));

  // Geneve may also carry IP directly.
  const Frame ip_inner = Ipv4(kProtoUdp, "10.9.0.3", "10.9.0.4", Udp(1, 2, {}));
  ASSERT_TRUE(Decode(kDltRaw, Ipv4(kProtoUdp, "192.0.2.1", "192.0.2.2",
                                   Udp(50000, 6081, Geneve(0x0800, {}, ip_inner)))));
  EXPECT_EQ(p_.src, Ip("10.9.0.3"));
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 1);
}

TEST_F(DecoderTest, GeneveOptionsLongerThanPacketAreCounted) {
  Frame geneve = Geneve(0x6558, {}, Payload(8));
  geneve[0] = 0x3f;  // 252 bytes of options announced
  EXPECT_FALSE(
      Decode(kDltRaw, Ipv4(kProtoUdp, "192.0.2.1", "192.0.2.2", Udp(50000, 6081, geneve))));
  ExpectOnly(DecodeReason::kGeneveTruncated);
}

TEST_F(DecoderTest, IpInIp) {
  const Frame inner = Ipv4(kProtoTcp, "10.1.1.1", "10.2.2.2", Tcp(40000, 22));
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(4, "192.0.2.1", "192.0.2.2", inner))));
  ExpectTcpFlow("10.1.1.1", 40000, "10.2.2.2", 22);
  EXPECT_EQ(p_.tunnel_depth, 1);
  EXPECT_EQ(p_.ip_tunnel_depth, 1);

  // 6in4 (protocol 41).
  const Frame inner6 = Ipv6(kProtoTcp, "2001:db8::1", "2001:db8::2", Tcp(40000, 22));
  ASSERT_TRUE(Decode(kDltEthernet, Eth(0x0800, Ipv4(41, "192.0.2.1", "192.0.2.2", inner6))));
  EXPECT_EQ(p_.ip_version, 6);
  EXPECT_EQ(p_.src, Ip("2001:db8::1"));
  EXPECT_EQ(p_.tunnel_depth, 1);
}

TEST_F(DecoderTest, InnerHeaderReplacesOuterPorts) {
  // VXLAN carrying ICMP: the outer UDP ports must not leak into the inner flow.
  const Frame inner = Eth(0x0800, Ipv4(kProtoIcmp, "10.0.0.1", "10.0.0.2", {8, 0, 0, 0}));
  ASSERT_TRUE(Decode(kDltRaw,
                     Ipv4(kProtoUdp, "192.0.2.1", "192.0.2.2", Udp(49152, 4789, Vxlan(1, inner)))));
  EXPECT_EQ(p_.protocol, kProtoIcmp);
  EXPECT_EQ(p_.src_port, 0);
  EXPECT_EQ(p_.dst_port, 0);
}

// ---------------------------------------------------------------------------------------
// Limits.

TEST_F(DecoderTest, TooManyVlanTagsAreCounted) {
  const Frame ip = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22));
  const auto stacked = [&](int tags) {
    Frame body = ip;
    std::uint16_t next = 0x0800;
    for (int i = 0; i < tags; ++i) {
      body = Tag(static_cast<std::uint16_t>(i + 1), next, body);
      next = 0x8100;
    }
    return Eth(0x8100, body);
  };
  ASSERT_TRUE(Decode(kDltEthernet, stacked(kMaxEncapsulationDepth)));
  EXPECT_EQ(p_.vlan_id, kMaxEncapsulationDepth);  // the outermost tag
  EXPECT_EQ(TotalReasons(counters_), 0u);

  EXPECT_FALSE(Decode(kDltEthernet, stacked(kMaxEncapsulationDepth + 1)));
  ExpectOnly(DecodeReason::kEncapsulationTooDeep);
  EXPECT_FALSE(Decode(kDltEthernet, stacked(200)));
  EXPECT_EQ(counters_.Get(DecodeReason::kEncapsulationTooDeep), 2u);
}

TEST_F(DecoderTest, TooManyMplsLabelsAreCounted) {
  Frame labels;
  for (int i = 0; i < 40; ++i) {
    labels = Cat({labels, MplsLabel(100 + i, i == 39)});
  }
  EXPECT_FALSE(
      Decode(kDltEthernet,
             Eth(0x8847, Cat({labels, Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Udp(1, 2, {}))}))));
  ExpectOnly(DecodeReason::kEncapsulationTooDeep);
}

TEST_F(DecoderTest, DeeplyNestedTunnelsAreCounted) {
  Frame packet = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22));
  for (int i = 0; i < 20; ++i) {
    packet = Ipv4(4, "192.0.2.1", "192.0.2.2", packet);
  }
  EXPECT_FALSE(Decode(kDltRaw, packet));
  ExpectOnly(DecodeReason::kEncapsulationTooDeep);

  // GRE inside GRE inside GRE ... also ends.
  Frame gre = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(40000, 22));
  for (int i = 0; i < 20; ++i) {
    gre = Ipv4(kProtoGre, "192.0.2.1", "192.0.2.2", Cat({B16(0), B16(0x0800), gre}));
  }
  EXPECT_FALSE(Decode(kDltRaw, gre));
  EXPECT_EQ(counters_.Get(DecodeReason::kEncapsulationTooDeep), 2u);
}

TEST_F(DecoderTest, DecodeResetsOutputBetweenFrames) {
  TcpFields t;
  t.flags = kTcpSyn;
  t.options = LinuxSynOptions();
  ASSERT_TRUE(Decode(kDltEthernet,
                     Eth(0x8100, Tag(9, 0x0800, Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(t))))));
  ASSERT_TRUE(Decode(kDltRaw, Ipv4(kProtoUdp, "10.0.0.3", "10.0.0.4", Udp(1, 2, {}))));
  EXPECT_EQ(p_.vlan_id, 0);
  EXPECT_EQ(p_.tcp_flags, 0);
  EXPECT_FALSE(p_.tcp_options.has_mss);
  EXPECT_EQ(p_.seq, 0u);
}

// ---------------------------------------------------------------------------------------
// Every prefix of a valid frame: decode fails (counted once) exactly while a header is cut,
// and succeeds with a shortened payload once the innermost L4 header is complete.

struct Case {
  const char* name;
  int dlt;
  Frame frame;
  std::size_t payload_size;  // the frame ends with this many payload bytes
};

std::vector<Case> TruncationCases() {
  const Frame data = Payload(12);
  TcpFields syn;
  syn.flags = kTcpSyn;
  syn.options = LinuxSynOptions();
  const Frame tcp4 = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(syn, data));
  const Frame udp4 = Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Udp(5000, 53, data));
  const Frame tcp6 = Ipv6(kProtoTcp, "2001:db8::1", "2001:db8::2", Tcp(syn, data));
  const Frame sll = Cat({B16(0), B16(1), B16(6), {2, 0, 0, 0, 0, 1, 0, 0}, B16(0x0800)});
  const Frame sll2 = Cat({B16(0x86dd), B16(0), B32(3), B16(1), {4, 6}, {2, 0, 0, 0, 0, 1, 0, 0}});
  const Frame icmp = Cat({{8, 0, 0, 0}, data});
  return {
      {"eth_ipv4_tcp_options", kDltEthernet, Eth(0x0800, tcp4), data.size()},
      {"eth_ipv4_icmp", kDltEthernet, Eth(0x0800, Ipv4(kProtoIcmp, "10.0.0.1", "10.0.0.2", icmp)),
       data.size()},
      {"qinq_udp", kDltEthernet, Eth(0x88a8, Tag(10, 0x8100, Tag(20, 0x0800, udp4))), data.size()},
      {"sll_udp", kDltLinuxSll, Cat({sll, udp4}), data.size()},
      {"sll2_ipv6_tcp", kDltLinuxSll2, Cat({sll2, tcp6}), data.size()},
      {"null_ipv4_tcp", kDltNull, Cat({Le32(2), tcp4}), data.size()},
      {"loop_ipv6_tcp", kDltLoop, Cat({B32(30), tcp6}), data.size()},
      {"raw_ipv6_extensions", kDltRaw,
       Ipv6(0, "2001:db8::1", "2001:db8::2",
            Cat({HopByHop(60), DestinationOptions(kProtoUdp), Udp(5000, 53, data)})),
       data.size()},
      {"raw_ipv6_atomic_fragment", kDltIpv6,
       Ipv6(44, "2001:db8::1", "2001:db8::2",
            Cat({Ipv6Fragment(kProtoUdp, 0, false), Udp(5000, 53, data)})),
       data.size()},
      {"gre_key_seq_ipv4", kDltEthernet,
       Eth(0x0800, Ipv4(kProtoGre, "192.0.2.1", "192.0.2.2",
                        Cat({B16(0x3000), B16(0x0800), B32(1), B32(2), tcp4}))),
       data.size()},
      {"gre_teb_ethernet", kDltRaw,
       Ipv4(kProtoGre, "192.0.2.1", "192.0.2.2", Cat({B16(0), B16(0x6558), Eth(0x0800, udp4)})),
       data.size()},
      {"vxlan", kDltEthernet,
       Eth(0x0800, Ipv4(kProtoUdp, "192.0.2.1", "192.0.2.2",
                        Udp(49152, 4789, Vxlan(7, Eth(0x0800, tcp4))))),
       data.size()},
      {"geneve_options", kDltEthernet,
       Eth(0x86dd, Ipv6(kProtoUdp, "2001:db8::a", "2001:db8::b",
                        Udp(50000, 6081,
                            Geneve(0x6558, Cat({B16(1), {2, 1}, B32(3)}), Eth(0x0800, tcp4))))),
       data.size()},
      {"ip_in_ip", kDltRaw, Ipv4(4, "192.0.2.1", "192.0.2.2", tcp4), data.size()},
      {"mpls", kDltEthernet, Eth(0x8847, Cat({MplsLabel(1, false), MplsLabel(2, true), udp4})),
       data.size()},
      {"pppoe", kDltEthernet, Eth(0x8864, Pppoe(0x0021, tcp4)), data.size()},
      {"ppp_hdlc", kDltPpp, Cat({{0xff, 0x03}, B16(0x0021), tcp4}), data.size()},
      {"ppp_compressed", kDltPpp, Cat({{0x21}, tcp4}), data.size()},
      {"cisco_hdlc", kDltCiscoHdlc, Cat({{0x0f, 0x00}, B16(0x0800), tcp4}), data.size()},
      {"ppp_ether", kDltPppEther, Pppoe(0x0021, tcp4), data.size()},
      {"nflog", kDltNflog,
       Cat({{2, 0, 0, 42},
            {8, 0, 1, 0},
            B32(0),
            {static_cast<std::uint8_t>(4 + tcp4.size()), 0, 9, 0},
            tcp4}),
       data.size()},
      {"ppi_ethernet", kDltPpi, Cat({{0, 0, 8, 0, 1, 0, 0, 0}, Eth(0x0800, tcp4)}), data.size()},
      {"ieee80211", kDltIeee80211, Wlan({.flags = 0x83}, Snap(0x0800, tcp4)), data.size()},
      {"radiotap", kDltRadiotap, Radiotap(0x20, Cat({Wlan({}, {0, 0}), Snap(0x0800, tcp4)})),
       data.size()},
  };
}

TEST(DecoderTruncation, EveryPrefixFailsCleanlyUntilHeadersComplete) {
  for (const Case& c : TruncationCases()) {
    SCOPED_TRACE(c.name);
    DecodedPacket full;
    DecodeCounters full_counters;
    ASSERT_TRUE(DecodeFrame(c.dlt, c.frame, 0, kTs, full, full_counters));
    ASSERT_EQ(full.payload.size(), c.payload_size);
    ASSERT_EQ(full.payload.data(), c.frame.data() + c.frame.size() - c.payload_size);
    const std::size_t headers_end = c.frame.size() - c.payload_size;

    for (std::size_t n = 0; n < c.frame.size(); ++n) {
      SCOPED_TRACE(n);
      // A heap copy of exactly n bytes, so a sanitizer build catches any over-read.
      const std::vector<std::uint8_t> prefix(c.frame.begin(), c.frame.begin() + n);
      DecodedPacket p;
      DecodeCounters counters;
      const bool ok = DecodeFrame(c.dlt, prefix, 0, kTs, p, counters);
      EXPECT_EQ(ok, n >= headers_end);
      if (!ok) {
        EXPECT_EQ(TotalReasons(counters), 1u);
        EXPECT_EQ(counters.decoded.Read(), 0u);
        continue;
      }
      EXPECT_EQ(TotalReasons(counters), 0u);
      EXPECT_EQ(p.payload.data(), prefix.data() + headers_end);
      EXPECT_EQ(p.payload.size(), n - headers_end);
      EXPECT_EQ(p.payload_length, full.payload_length);
      EXPECT_EQ(p.src, full.src);
      EXPECT_EQ(p.dst, full.dst);
      EXPECT_EQ(p.src_port, full.src_port);
      EXPECT_EQ(p.dst_port, full.dst_port);
      EXPECT_EQ(p.tunnel_depth, full.tunnel_depth);
    }
  }
}

TEST(DecoderTruncation, ReasonsNameTheCutLayer) {
  const Frame tcp4 = Ipv4(kProtoTcp, "10.0.0.1", "10.0.0.2", Tcp(1, 2));
  const auto reason_for = [](int dlt, const Frame& f, std::size_t n) {
    const std::vector<std::uint8_t> prefix(f.begin(), f.begin() + n);
    DecodedPacket p;
    DecodeCounters counters;
    EXPECT_FALSE(DecodeFrame(dlt, prefix, 0, kTs, p, counters));
    for (std::size_t i = 0; i < kDecodeReasonCount; ++i) {
      if (counters.Get(static_cast<DecodeReason>(i)) != 0) {
        return static_cast<DecodeReason>(i);
      }
    }
    return DecodeReason::kCount;
  };
  const Frame eth = Eth(0x0800, tcp4);
  EXPECT_EQ(reason_for(kDltEthernet, eth, 13), DecodeReason::kLinkTruncated);
  EXPECT_EQ(reason_for(kDltEthernet, eth, 14), DecodeReason::kIpv4Truncated);
  EXPECT_EQ(reason_for(kDltEthernet, eth, 14 + 19), DecodeReason::kIpv4Truncated);
  EXPECT_EQ(reason_for(kDltEthernet, eth, 14 + 20), DecodeReason::kTcpTruncated);
  EXPECT_EQ(reason_for(kDltEthernet, Eth(0x8100, Tag(1, 0x0800, tcp4)), 16),
            DecodeReason::kVlanTruncated);
  EXPECT_EQ(reason_for(kDltLinuxSll, Frame(16, 0), 15), DecodeReason::kLinkTruncated);
  EXPECT_EQ(reason_for(kDltLinuxSll2, Frame(20, 0), 19), DecodeReason::kLinkTruncated);
  const Frame ip6 = Ipv6(kProtoUdp, "::1", "::2", Udp(1, 2, {}));
  EXPECT_EQ(reason_for(kDltRaw, ip6, 39), DecodeReason::kIpv6Truncated);
  EXPECT_EQ(reason_for(kDltRaw, ip6, 44), DecodeReason::kUdpTruncated);
  const Frame gre = Ipv4(kProtoGre, "10.0.0.1", "10.0.0.2",
                         Cat({B16(0x3000), B16(0x0800), B32(1), B32(2), tcp4}));
  EXPECT_EQ(reason_for(kDltRaw, gre, 20 + 11), DecodeReason::kGreTruncated);
  const Frame vxlan =
      Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Udp(1, 4789, Vxlan(1, Eth(0x0800, tcp4))));
  EXPECT_EQ(reason_for(kDltRaw, vxlan, 20 + 8 + 10), DecodeReason::kVxlanTruncated);
  const Frame geneve =
      Ipv4(kProtoUdp, "10.0.0.1", "10.0.0.2", Udp(1, 6081, Geneve(0x0800, {}, tcp4)));
  EXPECT_EQ(reason_for(kDltRaw, geneve, 20 + 8 + 7), DecodeReason::kGeneveTruncated);
}

}  // namespace
}  // namespace relaywatch::decode
