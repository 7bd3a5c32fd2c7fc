#include "detectors/context/inventory.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::detectors::context {
namespace {

using ::testing::HasSubstr;
using testing::Ip;
using testing::Must;

constexpr char kHeader[] = "address,hostname,mac,person,location,timezone\n";

std::string ErrorOf(absl::string_view rows, absl::string_view header = kHeader) {
  const absl::StatusOr<Inventory> inventory = ParseInventory(absl::StrCat(header, rows), "inv.csv");
  EXPECT_FALSE(inventory.ok());
  EXPECT_EQ(inventory.status().code(), absl::StatusCode::kInvalidArgument) << inventory.status();
  return std::string(inventory.status().message());
}

TEST(Inventory, LooksUpByAddressMacAndHostname) {
  const Inventory inventory = Must(ParseInventory(
      absl::StrCat(kHeader,
                   "192.0.2.10,LAPTOP-017.corp.example.,AA:BB:CC:00:00:17,\"Doe, Jane\",Phoenix "
                   "office,America/Phoenix\n"
                   "192.0.2.0/24,,,,Phoenix office,America/Phoenix\n"
                   "2001:db8:10::/48,,,,Berlin,Europe/Berlin\n"
                   ",build-42,aa-bb-cc-00-00-42,,,\n"),
      "inv.csv"));
  ASSERT_EQ(inventory.size(), 4u);
  EXPECT_EQ(inventory.source(), "inv.csv");

  const Asset* laptop = inventory.FindByAddress(Ip("192.0.2.10"));
  ASSERT_NE(laptop, nullptr);
  EXPECT_EQ(laptop->hostname, "laptop-017.corp.example");
  EXPECT_EQ(laptop->person, "Doe, Jane");
  EXPECT_EQ(laptop->location, "Phoenix office");
  EXPECT_EQ(laptop->timezone_name, "America/Phoenix");
  ASSERT_TRUE(laptop->timezone.has_value());
  EXPECT_EQ(laptop->line, 2);
  ASSERT_TRUE(laptop->mac.has_value());
  EXPECT_EQ(laptop->mac->ToString(), "aa:bb:cc:00:00:17");

  // Longest prefix: another address of the /24 gets the subnet row.
  const Asset* subnet = inventory.FindByAddress(Ip("192.0.2.11"));
  ASSERT_NE(subnet, nullptr);
  EXPECT_EQ(subnet->line, 3);
  EXPECT_EQ(inventory.FindByAddress(Ip("::ffff:192.0.2.10")), laptop);
  EXPECT_EQ(inventory.FindByAddress(Ip("198.51.100.1")), nullptr);
  ASSERT_NE(inventory.FindByAddress(Ip("2001:db8:10:5::1")), nullptr);
  EXPECT_EQ(inventory.FindByAddress(Ip("2001:db8:10:5::1"))->timezone_name, "Europe/Berlin");

  EXPECT_EQ(inventory.FindByMac(Must(MacAddress::Parse("aa:bb:cc:00:00:17"))), laptop);
  const std::uint8_t raw[6] = {0xaa, 0xbb, 0xcc, 0x00, 0x00, 0x42};
  const Asset* build = inventory.FindByMac(MacAddress::FromBytes(raw));
  ASSERT_NE(build, nullptr);
  EXPECT_EQ(build->hostname, "build-42");
  EXPECT_FALSE(build->address.has_value());
  EXPECT_FALSE(build->timezone.has_value());

  EXPECT_EQ(inventory.FindByHostname("Laptop-017.CORP.example"), laptop);
  EXPECT_EQ(inventory.FindByHostname("laptop-017.corp.example."), laptop);
  EXPECT_EQ(inventory.FindByHostname("laptop-018.corp.example"), nullptr);
}

TEST(Inventory, TimeZoneIsUsable) {
  const Inventory inventory =
      Must(ParseInventory(absl::StrCat(kHeader, "192.0.2.10,,,,,America/Phoenix\n"), "i"));
  const absl::TimeZone zone = *inventory.assets()[0].timezone;
  // Phoenix keeps UTC-7 all year.
  EXPECT_EQ(absl::ToCivilHour(absl::FromUnixSeconds(1719835200), zone),  // 2024-07-01 12:00Z
            absl::CivilHour(2024, 7, 1, 5));
}

TEST(Inventory, AcceptsColumnsInAnyOrderAndTrimsBlanks) {
  const Inventory inventory =
      Must(ParseInventory("Timezone, MAC ,person,location,hostname,address\r\n"
                          "UTC , , Ann , , ws-1 , 198.51.100.4\r\n",
                          "inv.csv"));
  ASSERT_EQ(inventory.size(), 1u);
  EXPECT_EQ(inventory.assets()[0].person, "Ann");
  EXPECT_EQ(inventory.assets()[0].timezone_name, "UTC");
  EXPECT_NE(inventory.FindByHostname("ws-1"), nullptr);
  EXPECT_NE(inventory.FindByAddress(Ip("198.51.100.4")), nullptr);
}

TEST(Inventory, AcceptsUtf8Names) {
  const Inventory inventory = Must(ParseInventory(
      absl::StrCat(kHeader, "10.0.0.1,,,José Müller,Zürich,Europe/Zurich\n"), "inv.csv"));
  EXPECT_EQ(inventory.assets()[0].person, "José Müller");
}

TEST(Inventory, HeaderErrors) {
  EXPECT_THAT(ErrorOf("", ""), HasSubstr("inv.csv:1: empty file"));
  EXPECT_THAT(ErrorOf("", "address,hostname,mac,person,location\n"),
              HasSubstr("inv.csv:1: the header lacks column timezone"));
  EXPECT_THAT(ErrorOf("", "address,hostname,mac,person,location,timezone,owner\n"),
              HasSubstr("inv.csv:1: column 7: unknown column \"owner\""));
  EXPECT_THAT(ErrorOf("", "address,hostname,mac,person,location,timezone,mac\n"),
              HasSubstr("inv.csv:1: column mac: named twice"));
  // A data row where the header should be.
  EXPECT_THAT(ErrorOf("", "192.0.2.1,a,,,,UTC\n"), HasSubstr("unknown column \"192.0.2.1\""));
}

TEST(Inventory, RowErrorsNameFileLineAndColumn) {
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,,,UTC\n192.0.2.300,b,,,,UTC\n"),
              HasSubstr("inv.csv:3: column address: not an IP address or CIDR prefix"));
  EXPECT_THAT(ErrorOf("192.0.2.1/24,a,,,,UTC\n"),
              HasSubstr("inv.csv:2: column address: host bits set"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,aa:bb:cc:dd:ee,,,UTC\n"),
              HasSubstr("inv.csv:2: column mac: \"aa:bb:cc:dd:ee\" is not a MAC address"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,aa:bb-cc:dd:ee:ff,,,UTC\n"), HasSubstr("column mac"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a b,,,,UTC\n"), HasSubstr("inv.csv:2: column hostname:"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a..b,,,,UTC\n"), HasSubstr("column hostname"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,,,Mars/Olympus_Mons\n"),
              HasSubstr("inv.csv:2: column timezone: unknown time zone \"Mars/Olympus_Mons\""));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,,,EST5EDT,4\n"),
              HasSubstr("inv.csv:2: 7 fields, but the header has 6"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,\"Ann\nB\",,UTC\n"),
              HasSubstr("inv.csv:2: column person: control character"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,\xff,,UTC\n"),
              HasSubstr("inv.csv:2: column person: not valid UTF-8"));
  EXPECT_THAT(ErrorOf(",,,Ann,Phoenix,UTC\n"), HasSubstr("inv.csv:2: the row names no host"));
}

TEST(Inventory, RejectsDuplicatesNamingTheFirstLine) {
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,,,\n192.0.2.1/32,b,,,,\n"),
              HasSubstr("inv.csv:3: column address: 192.0.2.1/32 is already on line 2"));
  EXPECT_THAT(ErrorOf("192.0.2.1,a,,,,\n192.0.2.2,A.,,,,\n"),
              HasSubstr("inv.csv:3: column hostname: a is already on line 2"));
  EXPECT_THAT(ErrorOf("192.0.2.1,,aa:bb:cc:dd:ee:ff,,,\n192.0.2.2,,AA-BB-CC-DD-EE-FF,,,\n"),
              HasSubstr("inv.csv:3: column mac: aa:bb:cc:dd:ee:ff is already on line 2"));
}

TEST(Inventory, RefusesMoreRowsThanTheLimit) {
  InventoryLimits limits;
  limits.max_rows = 2;
  const std::string text = absl::StrCat(kHeader, "10.0.0.1,,,,,\n10.0.0.2,,,,,\n\n10.0.0.3,,,,,\n");
  const absl::Status status = ParseInventory(text, "inv.csv", limits).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("inv.csv:5: more than 2 rows"));
  limits.max_rows = 3;
  EXPECT_TRUE(ParseInventory(text, "inv.csv", limits).ok());
}

TEST(Inventory, RefusesLongFields) {
  InventoryLimits limits;
  limits.max_field_bytes = 8;
  const absl::Status status =
      ParseInventory(absl::StrCat(kHeader, "10.0.0.1,,,Maximilian,,\n"), "inv.csv", limits)
          .status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("inv.csv:2: field 4 is longer than 8"));
}

TEST(LoadIanaTimeZone, LoadsTzdataNames) {
  EXPECT_TRUE(LoadIanaTimeZone("America/Phoenix").ok());
  EXPECT_TRUE(LoadIanaTimeZone("America/Argentina/Buenos_Aires").ok());
  EXPECT_TRUE(LoadIanaTimeZone("Etc/GMT-8").ok());
  EXPECT_TRUE(LoadIanaTimeZone("UTC").ok());
  EXPECT_EQ(LoadIanaTimeZone("America/Nowhere").status().code(), absl::StatusCode::kNotFound);
}

TEST(LoadIanaTimeZone, RefusesPathsAndNonNames) {
  for (const char* bad :
       {"/etc/passwd", "file:/dev/zero", "../../../etc/passwd", "America/", "localtime",
        "America//Phoenix", "", "EST5EDT,M3.2.0,M11.1.0", "America/Phoenix\n", "-America"}) {
    const absl::Status status = LoadIanaTimeZone(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << status;
  }
  // A directory of tzdata is not a zone.
  EXPECT_EQ(LoadIanaTimeZone("America").status().code(), absl::StatusCode::kNotFound);
}

TEST(LoadInventory, ReadsFilesAndReportsMissingOnes) {
  EXPECT_EQ(LoadInventory("/nonexistent/inventory.csv").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadInventory("/dev/null").status().code(), absl::StatusCode::kInvalidArgument);
  const std::string path = ::testing::TempDir() + "/inventory_test.csv";
  std::ofstream(path) << kHeader << "192.0.2.7,,,,,\n";
  EXPECT_EQ(Must(LoadInventory(path)).size(), 1u);
  InventoryLimits limits;
  limits.max_file_bytes = 10;
  EXPECT_THAT(std::string(LoadInventory(path, limits).status().message()),
              HasSubstr("more than the limit of 10"));
  std::remove(path.c_str());
}

TEST(LoadInventory, TheShippedExampleLoads) {
  const Inventory inventory =
      Must(LoadInventory(std::string(RELAYWATCH_SOURCE_DIR) + "/conf/inventory.example.csv"));
  EXPECT_GE(inventory.size(), 5u);
  for (const Asset& asset : inventory.assets()) {
    EXPECT_TRUE(asset.timezone.has_value()) << "line " << asset.line;
  }
}

TEST(MacAddress, ParsesAndPrints) {
  EXPECT_EQ(Must(MacAddress::Parse("AA:bb:0C:dd:ee:ff")).ToString(), "aa:bb:0c:dd:ee:ff");
  EXPECT_EQ(Must(MacAddress::Parse("00-11-22-33-44-55")).ToString(), "00:11:22:33:44:55");
  for (const char* bad : {"", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aabb.ccdd.eeff",
                          "gg:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:f", "aa:bb:cc:dd:ee:fff"}) {
    EXPECT_FALSE(MacAddress::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace relaywatch::detectors::context
