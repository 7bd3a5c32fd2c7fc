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

std::shared_ptr<const detectors::SignatureSet> Signatures() {
  auto root = config::LoadString(
      "apps:\n"
      "  - {name: anydesk, dns: ['*.net.anydesk.com'], alpn_prefix: ['anydesk/'],\n"
      "     certificate: ['CN=AnyDesk Client']}\n"
      "  - {name: pikvm, category: ip_kvm, certificate: ['O=PiKVM'], controlled: responder}\n",
      "sig.yaml");
  return std::make_shared<const detectors::SignatureSet>(*detectors::SignatureSet::Parse(*root));
}

Event Tls(const std::string& src, const std::string& dst, std::uint64_t flow_id,
          nlohmann::json body) {
  Event e;
  e.event_type = "tls";
  e.ts = kT0;
  FlowRef f;
  f.flow_id = flow_id;
  f.src_ip = *IpAddress::Parse(src);
  f.dest_ip = *IpAddress::Parse(dst);
  f.src_port = 50000;
  f.dest_port = 443;
  e.flow = f;
  e.body = std::move(body);
  return e;
}

TEST(HostStage, TlsCluesNameTheToolOncePerFlow) {
  HostStageConfig c = Config();
  c.signatures = Signatures();
  HostStage stage(c);
  std::vector<Event> out;
  stage.Process(Tls("10.1.1.5", "195.181.174.176", 1, {{"alpn", {"anydesk/6.2.0/linux"}}}), out);
  stage.Process(Tls("10.1.1.5", "195.181.174.176", 1, {{"alpn", {"anydesk/6.2.0/linux"}}}), out);
  int sessions = 0;
  for (const Event& e : out) {
    if (e.event_type == "remote_session") {
      ++sessions;
      EXPECT_EQ(e.body["app"], "anydesk");
      EXPECT_EQ(e.body["controlled"], "unknown");
      EXPECT_EQ(e.body["evidence"], "TLS ALPN anydesk/6.2.0/linux");
    }
  }
  EXPECT_EQ(sessions, 1);
  // A KVM's self-signed certificate: the web UI's host (the responder) is the operated side.
  out.clear();
  stage.Process(Tls("203.0.113.8", "10.1.1.9", 2,
                    {{"subject", "CN=localhost,OU=PiKVM,O=PiKVM,C=US"}}), out);
  // tls record, session, alert, and the risk-score alert it causes: an IP-KVM alone weighs
  // 0.8, above the 0.7 threshold.
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[1].body["app"], "pikvm");
  EXPECT_EQ(out[1].body["controlled"], "10.1.1.9");
  EXPECT_TRUE(out[2].alert.has_value());
  ASSERT_TRUE(out[3].alert.has_value());
  EXPECT_EQ(out[3].alert->detector, "risk_score");
  // Ordinary TLS names nothing.
  out.clear();
  stage.Process(Tls("10.1.1.5", "198.51.100.1", 3, {{"sni", "www.example.com"}}), out);
  EXPECT_EQ(out.size(), 1u);
}

TEST(HostStage, DnsAnswersAttributeLaterTlsFlowsToTheTool) {
  HostStageConfig c = Config();
  c.signatures = Signatures();
  HostStage stage(c);
  std::vector<Event> out;
  Event dns;
  dns.event_type = "dns";
  dns.ts = kT0;
  dns.body = {{"rrname", "relay-0badc0de.net.anydesk.com"},
              {"answers", {{{"rrname", "relay-0badc0de.net.anydesk.com"}, {"rrtype", "A"},
                            {"rdata", "51.83.238.219"}}}}};
  stage.Process(dns, out);
  out.clear();
  stage.Process(Tls("10.1.1.5", "51.83.238.219", 7, nlohmann::json::object()), out);
  ASSERT_GE(out.size(), 2u);
  EXPECT_EQ(out[1].body["app"], "anydesk");
  EXPECT_EQ(out[1].body["evidence"], "server address resolved from relay-0badc0de.net.anydesk.com");
  // The answer ages out.
  out.clear();
  Event late = Tls("10.1.1.5", "51.83.238.219", 8, nlohmann::json::object());
  late.ts = kT0 + absl::Hours(2);
  stage.Process(late, out);
  EXPECT_EQ(out.size(), 1u);
}

}  // namespace
}  // namespace relaywatch::host
