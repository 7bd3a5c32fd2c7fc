#include "daemon/config.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relaywatch::daemon {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Config> Parse(const std::string& yaml) {
  absl::StatusOr<config::Section> root = config::LoadString(yaml, "t.yaml");
  if (!root.ok()) {
    return root.status();
  }
  return ParseConfig(*root);
}

TEST(Config, BuiltInDefaults) {
  absl::StatusOr<Config> c = LoadConfig("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->home_networks_text.size(), 4u);
  EXPECT_TRUE(c->jsonl_enabled);
  EXPECT_EQ(c->jsonl.path, "-");
  EXPECT_FALSE(c->syslog_enabled);
  EXPECT_EQ(c->prometheus.listen, "127.0.0.1:9781");
  EXPECT_EQ(c->capture.workers, 0);
}

// conf/relaywatch.yaml documents every key with its default: parsing it must give exactly
// the built-in defaults, so the documentation cannot drift from the code.
TEST(Config, ShippedFileEqualsBuiltInDefaults) {
  absl::StatusOr<Config> file = LoadConfig(RELAYWATCH_SOURCE_DIR "/conf/relaywatch.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<Config> defaults = LoadConfig("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(file->home_networks_text, defaults->home_networks_text);
  EXPECT_EQ(file->capture.interfaces, defaults->capture.interfaces);
  EXPECT_EQ(file->capture.snaplen, defaults->capture.snaplen);
  EXPECT_EQ(file->capture.buffer_size_mib, defaults->capture.buffer_size_mib);
  EXPECT_EQ(file->capture.workers, defaults->capture.workers);
  EXPECT_EQ(file->flows.max_flows, defaults->flows.max_flows);
  EXPECT_EQ(file->flows.tcp_idle_timeout, defaults->flows.tcp_idle_timeout);
  EXPECT_EQ(file->flows.udp_idle_timeout, defaults->flows.udp_idle_timeout);
  EXPECT_EQ(file->flows.closed_timeout, defaults->flows.closed_timeout);
  EXPECT_EQ(file->jsonl.path, defaults->jsonl.path);
  EXPECT_EQ(file->jsonl.events, defaults->jsonl.events);
  EXPECT_EQ(file->syslog_enabled, defaults->syslog_enabled);
  EXPECT_EQ(file->syslog.transport, defaults->syslog.transport);
  EXPECT_EQ(file->syslog.address, defaults->syslog.address);
  EXPECT_EQ(file->syslog.events, defaults->syslog.events);
  EXPECT_EQ(file->prometheus.listen, defaults->prometheus.listen);
  EXPECT_EQ(file->alerting.dedup_window, defaults->alerting.dedup_window);
  EXPECT_EQ(file->alerting.max_alerts_per_host_per_hour,
            defaults->alerting.max_alerts_per_host_per_hour);
  EXPECT_EQ(file->alerting.scoring.weights, defaults->alerting.scoring.weights);
  ASSERT_NE(file->alerting.context, nullptr);
  const auto& fc = *file->alerting.context;
  const auto& dc = *defaults->alerting.context;
  EXPECT_EQ(fc.expected_countries, dc.expected_countries);
  EXPECT_EQ(fc.work_hours.work.start_hour, dc.work_hours.work.start_hour);
  EXPECT_EQ(fc.work_hours.work.end_hour, dc.work_hours.work.end_hour);
  EXPECT_EQ(fc.work_hours.work.days, dc.work_hours.work.days);
  EXPECT_EQ(fc.work_hours.min_active_hours, dc.work_hours.min_active_hours);
  EXPECT_EQ(fc.work_hours.min_connections_per_minute, dc.work_hours.min_connections_per_minute);
  EXPECT_TRUE(fc.inventory.empty());
  EXPECT_EQ(file->alerting.relay.methods, defaults->alerting.relay.methods);
  EXPECT_EQ(file->alerting.relay.stepping_stone_packet_delta,
            defaults->alerting.relay.stepping_stone_packet_delta);
  EXPECT_EQ(file->alerting.relay.stepping_stone_across_hosts,
            defaults->alerting.relay.stepping_stone_across_hosts);
  EXPECT_TRUE(defaults->alerting.relay.methods.hidden_leg &&
              defaults->alerting.relay.methods.controller_rtt &&
              defaults->alerting.relay.methods.stepping_stone &&
              defaults->alerting.relay.methods.keystrokes);
}

TEST(Config, ContractKeysAreRead) {
  absl::StatusOr<Config> c = Parse(
      "home_networks: [192.0.2.0/24]\n"
      "outputs:\n"
      "  jsonl: {path: /tmp/x.json, events: [alert, remote_session, flow]}\n"
      "  syslog: {transport: udp, address: '127.0.0.1:5514'}\n"
      "  prometheus: {listen: '127.0.0.1:9999'}\n"
      "detectors:\n"
      "  remote_access: {inspect_bytes: 4096}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->home_networks_text, std::vector<std::string>{"192.0.2.0/24"});
  EXPECT_EQ(c->jsonl.path, "/tmp/x.json");
  EXPECT_EQ(c->jsonl.events.size(), 3u);
  EXPECT_TRUE(c->syslog_enabled);
  EXPECT_EQ(c->syslog.transport, "udp");
  EXPECT_EQ(c->syslog.address, "127.0.0.1:5514");
  EXPECT_EQ(c->prometheus.listen, "127.0.0.1:9999");
}

struct BadCase {
  const char* yaml;
  const char* where;  // file:line:col expected in the message
  const char* what;
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameFileLineColumnAndKey) {
  absl::StatusOr<Config> c = Parse(GetParam().yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(GetParam().where));
  EXPECT_THAT(c.status().message(), HasSubstr(GetParam().what));
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        BadCase{"bogus: 1\n", "t.yaml:1:1", "bogus: unknown key"},
        BadCase{"capture:\n  snaplen: lots\n", "t.yaml:2:12", "capture.snaplen"},
        BadCase{"capture:\n  workers: 1\n  workers: 2\n", "t.yaml:3:3", "duplicate key"},
        BadCase{"capture:\n  bpf: 'tcp port'\n", "t.yaml:2:8", "bad BPF filter"},
        BadCase{"home_networks: [10.0.0.0/33]\n", "t.yaml:1:16", "bad prefix length"},
        BadCase{"home_networks: 10.0.0.0/8\n", "t.yaml:1:16", "expected a list"},
        BadCase{"flows:\n  tcp_idle_timeout: soon\n", "t.yaml:2:21", "duration"},
        BadCase{"outputs:\n  syslog:\n    transport: sctp\n", "t.yaml:3:16", "udp, tcp"},
        BadCase{"outputs:\n  syslog:\n    address: nohostport\n", "t.yaml:3:5", "syslog"},
        BadCase{"outputs:\n  jsonl:\n    events: [alert, bogus]\n", "t.yaml:3:13", "bogus"},
        BadCase{"detectors:\n  no_such: {}\n", "t.yaml:2:3", "no_such: unknown key"},
        BadCase{"detectors:\n  remote_access:\n    inspect_packets: 0\n", "t.yaml:3:22",
                "inspect_packets"},
        BadCase{"sites: {name: hq}\n", "t.yaml:1:8", "expected a list"},
        BadCase{"sites:\n  - {networks: [10.0.0.0/8]}\n", "t.yaml:2:", "a site needs a name"},
        BadCase{"sites:\n  - {name: hq}\n", "t.yaml:2:", "at least one network"},
        BadCase{"sites:\n  - {name: hq, networks: [10.0.0.0/8], local_rtt: fast}\n",
                "t.yaml:2:", "sites[0].local_rtt"},
        BadCase{"sites:\n  - {name: hq, networks: [10.0.0.0/8], city: x}\n",
                "t.yaml:2:", "city: unknown key"},
        BadCase{"detectors:\n  relay:\n    stepping_stone_ratio: 2\n",
                "t.yaml:3:", "stepping_stone_ratio"},
        BadCase{"detectors:\n  relay:\n    stepping_stone_max_p: 0\n",
                "t.yaml:3:", "stepping_stone_max_p"},
        BadCase{"detectors:\n  relay:\n    stepping_stone_packet_delta: 2s\n",
                "t.yaml:3:", "stepping_stone_packet_delta"},
        BadCase{"detectors:\n  relay:\n    stepping_stone_across_hosts: maybe\n",
                "t.yaml:3:", "stepping_stone_across_hosts"},
        BadCase{"context:\n  expected_countries: [usa]\n", "t.yaml:2:", "ISO 3166"},
        BadCase{"context:\n  work_hours: {min_connections_per_minute: 0}\n",
                "t.yaml:2:", "min_connections_per_minute"},
        BadCase{"detectors:\n  relay:\n    methods: [hidden_leg, hiden_leg]\n", "t.yaml:3:27",
                "detectors.relay.methods: unknown method \"hiden_leg\""},
        BadCase{"detectors:\n  relay:\n    methods: [keystrokes, keystrokes]\n", "t.yaml:3:27",
                "\"keystrokes\" listed twice"},
        BadCase{"detectors:\n  relay:\n    methods: hidden_leg\n", "t.yaml:3:14",
                "expected a list"},
        BadCase{"capture: [\n", "t.yaml:", "end of sequence"}));

TEST(Config, SitesAndRelayDecisions) {
  absl::StatusOr<Config> c = Parse(
      "sites:\n"
      "  - {name: hq, networks: [10.1.0.0/16, 'fd00::/8'], location: 'Seattle, US',"
      " local_rtt: 45ms}\n"
      "  - {name: branch, networks: [10.2.0.0/16]}\n"
      "detectors:\n  relay: {local_rtt: 70ms, min_samples: 9}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->alerting.sites.size(), 2u);
  EXPECT_EQ(c->alerting.sites[0].name, "hq");
  EXPECT_EQ(c->alerting.sites[0].location, "Seattle, US");
  EXPECT_EQ(c->alerting.sites[0].networks.size(), 2u);
  EXPECT_EQ(c->alerting.sites[0].local_rtt, absl::Milliseconds(45));
  EXPECT_EQ(c->alerting.sites[1].local_rtt, absl::Milliseconds(70));  // the detector's default
  EXPECT_EQ(c->alerting.relay.min_samples, 9u);
}

// context: the files are read while the configuration is parsed, so `-T` checks them and a
// reload with a broken file keeps the running configuration.
TEST(Config, ContextFilesAreLoaded) {
  const std::string dir = ::testing::TempDir() + "/config_context_" + std::to_string(getpid());
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  struct RemovedAtExit {  // however the test ends: ctest runs it again and again
    std::string path;
    ~RemovedAtExit() { std::filesystem::remove_all(path); }
  } removed{dir};
  std::ofstream(dir + "/inventory.csv")
      << "address,hostname,mac,person,location,timezone\n"
         "10.1.1.5,lt-1,,Jane Doe,Phoenix,America/Phoenix\n";
  std::ofstream(dir + "/vpn.txt") << "203.0.113.0/24\n";
  std::ofstream(dir + "/t.yaml") << "context:\n"
                                    "  inventory: inventory.csv\n"  // relative to t.yaml
                                    "  address_lists:\n"
                                    "    - {name: vpn, kind: consumer_vpn, file: vpn.txt}\n"
                                    "  expected_countries: [US]\n";
  absl::StatusOr<Config> c = LoadConfig(dir + "/t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->alerting.context, nullptr);
  const auto* asset = c->alerting.context->inventory.FindByAddress(*IpAddress::Parse("10.1.1.5"));
  ASSERT_NE(asset, nullptr);
  EXPECT_EQ(asset->person, "Jane Doe");
  EXPECT_EQ(c->alerting.context->address_lists.lists().size(), 1u);
  EXPECT_EQ(c->alerting.context->expected_countries, std::vector<std::string>{"US"});

  std::ofstream(dir + "/inventory.csv") << "address,hostname,mac,person,location,timezone\n"
                                           "10.1.1.5,lt-1,zz,Jane Doe,Phoenix,America/Phoenix\n";
  c = LoadConfig(dir + "/t.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("context.inventory"));
  EXPECT_THAT(c.status().message(), HasSubstr("inventory.csv:2"));

  c = Parse("context:\n  inventory: /nonexistent/inventory.csv\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("context.inventory"));
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/inventory.csv"));
}

TEST(Config, RelayMethodsSwitchOffOneByOne) {
  absl::StatusOr<Config> c =
      Parse("detectors:\n  relay:\n    methods: [stepping_stone, hidden_leg]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const detectors::relay::RelayMethods& m = c->alerting.relay.methods;
  EXPECT_TRUE(m.hidden_leg);
  EXPECT_FALSE(m.controller_rtt);
  EXPECT_TRUE(m.stepping_stone);
  EXPECT_FALSE(m.keystrokes);
  EXPECT_FALSE(m.routed_relay);

  absl::StatusOr<Config> none = Parse("detectors:\n  relay:\n    methods: []\n");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->alerting.relay.methods,
            (detectors::relay::RelayMethods{false, false, false, false, false}));
}

}  // namespace
}  // namespace relaywatch::daemon
