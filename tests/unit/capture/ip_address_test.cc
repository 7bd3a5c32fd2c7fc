#include "capture/base/ip_address.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relaywatch {
namespace {

using ::testing::HasSubstr;

IpAddress Ip(const std::string& text) {
  absl::StatusOr<IpAddress> a = IpAddress::Parse(text);
  EXPECT_TRUE(a.ok()) << text << ": " << a.status();
  return a.ok() ? *a : IpAddress();
}

Cidr Prefix(const std::string& text) {
  absl::StatusOr<Cidr> c = Cidr::Parse(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status();
  return *c;
}

TEST(IpAddress, ParsesDottedQuad) {
  const IpAddress a = Ip("192.168.1.10");
  EXPECT_TRUE(a.is_v4());
  EXPECT_FALSE(a.is_v6());
  EXPECT_EQ(a.family(), 4);
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a.data()[0], 192);
  EXPECT_EQ(a.data()[1], 168);
  EXPECT_EQ(a.data()[2], 1);
  EXPECT_EQ(a.data()[3], 10);
  EXPECT_EQ(a.ToString(), "192.168.1.10");
}

TEST(IpAddress, ParsesIpv6InNetworkOrder) {
  const IpAddress a = Ip("2001:db8::1");
  EXPECT_TRUE(a.is_v6());
  EXPECT_EQ(a.size(), 16u);
  const std::uint8_t expected[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(a.data()[i], expected[i]) << i;
  }
  EXPECT_EQ(a, IpAddress::FromV6(expected));
}

TEST(IpAddress, FormatsIpv6AsRfc5952) {
  // Lower case, leading zeros dropped, the longest run of zero groups compressed.
  EXPECT_EQ(Ip("2001:0DB8:0000:0000:0000:0000:0000:0001").ToString(), "2001:db8::1");
  EXPECT_EQ(Ip("2001:db8:0:0:1:0:0:0").ToString(), "2001:db8:0:0:1::");
  // Equal runs: the first one is compressed.
  EXPECT_EQ(Ip("2001:db8:0:0:1:0:0:1").ToString(), "2001:db8::1:0:0:1");
  // A single zero group is not compressed.
  EXPECT_EQ(Ip("2001:db8:0:1:1:1:1:1").ToString(), "2001:db8:0:1:1:1:1:1");
  EXPECT_EQ(Ip("0:0:0:0:0:0:0:0").ToString(), "::");
  EXPECT_EQ(Ip("::1").ToString(), "::1");
  EXPECT_EQ(Ip("fe80::").ToString(), "fe80::");
  EXPECT_EQ(Ip("::ffff:192.0.2.1").ToString(), "::ffff:192.0.2.1");
}

TEST(IpAddress, FromBytesRoundTrips) {
  const std::uint8_t v4[4] = {10, 0, 0, 255};
  EXPECT_EQ(IpAddress::FromV4(v4).ToString(), "10.0.0.255");
  EXPECT_EQ(IpAddress::FromV4(v4), Ip("10.0.0.255"));
  EXPECT_EQ(IpAddress().ToString(), "");
  EXPECT_EQ(IpAddress().family(), 0);
}

TEST(IpAddress, RejectsBadText) {
  for (const char* text :
       {"", "1.2.3", "256.1.1.1", "1.2.3.4.5", "1.2.3.-4", "example.com", "2001:db8::1::2",
        "2001:db8:1:2:3:4:5:6:7", "12345::", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4/32", "::g"}) {
    const absl::StatusOr<IpAddress> a = IpAddress::Parse(text);
    EXPECT_FALSE(a.ok()) << "\"" << text << "\" parsed as " << a->ToString();
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(std::string("\"") + text + "\""));
  }
}

// A YAML double-quoted "\0" reaches Parse as an embedded NUL, and inet_pton stops there.
TEST(IpAddress, RejectsEmbeddedNul) {
  const std::string text("10.0.0.1\0junk", 13);
  EXPECT_FALSE(IpAddress::Parse(text).ok());
  EXPECT_FALSE(Cidr::Parse(std::string("10.0.0.0\0/8", 11)).ok());
}

// absl::SimpleAtoi skips blanks and accepts a sign; a prefix length is digits only.
TEST(Cidr, RejectsSignedOrPaddedPrefixLength) {
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/+8").ok());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/ 8").ok());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/8 ").ok());
}

TEST(IpAddress, OrdersByFamilyThenBytes) {
  EXPECT_LT(Ip("10.0.0.1"), Ip("10.0.0.2"));
  EXPECT_LT(Ip("9.255.255.255"), Ip("10.0.0.0"));
  EXPECT_LT(Ip("255.255.255.255"), Ip("::"));  // every IPv4 address sorts before IPv6
  EXPECT_LT(Ip("2001:db8::1"), Ip("2001:db8::2"));
  EXPECT_NE(Ip("10.0.0.1"), Ip("::ffff:10.0.0.1"));
  EXPECT_EQ(Ip("2001:db8::1"), Ip("2001:DB8:0::1"));
}

TEST(IpAddress, EqualAddressesHashAlike) {
  EXPECT_EQ(absl::Hash<IpAddress>()(Ip("10.1.2.3")), absl::Hash<IpAddress>()(Ip("10.1.2.3")));
  EXPECT_NE(absl::Hash<IpAddress>()(Ip("10.1.2.3")), absl::Hash<IpAddress>()(Ip("10.1.2.4")));
}

TEST(Cidr, ContainsByteAlignedPrefix) {
  const Cidr net = Prefix("10.0.0.0/8");
  EXPECT_TRUE(net.Contains(Ip("10.0.0.0")));
  EXPECT_TRUE(net.Contains(Ip("10.255.255.255")));
  EXPECT_FALSE(net.Contains(Ip("11.0.0.0")));
  EXPECT_FALSE(net.Contains(Ip("9.255.255.255")));
  EXPECT_EQ(net.ToString(), "10.0.0.0/8");
}

TEST(Cidr, ContainsNonByteAlignedIpv4Prefix) {
  const Cidr net = Prefix("172.16.0.0/12");
  EXPECT_TRUE(net.Contains(Ip("172.16.0.1")));
  EXPECT_TRUE(net.Contains(Ip("172.31.255.255")));
  EXPECT_FALSE(net.Contains(Ip("172.32.0.0")));
  EXPECT_FALSE(net.Contains(Ip("172.15.255.255")));

  const Cidr half = Prefix("192.168.1.128/25");
  EXPECT_TRUE(half.Contains(Ip("192.168.1.128")));
  EXPECT_TRUE(half.Contains(Ip("192.168.1.255")));
  EXPECT_FALSE(half.Contains(Ip("192.168.1.127")));
  EXPECT_FALSE(half.Contains(Ip("192.168.2.200")));

  const Cidr odd = Prefix("100.64.0.0/10");
  EXPECT_TRUE(odd.Contains(Ip("100.127.255.255")));
  EXPECT_FALSE(odd.Contains(Ip("100.128.0.0")));
  EXPECT_FALSE(odd.Contains(Ip("100.63.255.255")));

  const Cidr pair = Prefix("10.0.0.2/31");
  EXPECT_TRUE(pair.Contains(Ip("10.0.0.3")));
  EXPECT_FALSE(pair.Contains(Ip("10.0.0.4")));
  EXPECT_FALSE(pair.Contains(Ip("10.0.0.1")));
}

TEST(Cidr, ContainsNonByteAlignedIpv6Prefix) {
  const Cidr ula = Prefix("fc00::/7");
  EXPECT_TRUE(ula.Contains(Ip("fc00::")));
  EXPECT_TRUE(ula.Contains(Ip("fd12:3456::1")));
  EXPECT_FALSE(ula.Contains(Ip("fe80::1")));
  EXPECT_FALSE(ula.Contains(Ip("fb00::1")));
  EXPECT_EQ(ula.ToString(), "fc00::/7");

  const Cidr doc = Prefix("2001:db8::/33");
  EXPECT_TRUE(doc.Contains(Ip("2001:db8:7fff:ffff::1")));
  EXPECT_FALSE(doc.Contains(Ip("2001:db8:8000::")));

  const Cidr host_pair = Prefix("2001:db8::2/127");
  EXPECT_TRUE(host_pair.Contains(Ip("2001:db8::3")));
  EXPECT_FALSE(host_pair.Contains(Ip("2001:db8::4")));
}

TEST(Cidr, HostPrefixAndZeroPrefix) {
  const Cidr host = Prefix("10.1.2.3");
  EXPECT_EQ(host.ToString(), "10.1.2.3/32");
  EXPECT_TRUE(host.Contains(Ip("10.1.2.3")));
  EXPECT_FALSE(host.Contains(Ip("10.1.2.2")));
  EXPECT_EQ(Prefix("::1").ToString(), "::1/128");
  EXPECT_FALSE(Prefix("::1/128").Contains(Ip("::2")));

  const Cidr any4 = Prefix("0.0.0.0/0");
  EXPECT_TRUE(any4.Contains(Ip("8.8.8.8")));
  EXPECT_TRUE(any4.Contains(Ip("255.255.255.255")));
  EXPECT_FALSE(any4.Contains(Ip("::1")));  // families never match each other
  EXPECT_TRUE(Prefix("::/0").Contains(Ip("2001:db8::1")));
  EXPECT_FALSE(Prefix("::/0").Contains(Ip("1.2.3.4")));
}

TEST(Cidr, FamilyMismatchIsNotContained) {
  EXPECT_FALSE(Prefix("10.0.0.0/8").Contains(Ip("::ffff:10.0.0.1")));
  EXPECT_FALSE(Prefix("::ffff:0:0/96").Contains(Ip("10.0.0.1")));
  EXPECT_FALSE(Prefix("10.0.0.0/8").Contains(IpAddress()));
}

TEST(Cidr, AnyContainsOverAList) {
  const std::vector<Cidr> nets = {Prefix("10.0.0.0/8"), Prefix("2001:db8::/32")};
  EXPECT_TRUE(AnyContains(nets, Ip("10.9.8.7")));
  EXPECT_TRUE(AnyContains(nets, Ip("2001:db8::1")));
  EXPECT_FALSE(AnyContains(nets, Ip("192.0.2.1")));
  EXPECT_FALSE(AnyContains({}, Ip("10.9.8.7")));
}

TEST(Cidr, RejectsBadText) {
  for (const char* text : {"", "/8", "10.0.0/8", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/",
                           "10.0.0.0/x", "10.0.0.0/8/9", "::/129", "fc00::/7x", "host/8"}) {
    const absl::StatusOr<Cidr> c = Cidr::Parse(text);
    EXPECT_FALSE(c.ok()) << "\"" << text << "\" parsed as " << c->ToString();
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(text)) << text;
  }
  // The accepted range depends on the family.
  EXPECT_TRUE(Cidr::Parse("::/128").ok());
  EXPECT_TRUE(Cidr::Parse("10.0.0.0/32").ok());
  EXPECT_TRUE(Cidr::Parse("10.0.0.0/0").ok());
}

}  // namespace
}  // namespace relaywatch
