// The host stage's context rules (detectors/host/host_stage_context.cc): asset and peer
// enrichment, address lists, countries, work hours. GeoIP answers come from the test
// database make_test_mmdb.pl writes (198.51.100.0/24 CN, 192.0.2.0/24 US).
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"

#include "detectors/context/config.h"
#include "detectors/host/host_stage.h"
#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::host {
namespace {

using detectors::context::Context;
using detectors::context::ListKind;
using detectors::context::testing::Ip;
using detectors::context::testing::Must;

const PacketTime kT0 = absl::FromUnixSeconds(1700000000);  // 2023-11-14 22:13 UTC

constexpr char kInventory[] =
    "address,hostname,mac,person,location,timezone\n"
    "10.1.1.5,lt-nyc-1,,Jane Doe,New York office,America/New_York\n"
    "10.1.1.6,lt-nyc-2,,Jane Doe,New York office,America/New_York\n"
    "10.1.1.7,lt-nyc-3,,John Roe,New York office,America/New_York\n";

std::shared_ptr<Context> MakeContext(bool with_geo = true) {
  auto context = std::make_shared<Context>();
  context->inventory =
      Must(detectors::context::ParseInventory(kInventory, "inventory.csv"));
  EXPECT_TRUE(context->address_lists
                  .Add("astrill", ListKind::kConsumerVpn, "203.0.113.0/25\n", "vpn.txt")
                  .ok());
  EXPECT_TRUE(
      context->address_lists.Add("cloud", ListKind::kHosting, "203.0.113.128/25\n", "cloud.txt")
          .ok());
  EXPECT_TRUE(
      context->address_lists.Add("ours", ListKind::kCorporate, "198.18.0.0/15\n", "corp.txt")
          .ok());
  if (with_geo) {
    context->geoip =
        Must(detectors::context::OpenGeoIp(RELAYWATCH_TEST_MMDB_DIR "/context_test.mmdb"));
  }
  return context;
}

HostStageConfig Config(std::shared_ptr<const Context> context) {
  HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  c.entry_points = {*Cidr::Parse("192.0.2.1/32")};
  c.context = std::move(context);
  return c;
}

Event Session(const std::string& controlled, const std::string& controller, PacketTime ts) {
  Event e;
  e.event_type = "remote_session";
  e.ts = ts;
  e.body = {{"app", "rdp"}, {"controlled", controlled}, {"controller", controller}};
  return e;
}

// A TCP connection's stack record, as the stack detector sends it at the flow's end.
Event Connection(const std::string& src, const std::string& dst, std::uint16_t dport,
                 PacketTime syn, std::uint8_t protocol = 6) {
  static std::uint64_t next_id = 1;
  Event e;
  e.event_type = "stack";
  e.ts = syn + absl::Seconds(5);
  FlowRef f;
  f.flow_id = next_id++;
  f.src_ip = Ip(src);
  f.dest_ip = Ip(dst);
  f.src_port = 40000;
  f.dest_port = dport;
  f.protocol = protocol;
  e.flow = f;
  e.body = {{"signature", "4:64+0:1460:mss,sok,ts,nop,ws:65535:7"},
            {"syn_us", absl::ToUnixMicros(syn)},
            {"end_us", absl::ToUnixMicros(e.ts)}};
  return e;
}

std::vector<const Event*> Alerts(const std::vector<Event>& out, const std::string& detector) {
  std::vector<const Event*> found;
  for (const Event& e : out) {
    if (e.alert && e.alert->detector == detector) found.push_back(&e);
  }
  return found;
}

TEST(HostContext, AlertsCarryTheAssetAndThePeersCountry) {
  HostStage stage(Config(MakeContext()));
  std::vector<Event> out;
  stage.Process(Session("10.1.1.5", "198.51.100.9", kT0), out);
  const auto remote = Alerts(out, "remote_access");
  ASSERT_EQ(remote.size(), 1u);
  const nlohmann::json& ev = remote[0]->evidence;
  EXPECT_EQ(ev["asset"]["person"], "Jane Doe");
  EXPECT_EQ(ev["asset"]["hostname"], "lt-nyc-1");
  EXPECT_EQ(ev["asset"]["timezone"], "America/New_York");
  EXPECT_EQ(ev["asset"]["country"], "US");  // from tzdata's zone.tab
  EXPECT_EQ(ev["asset"]["inventory_line"], 2);
  EXPECT_EQ(ev["peer_geo"]["country"], "CN");
  EXPECT_EQ(ev["peer_geo"]["asn"], 64497);
}

TEST(HostContext, ControllerOutsideTheClaimedCountry) {
  HostStage stage(Config(MakeContext()));
  std::vector<Event> out;
  stage.Process(Session("10.1.1.5", "198.51.100.9", kT0), out);
  const auto geo = Alerts(out, "geo");
  ASSERT_EQ(geo.size(), 1u);
  EXPECT_EQ(geo[0]->alert->signature_id, kSidForeignPeer);
  EXPECT_EQ(geo[0]->alert->severity, 2);
  EXPECT_EQ(geo[0]->evidence["controller_country"], "CN");
  EXPECT_EQ(geo[0]->evidence["claimed_country"], "US");
  // The geo alert is evidence in the score like any other.
  bool scored = false;
  for (const HostScore& s : stage.Scores(5)) {
    for (const auto& item : s.evidence) scored |= item.kind == "geo";
  }
  EXPECT_TRUE(scored);

  // A controller in the claimed country raises no geo alert.
  out.clear();
  stage.Process(Session("10.1.1.7", "192.0.2.9", kT0), out);
  EXPECT_TRUE(Alerts(out, "geo").empty());
}

TEST(HostContext, OnePersonControlledFromTwoCountriesWithinAnHour) {
  auto context = MakeContext();
  HostStage stage(Config(context));
  std::vector<Event> out;
  stage.Process(Session("10.1.1.5", "192.0.2.9", kT0), out);  // US: as claimed
  EXPECT_TRUE(Alerts(out, "geo").empty());
  out.clear();
  // Jane's other laptop, 20 minutes later, from China.
  stage.Process(Session("10.1.1.6", "198.51.100.9", kT0 + absl::Minutes(20)), out);
  const auto geo = Alerts(out, "geo");
  ASSERT_EQ(geo.size(), 1u);
  EXPECT_EQ(geo[0]->alert->severity, 1);
  EXPECT_EQ(geo[0]->evidence["countries_within_hour"], nlohmann::json({"CN", "US"}));

  // Two hours apart is travel a person can make: only the foreign-controller alert.
  HostStage later(Config(context));
  out.clear();
  later.Process(Session("10.1.1.5", "192.0.2.9", kT0), out);
  later.Process(Session("10.1.1.6", "198.51.100.9", kT0 + absl::Hours(2)), out);
  const auto geo2 = Alerts(out, "geo");
  ASSERT_EQ(geo2.size(), 1u);
  EXPECT_EQ(geo2[0]->alert->severity, 2);
  EXPECT_FALSE(geo2[0]->evidence.contains("countries_within_hour"));
}

TEST(HostContext, ConsumerVpnEgressAndHostingOnlyAsATunnel) {
  HostStage stage(Config(MakeContext()));
  std::vector<Event> out;
  stage.Process(Connection("10.1.1.5", "203.0.113.7", 443, kT0), out);
  auto listed = Alerts(out, "address_list");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]->alert->signature_id, kSidListedPeer);
  EXPECT_EQ(listed[0]->alert->severity, 2);
  EXPECT_EQ(listed[0]->host_ip->ToString(), "10.1.1.5");
  EXPECT_EQ(listed[0]->evidence["list"], "astrill");
  EXPECT_EQ(listed[0]->evidence["list_kind"], "consumer_vpn");
  EXPECT_EQ(listed[0]->evidence["vantage"], "egress");
  EXPECT_EQ(listed[0]->evidence["asset"]["person"], "Jane Doe");
  ASSERT_TRUE(listed[0]->evidence.contains("peer_lists"));

  out.clear();
  stage.Process(Connection("10.1.1.5", "203.0.113.200", 443, kT0), out);  // cloud HTTPS
  EXPECT_TRUE(Alerts(out, "address_list").empty());
  stage.Process(Connection("10.1.1.5", "203.0.113.200", 1194, kT0, 17), out);  // OpenVPN
  listed = Alerts(out, "address_list");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]->alert->severity, 3);
  EXPECT_EQ(listed[0]->evidence["list_kind"], "hosting");

  out.clear();
  stage.Process(Connection("10.1.1.5", "198.18.0.10", 1194, kT0, 17), out);  // corporate
  EXPECT_TRUE(Alerts(out, "address_list").empty());
}

TEST(HostContext, EntryPointReachedFromListedAndForeignAddresses) {
  auto context = MakeContext();
  context->expected_countries = {"US"};
  HostStage stage(Config(context));
  std::vector<Event> out;
  // A remote laptop comes in through a consumer VPN exit, and one from China.
  stage.Process(Connection("203.0.113.9", "192.0.2.1", 443, kT0), out);
  stage.Process(Connection("198.51.100.20", "192.0.2.1", 443, kT0), out);
  stage.Process(Connection("192.0.2.77", "192.0.2.1", 443, kT0), out);  // US: expected
  const auto listed = Alerts(out, "address_list");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]->host_ip->ToString(), "203.0.113.9");
  EXPECT_EQ(listed[0]->evidence["vantage"], "entry_point");
  // The VPN exit is registered in Japan, the other in China; the US client raises nothing.
  const auto geo = Alerts(out, "geo");
  ASSERT_EQ(geo.size(), 2u);
  EXPECT_EQ(geo[0]->host_ip->ToString(), "203.0.113.9");
  EXPECT_EQ(geo[0]->evidence["country"], "JP");
  EXPECT_EQ(geo[1]->host_ip->ToString(), "198.51.100.20");
  EXPECT_EQ(geo[1]->evidence["country"], "CN");
  EXPECT_EQ(geo[1]->alert->severity, 3);
}

TEST(HostContext, TunnelRecordsNameTheirProvidersList) {
  HostStage stage(Config(MakeContext(false)));
  Event t;
  t.event_type = "tunnel";
  t.ts = kT0;
  FlowRef f;
  f.flow_id = 99;
  f.src_ip = Ip("10.1.1.5");
  f.dest_ip = Ip("203.0.113.5");
  f.dest_port = 443;
  f.protocol = 6;
  t.flow = f;
  t.body = {{"kind", "openvpn"}, {"mtu", 1400}, {"mss", 1360}, {"overlay", true}};
  std::vector<Event> out;
  stage.Process(t, out);
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out[0].event_type, "tunnel");
  ASSERT_TRUE(out[0].body.contains("address_lists"));
  EXPECT_EQ(out[0].body["address_lists"][0]["name"], "astrill");
}

// Days of activity for a New York laptop at `local_start`..`local_end` local time, each
// worked minute with `per_minute` new connections.
std::vector<Event> Workdays(const std::string& host, int local_start, int local_end, int days,
                            int per_minute) {
  const absl::TimeZone ny = Must(detectors::context::LoadIanaTimeZone("America/New_York"));
  std::vector<Event> events;
  for (int d = 0; d < days; ++d) {
    const absl::CivilDay day = absl::CivilDay(2023, 11, 13) + d;  // Monday
    for (int h = local_start; h != local_end; h = (h + 1) % 24) {
      const absl::CivilHour hour = absl::CivilHour(day) + h + (h < local_start ? 24 : 0);
      for (int m = 0; m < 50; m += 5) {
        for (int c = 0; c < per_minute; ++c) {
          events.push_back(Connection(host, "93.184.216.34", 443,
                                      absl::FromCivil(absl::CivilMinute(hour) + m, ny) +
                                          absl::Seconds(c)));
        }
      }
    }
  }
  return events;
}

TEST(HostContext, WorkHoursOfAnotherZone) {
  HostStage stage(Config(MakeContext(false)));
  std::vector<Event> out;
  // 09:00-18:00 in Beijing is 20:00-05:00 in New York in November.
  for (Event& e : Workdays("10.1.1.5", 20, 5, 5, 3)) stage.Process(std::move(e), out);
  const auto hours = Alerts(out, "work_hours");
  ASSERT_GE(hours.size(), 1u);
  EXPECT_LE(hours.size(), 3u);  // from the third night on, once a day at most
  EXPECT_EQ(hours[0]->alert->signature_id, kSidWorkHours);
  EXPECT_EQ(hours[0]->alert->severity, 2);
  EXPECT_EQ(hours[0]->evidence["timezone"], "America/New_York");
  EXPECT_GE(hours[0]->evidence["active_hours"].get<int>(), 20);
  EXPECT_TRUE(hours[0]->evidence["mostly_outside"].get<bool>());
  // The working day that fits is half a day away.
  EXPECT_GE(std::abs(hours[0]->evidence["best_shift_hours"].get<int>()), 9);
  EXPECT_EQ(hours[0]->evidence["asset"]["person"], "Jane Doe");
  EXPECT_EQ(stage.stats().work_profiles, 1u);
}

TEST(HostContext, OfficeHoursAndBackgroundTrafficRaiseNothing) {
  HostStage stage(Config(MakeContext(false)));
  std::vector<Event> out;
  for (Event& e : Workdays("10.1.1.5", 9, 18, 5, 3)) stage.Process(std::move(e), out);
  // Night-time background: one connection a minute is not a worked minute.
  for (Event& e : Workdays("10.1.1.7", 20, 5, 5, 1)) stage.Process(std::move(e), out);
  EXPECT_TRUE(Alerts(out, "work_hours").empty());
}

TEST(HostContext, HostsNotInTheInventoryKeepNoProfile) {
  HostStage stage(Config(MakeContext(false)));
  std::vector<Event> out;
  for (Event& e : Workdays("10.9.9.9", 20, 5, 2, 3)) stage.Process(std::move(e), out);
  EXPECT_TRUE(Alerts(out, "work_hours").empty());
  EXPECT_EQ(stage.stats().work_profiles, 0u);
}

TEST(HostContext, WorkProfilesAreBounded) {
  HostStageConfig config = Config(MakeContext(false));
  config.max_hosts = 2;
  HostStage stage(config);
  std::vector<Event> out;
  for (const char* host : {"10.1.1.5", "10.1.1.6", "10.1.1.7"}) {
    stage.Process(Connection(host, "93.184.216.34", 443, kT0), out);
  }
  EXPECT_EQ(stage.stats().work_profiles, 2u);
  EXPECT_EQ(stage.stats().work_profiles_evicted, 1u);
}

// Two nights before a restart and one after make the 20 hours a verdict needs.
TEST(HostContext, WorkProfilesSurviveARestart) {
  auto context = MakeContext(false);
  const std::string path =
      ::testing::TempDir() + "/host_context_state_" + std::to_string(getpid()) + ".json";
  std::vector<Event> days = Workdays("10.1.1.5", 20, 5, 3, 3);
  const std::size_t two_days = days.size() * 2 / 3;
  std::vector<Event> out;
  {
    HostStage before(Config(context));
    for (std::size_t i = 0; i < two_days; ++i) before.Process(days[i], out);
    ASSERT_TRUE(before.SaveState(path).ok());
  }
  EXPECT_TRUE(Alerts(out, "work_hours").empty());  // 18 hours: not enough yet
  HostStage after(Config(context));
  ASSERT_TRUE(after.LoadState(path).ok());
  EXPECT_EQ(after.stats().work_profiles, 1u);
  for (std::size_t i = two_days; i < days.size(); ++i) after.Process(days[i], out);
  EXPECT_EQ(Alerts(out, "work_hours").size(), 1u);

  // Without the saved profile the third night alone says nothing.
  HostStage fresh(Config(context));
  out.clear();
  for (std::size_t i = two_days; i < days.size(); ++i) fresh.Process(days[i], out);
  EXPECT_TRUE(Alerts(out, "work_hours").empty());
  std::remove(path.c_str());
}

TEST(HostContext, NoContextNoChange) {
  HostStageConfig config = Config(nullptr);
  HostStage stage(config);
  std::vector<Event> out;
  stage.Process(Session("10.1.1.5", "198.51.100.9", kT0), out);
  const auto remote = Alerts(out, "remote_access");
  ASSERT_EQ(remote.size(), 1u);
  EXPECT_FALSE(remote[0]->evidence.contains("asset"));
  EXPECT_TRUE(Alerts(out, "geo").empty());
}

}  // namespace
}  // namespace relaywatch::host
