#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "detectors/host/host_stage.h"

namespace relaywatch::host {
namespace {

const PacketTime kT0 = absl::FromUnixSeconds(1700000000);

HostStageConfig Config() {
  HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  c.dedup_window = absl::Minutes(10);
  return c;
}

Event Session(const std::string& app, absl::Duration at) {
  Event e;
  e.event_type = "remote_session";
  e.ts = kT0 + at;
  e.body = {{"app", app}, {"controlled", "10.1.1.5"}, {"controller", "203.0.113.9"}};
  return e;
}

// A relay record that makes the controller_rtt rule fire for a session on flow `id`.
std::vector<Event> FarSession(std::uint64_t id, const std::string& app, absl::Duration at) {
  Event s = Session(app, at);
  FlowRef f;
  f.flow_id = id;
  f.src_ip = *IpAddress::Parse("203.0.113.9");
  f.dest_ip = *IpAddress::Parse("10.1.1.5");
  f.protocol = 6;
  s.flow = f;
  Event r;
  r.event_type = "relay";
  r.ts = kT0 + at + absl::Seconds(1);
  r.flow = f;
  r.body = {{"rtt_originator_ms", 180.0}, {"rtt_samples", {100, 1}}};
  return {s, r};
}

const Event* RiskAlert(const std::vector<Event>& out) {
  for (const Event& e : out) {
    if (e.alert && e.alert->detector == "risk_score")
      return &e;
  }
  return nullptr;
}

TEST(RiskScore, KindsCombineAndCrossTheThreshold) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("vnc", absl::ZeroDuration()), out);  // remote_access, severity 1
  std::vector<HostScore> scores = stage.Scores(10);
  ASSERT_EQ(scores.size(), 1u);
  EXPECT_NEAR(scores[0].score, 0.6, 1e-9);  // weight 0.6 x strength 1.0
  EXPECT_EQ(RiskAlert(out), nullptr);       // below 0.7
  for (Event& e : FarSession(7, "vnc", absl::Minutes(1)))
    stage.Process(std::move(e), out);
  scores = stage.Scores(10);
  // controller_rtt: weight 0.7 x strength 0.8 (severity 2) = 0.56; 1 - 0.4 x 0.44 = 0.824.
  EXPECT_NEAR(scores[0].score, 1 - (1 - 0.6) * (1 - 0.56), 1e-3);
  const Event* alert = RiskAlert(out);
  ASSERT_NE(alert, nullptr);
  EXPECT_EQ(alert->alert->signature_id, kSidRiskScore);
  EXPECT_EQ(alert->host_ip->ToString(), "10.1.1.5");
  ASSERT_EQ(alert->evidence["evidence"].size(), 2u);
  EXPECT_EQ(alert->evidence["evidence"][0]["kind"], "remote_access");  // ranked
  EXPECT_EQ(alert->evidence["evidence"][1]["kind"], "controller_rtt");
}

TEST(RiskScore, RepeatsOfOneKindDoNotCompound) {
  HostStage stage(Config());
  std::vector<Event> out;
  for (int i = 0; i < 5; ++i)
    stage.Process(Session("vnc", absl::Hours(2 * i)), out);
  EXPECT_NEAR(stage.Scores(1)[0].score, 0.6, 1e-9);
  EXPECT_EQ(RiskAlert(out), nullptr);
}

TEST(RiskScore, EvidenceDecaysWithPacketTime) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("vnc", absl::ZeroDuration()), out);
  // Later unrelated findings move the clock: one half-life (72 h) halves the evidence.
  Event later;
  later.event_type = "dns";
  later.ts = kT0 + absl::Hours(72);
  stage.Process(later, out);
  EXPECT_NEAR(stage.Scores(1)[0].score, 0.3, 1e-6);
}

TEST(RiskScore, KvmWeighsMoreThanADesktopTool) {
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("pikvm", absl::ZeroDuration()), out);
  ASSERT_FALSE(stage.Scores(1).empty());
  EXPECT_EQ(stage.Scores(1)[0].evidence[0].kind, "kvm");
  EXPECT_NEAR(stage.Scores(1)[0].score, 0.8, 1e-9);
  EXPECT_NE(RiskAlert(out), nullptr);  // 0.8 >= 0.7 on its own
}

TEST(RiskScore, StateSurvivesARestart) {
  const std::string path = ::testing::TempDir() + "/scores.json";
  std::remove(path.c_str());
  {
    HostStage stage(Config());
    std::vector<Event> out;
    EXPECT_TRUE(stage.LoadState(path).ok());  // no file yet: a first start
    stage.Process(Session("vnc", absl::ZeroDuration()), out);
    ASSERT_TRUE(stage.SaveState(path).ok());
  }
  HostStage restarted(Config());
  ASSERT_TRUE(restarted.LoadState(path).ok());
  std::vector<HostScore> scores = restarted.Scores(10);
  ASSERT_EQ(scores.size(), 1u);
  EXPECT_EQ(scores[0].host.ToString(), "10.1.1.5");
  EXPECT_NEAR(scores[0].score, 0.6, 1e-9);
  // The host was below the threshold: new evidence that lifts it alerts once.
  std::vector<Event> out;
  for (Event& e : FarSession(9, "vnc", absl::Minutes(5)))
    restarted.Process(std::move(e), out);
  EXPECT_NE(RiskAlert(out), nullptr);
  EXPECT_EQ(restarted.stats().top_scores.size(), 1u);
}

TEST(RiskScore, AStateFileTheDiskRefusesKeepsTheLastGoodOne) {
  const std::string path = ::testing::TempDir() + "/full_scores.json";
  std::remove(path.c_str());
  HostStage stage(Config());
  std::vector<Event> out;
  stage.Process(Session("vnc", absl::ZeroDuration()), out);
  ASSERT_TRUE(stage.SaveState(path).ok());
  std::ifstream before_file(path);
  const std::string before((std::istreambuf_iterator<char>(before_file)), {});
  stage.Process(Session("pikvm", absl::ZeroDuration()), out);
  // A file size limit refuses the write as a full disk does (EFBIG, SIGXFSZ ignored).
  rlimit old_limit = {};
  ::getrlimit(RLIMIT_FSIZE, &old_limit);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 16;
  ::setrlimit(RLIMIT_FSIZE, &small);
  const absl::Status saved = stage.SaveState(path);
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(saved.ok());
  EXPECT_NE(saved.message().find("full_scores.json.tmp: write failed: File too large"),
            absl::string_view::npos)
      << saved;
  std::ifstream after_file(path);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(after_file)), {}), before);
  EXPECT_FALSE(std::ifstream(path + ".tmp").good()) << "the stub is left behind";
}

TEST(RiskScore, DamagedStateFileIsAClearError) {
  const std::string path = ::testing::TempDir() + "/bad_scores.json";
  for (const char* text : {"{not json", "[]",
                           "{\"format\":\"relaywatch-scores\",\"hosts\":"
                           "{\"nope\":[]}}",
                           "{\"format\":\"relaywatch-scores\",\"hosts\":{\"10.0.0.1\":"
                           "[{\"kind\":1}]}}",
                           // Wrong types where defaults are read: an error, not an exception.
                           "{\"format\":\"relaywatch-scores\",\"hosts\":{\"10.0.0.1\":"
                           "[{\"kind\":\"kvm\",\"strength\":1,\"timestamp_us\":1,"
                           "\"signature_id\":\"x\"}]}}",
                           // A good host, then a bad one: nothing is half loaded.
                           "{\"format\":\"relaywatch-scores\",\"hosts\":{\"10.0.0.1\":"
                           "[{\"kind\":\"kvm\",\"strength\":1,\"timestamp_us\":1}],"
                           "\"10.0.0.2\":7}}",
                           "{\"format\":\"relaywatch-scores\",\"hosts\":{},"
                           "\"work_profiles\":{\"10.0.0.1\":{\"minutes\":1}}}"}) {
    std::ofstream(path, std::ios::trunc) << text;
    HostStage stage(Config());
    const absl::Status s = stage.LoadState(path);
    EXPECT_FALSE(s.ok()) << text;
    EXPECT_NE(std::string(s.message()).find(path), std::string::npos);
    EXPECT_TRUE(stage.Scores(10).empty()) << text;
  }
}

}  // namespace
}  // namespace relaywatch::host
