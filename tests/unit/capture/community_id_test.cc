#include "capture/flow/community_id.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace relaywatch::flow {
namespace {

IpAddress Ip(const std::string& text) {
  return *IpAddress::Parse(text);
}

struct Vector {
  std::uint8_t protocol;
  const char* src;
  const char* dst;
  std::uint16_t src_port;
  std::uint16_t dst_port;
  std::uint16_t seed;
  const char* expected;
};

// corelight/community-id-spec baseline vectors, as listed in ecosystem.md section 5.3.
constexpr Vector kSpecVectors[] = {
    {6, "1.2.3.4", "5.6.7.8", 1122, 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
    {6, "5.6.7.8", "1.2.3.4", 3344, 1122, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
    {17, "1.2.3.4", "5.6.7.8", 1122, 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="},
    {132, "1.2.3.4", "5.6.7.8", 1122, 3344, 0, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="},
    {1, "1.2.3.4", "5.6.7.8", 8, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="},
    {46, "1.2.3.4", "5.6.7.8", 0, 0, 0, "1:ikv3kmf89luf73WPz1jOs49S768="},
    {6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, 0,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
    {6, "128.232.110.120", "66.35.250.204", 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
    {6, "1.2.3.4", "5.6.7.8", 1122, 3344, 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="},
};

TEST(CommunityId, MatchesSpecVectors) {
  for (const Vector& v : kSpecVectors) {
    EXPECT_EQ(CommunityId(v.seed, Ip(v.src), Ip(v.dst), v.protocol, v.src_port, v.dst_port),
              v.expected)
        << "proto " << int{v.protocol} << " " << v.src << ":" << v.src_port << " -> " << v.dst
        << ":" << v.dst_port << " seed " << v.seed;
  }
}

TEST(CommunityId, SameForBothDirections) {
  for (const Vector& v : kSpecVectors) {
    if (v.protocol == 1) {
      continue;  // ICMP "ports" are type/code, not a swappable pair
    }
    EXPECT_EQ(CommunityId(v.seed, Ip(v.dst), Ip(v.src), v.protocol, v.dst_port, v.src_port),
              v.expected)
        << v.src << " <- " << v.dst;
  }
}

TEST(CommunityId, IcmpEchoReplyMatchesRequest) {
  // The reply (type 0) maps to counterpart 8, so both halves of a ping share one ID.
  const std::string request = CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 1, 8, 0);
  EXPECT_EQ(request, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=");
  EXPECT_EQ(CommunityId(0, Ip("5.6.7.8"), Ip("1.2.3.4"), 1, 0, 0), request);
  // ICMPv6 echo request 128 / reply 129.
  EXPECT_EQ(CommunityId(0, Ip("2001:db8::1"), Ip("2001:db8::2"), 58, 128, 0),
            CommunityId(0, Ip("2001:db8::2"), Ip("2001:db8::1"), 58, 129, 0));
}

TEST(CommunityId, OneWayIcmpKeepsDirection) {
  // Destination unreachable (type 3) has no counterpart: sport = type, dport = code and no
  // endpoint swap, even though the source address sorts higher. Expected value computed
  // independently from the spec's hash input: 0000 05060708 01020304 01 00 0003 0001.
  EXPECT_EQ(CommunityId(0, Ip("5.6.7.8"), Ip("1.2.3.4"), 1, 3, 1),
            "1:8LPUHMfboj3XbJKoR1RD6x9ML9Y=");
  const std::string forward = CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 1, 3, 1);
  EXPECT_NE(forward, CommunityId(0, Ip("5.6.7.8"), Ip("1.2.3.4"), 1, 3, 1));
  EXPECT_NE(forward, CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 1, 3, 3));
}

TEST(CommunityId, SeedIsHashedAsTwoBigEndianBytes) {
  // Hash input 1234 01020304 05060708 06 00 0462 0d10, computed independently.
  EXPECT_EQ(CommunityId(0x1234, Ip("1.2.3.4"), Ip("5.6.7.8"), 6, 1122, 3344),
            "1:1t6HCaf4euYbqMh97aNcs6CK94E=");
}

TEST(CommunityId, SeedAndProtocolChangeTheId) {
  const std::string base = CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 6, 1122, 3344);
  EXPECT_NE(base, CommunityId(2, Ip("1.2.3.4"), Ip("5.6.7.8"), 6, 1122, 3344));
  EXPECT_NE(base, CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 17, 1122, 3344));
  EXPECT_NE(base, CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 6, 1122, 3345));
  // Protocols without ports ignore whatever ports are passed.
  EXPECT_EQ(CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 46, 0, 0),
            CommunityId(0, Ip("1.2.3.4"), Ip("5.6.7.8"), 46, 7, 9));
}

TEST(CommunityId, SameAddressOrderedByPort) {
  // Equal addresses: the endpoint with the lower port comes first either way round.
  EXPECT_EQ(CommunityId(0, Ip("10.0.0.1"), Ip("10.0.0.1"), 6, 5000, 80),
            CommunityId(0, Ip("10.0.0.1"), Ip("10.0.0.1"), 6, 80, 5000));
}

}  // namespace
}  // namespace relaywatch::flow
