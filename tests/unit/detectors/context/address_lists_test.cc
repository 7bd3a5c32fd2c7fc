#include "detectors/context/address_lists.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::detectors::context {
namespace {

using ::testing::HasSubstr;
using testing::Ip;
using testing::Must;

std::string ErrorOf(absl::string_view text, AddressListLimits limits = {}) {
  const absl::StatusOr<std::vector<Prefix>> parsed = ParseAddressList(text, "vpn.txt", limits);
  EXPECT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(ParseAddressList, ReadsPrefixesCommentsAndBlankLines) {
  const std::vector<Prefix> prefixes =
      Must(ParseAddressList("# Example VPN exits\n"
                            "\n"
                            "192.0.2.0/24\n"
                            "  198.51.100.7   # one exit, with a comment\r\n"
                            "\t2001:db8:100::/40\t\n"
                            "   # indented comment\n"
                            "203.0.113.0/25",
                            "vpn.txt"));
  ASSERT_EQ(prefixes.size(), 4u);
  EXPECT_EQ(prefixes[0].ToString(), "192.0.2.0/24");
  EXPECT_EQ(prefixes[1].ToString(), "198.51.100.7/32");
  EXPECT_EQ(prefixes[2].ToString(), "2001:db8:100::/40");
  EXPECT_EQ(prefixes[3].ToString(), "203.0.113.0/25");
}

TEST(ParseAddressList, EmptyAndCommentOnlyFilesAreEmptyLists) {
  EXPECT_TRUE(Must(ParseAddressList("", "vpn.txt")).empty());
  EXPECT_TRUE(Must(ParseAddressList("# nothing yet\n\n", "vpn.txt")).empty());
}

TEST(ParseAddressList, ErrorsNameFileAndLine) {
  EXPECT_THAT(ErrorOf("192.0.2.0/24\n\n192.0.2.300/32\n"),
              HasSubstr("vpn.txt:3: not an IP address or CIDR prefix: \"192.0.2.300/32\""));
  EXPECT_THAT(ErrorOf("192.0.2.5/24\n"), HasSubstr("vpn.txt:1: host bits set"));
  EXPECT_THAT(ErrorOf("# x\n192.0.2.1 - 192.0.2.9\n"), HasSubstr("vpn.txt:2:"));
  EXPECT_THAT(ErrorOf("192.0.2.1 192.0.2.2\n"), HasSubstr("one prefix per line"));
  EXPECT_THAT(ErrorOf("192.0.2.1; 2\n"), HasSubstr("vpn.txt:1:"));
  EXPECT_THAT(ErrorOf(std::string("192.0.2.1\0x\n", 12)), HasSubstr("vpn.txt:1:"));
}

TEST(ParseAddressList, EnforcesLimits) {
  AddressListLimits limits;
  limits.max_prefixes_per_list = 2;
  limits.max_line_bytes = 32;
  EXPECT_THAT(ErrorOf("10.0.0.1\n10.0.0.2\n# c\n10.0.0.3\n", limits),
              HasSubstr("vpn.txt:4: more than 2 prefixes"));
  EXPECT_THAT(ErrorOf(absl::StrCat("10.0.0.1 #", std::string(40, 'x'), "\n"), limits),
              HasSubstr("vpn.txt:1: line longer than 32 bytes"));
}

TEST(AddressLists, LooksUpAcrossListsWithTheMostSpecificPrefix) {
  AddressLists lists;
  ASSERT_TRUE(lists
                  .Add("astrill", ListKind::kConsumerVpn,
                       "192.0.2.0/24\n192.0.2.128/26\n2001:db8:a::/48\n", "astrill.txt")
                  .ok());
  ASSERT_TRUE(
      lists.Add("vps", ListKind::kHosting, "192.0.0.0/16\n198.51.100.0/24\n", "vps.txt").ok());
  ASSERT_TRUE(lists.Add("tor", ListKind::kTorExit, "192.0.2.130\n", "tor.txt").ok());
  ASSERT_EQ(lists.lists().size(), 3u);
  EXPECT_EQ(lists.list(0).prefixes, 3u);
  EXPECT_EQ(lists.list(1).kind, ListKind::kHosting);
  EXPECT_EQ(lists.total_prefixes(), 6u);

  EXPECT_EQ(lists.MatchMask(Ip("192.0.2.130")), 0b111u);
  EXPECT_EQ(lists.MatchMask(Ip("192.0.2.1")), 0b011u);
  EXPECT_EQ(lists.MatchMask(Ip("192.0.3.1")), 0b010u);
  EXPECT_EQ(lists.MatchMask(Ip("203.0.113.1")), 0u);
  EXPECT_EQ(lists.MatchMask(Ip("2001:db8:a:1::1")), 0b001u);
  EXPECT_EQ(lists.MatchMask(Ip("::ffff:198.51.100.9")), 0b010u);

  const auto matches = lists.Lookup(Ip("192.0.2.130"));
  ASSERT_EQ(matches.size(), 3u);
  EXPECT_EQ(matches[0].list, 0u);
  EXPECT_EQ(matches[0].prefix.ToString(), "192.0.2.128/26");
  EXPECT_EQ(matches[1].list, 1u);
  EXPECT_EQ(matches[1].prefix.ToString(), "192.0.0.0/16");
  EXPECT_EQ(matches[2].list, 2u);
  EXPECT_EQ(matches[2].prefix.ToString(), "192.0.2.130/32");
  EXPECT_TRUE(lists.Lookup(Ip("203.0.113.1")).empty());
  EXPECT_EQ(lists.FindList("vps"), 1u);
  EXPECT_FALSE(lists.FindList("nope").has_value());
}

TEST(AddressLists, CountsDuplicatesOnce) {
  AddressLists lists;
  ASSERT_TRUE(lists.Add("a", ListKind::kOther, "10.0.0.0/8\n10.0.0.0/8\n", "a.txt").ok());
  ASSERT_TRUE(lists.Add("b", ListKind::kOther, "10.0.0.0/8\n", "b.txt").ok());
  EXPECT_EQ(lists.list(0).prefixes, 1u);
  EXPECT_EQ(lists.total_prefixes(), 2u);
  EXPECT_EQ(lists.MatchMask(Ip("10.9.9.9")), 0b11u);
}

TEST(AddressLists, RejectsBadNamesDuplicatesAndLeavesNothingBehindOnError) {
  AddressLists lists;
  EXPECT_THAT(std::string(lists.Add("Bad Name", ListKind::kOther, "", "x.txt").message()),
              HasSubstr("x.txt: list name \"Bad Name\""));
  ASSERT_TRUE(lists.Add("vpn", ListKind::kConsumerVpn, "10.0.0.0/8\n", "a.txt").ok());
  EXPECT_THAT(std::string(lists.Add("vpn", ListKind::kOther, "", "b.txt").message()),
              HasSubstr("already loaded"));
  EXPECT_FALSE(lists.Add("bad", ListKind::kOther, "172.16.0.0/12\nnonsense\n", "c.txt").ok());
  EXPECT_EQ(lists.lists().size(), 1u);
  EXPECT_EQ(lists.MatchMask(Ip("172.16.0.1")), 0u);
}

TEST(AddressLists, EnforcesTotalAndListCountLimits) {
  AddressListLimits limits;
  limits.max_total_prefixes = 3;
  AddressLists lists(limits);
  ASSERT_TRUE(lists.Add("a", ListKind::kOther, "10.0.0.1\n10.0.0.2\n", "a.txt").ok());
  EXPECT_THAT(
      std::string(lists.Add("b", ListKind::kOther, "10.0.0.3\n10.0.0.4\n", "b.txt").message()),
      HasSubstr("b.txt: 2 prefixes would take all lists past the limit of 3"));

  AddressLists many;
  for (std::size_t i = 0; i < AddressLists::kMaxLists; ++i) {
    ASSERT_TRUE(many.Add(absl::StrCat("l", i), ListKind::kOther, "", "x").ok());
  }
  EXPECT_THAT(std::string(many.Add("one_more", ListKind::kOther, "", "x").message()),
              HasSubstr("more than 64 address lists"));
}

TEST(AddressLists, LastOfSixtyFourListsUsesTheTopBit) {
  AddressLists lists;
  for (std::size_t i = 0; i < AddressLists::kMaxLists; ++i) {
    ASSERT_TRUE(
        lists.Add(absl::StrCat("l", i), ListKind::kOther, i == 63 ? "192.0.2.0/24\n" : "", "x")
            .ok());
  }
  EXPECT_EQ(lists.MatchMask(Ip("192.0.2.1")), std::uint64_t{1} << 63);
  ASSERT_EQ(lists.Lookup(Ip("192.0.2.1")).size(), 1u);
  EXPECT_EQ(lists.Lookup(Ip("192.0.2.1"))[0].list, 63u);
}

TEST(AddressLists, AddFileReadsFiles) {
  AddressLists lists;
  EXPECT_EQ(lists.AddFile("x", ListKind::kOther, "/nonexistent/list.txt").code(),
            absl::StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/address_lists_test.txt";
  std::ofstream(path) << "# test\n198.51.100.0/24\n";
  ASSERT_TRUE(lists.AddFile("x", ListKind::kProxy, path).ok());
  EXPECT_EQ(lists.list(0).source, path);
  EXPECT_EQ(lists.MatchMask(Ip("198.51.100.200")), 1u);
  std::remove(path.c_str());
}

TEST(AddressLists, TheShippedExampleIsAValidEmptyList) {
  AddressLists lists;
  ASSERT_TRUE(
      lists
          .AddFile("consumer_vpn", ListKind::kConsumerVpn,
                   std::string(RELAYWATCH_SOURCE_DIR) + "/conf/lists/consumer_vpn.example.txt")
          .ok());
  EXPECT_EQ(lists.list(0).prefixes, 0u);
}

TEST(ListKind, NamesRoundTrip) {
  for (const ListKind kind : {ListKind::kConsumerVpn, ListKind::kHosting, ListKind::kTorExit,
                              ListKind::kProxy, ListKind::kCorporate, ListKind::kOther}) {
    EXPECT_EQ(ParseListKind(ListKindName(kind)), kind);
  }
  EXPECT_EQ(ListKindName(ListKind::kConsumerVpn), "consumer_vpn");
  EXPECT_FALSE(ParseListKind("vpn").has_value());
}

}  // namespace
}  // namespace relaywatch::detectors::context
