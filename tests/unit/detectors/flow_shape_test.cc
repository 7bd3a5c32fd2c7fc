#include "detectors/flow_shape/flow_shape.h"

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"
#include "detectors/flow_shape/config.h"
#include "detectors/flow_shape/features.h"
#include "detectors/host/host_stage.h"
#include "tests/common/stun_wire.h"

namespace relaywatch::detectors::flow_shape {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const PacketTime kT0 = absl::FromUnixSeconds(1700000000);

absl::StatusOr<FlowShapeConfig> Parse(const std::string& yaml) {
  absl::StatusOr<config::Section> root = config::LoadString(yaml, "test.yaml");
  if (!root.ok()) {
    return root.status();
  }
  return ParseFlowShapeConfig(root->Child("flow_shape"));
}

// ---------------------------------------------------------------------------------------
// Config

TEST(FlowShapeConfig, AbsentSectionGivesTheBuiltInDefaults) {
  absl::StatusOr<FlowShapeConfig> c = Parse("{}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->enabled);
  EXPECT_EQ(c->min_duration, absl::Seconds(20));
  EXPECT_EQ(c->window, absl::Seconds(10));
  EXPECT_EQ(c->input_max_bytes, 130u);
  EXPECT_EQ(c->thresholds.size_ratio, 2.0);
  EXPECT_EQ(c->thresholds.input_events, 40u);
}

TEST(FlowShapeConfig, ReadsEveryKey) {
  absl::StatusOr<FlowShapeConfig> c = Parse(
      "flow_shape:\n"
      "  enabled: true\n  min_duration: 30m\n  window: 30s\n  input_max_bytes: 100\n"
      "  burst_gap: 3ms\n  reaction_window: 500ms\n  quiet_gap: 40ms\n"
      "  direction_for_named_tools: false\n"
      "  thresholds: {byte_ratio: 5, coupling: 0.5, response_share: 0.7, size_ratio: 3,\n"
      "               input_share: 0.8, input_events: 100, active_input_seconds: 20,\n"
      "               input_gap_cv: 1.5, call_pps: 25, call_cv: 0.4}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->min_duration, absl::Minutes(30));
  EXPECT_EQ(c->window, absl::Seconds(30));
  EXPECT_EQ(c->input_max_bytes, 100u);
  EXPECT_EQ(c->burst_gap, absl::Milliseconds(3));
  EXPECT_EQ(c->reaction_window, absl::Milliseconds(500));
  EXPECT_EQ(c->quiet_gap, absl::Milliseconds(40));
  EXPECT_FALSE(c->direction_for_named_tools);
  EXPECT_EQ(c->thresholds.byte_ratio, 5);
  EXPECT_EQ(c->thresholds.coupling, 0.5);
  EXPECT_EQ(c->thresholds.response_share, 0.7);
  EXPECT_EQ(c->thresholds.size_ratio, 3);
  EXPECT_EQ(c->thresholds.input_share, 0.8);
  EXPECT_EQ(c->thresholds.input_events, 100u);
  EXPECT_EQ(c->thresholds.active_input_seconds, 20u);
  EXPECT_EQ(c->thresholds.input_gap_cv, 1.5);
  EXPECT_EQ(c->thresholds.call_pps, 25);
  EXPECT_EQ(c->thresholds.call_cv, 0.4);
}

TEST(FlowShapeConfig, RejectsUnknownKeys) {
  absl::StatusOr<FlowShapeConfig> c = Parse("flow_shape: {min_duraton: 20s}\n");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("min_duraton"));
  c = Parse("flow_shape: {thresholds: {coupling: 0.5, couplng: 0.5}}\n");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("couplng"));
}

TEST(FlowShapeConfig, RejectsBadValues) {
  for (const char* yaml :
       {"flow_shape: {thresholds: {coupling: 1.5}}\n",
        "flow_shape: {thresholds: {response_share: lots}}\n",
        "flow_shape: {input_max_bytes: 9000}\n", "flow_shape: {min_duration: 0s}\n",
        "flow_shape: {window: 1m, min_duration: 20s}\n"}) {
    absl::StatusOr<FlowShapeConfig> c = Parse(yaml);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
    EXPECT_THAT(c.status().message(), HasSubstr("test.yaml:")) << yaml;
  }
}

TEST(FlowShapeConfig, ShippedFileEqualsBuiltInDefaults) {
  absl::StatusOr<config::Section> root =
      config::LoadFile(RELAYWATCH_SOURCE_DIR "/conf/relaywatch.yaml");
  ASSERT_TRUE(root.ok()) << root.status();
  const config::Section section = root->Child("detectors").Child("flow_shape");
  ASSERT_TRUE(section.present()) << "conf/relaywatch.yaml documents detectors.flow_shape";
  absl::StatusOr<FlowShapeConfig> file = ParseFlowShapeConfig(section);
  ASSERT_TRUE(file.ok()) << file.status();
  const FlowShapeConfig d;
  EXPECT_EQ(file->enabled, d.enabled);
  EXPECT_EQ(file->min_duration, d.min_duration);
  EXPECT_EQ(file->window, d.window);
  EXPECT_EQ(file->input_max_bytes, d.input_max_bytes);
  EXPECT_EQ(file->burst_gap, d.burst_gap);
  EXPECT_EQ(file->reaction_window, d.reaction_window);
  EXPECT_EQ(file->quiet_gap, d.quiet_gap);
  EXPECT_EQ(file->direction_for_named_tools, d.direction_for_named_tools);
  const Thresholds& t = file->thresholds;
  EXPECT_EQ(t.byte_ratio, d.thresholds.byte_ratio);
  EXPECT_EQ(t.coupling, d.thresholds.coupling);
  EXPECT_EQ(t.response_share, d.thresholds.response_share);
  EXPECT_EQ(t.size_ratio, d.thresholds.size_ratio);
  EXPECT_EQ(t.input_share, d.thresholds.input_share);
  EXPECT_EQ(t.input_events, d.thresholds.input_events);
  EXPECT_EQ(t.active_input_seconds, d.thresholds.active_input_seconds);
  EXPECT_EQ(t.input_gap_cv, d.thresholds.input_gap_cv);
  EXPECT_EQ(t.call_pps, d.thresholds.call_pps);
  EXPECT_EQ(t.call_cv, d.thresholds.call_cv);
}

TEST(FlowShapeConfig, DisabledSectionBuildsNoDetector) {
  absl::StatusOr<config::Section> root = config::LoadString("flow_shape: {enabled: false}\n");
  ASSERT_TRUE(root.ok());
  absl::StatusOr<std::unique_ptr<Detector>> d = Create(root->Child("flow_shape"), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, nullptr);
}

// ---------------------------------------------------------------------------------------
// Feature arithmetic

TEST(SizeHistogram, BinsGrowBySqrtTwoAndTheMedianIsTheBinLimit) {
  EXPECT_EQ(SizeHistogram::Bin(1), 0);
  EXPECT_EQ(SizeHistogram::Bin(16), 0);
  EXPECT_EQ(SizeHistogram::Bin(17), 1);
  EXPECT_EQ(SizeHistogram::Bin(32), 2);
  EXPECT_EQ(SizeHistogram::Bin(1448), 13);
  EXPECT_EQ(SizeHistogram::Bin(1 << 30), SizeHistogram::kBins - 1);
  SizeHistogram h;
  EXPECT_EQ(h.Median(), 0u);
  for (int i = 0; i < 3; ++i) {
    h.Add(30);  // bin limit 32
  }
  h.Add(1000);  // bin limit 1024
  h.Add(1000);
  EXPECT_EQ(h.total(), 5u);
  EXPECT_EQ(h.Median(), 32u);
  h.Add(1000);
  EXPECT_EQ(h.Median(), 32u);  // 3 of 6: the lower half ends in the 32-byte bin
  h.Add(1000);
  EXPECT_EQ(h.Median(), 1024u);
}

TEST(SizeHistogram, HalvingOnOverflowKeepsTheMedian) {
  SizeHistogram h;
  for (int i = 0; i < 70000; ++i) {
    h.Add(100);
  }
  for (int i = 0; i < 20000; ++i) {
    h.Add(5000);
  }
  EXPECT_LE(h.total(), 70000u);
  EXPECT_EQ(h.Median(), SizeHistogram::UpperLimit(SizeHistogram::Bin(100)));
}

TEST(FlowShapeFeatures, SizeClassesFollowTheResearchBrief) {
  EXPECT_EQ(SizeClass(1), 0);
  EXPECT_EQ(SizeClass(64), 0);
  EXPECT_EQ(SizeClass(65), 1);
  EXPECT_EQ(SizeClass(128), 1);
  EXPECT_EQ(SizeClass(256), 2);
  EXPECT_EQ(SizeClass(576), 3);
  EXPECT_EQ(SizeClass(1200), 4);
  EXPECT_EQ(SizeClass(1201), 5);
}

struct Pkt {
  absl::Duration at;
  int dir = 0;
  std::uint32_t bytes = 0;
  bool rtp = false;
  // The first two payload bytes, when given (both nonzero); else from `rtp`.
  std::uint8_t first = 0;
  std::uint8_t second = 0;
};

void Feed(FlowShape& shape, const FlowShapeConfig& c, std::vector<Pkt> packets, bool udp = false) {
  std::stable_sort(packets.begin(), packets.end(),
                   [](const Pkt& a, const Pkt& b) { return a.at < b.at; });
  for (const Pkt& p : packets) {
    shape.Advance(c, kT0 + p.at);
    // RTP version 2, payload type 111 (a dynamic audio type).
    const bool given = p.first != 0 && p.second != 0;
    shape.Add(c, kT0 + p.at, p.dir, p.bytes, given ? p.first : (p.rtp ? 0x80 : 0x17),
              given ? p.second : (p.rtp ? 111 : 0x03), true, udp);
  }
}

TEST(FlowShapeFeatures, CountsBurstsInputsAnswersAndCoupling) {
  const FlowShapeConfig c;
  FlowShape shape(kT0, {absl::ZeroDuration(), absl::ZeroDuration()});
  // Direction 1 types three keys; direction 0 answers the first two 20 ms later with a
  // two-packet burst (2 ms apart: one burst), and the third goes unanswered.
  Feed(shape, c,
       {{absl::Milliseconds(100), 1, 30},
        {absl::Milliseconds(120), 0, 400},
        {absl::Milliseconds(122), 0, 200},
        {absl::Milliseconds(600), 1, 30},
        {absl::Milliseconds(620), 0, 400},
        {absl::Milliseconds(1100), 1, 30},
        {absl::Milliseconds(1900), 0, 900}});  // 800 ms later: too late to be an answer
  shape.Finish(c);
  const DirectionShape& screen = shape.direction(0);
  const DirectionShape& input = shape.direction(1);
  EXPECT_EQ(screen.bursts, 3u);
  EXPECT_EQ(screen.response_bursts, 2u);
  EXPECT_EQ(screen.payload_bytes, 1900u);
  EXPECT_EQ(input.input_events, 3u);
  EXPECT_EQ(input.inputs_resolved, 3u);
  EXPECT_EQ(input.inputs_answered, 2u);
  EXPECT_EQ(input.spontaneous_inputs, 3u);
  const Orientation o = shape.View(0, kT0 + absl::Seconds(2));
  EXPECT_DOUBLE_EQ(o.coupling, 2.0 / 3);
  EXPECT_DOUBLE_EQ(o.response_share, 2.0 / 3);
  EXPECT_EQ(o.median_input_bytes, 32u);
  // Answers of 600 and 400 bytes: the lower median is the 400-byte one's bin.
  EXPECT_EQ(o.median_response_bytes, 512u);
  EXPECT_DOUBLE_EQ(o.size_ratio, 512.0 / 32);
  EXPECT_DOUBLE_EQ(o.byte_ratio, 1900.0 / 90);
  EXPECT_DOUBLE_EQ(o.input_share, 1.0);
  // Active seconds: 0 and 1 for both sides.
  EXPECT_DOUBLE_EQ(shape.IdleFraction(0, kT0 + absl::Seconds(2)), 0.0);
}

TEST(FlowShapeFeatures, AnswersCannotArriveFasterThanTheScreenSidesRoundTrip) {
  const FlowShapeConfig c;
  // The screen side (0) is 100 ms of round trip away from the sensor.
  FlowShape shape(kT0, {absl::Milliseconds(100), absl::ZeroDuration()});
  Feed(shape, c,
       {{absl::ZeroDuration(), 1, 30},
        {absl::Milliseconds(10), 0, 500},     // 10 ms: not caused by the input
        {absl::Milliseconds(130), 0, 500}});  // one round trip + 30 ms: an answer
  shape.Finish(c);
  EXPECT_EQ(shape.direction(0).response_bursts, 1u);
  EXPECT_EQ(shape.direction(1).inputs_answered, 1u);
}

TEST(FlowShapeFeatures, InputsOneRoundTripAfterTheOtherSideAreNotSpontaneous) {
  const FlowShapeConfig c;
  // The input side (1) is 120 ms of round trip away: a packet of it 120 ms after the other
  // side's is what an acknowledgement or a lock-step request looks like.
  FlowShape shape(kT0, {absl::ZeroDuration(), absl::Milliseconds(120)});
  Feed(shape, c,
       {{absl::ZeroDuration(), 0, 800},
        {absl::Milliseconds(121), 1, 40},  // locked
        {absl::Milliseconds(400), 1, 40},  // spontaneous
        {absl::Milliseconds(420), 1, 40},  // S silent 420 ms
        {absl::Milliseconds(425), 0, 800},
        {absl::Milliseconds(440), 1, 40}});  // S 15 ms ago
  EXPECT_EQ(shape.direction(1).input_events, 4u);
  EXPECT_EQ(shape.direction(1).locked_inputs, 1u);
  EXPECT_EQ(shape.direction(1).spontaneous_inputs, 2u);
}

TEST(FlowShapeFeatures, PendingInputsBeyondTheRingAreNotSampled) {
  const FlowShapeConfig c;
  FlowShape shape(kT0, {absl::ZeroDuration(), absl::ZeroDuration()});
  std::vector<Pkt> p;
  p.reserve(kPendingInputs + 5);
  for (int i = 0; i < kPendingInputs + 4; ++i) {
    p.push_back({absl::Milliseconds(10 * i), 1, 20});
  }
  p.push_back({absl::Milliseconds(10 * (kPendingInputs + 4) + 5), 0, 600});
  Feed(shape, c, p);
  EXPECT_EQ(shape.direction(1).inputs_unsampled, 4u);
  EXPECT_EQ(shape.direction(1).inputs_resolved, static_cast<std::uint32_t>(kPendingInputs));
}

TEST(FlowShapeFeatures, SteadyBothWaysWindowsAreCallWindows) {
  const FlowShapeConfig c;
  FlowShape shape(kT0, {absl::ZeroDuration(), absl::ZeroDuration()});
  std::vector<Pkt> p;
  for (int i = 0; i < 1500; ++i) {  // 30 s of 20 ms audio each way, TLS-wrapped (not RTP)
    p.push_back({absl::Milliseconds(20 * i), 0, 150});
    p.push_back({absl::Milliseconds(20 * i + 7), 1, 140});
  }
  Feed(shape, c, p);
  shape.Advance(c, kT0 + absl::Seconds(31));
  EXPECT_EQ(shape.windows(), 3u);
  EXPECT_EQ(shape.call_windows(), 3u);
  EXPECT_TRUE(shape.LooksLikeCall());
  EXPECT_FALSE(shape.MediaBothWays());
}

// ---------------------------------------------------------------------------------------
// Synthetic sessions for the decision

// A person driving a remote desktop: bursts of typing and pointer movement with pauses. Keys
// and clicks are answered by screen updates after `react` (plus the screen side's round
// trip); most pointer moves are drawn by the viewer and get no answer.
std::vector<Pkt> RemoteControl(int screen, absl::Duration length, absl::Duration screen_rtt,
                               std::uint32_t seed = 1) {
  std::mt19937 rng(seed);
  const auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<Pkt> p;
  const int input = 1 - screen;
  absl::Duration t = absl::Milliseconds(1200);
  while (t < length) {
    if (uniform(0, 2) == 0) {
      for (int i = 0; i < 25 && t < length; ++i) {  // a pointer stroke, 60 Hz
        p.push_back({t, input, 32});
        if (i % 8 == 7) {
          p.push_back({t + screen_rtt + absl::Milliseconds(15), screen, 700});
        }
        t += absl::Milliseconds(16);
      }
    } else {
      for (int k = uniform(3, 9); k > 0 && t < length; --k) {  // typing
        p.push_back({t, input, 27});
        const absl::Duration a = t + screen_rtt + absl::Milliseconds(uniform(10, 40));
        p.push_back({a, screen, static_cast<std::uint32_t>(uniform(90, 400))});
        p.push_back({a + absl::Milliseconds(1), screen, 60});
        t += absl::Milliseconds(uniform(90, 260));
      }
    }
    t += absl::Milliseconds(uniform(300, 2500));  // a pause
  }
  return p;
}

Decision Judge(const std::vector<Pkt>& packets, absl::Duration length,
               std::array<absl::Duration, 2> rtt = {}, bool udp = false) {
  const FlowShapeConfig c;
  FlowShape shape(kT0, rtt);
  Feed(shape, c, packets, udp);
  shape.Finish(c);
  return Decide(shape, c, kT0 + length, length);
}

TEST(FlowShapeDecision, FindsARemoteDesktopAndItsScreenSide) {
  for (int screen : {0, 1}) {
    for (std::uint32_t seed : {1u, 2u, 3u}) {
      const std::vector<Pkt> p =
          RemoteControl(screen, absl::Seconds(40), absl::ZeroDuration(), seed);
      const Decision d = Judge(p, absl::Seconds(40));
      EXPECT_EQ(d.verdict, ShapeVerdict::kRemoteControl)
          << "screen " << screen << " seed " << seed << " failed " << d.failed;
      EXPECT_EQ(d.features.screen, screen);
      EXPECT_GE(d.features.size_ratio, 2.0);
      EXPECT_GE(d.features.input_gap_cv, 1.0);
    }
  }
}

TEST(FlowShapeDecision, FindsItBehindAFarScreenSideWithKnownRoundTrip) {
  // The sensor sits next to the viewer: every answer comes one 150 ms round trip later.
  const std::vector<Pkt> p = RemoteControl(1, absl::Seconds(40), absl::Milliseconds(150));
  const Decision d = Judge(p, absl::Seconds(40), {absl::Milliseconds(1), absl::Milliseconds(150)});
  EXPECT_EQ(d.verdict, ShapeVerdict::kRemoteControl) << d.failed;
  EXPECT_EQ(d.features.screen, 1);
}

// A remote desktop over WebRTC, the screen at the originator: the screen as RTP video, the
// input on a data channel (DTLS), and what the two stacks add on their own clocks: the
// viewer's congestion feedback (RTCP transport-cc, 205, every 100 ms while video comes) and
// the host's bandwidth probes (RTP padding-only packets on its RTX type, 289 bytes, every 70
// ms). Neither is a person or a screen (lab webrtc_session: 350 of 480 viewer datagrams, 420
// of 930 host ones).
std::vector<Pkt> WebRtcDesktop(absl::Duration length) {
  std::vector<Pkt> p = RemoteControl(0, length, absl::ZeroDuration(), 4);
  for (Pkt& x : p) {
    if (x.dir == 0)
      x.rtp = true;
  }
  for (int i = 0; i < length / absl::Milliseconds(100); ++i) {
    p.push_back({absl::Milliseconds(1000 + 100 * i), 1, 48, false, 0x8f, 205});
    p.push_back({absl::Milliseconds(1030 + 70 * i), 0, 289, false, 0xa0, 97});
  }
  return p;
}

TEST(FlowShapeDecision, AWebRtcDesktopIsJudgedWithoutItsStacksFeedback) {
  std::vector<Pkt> p = WebRtcDesktop(absl::Seconds(40));
  Decision d = Judge(p, absl::Seconds(40), {}, /*udp=*/true);
  EXPECT_EQ(d.verdict, ShapeVerdict::kRemoteControl) << d.failed;
  EXPECT_EQ(d.features.screen, 0);
  EXPECT_GE(d.features.input_gap_cv, 1.0);

  // On a lossy line the host's stack answers the feedback too: a retransmission or probe 15
  // ms after each report (lab, 1 % loss: 570 lone ones in 40 s). They answer the
  // viewer's stack, so they are not the screen speaking on its own.
  for (int i = 0; i < 400; ++i)
    p.push_back({absl::Milliseconds(1015 + 100 * i), 0, 1100, true});
  d = Judge(p, absl::Seconds(40), {}, /*udp=*/true);
  EXPECT_EQ(d.verdict, ShapeVerdict::kRemoteControl) << d.failed;
  EXPECT_GE(d.features.response_share, 0.6) << d.features.response_share;
}

// The viewer 220 ms away (a round trip), its person pointing and typing with few pauses: the
// host's video answers each input while the next ones come, and keeps coming between them
// (30 frames a second). The host's stack acknowledges the data channel's input (SCTP SACKs,
// small DTLS records) 20 ms after every other input. `screen_first_byte` is the first byte of
// the host's screen packets.
std::vector<Pkt> FarVideoScreen(std::uint8_t screen_first_byte, absl::Duration length) {
  std::mt19937 rng(12);
  const auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<Pkt> p;
  const auto screen = [&](absl::Duration at, std::uint32_t bytes) {
    p.push_back({at, 0, bytes, false, screen_first_byte, 100});
  };
  absl::Duration t = absl::Milliseconds(1200);
  for (int i = 0; t < length; ++i) {
    p.push_back({t, 1, 91});  // an input on the data channel
    screen(t + absl::Milliseconds(225), 1100);
    if (i % 2 == 0)
      p.push_back({t + absl::Milliseconds(20), 0, 60});  // the SACK
    t += absl::Milliseconds(uniform(60, 300));
    if (uniform(0, 9) == 0)
      t += absl::Milliseconds(uniform(400, 1500));  // a rare pause
  }
  for (absl::Duration f = absl::Seconds(1); f < length; f += absl::Milliseconds(33))
    screen(f, 1100);
  return p;
}

TEST(FlowShapeDecision, AFarScreenSentAsVideoIsJudgedByItsOtherPackets) {
  // The video is never silent for quiet_gap, so hardly any input counts as spontaneous
  // against it (5 of 8 such lab sessions at 90-110 ms one way reached 4 active seconds in
  // their first 20 s); video is acknowledged by RTCP alone, so the input's silence is taken
  // against the host's other packets, its SACKs among them.
  const absl::Duration length = absl::Seconds(40);
  const Decision video = Judge(FarVideoScreen(0x90, length), length, {}, /*udp=*/true);
  EXPECT_EQ(video.verdict, ShapeVerdict::kRemoteControl) << video.failed;
  EXPECT_EQ(video.features.screen, 0);

  // The same stream of screen packets that is not RTP (a QUIC server's, first byte 0x40-0x7f)
  // may be what the small packets acknowledge: judged against every packet, as before.
  const Decision quic = Judge(FarVideoScreen(0x45, length), length, {}, /*udp=*/true);
  EXPECT_EQ(quic.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(quic.failed, "active_input_seconds");
  EXPECT_LT(quic.features.active_input_seconds, video.features.active_input_seconds);
}

TEST(FlowShapeDecision, StackFeedbackAloneIsNoPerson) {
  // A viewer that only watches: its stack's reports come 10 a second with a little jitter,
  // the screen's video keeps coming. Reports were counted as input before 2026-12-05.
  std::vector<Pkt> p;
  std::mt19937 rng(3);
  for (int i = 0; i < 400; ++i) {
    p.push_back(
        {absl::Milliseconds(1000 + 100 * i + std::uniform_int_distribution<int>(0, 60)(rng)), 1, 60,
         false, 0x8f, 205});
  }
  for (int i = 0; i < 1200; ++i)
    p.push_back({absl::Milliseconds(1000 + 33 * i), 0, 1100, true});
  const Decision d = Judge(p, absl::Seconds(40), {}, /*udp=*/true);
  EXPECT_NE(d.verdict, ShapeVerdict::kRemoteControl);
  EXPECT_STREQ(d.failed, "input_events");
}

TEST(FlowShapeDecision, UndecidedBeforeMinDuration) {
  const std::vector<Pkt> p = RemoteControl(0, absl::Seconds(15), absl::ZeroDuration());
  const Decision d = Judge(p, absl::Seconds(15));
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "min_duration");
}

TEST(FlowShapeDecision, TerminalEchoIsNotAScreen) {
  // Interactive SSH/telnet: every key comes back as an echo of the same size.
  std::vector<Pkt> p;
  std::mt19937 rng(5);
  absl::Duration t = absl::Seconds(1);
  while (t < absl::Seconds(40)) {
    for (int k = 0; k < 8; ++k) {
      p.push_back({t, 0, 36});
      p.push_back({t + absl::Milliseconds(12), 1, 36});
      t += absl::Milliseconds(std::uniform_int_distribution<int>(80, 250)(rng));
    }
    t += absl::Milliseconds(std::uniform_int_distribution<int>(500, 2000)(rng));
  }
  const Decision d = Judge(p, absl::Seconds(40));
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "size_ratio");
}

TEST(FlowShapeDecision, VideoCallIsACall) {
  // RTP both ways: 50 pps audio each way, 30 fps video from one side, first byte 0x80.
  std::vector<Pkt> p;
  for (int i = 0; i < 2000; ++i) {
    p.push_back({absl::Milliseconds(20 * i), 0, 120, true});
    p.push_back({absl::Milliseconds(20 * i + 3), 1, 110, true});
  }
  for (int i = 0; i < 1200; ++i) {
    p.push_back({absl::Milliseconds(33 * i + 9), 0, 1100, true});
  }
  const Decision d = Judge(p, absl::Seconds(40), {}, /*udp=*/true);
  EXPECT_EQ(d.verdict, ShapeVerdict::kCall);
}

TEST(FlowShapeDecision, StreamingAndDownloadsAreNotRemoteControl) {
  // A player fetches a 300 KB chunk every 3 s: big answers to small requests, but one input
  // every few seconds is not a person driving a screen.
  std::vector<Pkt> p;
  for (int chunk = 0; chunk < 20; ++chunk) {
    const absl::Duration t = absl::Seconds(1 + 3 * chunk);
    p.push_back({t, 0, 90});
    for (int i = 0; i < 210; ++i) {
      p.push_back({t + absl::Milliseconds(40) + absl::Microseconds(300 * i), 1, 1448});
    }
  }
  Decision d = Judge(p, absl::Seconds(62));
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "input_events");

  // A QUIC download: the client's small packets are acknowledgements, each one round trip
  // after the data it acknowledges, while the server never falls silent for long.
  p.clear();
  std::mt19937 rng(9);
  absl::Duration t = absl::Seconds(1);
  for (int i = 0; t < absl::Seconds(31); ++i) {
    t += absl::Microseconds(std::exponential_distribution<double>(1.0 / 1500)(rng));
    p.push_back({t, 1, 1350});
    if (i % 2 == 1) {
      p.push_back({t + absl::Milliseconds(30), 0, 45});
    }
  }
  d = Judge(p, absl::Seconds(32), {}, /*udp=*/true);
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "active_input_seconds");
}

TEST(FlowShapeDecision, RegularPollingIsNotAPerson) {
  // An application asks every 250 ms and gets a larger answer: answered, larger, but as
  // regular as a clock.
  std::vector<Pkt> p;
  for (int i = 0; i < 160; ++i) {
    const absl::Duration t = absl::Seconds(1) + absl::Milliseconds(250 * i);
    p.push_back({t, 0, 80});
    p.push_back({t + absl::Milliseconds(20), 1, 900});
  }
  const Decision d = Judge(p, absl::Seconds(42));
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "input_gap_cv");
}

TEST(FlowShapeDecision, AnUploadWithoutAnswersIsNotRemoteControl) {
  // Bulk data one way; the receiver's TCP acknowledgements carry no payload and are never
  // seen here, so the heavy side has no input side to answer.
  std::vector<Pkt> p;
  p.reserve(20000);
  for (int i = 0; i < 20000; ++i) {
    p.push_back({absl::Seconds(1) + absl::Microseconds(1500 * i), 0, 1448});
  }
  const Decision d = Judge(p, absl::Seconds(32));
  EXPECT_EQ(d.verdict, ShapeVerdict::kUndecided);
  EXPECT_STREQ(d.failed, "input_events");
}

TEST(FlowShapeDecision, ScreenSideForANamedToolNeedsLessEvidence) {
  const FlowShapeConfig c;
  // 10 s of interaction: too little for Decide(), enough to say which side is the screen.
  const std::vector<Pkt> p = RemoteControl(1, absl::Seconds(12), absl::ZeroDuration(), 7);
  FlowShape shape(kT0, {});
  Feed(shape, c, p);
  EXPECT_EQ(DecideScreenSide(shape, c, kT0 + absl::Seconds(12)), 1);
  // An echoing terminal has no screen side.
  FlowShape echo(kT0, {});
  std::vector<Pkt> e;
  for (int i = 0; i < 60; ++i) {
    e.push_back({absl::Milliseconds(1000 + 170 * i), 0, 36});
    e.push_back({absl::Milliseconds(1010 + 170 * i), 1, 36});
  }
  Feed(echo, c, e);
  EXPECT_EQ(DecideScreenSide(echo, c, kT0 + absl::Seconds(12)), -1);
}

// ---------------------------------------------------------------------------------------
// The detector, driven through a flow table as a worker drives it

class Session {
 public:
  Session(const std::string& client, const std::string& server, FlowShapeConfig config = {})
      : client_{*IpAddress::Parse(client), 50123},
        server_{*IpAddress::Parse(server), 7070},
        detector_(config, DetectorContext{}),
        table_(flow::FlowTableConfig{},
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }) {}

  // Sends one TCP segment; `from_client` picks the direction. Returns the verdict. With
  // `payload` its bytes: a UDP datagram's, or with `tcp_bytes` a TCP segment's, numbered on
  // from the side's last.
  Verdict Send(absl::Duration at, bool from_client, std::uint8_t flags, std::uint32_t bytes,
               const std::string* payload = nullptr, bool tcp_bytes = false) {
    decode::DecodedPacket p;
    p.ts = kT0 + at;
    p.ip_version = 4;
    p.protocol = payload && !tcp_bytes ? decode::kProtoUdp : decode::kProtoTcp;
    if (payload) {
      p.payload = {reinterpret_cast<const std::uint8_t*>(payload->data()), payload->size()};
      bytes = static_cast<std::uint32_t>(payload->size());
    }
    std::uint32_t& seq = seq_[from_client ? 0 : 1];
    p.seq = seq;
    seq += bytes;
    const flow::Endpoint& src = from_client ? client_ : server_;
    const flow::Endpoint& dst = from_client ? server_ : client_;
    p.src = src.ip;
    p.dst = dst.ip;
    p.src_port = src.port;
    p.dst_port = dst.port;
    p.tcp_flags = flags;
    p.payload_length = bytes;
    p.wire_length = 54 + bytes;
    flow::Direction direction = flow::Direction::kToResponder;
    flow_ = &table_.Track(p, direction);
    if (done_) {
      return Verdict::kDone;
    }
    const Verdict v = detector_.OnPacket(p, *flow_, direction, events_);
    done_ = v == Verdict::kDone;
    return v;
  }
  void Handshake() {
    Send(absl::ZeroDuration(), true, decode::kTcpSyn, 0);
    Send(absl::Milliseconds(1), false, decode::kTcpSyn | decode::kTcpAck, 0);
    Send(absl::Milliseconds(2), true, decode::kTcpAck, 0);
  }
  // Plays synthetic packets; direction 0 = client -> server.
  void Play(std::vector<Pkt> packets) {
    std::stable_sort(packets.begin(), packets.end(),
                     [](const Pkt& a, const Pkt& b) { return a.at < b.at; });
    for (const Pkt& p : packets) {
      Send(p.at, p.dir == 0, decode::kTcpAck | decode::kTcpPsh, p.bytes);
    }
  }
  // Plays them as UDP datagrams with their first two bytes (as Feed), each passed through
  // `wrap`.
  void PlayUdp(std::vector<Pkt> packets,
               const std::function<std::string(const std::string&)>& wrap) {
    std::stable_sort(packets.begin(), packets.end(),
                     [](const Pkt& a, const Pkt& b) { return a.at < b.at; });
    for (const Pkt& p : packets) {
      const std::string wrapped = wrap(Datagram(p));
      Send(p.at, p.dir == 0, 0, 0, &wrapped);
    }
  }
  // Plays them as TURN over TCP (RFC 8656 12.5): each datagram in padded ChannelData, one
  // frame a segment, but every seventh frame written behind the side's next one and every
  // eleventh cut in two, as a stream may carry them.
  void PlayTurnTcp(std::vector<Pkt> packets) {
    std::stable_sort(packets.begin(), packets.end(),
                     [](const Pkt& a, const Pkt& b) { return a.at < b.at; });
    std::string held[2];
    for (std::size_t i = 0; i < packets.size(); ++i) {
      const int d = packets[i].dir;
      std::string frame = stun_wire::InChannel(Datagram(packets[i]), 0x4001);
      frame.append((4 - frame.size() % 4) % 4, '\0');
      std::string bytes = held[d] + frame;
      held[d].clear();
      if (i % 7 == 3) {
        held[d] = bytes;
        continue;
      }
      if (i % 11 == 5) {
        const std::string first = bytes.substr(0, 6);
        Send(packets[i].at, d == 0, decode::kTcpAck | decode::kTcpPsh, 0, &first, true);
        bytes = bytes.substr(6);
      }
      Send(packets[i].at, d == 0, decode::kTcpAck | decode::kTcpPsh, 0, &bytes, true);
    }
  }
  void End() { table_.EndAll(flow::EndReason::kShutdown); }
  // A packet as a datagram of its size, with its first two bytes (as Feed).
  static std::string Datagram(const Pkt& p) {
    const bool given = p.first != 0 && p.second != 0;
    std::string datagram(std::max<std::uint32_t>(p.bytes, 2), 'x');
    datagram[0] = static_cast<char>(given ? p.first : (p.rtp ? 0x80 : 0x17));
    datagram[1] = static_cast<char>(given ? p.second : (p.rtp ? 111 : 0x03));
    return datagram;
  }
  std::vector<Event>& events() { return events_.events(); }
  const FlowShapeDetector& detector() const { return detector_; }
  const flow::FlowState& flow() const { return *flow_; }
  bool done() const { return done_; }

 private:
  flow::Endpoint client_, server_;
  FlowShapeDetector detector_;
  EventBuffer events_;
  flow::FlowTable table_;
  flow::FlowState* flow_ = nullptr;
  bool done_ = false;
  std::uint32_t seq_[2] = {1000, 500000};
};

TEST(FlowShapeDetector, ReportsOneSessionWithTheScreenSideAsControlled) {
  // The laptop (10.1.1.5) dials out to a relay and serves its screen: the screen side is the
  // originator (direction 0), as with AnyDesk, TeamViewer or a reverse VNC connection.
  Session s("10.1.1.5", "198.51.100.7");
  s.Handshake();
  s.Play(RemoteControl(0, absl::Seconds(45), absl::ZeroDuration(), 11));
  EXPECT_TRUE(s.done());
  s.End();
  ASSERT_EQ(s.events().size(), 1u);
  const Event& e = s.events()[0];
  EXPECT_EQ(e.event_type, "remote_session");
  EXPECT_EQ(e.body["app"], kUnknownRemoteControl);
  EXPECT_EQ(e.body["controlled"], "10.1.1.5");
  EXPECT_EQ(e.body["controller"], "198.51.100.7");
  EXPECT_EQ(e.body["controlled_side"], "src");
  EXPECT_EQ(e.body["confirmed_by"], "flow_shape");
  EXPECT_EQ(e.body["transport"], "tcp");
  const nlohmann::json& f = e.body["flow_shape"];
  for (const char* key :
       {"duration", "byte_ratio", "coupling", "response_share", "size_ratio", "small_packet_rate",
        "input_events", "active_input_seconds", "input_gap_cv", "screen", "input"}) {
    EXPECT_TRUE(f.contains(key)) << key;
  }
  EXPECT_GE(f["duration"].get<double>(), 19.0);
  EXPECT_TRUE(f["screen"].contains("pps"));
  EXPECT_TRUE(f["screen"].contains("bursts"));
  EXPECT_EQ(f["screen"]["size_classes"].size(), 6u);
  EXPECT_EQ(s.detector().counters().sessions.Read(), 1u);
}

TEST(FlowShapeDetector, AWebRtcDesktopThroughTurnIsJudgedByWhatItsDatagramsCarry) {
  // The laptop's datagrams go to a TURN server (Chrome Remote Desktop's relays), wrapped in
  // ChannelData or, before a channel is bound, Send and Data indications: judged as the
  // same session without the relay, the stacks' feedback inside the wrapping set aside.
  const std::string peer = stun_wire::XorPeerAddress(203, 0, 113, 9, 50000);
  const std::vector<std::function<std::string(const std::string&)>> wraps = {
      [](const std::string& d) { return d; },
      [](const std::string& d) { return stun_wire::InChannel(d, 0x4001); },
      [&peer](const std::string& d) {
        return stun_wire::InIndication(stun_wire::kSendIndication, peer, d);
      }};
  nlohmann::json bare;
  for (std::size_t w = 0; w < wraps.size(); ++w) {
    SCOPED_TRACE(w);
    Session s("10.1.1.5", "198.51.100.7");
    s.PlayUdp(WebRtcDesktop(absl::Seconds(45)), wraps[w]);
    s.End();
    ASSERT_EQ(s.events().size(), 1u);
    const Event& e = s.events()[0];
    EXPECT_EQ(e.event_type, "remote_session");
    EXPECT_EQ(e.body["controlled"], "10.1.1.5");
    EXPECT_EQ(e.body["transport"], "udp");
    // Decided after 20-25 s: about 200 reports and 280 probes by then.
    const nlohmann::json& f = e.body["flow_shape"];
    EXPECT_GT(f["screen"].value("rtcp_packets", 0), 150);
    EXPECT_GT(f["input"].value("rtcp_packets", 0), 150);
    if (w == 0)
      bare = f;
    else
      EXPECT_EQ(f, bare);  // every feature as without the relay
  }
}

TEST(FlowShapeDetector, AWebRtcDesktopThroughTurnOverTcpIsJudgedByItsDatagrams) {
  // Where no UDP goes out the laptop reaches its TURN server over TCP: the same session,
  // framed in the stream, is judged as its datagrams, not as the stream's segments.
  Session udp("10.1.1.5", "198.51.100.7");
  const std::string empty;
  udp.Send(absl::ZeroDuration(), true, 0, 0, &empty);  // its flow begins with the TCP one's
  udp.PlayUdp(WebRtcDesktop(absl::Seconds(45)),
              [](const std::string& d) { return stun_wire::InChannel(d, 0x4001); });
  udp.End();
  Session tcp("10.1.1.5", "198.51.100.7");
  tcp.Handshake();
  tcp.PlayTurnTcp(WebRtcDesktop(absl::Seconds(45)));
  tcp.End();
  ASSERT_EQ(udp.events().size(), 1u);
  ASSERT_EQ(tcp.events().size(), 1u);
  const Event& e = tcp.events()[0];
  EXPECT_EQ(e.event_type, "remote_session");
  EXPECT_EQ(e.body["controlled"], "10.1.1.5");
  EXPECT_EQ(e.body["transport"], "tcp");
  EXPECT_EQ(tcp.detector().counters().turn_over_tcp.Read(), 1u);
  // Judged by the same datagrams: the stacks' feedback set aside as over UDP, each frame
  // counted once (also those cut across segments). Only timings differ: a frame written
  // behind the next one reaches the sensor with it.
  const nlohmann::json& f = e.body["flow_shape"];
  const nlohmann::json& bare = udp.events()[0].body["flow_shape"];
  EXPECT_NEAR(f["duration"].get<double>(), bare["duration"].get<double>(), 0.05);
  for (const char* side : {"screen", "input"}) {
    SCOPED_TRACE(side);
    EXPECT_EQ(f[side]["rtcp_packets"], bare[side]["rtcp_packets"]);
    EXPECT_EQ(f[side]["packets"], bare[side]["packets"]);
    EXPECT_EQ(f[side]["bytes"], bare[side]["bytes"]);
    EXPECT_EQ(f[side]["size_classes"], bare[side]["size_classes"]);
  }

  // The same segments without the framing (TLS records of those sizes): no TURN.
  Session plain("10.1.1.5", "198.51.100.7");
  plain.Handshake();
  plain.Play(WebRtcDesktop(absl::Seconds(45)));
  plain.End();
  EXPECT_EQ(plain.detector().counters().turn_over_tcp.Read(), 0u);
}

TEST(FlowShapeDetector, StateIsCappedAndFreedOnceDecided) {
  Session s("203.0.113.9", "10.1.1.5");
  s.Handshake();
  // Short flows never get state: the warm-up has not passed.
  s.Send(absl::Milliseconds(10), true, decode::kTcpAck | decode::kTcpPsh, 30);
  EXPECT_EQ(s.detector().FlowStateBytes(s.flow()), 0u);
  s.Send(absl::Milliseconds(1500), true, decode::kTcpAck | decode::kTcpPsh, 30);
  EXPECT_GT(s.detector().FlowStateBytes(s.flow()), 0u);
  EXPECT_LE(s.detector().FlowStateBytes(s.flow()), FlowShapeDetector::kMaxFlowStateBytes);
  s.Play(RemoteControl(1, absl::Seconds(45), absl::ZeroDuration(), 12));
  ASSERT_TRUE(s.done());
  EXPECT_EQ(s.detector().FlowStateBytes(s.flow()), 0u);
  ASSERT_EQ(s.events().size(), 1u);
  EXPECT_EQ(s.events()[0].body["controlled"], "10.1.1.5");
  EXPECT_EQ(s.events()[0].body["controlled_side"], "dest");
}

TEST(FlowShapeDetector, NamesTheScreenSideWhenTheEvidenceIsOnlyEnoughForThat) {
  // 12 s of interaction in a 30 s flow: the strict rule wants more active input seconds.
  Session s("10.1.1.5", "198.51.100.7");
  s.Handshake();
  std::vector<Pkt> p = RemoteControl(0, absl::Seconds(12), absl::ZeroDuration(), 13);
  p.push_back({absl::Seconds(29), 1, 40});  // a keepalive
  s.Play(p);
  s.End();
  ASSERT_EQ(s.events().size(), 1u);
  EXPECT_EQ(s.events()[0].event_type, kDirectionFinding);
  EXPECT_EQ(s.events()[0].body["controlled"], "10.1.1.5");
  EXPECT_EQ(s.detector().counters().directions.Read(), 1u);
}

TEST(FlowShapeDetector, ShortFlowsAreNeverJudged) {
  Session s("10.1.1.5", "198.51.100.7");
  s.Handshake();
  s.Play(RemoteControl(0, absl::Seconds(15), absl::ZeroDuration(), 14));
  s.End();
  EXPECT_TRUE(s.events().empty());
}

// ---------------------------------------------------------------------------------------
// The host stage: named sessions win, and lend their flow to the shape's direction

FlowRef Flow(std::uint64_t id) {
  FlowRef f;
  f.flow_id = id;
  f.src_ip = *IpAddress::Parse("10.1.1.5");
  f.dest_ip = *IpAddress::Parse("198.51.100.7");
  f.src_port = 50123;
  f.dest_port = 443;
  f.protocol = decode::kProtoTcp;
  return f;
}

Event Finding(const std::string& type, const std::string& app, std::uint64_t flow_id,
              const std::string& controlled, const std::string& controller, absl::Duration at) {
  Event e;
  e.event_type = type;
  e.ts = kT0 + at;
  e.flow = Flow(flow_id);
  if (!app.empty()) {
    e.body["app"] = app;
  }
  e.body["controlled"] = controlled;
  e.body["controller"] = controller;
  if (controlled != "unknown") {
    e.body["controlled_side"] = controlled == "10.1.1.5" ? "src" : "dest";
    e.body["controlled_port"] = controlled == "10.1.1.5" ? 50123 : 443;
  }
  e.body["flow_shape"] = {{"coupling", 0.8}};
  return e;
}

host::HostStageConfig HostConfig() {
  host::HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  return c;
}

TEST(FlowShapeHostStage, UnknownRemoteControlOfANamedFlowIsDropped) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(Finding("remote_session", "rdp", 1, "10.1.1.5", "198.51.100.7", {}), out);
  const std::size_t named = out.size();
  stage.Process(Finding("remote_session", kUnknownRemoteControl, 1, "10.1.1.5", "198.51.100.7",
                        absl::Seconds(30)),
                out);
  EXPECT_EQ(out.size(), named);
  EXPECT_EQ(stage.stats().shape_suppressed_named, 1u);
  EXPECT_FALSE(stage.stats().remote_sessions_by_app.contains(kUnknownRemoteControl));
}

// A resolver answering lookups over one QUIC or TLS connection has the shape (nDPI's
// doq_adguard.pcapng: 122 queries in 30 s, answers 2.8 times their size); its handshake
// says it is DNS.
TEST(FlowShapeHostStage, AFlowOfferingOnlyDnsTransportsIsNoRemoteControl) {
  const auto tls = [](std::uint64_t flow_id, std::vector<std::string> alpn) {
    Event e;
    e.event_type = "tls";
    e.ts = kT0;
    e.flow = Flow(flow_id);
    e.body["alpn"] = alpn;
    e.body["sni"] = "dns.example";
    return e;
  };
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(tls(11, {"doq-i00"}), out);
  stage.Process(tls(12, {"dot"}), out);
  stage.Process(tls(13, {"h2", "doq"}), out);  // a client that may speak HTTP is not named
  stage.Process(tls(14, {}), out);
  out.clear();
  for (std::uint64_t id : {11, 12, 13, 14}) {
    stage.Process(Finding("remote_session", kUnknownRemoteControl, id, "198.51.100.7", "10.1.1.5",
                          absl::Seconds(30)),
                  out);
  }
  std::vector<std::uint64_t> published;
  for (const Event& e : out) {
    if (e.event_type == "remote_session")
      published.push_back(e.flow->flow_id);
  }
  EXPECT_THAT(published, ElementsAre(13u, 14u));
  EXPECT_EQ(stage.stats().shape_suppressed_dns, 2u);
  EXPECT_EQ(stage.stats().shape_suppressed_named, 0u);
}

TEST(FlowShapeHostStage, UnknownRemoteControlAloneIsASessionAndALowerAlert) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(Finding("remote_session", kUnknownRemoteControl, 2, "10.1.1.5", "198.51.100.7",
                        absl::Seconds(30)),
                out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].body["app"], kUnknownRemoteControl);
  ASSERT_TRUE(out[1].alert.has_value());
  EXPECT_EQ(out[1].alert->signature_id, host::kSidRemoteControlFromOutside);
  EXPECT_EQ(out[1].alert->detector, "flow_shape");
  EXPECT_EQ(out[1].alert->severity, 2);
  EXPECT_EQ(stage.stats().remote_sessions_by_app.at(kUnknownRemoteControl), 1u);
}

TEST(FlowShapeHostStage, TheShapeFillsInTheDirectionOfANamedSession) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  // AnyDesk through a relay: the session is named, its direction is not.
  Event named = Finding("remote_session", "anydesk", 3, "unknown", "unknown", {});
  named.body["confirmed_by"] = "tls_clue";
  stage.Process(named, out);
  out.clear();
  stage.Process(Finding(kDirectionFinding, "", 3, "10.1.1.5", "198.51.100.7", absl::Seconds(25)),
                out);
  ASSERT_EQ(out.size(), 2u);
  const Event& update = out[0];
  EXPECT_EQ(update.event_type, "remote_session");
  EXPECT_EQ(update.flow->flow_id, 3u);
  EXPECT_EQ(update.body["app"], "anydesk");
  EXPECT_EQ(update.body["confirmed_by"], "tls_clue");
  EXPECT_EQ(update.body["controlled"], "10.1.1.5");
  EXPECT_EQ(update.body["controller"], "198.51.100.7");
  EXPECT_EQ(update.body["controlled_side"], "src");
  EXPECT_EQ(update.body["direction_from"], "flow_shape");
  EXPECT_EQ(update.body["flow_shape"]["coupling"], 0.8);
  ASSERT_TRUE(out[1].alert.has_value());
  EXPECT_EQ(out[1].alert->signature_id, host::kSidRemoteControlFromOutside);
  EXPECT_EQ(stage.stats().shape_directions_filled, 1u);
  EXPECT_EQ(stage.stats().remote_sessions_by_app.at("anydesk"), 1u);  // still one session
  // Only once per flow.
  out.clear();
  stage.Process(Finding(kDirectionFinding, "", 3, "198.51.100.7", "10.1.1.5", absl::Seconds(60)),
                out);
  EXPECT_TRUE(out.empty());
}

TEST(FlowShapeHostStage, NamedSessionsWithAKnownDirectionKeepIt) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(Finding("remote_session", "vnc", 4, "10.1.1.5", "198.51.100.7", {}), out);
  out.clear();
  stage.Process(Finding(kDirectionFinding, "", 4, "198.51.100.7", "10.1.1.5", absl::Seconds(25)),
                out);
  stage.Process(Finding("remote_session", kUnknownRemoteControl, 4, "198.51.100.7", "10.1.1.5",
                        absl::Seconds(30)),
                out);
  EXPECT_TRUE(out.empty());
}

TEST(FlowShapeHostStage, ABareScreenSideIsNeverPublished) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(Finding(kDirectionFinding, "", 5, "10.1.1.5", "198.51.100.7", absl::Seconds(25)),
                out);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace relaywatch::detectors::flow_shape
