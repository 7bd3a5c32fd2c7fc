#include "daemon/pipeline.h"

#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/sinks/prometheus_sink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/daemon/frames.h"

namespace relaywatch::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Writes Ethernet/IPv4 TCP and UDP frames to a classic pcap, so tests replay real files.
class PcapWriter {
 public:
  explicit PcapWriter(const std::string& path) {
    dead_ = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 65535, PCAP_TSTAMP_PRECISION_NANO);
    dumper_ = pcap_dump_open(dead_, path.c_str());
  }
  ~PcapWriter() {
    pcap_dump_close(dumper_);
    pcap_close(dead_);
  }
  void Raw(const std::vector<std::uint8_t>& frame) {
    pcap_pkthdr h{};
    t_ns_ += 1'000'000;  // 1 ms apart
    h.ts.tv_sec = 1700000000 + t_ns_ / 1'000'000'000;
    h.ts.tv_usec = t_ns_ % 1'000'000'000;  // nanoseconds in a nanosecond pcap
    h.caplen = h.len = static_cast<bpf_u_int32>(frame.size());
    pcap_dump(reinterpret_cast<u_char*>(dumper_), &h, frame.data());
  }
  void Tcp(const char* src, int sport, const char* dst, int dport, std::uint8_t flags,
           std::uint32_t seq, const std::string& payload) {
    Raw(test_frames::TcpFrame(src, sport, dst, dport, flags, seq, payload));
  }
  void Udp(const char* src, int sport, const char* dst, int dport,
           const std::vector<std::uint8_t>& payload) {
    Raw(test_frames::UdpFrame(src, sport, dst, dport, payload));
  }
  // A VNC session from `viewer` to `server`:5900, then `extra` unrelated flows.
  void VncSession(const char* viewer, int vport, const char* server) {
    Tcp(viewer, vport, server, 5900, 0x02, 100, "");
    Tcp(server, 5900, viewer, vport, 0x12, 900, "");
    Tcp(viewer, vport, server, 5900, 0x10, 101, "");
    Tcp(server, 5900, viewer, vport, 0x18, 901, "RFB 003.008\n");
    Tcp(viewer, vport, server, 5900, 0x18, 101, "RFB 003.008\n");
    Tcp(server, 5900, viewer, vport, 0x18, 913, std::string("\x01\x02", 2));
  }

 private:
  pcap_t* dead_;
  pcap_dumper_t* dumper_;
  std::int64_t t_ns_ = 0;
};

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Config TestConfig(const std::string& jsonl) {
  Config c = *LoadConfig("");
  c.jsonl.path = jsonl;
  c.jsonl.events = {"alert", "remote_session", "flow"};
  return c;
}

// Several sessions interleaved with noise, spread over many flows so that several workers
// share them.
std::string MakeCapture() {
  const std::string path = TempPath("mixed.pcap");
  PcapWriter w(path);
  for (int i = 0; i < 40; ++i) {
    const std::string viewer = "203.0.113." + std::to_string(i + 1);
    w.VncSession(viewer.c_str(), 40000 + i, "10.9.0.5");
    w.Tcp("10.9.0.7", 50000 + i, "198.51.100.3", 443, 0x18, 1, "\x16\x03\x01 hello");
    w.Raw({0x00, 0x01, 0x02});  // a truncated frame
  }
  return path;
}

TEST(Pipeline, ReplayFindsSessionsAndAlertsAndCountsMalformedFrames) {
  const std::string pcap = MakeCapture();
  const std::string out = TempPath("events.jsonl");
  auto p = Pipeline::Create(TestConfig(out), 1);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->Replay({pcap}).ok());
  const std::string events = ReadFile(out);
  int sessions = 0, alerts = 0;
  std::istringstream lines(events);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event_type"] == "remote_session") {
      ++sessions;
      EXPECT_EQ(j["remote_session"]["app"], "vnc");
      EXPECT_EQ(j["remote_session"]["controlled"], "10.9.0.5");
    }
    if (j["event_type"] == "alert") {
      ++alerts;
      EXPECT_EQ(j["host_ip"], "10.9.0.5");
      EXPECT_EQ(j["alert"]["detector"], "remote_access");
    }
  }
  EXPECT_EQ(sessions, 40);
  // One alert per controller (dedup is per host, app and controller), capped at 20 per
  // host per hour.
  EXPECT_EQ(alerts, 20);
  const std::string metrics = sinks::SerializeMetrics((*p)->CollectMetrics());
  EXPECT_THAT(metrics, HasSubstr("relaywatch_remote_sessions_total{app=\"vnc\"} 40"));
  EXPECT_THAT(metrics,
              HasSubstr("relaywatch_alerts_total{detector=\"remote_access\",severity=\"1\"} 20"));
  EXPECT_THAT(metrics, HasSubstr("relaywatch_decode_errors_total{reason=\"link_truncated\"} 40"));
  EXPECT_THAT(metrics, HasSubstr("relaywatch_alerts_suppressed_total{reason=\"rate_limit\"} 20"));
  EXPECT_THAT(metrics, HasSubstr("relaywatch_relay_turnarounds_explained_total 0"));
  EXPECT_THAT(metrics, HasSubstr("relaywatch_relay_hidden_leg_exempt_flows_total 0"));
  EXPECT_THAT(metrics, HasSubstr("relaywatch_host_table_entries "));
  std::remove(pcap.c_str());
  std::remove(out.c_str());
}

TEST(Pipeline, ReplayOutputDoesNotDependOnWorkerCount) {
  const std::string pcap = MakeCapture();
  std::vector<std::string> outputs;
  for (int workers : {1, 2, 3}) {
    const std::string out = TempPath("w" + std::to_string(workers) + ".jsonl");
    auto p = Pipeline::Create(TestConfig(out), workers);
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE((*p)->Replay({pcap}).ok());
    p->reset();
    outputs.push_back(ReadFile(out));
    std::remove(out.c_str());
  }
  EXPECT_FALSE(outputs[0].empty());
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_EQ(outputs[0], outputs[2]);
  std::remove(pcap.c_str());
}

// The lines of the exposition for the detectors' own counters.
std::vector<std::string> DetectorCounterLines(const std::string& exposition) {
  std::vector<std::string> lines;
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.find("relaywatch_detector_") != std::string::npos) {
      lines.push_back(line);
    }
  }
  return lines;
}

TEST(Pipeline, ExportsDetectorCountersSummedOverWorkers) {
  const std::string pcap = TempPath("dns.pcap");
  {
    PcapWriter w(pcap);
    for (int i = 0; i < 40; ++i) {
      const std::string client = "10.9.1." + std::to_string(i + 1);
      const auto id = static_cast<std::uint16_t>(i);
      w.Udp(client.c_str(), 33000 + i, "10.9.0.53", 53, test_frames::DnsMessage(id, false));
      w.Udp("10.9.0.53", 53, client.c_str(), 33000 + i, test_frames::DnsMessage(id, true));
    }
    w.VncSession("203.0.113.1", 40000, "10.9.0.5");
  }
  std::vector<std::vector<std::string>> by_workers;
  for (int workers : {1, 3}) {
    auto p = Pipeline::Create(TestConfig(TempPath("none.jsonl")), workers);
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE((*p)->Replay({pcap}).ok());
    const std::string metrics = sinks::SerializeMetrics((*p)->CollectMetrics());
    EXPECT_THAT(metrics, HasSubstr("# TYPE relaywatch_detector_dns_queries_total counter"));
    EXPECT_THAT(metrics, HasSubstr("# HELP relaywatch_detector_dns_queries_total DNS queries"));
    EXPECT_THAT(metrics, HasSubstr("\nrelaywatch_detector_dns_queries_total 40\n"));
    EXPECT_THAT(metrics, HasSubstr("\nrelaywatch_detector_dns_matched_total 40\n"));
    EXPECT_THAT(metrics,
                HasSubstr("relaywatch_detector_dns_parse_errors_total{reason=\"bad_name\"} 0"));
    EXPECT_THAT(metrics, HasSubstr("\nrelaywatch_detector_tls_client_hellos_total 0\n"));
    EXPECT_THAT(metrics,
                HasSubstr("# TYPE relaywatch_detector_relay_handshakes_split_total counter"));
    if (workers > 1) {
      // The transactions really were spread: no worker saw them all.
      for (int i = 0; i < workers; ++i) {
        EXPECT_THAT(metrics, Not(HasSubstr("relaywatch_worker_packets_total{worker=\"" +
                                           std::to_string(i) + "\"} 86")));
      }
    }
    by_workers.push_back(DetectorCounterLines(metrics));
    p->reset();  // closes the log before it is removed
    std::remove(TempPath("none.jsonl").c_str());
  }
  EXPECT_FALSE(by_workers[0].empty());
  EXPECT_EQ(by_workers[0], by_workers[1]);
  std::remove(pcap.c_str());
}

TEST(Pipeline, UnreadableFileStopsReplayButKeepsWhatWasFound) {
  const std::string pcap = MakeCapture();
  const std::string out = TempPath("partial.jsonl");
  auto p = Pipeline::Create(TestConfig(out), 2);
  ASSERT_TRUE(p.ok());
  const absl::Status s = (*p)->Replay({pcap, "/nonexistent/capture.pcap"});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent/capture.pcap"));
  EXPECT_THAT(ReadFile(out), HasSubstr("\"event_type\":\"remote_session\""));
  std::remove(pcap.c_str());
  std::remove(out.c_str());
}

TEST(Pipeline, NotACaptureFileIsAClearError) {
  const std::string bogus = TempPath("bogus.pcap");
  std::ofstream(bogus) << "this is not a pcap";
  auto p = Pipeline::Create(TestConfig(TempPath("none.jsonl")), 1);
  ASSERT_TRUE(p.ok());
  const absl::Status s = (*p)->Replay({bogus});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("cannot read capture"));
  p->reset();
  std::remove(bogus.c_str());
  std::remove(TempPath("none.jsonl").c_str());
}

}  // namespace
}  // namespace relaywatch::daemon
