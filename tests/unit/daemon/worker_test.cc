#include "daemon/worker.h"

#include <pcap/pcap.h>

#include <atomic>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/unit/daemon/frames.h"

namespace relaywatch::daemon {
namespace {

using test_frames::DnsMessage;
using test_frames::TcpFrame;
using test_frames::UdpFrame;

Config ConfigFrom(const std::string& yaml) {
  absl::StatusOr<config::Section> root = config::LoadString(yaml, "t.yaml");
  EXPECT_TRUE(root.ok()) << root.status();
  absl::StatusOr<Config> c = ParseConfig(*root);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Feeds frames to a worker with packet times 1 ms apart.
class Feeder {
 public:
  explicit Feeder(Worker& worker) : worker_(worker) {}
  void Frame(const std::vector<std::uint8_t>& bytes) {
    now_ += absl::Milliseconds(1);
    capture::Frame f;
    f.data = bytes.data();
    f.captured_length = f.wire_length = static_cast<std::uint32_t>(bytes.size());
    f.ts = now_;
    worker_.ProcessFrame(DLT_EN10MB, f);
  }
  // One DNS transaction from its own client port: a query and its answer.
  void DnsTransaction() {
    const int port = 40000 + (++transactions_);
    const auto id = static_cast<std::uint16_t>(transactions_);
    Frame(UdpFrame("10.0.0.2", port, "10.0.0.53", 53, DnsMessage(id, false)));
    Frame(UdpFrame("10.0.0.53", 53, "10.0.0.2", port, DnsMessage(id, true)));
  }
  // A TCP connection with a handshake and one exchange, closed by FIN.
  void TcpSession() {
    const int port = 50000 + (++sessions_);
    Frame(TcpFrame("10.0.0.2", port, "192.0.2.9", 8080, 0x02, 100, ""));
    Frame(TcpFrame("192.0.2.9", 8080, "10.0.0.2", port, 0x12, 900, "", 101));
    Frame(TcpFrame("10.0.0.2", port, "192.0.2.9", 8080, 0x10, 101, "", 901));
    Frame(TcpFrame("10.0.0.2", port, "192.0.2.9", 8080, 0x18, 101, "GET / HTTP/1.0\r\n\r\n", 901));
    Frame(TcpFrame("192.0.2.9", 8080, "10.0.0.2", port, 0x18, 901, "HTTP/1.0 200 OK\r\n\r\n", 119));
    Frame(TcpFrame("10.0.0.2", port, "192.0.2.9", 8080, 0x11, 119, "", 920));
    Frame(TcpFrame("192.0.2.9", 8080, "10.0.0.2", port, 0x11, 920, "", 120));
  }

 private:
  Worker& worker_;
  PacketTime now_ = absl::FromUnixSeconds(1700000000);
  int transactions_ = 0;
  int sessions_ = 0;
};

using CounterKey = std::tuple<std::string, std::string, std::string>;  // detector, name, label

std::map<CounterKey, std::uint64_t> Totals(const Worker& w) {
  std::map<CounterKey, std::uint64_t> m;
  for (const DetectorCounterTotal& c : w.DetectorCounters()) {
    const bool fresh = m.emplace(CounterKey{c.detector, c.name, c.label_value}, c.value).second;
    EXPECT_TRUE(fresh) << "reported twice: " << c.detector << " " << c.name << " " << c.label_value;
  }
  return m;
}

std::uint64_t Get(const std::map<CounterKey, std::uint64_t>& m, const std::string& detector,
                  const std::string& name, const std::string& label_value = "") {
  const auto it = m.find({detector, name, label_value});
  EXPECT_NE(it, m.end()) << detector << " " << name << " " << label_value << " not reported";
  return it == m.end() ? 0 : it->second;
}

TEST(WorkerDetectorCounters, ReportsEveryEnabledDetectorWithValidNames) {
  Worker w(0, ConfigFrom(""));
  Feeder feed(w);
  feed.DnsTransaction();
  feed.DnsTransaction();
  feed.TcpSession();
  w.Finish();
  const auto totals = Totals(w);
  EXPECT_EQ(Get(totals, "dns", "queries"), 2u);
  EXPECT_EQ(Get(totals, "dns", "responses"), 2u);
  EXPECT_EQ(Get(totals, "dns", "matched"), 2u);
  EXPECT_EQ(Get(totals, "dns", "parse_errors", "bad_name"), 0u);  // zeros are reported
  EXPECT_EQ(Get(totals, "relay", "handshakes_split"), 1u);
  EXPECT_EQ(Get(totals, "tls", "client_hellos"), 0u);
  EXPECT_EQ(Get(totals, "tls", "parse_errors", "truncated"), 0u);
  std::set<std::string> detectors;
  const std::regex metric_name("[a-z][a-z0-9_]*");
  for (const DetectorCounterTotal& c : w.DetectorCounters()) {
    detectors.insert(c.detector);
    EXPECT_TRUE(std::regex_match(c.name, metric_name)) << c.name;
    EXPECT_FALSE(c.name.ends_with("_total")) << c.name;  // the exporter adds it
    EXPECT_FALSE(c.help.empty()) << c.name;
    EXPECT_TRUE(c.label.empty() || c.label == "reason") << c.name << " " << c.label;
  }
  EXPECT_TRUE(detectors.count("tls") && detectors.count("dns") && detectors.count("relay"));
  EXPECT_EQ(detectors.count("remote_access"), 0u);  // has no counters: the default
}

TEST(WorkerDetectorCounters, DisabledDetectorReportsNothing) {
  Worker w(0, ConfigFrom("detectors: {dns: {enabled: false}}"));
  Feeder feed(w);
  feed.DnsTransaction();
  for (const DetectorCounterTotal& c : w.DetectorCounters()) {
    EXPECT_NE(c.detector, "dns") << c.name;
  }
}

TEST(WorkerDetectorCounters, ReconfigureNeverMovesTotalsBack) {
  const Config config = ConfigFrom("");
  Worker w(0, config);
  Feeder feed(w);
  feed.DnsTransaction();
  feed.TcpSession();
  const auto before = Totals(w);
  EXPECT_EQ(Get(before, "dns", "queries"), 1u);

  // The same config again: new instances, totals unchanged.
  w.Reconfigure(config);
  EXPECT_EQ(Totals(w), before);
  feed.DnsTransaction();
  EXPECT_EQ(Get(Totals(w), "dns", "queries"), 2u);

  // dns disabled: its totals stay, frozen, and nothing else goes back.
  w.Reconfigure(ConfigFrom("detectors: {dns: {enabled: false}}"));
  feed.DnsTransaction();
  const auto disabled = Totals(w);
  EXPECT_EQ(Get(disabled, "dns", "queries"), 2u);
  for (const auto& [key, value] : before) {
    EXPECT_GE(disabled.at(key), value) << std::get<0>(key) << " " << std::get<1>(key);
  }

  // Enabled again: counting resumes on top of the old totals.
  w.Reconfigure(config);
  feed.DnsTransaction();
  feed.DnsTransaction();
  w.Finish();
  const auto after = Totals(w);
  EXPECT_EQ(Get(after, "dns", "queries"), 4u);
  EXPECT_EQ(Get(after, "dns", "responses"), 4u);
  for (const auto& [key, value] : disabled) {
    EXPECT_GE(after.at(key), value) << std::get<0>(key) << " " << std::get<1>(key);
  }
}

// The metrics thread reads while the worker processes packets and reloads. Every read must
// see complete totals that never go down. (A TSan build also proves there is no data race.)
TEST(WorkerDetectorCounters, ReadableFromAnotherThreadDuringReconfigure) {
  const Config config = ConfigFrom("");
  Worker w(0, config);
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread metrics([&] {
    std::map<CounterKey, std::uint64_t> last;
    while (!stop.load()) {
      const auto now = Totals(w);
      for (const auto& [key, value] : last) {
        const auto it = now.find(key);
        ASSERT_NE(it, now.end()) << std::get<1>(key) << " disappeared";
        ASSERT_GE(it->second, value) << std::get<0>(key) << " " << std::get<1>(key);
      }
      last = now;
      reads.fetch_add(1);
    }
  });
  Feeder feed(w);
  for (int i = 0; i < 200; ++i) {
    feed.DnsTransaction();
    if (i % 5 == 0) {
      w.Reconfigure(config);
    }
  }
  while (reads.load() < 3) {
    std::this_thread::yield();
  }
  stop.store(true);
  metrics.join();
  EXPECT_EQ(Get(Totals(w), "dns", "queries"), 200u);
}

}  // namespace
}  // namespace relaywatch::daemon
