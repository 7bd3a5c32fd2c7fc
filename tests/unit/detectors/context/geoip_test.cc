#include "detectors/context/geoip.h"

#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/detectors/context/test_util.h"

// Databases written by make_test_mmdb.pl (the ctest fixture context_test_mmdb).
#ifndef RELAYWATCH_TEST_MMDB_DIR
#error "RELAYWATCH_TEST_MMDB_DIR must name the directory make_test_mmdb.pl writes to"
#endif

namespace relaywatch::detectors::context {
namespace {

using ::testing::HasSubstr;
using testing::Ip;
using testing::Must;

std::string DbPath(const char* name) {
  return std::string(RELAYWATCH_TEST_MMDB_DIR) + "/" + name;
}

GeoIp OpenTestDb(const char* name = "context_test.mmdb") {
  absl::StatusOr<GeoIp> db = OpenGeoIp(DbPath(name));
  if (!db.ok()) {
    ADD_FAILURE() << db.status()
                  << " (run through ctest, which makes it with make_test_mmdb.pl first)";
  }
  return *std::move(db);
}

TEST(GeoIp, ReadsCountryAndAs) {
  const GeoIp db = OpenTestDb();
  EXPECT_EQ(db.database_type(), "relaywatch-Test-Country-ASN");
  EXPECT_EQ(db.ip_version(), 6);
  EXPECT_EQ(db.build_time(), absl::FromUnixSeconds(1700000000));

  const std::optional<GeoIpRecord> us = db.Lookup(Ip("192.0.2.77"));
  ASSERT_TRUE(us.has_value());
  EXPECT_EQ(us->country, "US");
  EXPECT_EQ(us->asn, 64496u);
  EXPECT_EQ(us->organization, "Example Transit Inc.");
  EXPECT_EQ(us->prefix_length, 24);

  const std::optional<GeoIpRecord> cn = db.Lookup(Ip("198.51.100.1"));
  ASSERT_TRUE(cn.has_value());
  EXPECT_EQ(cn->country, "CN");
  EXPECT_EQ(cn->organization, "Example Cloud \xe4\xba\x91");
  EXPECT_EQ(db.lookup_errors(), 0u);
}

TEST(GeoIp, FallsBackToRegisteredCountryAndToleratesMissingFields) {
  const GeoIp db = OpenTestDb();
  const std::optional<GeoIpRecord> jp = db.Lookup(Ip("203.0.113.5"));
  ASSERT_TRUE(jp.has_value());
  EXPECT_EQ(jp->country, "JP");
  EXPECT_EQ(jp->asn, 0u);
  EXPECT_EQ(jp->organization, "");
  EXPECT_EQ(jp->prefix_length, 25);

  const std::optional<GeoIpRecord> as_only = db.Lookup(Ip("203.0.113.200"));
  ASSERT_TRUE(as_only.has_value());
  EXPECT_EQ(as_only->country, "");
  EXPECT_EQ(as_only->asn, 64499u);
  EXPECT_EQ(db.lookup_errors(), 0u);
}

TEST(GeoIp, DropsValuesUnfitForAlerts) {
  const GeoIp db = OpenTestDb();
  const std::optional<GeoIpRecord> bad = db.Lookup(Ip("10.1.2.3"));
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->country, "");       // "XYZ" is not a two-letter code
  EXPECT_EQ(bad->organization, "");  // holds a line break
  EXPECT_EQ(bad->asn, 64498u);
}

TEST(GeoIp, LooksUpIpv6AndMappedIpv4) {
  const GeoIp db = OpenTestDb();
  const std::optional<GeoIpRecord> de = db.Lookup(Ip("2001:db8:ffff::1"));
  ASSERT_TRUE(de.has_value());
  EXPECT_EQ(de->country, "DE");
  // The tree node's network: the writer split 2001:db8::/32 around the /48 inside it.
  EXPECT_EQ(de->prefix_length, 33);
  const std::optional<GeoIpRecord> nl = db.Lookup(Ip("2001:db8:1::1"));
  ASSERT_TRUE(nl.has_value());
  EXPECT_EQ(nl->country, "NL");
  EXPECT_EQ(nl->prefix_length, 48);
  ASSERT_TRUE(db.Lookup(Ip("::ffff:192.0.2.1")).has_value());
  EXPECT_EQ(db.Lookup(Ip("::ffff:192.0.2.1"))->country, "US");
}

TEST(GeoIp, UnknownAddressesHaveNoRecord) {
  const GeoIp db = OpenTestDb();
  EXPECT_FALSE(db.Lookup(Ip("8.8.8.8")).has_value());
  EXPECT_FALSE(db.Lookup(Ip("2001:db9::1")).has_value());
  EXPECT_FALSE(db.Lookup(IpAddress()).has_value());
  EXPECT_EQ(db.lookup_errors(), 0u);
}

TEST(GeoIp, Ipv4OnlyDatabaseAnswersIpv4AndNothingForIpv6) {
  const GeoIp db = OpenTestDb("context_test_v4.mmdb");
  EXPECT_EQ(db.ip_version(), 4);
  const std::optional<GeoIpRecord> us = db.Lookup(Ip("192.0.2.77"));
  ASSERT_TRUE(us.has_value());
  EXPECT_EQ(us->country, "US");
  EXPECT_EQ(us->prefix_length, 24);
  EXPECT_FALSE(db.Lookup(Ip("2001:db8::1")).has_value());
  EXPECT_EQ(db.lookup_errors(), 0u);
}

TEST(GeoIp, MovedDatabaseStillAnswers) {
  GeoIp first = OpenTestDb();
  GeoIp second = std::move(first);
  EXPECT_EQ(second.Lookup(Ip("192.0.2.1"))->country, "US");
  GeoIp third = OpenTestDb("context_test_v4.mmdb");
  third = std::move(second);
  EXPECT_EQ(third.ip_version(), 6);
  EXPECT_EQ(third.Lookup(Ip("2001:db8::1"))->country, "DE");
}

TEST(OpenGeoIp, ReportsMissingAndInvalidFiles) {
  EXPECT_EQ(OpenGeoIp("/nonexistent/GeoLite2-Country.mmdb").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(OpenGeoIp("/dev/null").status().code(), absl::StatusCode::kInvalidArgument);
  const std::string path = ::testing::TempDir() + "/geoip_test_garbage.mmdb";
  std::ofstream(path) << "this is not a MaxMind database\n";
  const absl::Status status = OpenGeoIp(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path + ": not a usable MaxMind DB"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace relaywatch::detectors::context
