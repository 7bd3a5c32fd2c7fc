#include "detectors/host/host_stage.h"

#include "gtest/gtest.h"

namespace relaywatch::host {
namespace {

HostStageConfig Config() {
  HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8"), *Cidr::Parse("fd00::/8")};
  c.dedup_window = absl::Minutes(10);
  c.max_alerts_per_host_per_hour = 3;
  return c;
}

Event Session(const std::string& app, const std::string& controlled,
              const std::string& controller, absl::Time ts) {
  Event e;
  e.event_type = "remote_session";
  e.ts = ts;
  e.body = {{"app", app}, {"controlled", controlled}, {"controller", controller}};
  return e;
}

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(HostStage, AlertsWhenAnInternalHostIsControlledFromOutside) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("rdp", "10.1.1.5", "203.0.113.9", kT0), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].event_type, "remote_session");  // the finding comes first
  ASSERT_TRUE(out[1].alert.has_value());
  EXPECT_EQ(out[1].alert->detector, "remote_access");
  EXPECT_EQ(out[1].alert->severity, 1);
  EXPECT_EQ(out[1].alert->signature_id, kSidRemoteControlFromOutside);
  EXPECT_EQ(out[1].host_ip->ToString(), "10.1.1.5");
  EXPECT_EQ(out[1].evidence["controller"], "203.0.113.9");
  EXPECT_EQ(stage.stats().alerts.at({"remote_access", 1}), 1u);
  EXPECT_EQ(stage.stats().remote_sessions_by_app.at("rdp"), 1u);
}

TEST(HostStage, SshIsLowerSeverityThanAScreen) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("ssh", "fd00::5", "2001:db8::1", kT0), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].alert->severity, 2);
}

TEST(HostStage, NoAlertForInternalAdminWorkOrOutboundSessions) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("rdp", "10.1.1.5", "10.2.2.2", kT0), out);       // internal admin
  stage.Process(Session("rdp", "198.51.100.1", "10.1.1.5", kT0), out);   // laptop controls out
  stage.Process(Session("vnc", "unknown", "unknown", kT0), out);          // direction unknown
  EXPECT_EQ(out.size(), 3u);
  for (const Event& e : out) {
    EXPECT_FALSE(e.alert.has_value());
  }
}

TEST(HostStage, DeduplicatesWithinTheWindowByPacketTime) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("vnc", "10.1.1.5", "203.0.113.9", kT0), out);
  stage.Process(Session("vnc", "10.1.1.5", "203.0.113.9", kT0 + absl::Minutes(5)), out);
  stage.Process(Session("vnc", "10.1.1.5", "203.0.113.9", kT0 + absl::Minutes(11)), out);
  int alerts = 0;
  for (const Event& e : out) alerts += e.alert.has_value();
  EXPECT_EQ(alerts, 2);
  EXPECT_EQ(stage.stats().suppressed_duplicate, 1u);
}

TEST(HostStage, RateLimitsPerHostPerHour) {
  HostStage stage(Config());
  std::vector<Event> out;
  for (int i = 0; i < 5; ++i) {
    stage.Process(Session("rdp", "10.1.1.5", "203.0.113." + std::to_string(i), kT0), out);
  }
  int alerts = 0;
  for (const Event& e : out) alerts += e.alert.has_value();
  EXPECT_EQ(alerts, 3);
  EXPECT_EQ(stage.stats().suppressed_rate_limited, 2u);
  out.clear();
  stage.Process(Session("rdp", "10.1.1.5", "203.0.113.99", kT0 + absl::Hours(1)), out);
  EXPECT_TRUE(out.back().alert.has_value());
}

TEST(HostStage, HostTableIsBounded) {
  HostStageConfig c = Config();
  c.max_hosts = 16;
  HostStage stage(c);
  std::vector<Event> out;
  for (int i = 0; i < 40; ++i) {
    stage.Process(Session("rdp", "10.0.0." + std::to_string(i), "203.0.113.1",
                          kT0 + absl::Seconds(i)), out);
  }
  EXPECT_EQ(stage.stats().hosts_tracked, 16u);
  EXPECT_EQ(stage.stats().hosts_evicted, 24u);
}

TEST(HostStage, AllowListSilencesSanctionedToolsOnly) {
  HostStageConfig c = Config();
  AllowRule it_support;
  it_support.app = "teamviewer";
  it_support.controller = {*Cidr::Parse("203.0.113.0/28")};
  c.allow = {it_support};
  HostStage stage(c);
  std::vector<Event> out;
  stage.Process(Session("teamviewer", "10.1.1.5", "203.0.113.9", kT0), out);   // sanctioned
  stage.Process(Session("teamviewer", "10.1.1.5", "203.0.113.99", kT0), out);  // other tenant
  stage.Process(Session("vnc", "10.1.1.6", "203.0.113.9", kT0), out);          // other tool
  int alerts = 0;
  for (const Event& e : out) alerts += e.alert.has_value();
  EXPECT_EQ(alerts, 2);
  EXPECT_EQ(stage.stats().suppressed_allowed, 1u);
}

TEST(HostStage, SeveralToolsOnOneHostRaiseSeverity) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("ssh", "10.1.1.5", "203.0.113.9", kT0), out);
  ASSERT_EQ(out.back().alert->severity, 2);
  stage.Process(Session("anydesk", "10.1.1.5", "198.51.100.4", kT0 + absl::Hours(30)), out);
  stage.Process(Session("ssh", "10.1.1.5", "203.0.113.10", kT0 + absl::Hours(40)), out);
  ASSERT_TRUE(out.back().alert.has_value());
  EXPECT_EQ(out.back().alert->severity, 1);
  EXPECT_EQ(out.back().evidence["tools_within_window"].size(), 2u);
  // Eight days later the other tool is out of the window.
  stage.Process(Session("ssh", "10.1.1.5", "203.0.113.11", kT0 + absl::Hours(40 + 24 * 8)), out);
  EXPECT_EQ(out.back().alert->severity, 2);
}

TEST(HostStage, UnknownDirectionToolSessionAlertsForTheInternalEndpoint) {
  HostStage stage(Config());
  std::vector<Event> out;
  Event e = Session("teamviewer", "unknown", "unknown", kT0);
  FlowRef flow;
  flow.src_ip = *IpAddress::Parse("10.1.1.5");
  flow.dest_ip = *IpAddress::Parse("162.250.2.170");
  e.flow = flow;
  stage.Process(e, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].alert->signature_id, kSidRemoteToolSession);
  EXPECT_EQ(out[1].host_ip->ToString(), "10.1.1.5");
  EXPECT_EQ(out[1].alert->severity, 2);
}

}  // namespace
}  // namespace relaywatch::host
