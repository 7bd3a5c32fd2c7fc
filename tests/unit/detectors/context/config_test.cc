#include "detectors/context/config.h"

#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "capture/base/config_reader.h"
#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::detectors::context {
namespace {

using ::testing::HasSubstr;
using testing::Ip;
using testing::Must;

absl::StatusOr<ContextConfig> Parse(const std::string& yaml,
                                    const std::string& file = "/etc/relaywatch/relaywatch.yaml") {
  absl::StatusOr<config::Section> root = config::LoadString(yaml, file);
  if (!root.ok()) {
    return root.status();
  }
  return ParseContextConfig(root->Child("context"));
}

std::string ErrorOf(const std::string& yaml) {
  const absl::StatusOr<ContextConfig> c = Parse(yaml);
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

TEST(ContextConfig, AbsentSectionLoadsNothing) {
  const ContextConfig c = Must(Parse("capture: {}\n"));
  EXPECT_TRUE(c.inventory.empty());
  EXPECT_TRUE(c.address_lists.empty());
  EXPECT_TRUE(c.geoip.empty());
  EXPECT_EQ(c.work_hours.work.start_hour, 7);
  EXPECT_EQ(c.work_hours.work.end_hour, 20);
  EXPECT_EQ(c.work_hours.work.days, kWeekdays);
  EXPECT_EQ(c.work_hours.night.start_hour, 0);
  EXPECT_EQ(c.work_hours.night.end_hour, 8);
  const std::shared_ptr<const Context> context = Must(LoadContext(c));
  EXPECT_TRUE(context->inventory.empty());
  EXPECT_TRUE(context->address_lists.lists().empty());
  EXPECT_FALSE(context->LookupGeo(Ip("192.0.2.1")).has_value());
}

TEST(ContextConfig, ReadsEveryKeyAndResolvesRelativePaths) {
  const ContextConfig c = Must(Parse(R"(
context:
  inventory: inventory.csv
  max_inventory_rows: 500
  address_lists:
    - {name: astrill, kind: consumer_vpn, file: lists/astrill.txt}
    - {name: vps, kind: hosting, file: /var/lib/relaywatch/vps.txt}
  max_list_prefixes: 1000
  max_total_list_prefixes: 5000
  geoip: /var/lib/GeoIP/GeoLite2-Country.mmdb
  geoip_asn: GeoLite2-ASN.mmdb
  work_hours:
    start: "08:00"
    end: "18:00"
    days: [mon, tue, wed, thu, fri, sat]
    night_start: "22:00"
    night_end: "06:00"
    min_active_hours: 40
    outside_share: 0.6
    night_share: 0.4
)"));
  EXPECT_EQ(c.inventory, "/etc/relaywatch/inventory.csv");
  EXPECT_EQ(c.inventory_limits.max_rows, 500u);
  ASSERT_EQ(c.address_lists.size(), 2u);
  EXPECT_EQ(c.address_lists[0].name, "astrill");
  EXPECT_EQ(c.address_lists[0].kind, ListKind::kConsumerVpn);
  EXPECT_EQ(c.address_lists[0].file, "/etc/relaywatch/lists/astrill.txt");
  EXPECT_EQ(c.address_lists[1].file, "/var/lib/relaywatch/vps.txt");
  EXPECT_EQ(c.list_limits.max_prefixes_per_list, 1000u);
  EXPECT_EQ(c.list_limits.max_total_prefixes, 5000u);
  EXPECT_EQ(c.geoip, "/var/lib/GeoIP/GeoLite2-Country.mmdb");
  EXPECT_EQ(c.geoip_asn, "/etc/relaywatch/GeoLite2-ASN.mmdb");
  EXPECT_EQ(c.work_hours.work.start_hour, 8);
  EXPECT_EQ(c.work_hours.work.end_hour, 18);
  EXPECT_EQ(c.work_hours.work.days, 0x3f);
  EXPECT_EQ(c.work_hours.night.start_hour, 22);
  EXPECT_EQ(c.work_hours.night.end_hour, 6);
  EXPECT_EQ(c.work_hours.min_active_hours, 40u);
  EXPECT_DOUBLE_EQ(c.work_hours.outside_share, 0.6);
  EXPECT_DOUBLE_EQ(c.work_hours.night_share, 0.4);
}

TEST(ContextConfig, RejectsUnknownKeysAndBadValues) {
  EXPECT_THAT(ErrorOf("context:\n  inventroy: x.csv\n"),
              HasSubstr("relaywatch.yaml:2:3: context.inventroy: unknown key"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    strat: '07:00'\n"),
              HasSubstr("context.work_hours.strat: unknown key"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    start: '07:30'\n"),
              HasSubstr(":3:12: context.work_hours.start: \"07:30\" is not a whole hour"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    start: '09:00'\n    end: '09:00'\n"),
              HasSubstr("the window would be empty"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    days: [mon, funday]\n"),
              HasSubstr("context.work_hours.days: \"funday\" is not a day"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    days: []\n"),
              HasSubstr("at least one working day"));
  EXPECT_THAT(ErrorOf("context:\n  work_hours:\n    night_share: 2\n"),
              HasSubstr("context.work_hours.night_share"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists: vpn.txt\n"),
              HasSubstr("context.address_lists: expected a list"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists:\n    - {name: a, kind: vpn, file: a.txt}\n"),
              HasSubstr("context.address_lists[0].kind: expected one of consumer_vpn, hosting"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists:\n    - {name: A B, kind: other, file: a}\n"),
              HasSubstr("context.address_lists[0].name"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists:\n    - {name: a, kind: other}\n"),
              HasSubstr("context.address_lists[0].file: a list needs a file"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists:\n    - {name: a, kind: other, file: a}\n"
                      "    - {name: a, kind: other, file: b}\n"),
              HasSubstr("context.address_lists[1].name: a list named a is already defined"));
  EXPECT_THAT(ErrorOf("context:\n  address_lists:\n    - {name: a, kind: other, fil: a}\n"),
              HasSubstr("context.address_lists[0].fil: unknown key"));
  EXPECT_THAT(ErrorOf("context:\n  max_inventory_rows: 0\n"),
              HasSubstr("context.max_inventory_rows"));
}

class LoadContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs each case as its own process, in parallel: a directory per process.
    dir_ = ::testing::TempDir() + "/ctx_" + std::to_string(::getpid());
    ::mkdir(dir_.c_str(), 0700);
    std::ofstream(dir_ + "/ctx_inventory.csv")
        << "address,hostname,mac,person,location,timezone\n"
           "192.0.2.10,laptop-1,,Ann,Phoenix,America/Phoenix\n";
    std::ofstream(dir_ + "/ctx_vpn.txt") << "# vpn\n198.51.100.0/24\n";
    std::ofstream(dir_ + "/ctx_bad.txt") << "198.51.100.0/24\nbogus\n";
  }
  void TearDown() override {
    for (const char* name : {"ctx_inventory.csv", "ctx_vpn.txt", "ctx_bad.txt"}) {
      std::remove((dir_ + "/" + name).c_str());
    }
    ::rmdir(dir_.c_str());
  }
  std::string Yaml(const std::string& list_file) const {
    return absl::StrCat("context:\n  inventory: ctx_inventory.csv\n  address_lists:\n",
                        "    - {name: vpn, kind: consumer_vpn, file: ", list_file, "}\n",
                        "  geoip: ", RELAYWATCH_TEST_MMDB_DIR, "/context_test.mmdb\n",
                        "  geoip_asn: ", RELAYWATCH_TEST_MMDB_DIR, "/context_test_v4.mmdb\n");
  }
  std::string dir_;
};

TEST_F(LoadContextTest, LoadsEveryFile) {
  const ContextConfig c = Must(Parse(Yaml("ctx_vpn.txt"), dir_ + "/relaywatch.yaml"));
  const std::shared_ptr<const Context> context = Must(LoadContext(c));
  ASSERT_NE(context->inventory.FindByAddress(Ip("192.0.2.10")), nullptr);
  EXPECT_EQ(context->inventory.FindByAddress(Ip("192.0.2.10"))->person, "Ann");
  EXPECT_EQ(context->address_lists.MatchMask(Ip("198.51.100.5")), 1u);
  const std::optional<GeoIpRecord> geo = context->LookupGeo(Ip("192.0.2.10"));
  ASSERT_TRUE(geo.has_value());
  EXPECT_EQ(geo->country, "US");
  EXPECT_EQ(geo->asn, 64496u);
  // Only the IPv6 database knows 2001:db8::/32; the ASN one is IPv4-only.
  const std::optional<GeoIpRecord> v6 = context->LookupGeo(Ip("2001:db8::1"));
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->country, "DE");
}

TEST_F(LoadContextTest, ErrorsNameTheKeyAndTheFileLine) {
  const ContextConfig c = Must(Parse(Yaml("ctx_bad.txt"), dir_ + "/relaywatch.yaml"));
  const absl::Status status = LoadContext(c).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("context.address_lists.vpn: ", dir_, "/ctx_bad.txt:2: ")));
  const ContextConfig missing = Must(Parse(Yaml("nope.txt"), dir_ + "/relaywatch.yaml"));
  EXPECT_EQ(LoadContext(missing).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace relaywatch::detectors::context
