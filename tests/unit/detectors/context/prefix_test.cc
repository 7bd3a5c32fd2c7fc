#include "detectors/context/prefix.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::detectors::context {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Ip;
using testing::Must;

TEST(ParsePrefix, ReadsIpv4AndIpv6PrefixesAndBareAddresses) {
  EXPECT_EQ(Must(ParsePrefix("192.0.2.0/24")).ToString(), "192.0.2.0/24");
  EXPECT_EQ(Must(ParsePrefix("198.51.100.7")).ToString(), "198.51.100.7/32");
  EXPECT_EQ(Must(ParsePrefix("2001:db8::/32")).ToString(), "2001:db8::/32");
  EXPECT_EQ(Must(ParsePrefix("2001:db8::1")).ToString(), "2001:db8::1/128");
  EXPECT_EQ(Must(ParsePrefix("0.0.0.0/0")).ToString(), "0.0.0.0/0");
}

TEST(ParsePrefix, TakesIpv4MappedIpv6AsIpv4) {
  EXPECT_EQ(Must(ParsePrefix("::ffff:192.0.2.1")).ToString(), "192.0.2.1/32");
  EXPECT_EQ(Must(ParsePrefix("::ffff:192.0.2.0/120")).ToString(), "192.0.2.0/24");
  EXPECT_THAT(std::string(ParsePrefix("::ffff:0:0/95").status().message()),
              HasSubstr("IPv4-mapped"));
}

TEST(ParsePrefix, RejectsHostBitsBadLengthsAndJunk) {
  const absl::Status host_bits = ParsePrefix("192.0.2.1/24").status();
  EXPECT_EQ(host_bits.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(host_bits.message()), HasSubstr("192.0.2.0/24"));
  for (const char* bad :
       {"192.0.2.0/33", "192.0.2.0/", "192.0.2.0/+8", "192.0.2.0/ 8", "2001:db8::/129",
        "example.com", "", "/24", "192.0.2.0/24/8", "192.0.2.256"}) {
    EXPECT_FALSE(ParsePrefix(bad).ok()) << bad;
  }
}

TEST(PrefixTable, FindsLongestMatchingPrefix) {
  PrefixTable<int> table;
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("10.0.0.0/8")), 8).second);
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("10.1.0.0/16")), 16).second);
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("10.1.2.3")), 32).second);
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("2001:db8::/32")), 632).second);
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("2001:db8:0:1::/64")), 664).second);
  EXPECT_EQ(table.size(), 5u);

  Prefix matched;
  ASSERT_NE(table.FindLongest(Ip("10.1.2.3"), &matched), nullptr);
  EXPECT_EQ(*table.FindLongest(Ip("10.1.2.3")), 32);
  EXPECT_EQ(*table.FindLongest(Ip("10.1.2.4"), &matched), 16);
  EXPECT_EQ(matched.ToString(), "10.1.0.0/16");
  EXPECT_EQ(*table.FindLongest(Ip("10.200.0.1")), 8);
  EXPECT_EQ(table.FindLongest(Ip("11.0.0.1")), nullptr);
  EXPECT_EQ(*table.FindLongest(Ip("2001:db8:0:1::5")), 664);
  EXPECT_EQ(*table.FindLongest(Ip("2001:db8:ffff::5")), 632);
  EXPECT_EQ(table.FindLongest(Ip("2001:db9::1")), nullptr);
  // IPv4-mapped IPv6 is looked up as IPv4; IPv4 prefixes never match other IPv6.
  EXPECT_EQ(*table.FindLongest(Ip("::ffff:10.1.2.3")), 32);
  EXPECT_EQ(table.FindLongest(Ip("::a01:203")), nullptr);
}

TEST(PrefixTable, KeepsTheFirstValueOfADuplicatePrefix) {
  PrefixTable<int> table;
  EXPECT_TRUE(table.Insert(Must(ParsePrefix("192.0.2.0/24")), 1).second);
  const auto [value, inserted] = table.Insert(Must(ParsePrefix("192.0.2.0/24")), 2);
  EXPECT_FALSE(inserted);
  EXPECT_EQ(*value, 1);
  EXPECT_EQ(table.size(), 1u);
}

TEST(PrefixTable, VisitsEveryMatchLongestFirst) {
  PrefixTable<int> table;
  table.Insert(Must(ParsePrefix("0.0.0.0/0")), 0);
  table.Insert(Must(ParsePrefix("192.0.2.0/24")), 24);
  table.Insert(Must(ParsePrefix("192.0.2.128/25")), 25);
  std::vector<int> seen;
  table.ForEachMatch(Ip("192.0.2.200"), [&](const Prefix&, const int& v) {
    seen.push_back(v);
    return true;
  });
  EXPECT_THAT(seen, ElementsAre(25, 24, 0));
  seen.clear();
  table.ForEachMatch(Ip("192.0.2.200"), [&](const Prefix&, const int& v) {
    seen.push_back(v);
    return false;
  });
  EXPECT_THAT(seen, ElementsAre(25));
}

}  // namespace
}  // namespace relaywatch::detectors::context
