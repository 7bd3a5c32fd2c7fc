#include "detectors/relay/relay.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"
#include "detectors/host/host_stage.h"
#include "detectors/relay/quic_handshake.h"
#include "detectors/relay/ssh_kexinit.h"
#include "detectors/relay/stun_rtt.h"
#include "detectors/relay/timing.h"
#include "detectors/relay/tls13.h"
#include "detectors/relay/tls_input.h"
#include "tests/common/quic_wire.h"
#include "tests/common/ssh_wire.h"
#include "tests/common/stun_wire.h"
#include "tests/common/tls_wire.h"

namespace relaywatch::detectors::relay {
namespace {

constexpr std::uint8_t kSyn = decode::kTcpSyn;
constexpr std::uint8_t kAck = decode::kTcpAck;
constexpr std::uint8_t kPsh = decode::kTcpPsh;
const PacketTime kT0 = absl::FromUnixSeconds(1700000000);

PacketTime At(double ms) {
  return kT0 + absl::Microseconds(std::llround(ms * 1000));
}

// ---- Timing arithmetic ------------------------------------------------------------------

TEST(RelayTiming, MedianAndQuantile) {
  std::vector<double> v = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(*Median(v), 3);
  std::vector<double> even = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(*Median(even), 2.5);
  std::vector<double> q = {10, 40, 20, 30};
  EXPECT_DOUBLE_EQ(*Quantile(q, 0.25), 10);
  EXPECT_DOUBLE_EQ(*Quantile(q, 0.5), 20);
  EXPECT_DOUBLE_EQ(*Quantile(q, 1.0), 40);
  std::vector<double> empty;
  EXPECT_FALSE(Median(empty).has_value());
  EXPECT_FALSE(Quantile(empty, 0.1).has_value());
}

TEST(RelayTiming, SequenceComparisonWrapsAround) {
  EXPECT_TRUE(SeqLess(0xFFFFFFF0u, 0x10u));
  EXPECT_FALSE(SeqLess(0x10u, 0xFFFFFFF0u));
  EXPECT_TRUE(SeqLessEq(5, 5));
}

TEST(RelayTiming, HandshakeSplitsTheRoundTripAtTheSensor) {
  HandshakeSplit h;
  h.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
  h.OnPacket(At(10), 1, kSyn | kAck, 5000, 101, 0, 64);
  h.OnPacket(At(10.4), 0, kAck, 101, 5001, 0, 64);
  ASSERT_TRUE(h.responder_leg().has_value());
  ASSERT_TRUE(h.originator_leg().has_value());
  EXPECT_DOUBLE_EQ(ToMs(*h.responder_leg()), 10);
  EXPECT_NEAR(ToMs(*h.originator_leg()), 0.4, 1e-9);
}

TEST(RelayTiming, KarnsRuleRefusesRetransmittedHandshakes) {
  HandshakeSplit syn_again;
  syn_again.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
  syn_again.OnPacket(At(1000), 0, kSyn, 100, 0, 0, 64);
  syn_again.OnPacket(At(1010), 1, kSyn | kAck, 5000, 101, 0, 64);
  syn_again.OnPacket(At(1011), 0, kAck, 101, 5001, 0, 64);
  EXPECT_FALSE(syn_again.responder_leg().has_value());  // which SYN did it answer?
  EXPECT_TRUE(syn_again.originator_leg().has_value());
  EXPECT_TRUE(syn_again.retransmitted());

  HandshakeSplit syn_ack_again;
  syn_ack_again.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
  syn_ack_again.OnPacket(At(10), 1, kSyn | kAck, 5000, 101, 0, 64);
  syn_ack_again.OnPacket(At(1010), 1, kSyn | kAck, 5000, 101, 0, 64);
  syn_ack_again.OnPacket(At(1011), 0, kAck, 101, 5001, 0, 64);
  EXPECT_TRUE(syn_ack_again.responder_leg().has_value());
  EXPECT_FALSE(syn_ack_again.originator_leg().has_value());
}

TEST(RelayTiming, LateDataCarryingAckIsNotARoundTrip) {
  HandshakeSplit h;
  h.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
  h.OnPacket(At(10), 1, kSyn | kAck, 5000, 101, 0, 64);
  h.OnPacket(At(700), 0, kAck | kPsh, 101, 5001, 20, 64);  // the application's first write
  EXPECT_FALSE(h.originator_leg().has_value());
  HandshakeSplit quick;
  quick.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
  quick.OnPacket(At(10), 1, kSyn | kAck, 5000, 101, 0, 64);
  quick.OnPacket(At(10.2), 0, kAck | kPsh, 101, 5001, 20, 64);
  EXPECT_TRUE(quick.originator_leg().has_value());
}

// One packet of a connection's opening: when (ms), the side (0 originator), TCP flags,
// sequence and acknowledgement numbers and payload length.
struct Opening {
  double ms;
  int direction;
  std::uint8_t flags;
  std::uint32_t seq, ack, length;
};

// The SYN at 0 and the SYN/ACK at 10 ms (unless `packets` opens otherwise), then `packets`.
std::optional<absl::Duration> ConnectWait(std::initializer_list<Opening> packets,
                                          bool opened = true) {
  HandshakeSplit h;
  if (opened) {
    h.OnPacket(At(0), 0, kSyn, 100, 0, 0, 64);
    h.OnPacket(At(10), 1, kSyn | kAck, 5000, 101, 0, 64);
  }
  for (const Opening& p : packets)
    h.OnPacket(At(p.ms), p.direction, p.flags, p.seq, p.ack, p.length, 64);
  return h.connect_wait();
}

TEST(RelayTiming, TheConnectionWaitsForTheClientsFirstData) {
  constexpr std::uint8_t kData = kAck | kPsh;
  // A SOCKS relay answers its far client once the connection is up; the client's first
  // data comes a far round trip after the SYN/ACK.
  const std::optional<absl::Duration> relayed = ConnectWait({{10.1, 0, kAck, 101, 5001, 0},
                                                             {90.3, 0, kData, 101, 5001, 517},
                                                             {100.3, 1, kAck, 5001, 618, 0},
                                                             {101, 1, kData, 5001, 618, 1400}});
  ASSERT_TRUE(relayed.has_value());
  EXPECT_NEAR(ToMs(*relayed), 80.3, 1e-9);
  // The server speaks first (SSH, SMTP): the client's first data answers it, not the
  // connection.
  EXPECT_FALSE(ConnectWait({{10.1, 0, kAck, 101, 5001, 0},
                            {12, 1, kData, 5001, 101, 40},
                            {90, 0, kData, 101, 5041, 40}}));
  // Which SYN/ACK did it wait from, which copy of its data came first: no wait.
  EXPECT_FALSE(
      ConnectWait({{1010, 1, kSyn | kAck, 5000, 101, 0}, {1011, 0, kData, 101, 5001, 517}}));
  EXPECT_FALSE(ConnectWait({{90, 0, kData, 101, 5001, 517}, {300, 0, kData, 101, 5001, 517}}));
  // TCP Fast Open: the data rode in the SYN and waited on nothing.
  EXPECT_FALSE(ConnectWait({{0, 0, kSyn, 100, 0, 300},
                            {10, 1, kSyn | kAck, 5000, 401, 0},
                            {10.1, 0, kData, 401, 5001, 200}},
                           /*opened=*/false));
  // Picked up after the opening: nothing to wait from.
  EXPECT_FALSE(ConnectWait({{90, 0, kData, 101, 5001, 517}}, /*opened=*/false));
}

TEST(RelayTiming, AckRttSamplesOnlyExactlyAcknowledgedSegments) {
  AckRtt rtt;
  EXPECT_EQ(rtt.OnData(At(0), 1000, 100), SegmentArrival::kNew);
  rtt.OnAck(At(20), 1100);
  ASSERT_EQ(rtt.samples(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 20);
  // Two segments, one cumulative (perhaps delayed) ACK: only the second is timed.
  rtt.OnData(At(100), 1100, 100);
  rtt.OnData(At(101), 1200, 100);
  rtt.OnAck(At(141), 1300);
  EXPECT_EQ(rtt.samples(), 2u);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 20);
  EXPECT_NEAR(ToMs(*rtt.smoothed()), 20 + (40 - 20) / 8.0, 1e-9);
}

TEST(RelayTiming, AckRttFollowsKarnOnRetransmissions) {
  AckRtt rtt;
  rtt.OnData(At(0), 1000, 100);
  EXPECT_EQ(rtt.OnData(At(300), 1000, 100), SegmentArrival::kRepeat);  // sent again
  rtt.OnAck(At(305), 1100);
  EXPECT_EQ(rtt.samples(), 0u);
  EXPECT_EQ(rtt.retransmissions(), 1u);
  EXPECT_EQ(rtt.out_of_order(), 0u);
}

TEST(RelayTiming, AckRttTellsAReorderedSegmentFromARetransmission) {
  AckRtt rtt;
  // A flight of four whose second and third segments came last (a jitter that reorders).
  EXPECT_EQ(rtt.OnData(At(0), 1000, 100), SegmentArrival::kNew);
  EXPECT_EQ(rtt.OnData(At(0.1), 1300, 100), SegmentArrival::kNew);  // 1100..1300 skipped
  EXPECT_EQ(rtt.OnData(At(3), 1200, 100), SegmentArrival::kFill);   // the hole's tail
  EXPECT_EQ(rtt.OnData(At(4), 1100, 100), SegmentArrival::kFill);   // and its head
  EXPECT_EQ(rtt.out_of_order(), 2u);
  EXPECT_EQ(rtt.retransmissions(), 0u);
  // Once filled, the same bytes again are a retransmission.
  EXPECT_EQ(rtt.OnData(At(300), 1100, 100), SegmentArrival::kRepeat);
  EXPECT_EQ(rtt.retransmissions(), 1u);
  // A segment reaching into bytes seen and never seen alike: a repeat (repacketized).
  EXPECT_EQ(rtt.OnData(At(301), 1500, 100), SegmentArrival::kNew);  // 1400..1500 skipped
  EXPECT_EQ(rtt.OnData(At(302), 1450, 100), SegmentArrival::kRepeat);
  // A fill in the middle of a hole leaves two holes, each filled on its own.
  EXPECT_EQ(rtt.OnData(At(400), 2000, 100), SegmentArrival::kNew);  // 1600..2000 skipped
  EXPECT_EQ(rtt.OnData(At(401), 1700, 100), SegmentArrival::kFill);
  EXPECT_EQ(rtt.OnData(At(402), 1600, 100), SegmentArrival::kFill);
  EXPECT_EQ(rtt.OnData(At(403), 1800, 200), SegmentArrival::kFill);
  EXPECT_EQ(rtt.OnData(At(404), 1800, 100), SegmentArrival::kRepeat);
}

TEST(RelayTiming, AckRttSamplesNothingThatWaitedOnAFill) {
  AckRtt rtt;
  rtt.OnData(At(0), 1000, 100);
  rtt.OnData(At(0.1), 1200, 100);  // ahead of 1100..1200
  rtt.OnAck(At(20), 1100);         // the first, exactly: a sample
  rtt.OnAck(At(20.1), 1100);       // a duplicate ACK: the hole
  rtt.OnData(At(21), 1100, 100);   // the hole filled late
  rtt.OnAck(At(35), 1300);         // covers the segment that came early, after waiting
  EXPECT_EQ(rtt.samples(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 20);
}

TEST(RelayTiming, AckRttTakesAnAcknowledgedHoleForTheSensorsLoss) {
  AckRtt rtt;
  rtt.OnData(At(0), 1000, 100);
  rtt.OnData(At(1), 1200, 100);  // 1100..1200 never seen here
  rtt.OnAck(At(20), 1300);       // but the receiver had it: the capture missed it
  EXPECT_EQ(rtt.OnData(At(300), 1100, 100), SegmentArrival::kRepeat);
  EXPECT_EQ(rtt.out_of_order(), 0u);
}

TEST(RelayTiming, AckRttForgetsTheOldestHoles) {
  AckRtt rtt;
  std::uint32_t seq = 1000;
  for (int i = 0; i <= AckRtt::kHoles; ++i) {  // one hole more than are kept
    rtt.OnData(At(i), seq, 100);
    seq += 200;  // 100 bytes skipped each time
  }
  rtt.OnData(At(50), seq, 100);
  // The oldest hole (1100..1200) is forgotten: its late piece reads as a repeat, as before
  // holes were kept. The newest are still told.
  EXPECT_EQ(rtt.OnData(At(60), 1100, 100), SegmentArrival::kRepeat);
  EXPECT_EQ(rtt.OnData(At(61), seq - 100, 100), SegmentArrival::kFill);
}

TEST(RelayTiming, AckRttAcrossSequenceWrap) {
  AckRtt rtt;
  rtt.OnData(At(0), 0xFFFFFFC0u, 0x80);
  rtt.OnAck(At(7), 0x40);
  ASSERT_EQ(rtt.samples(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 7);
}

// One segment per sample, acknowledged `rtt_ms` later.
void SampleRtt(AckRtt& rtt, std::uint32_t& seq, double& now, double rtt_ms) {
  rtt.OnData(At(now), seq, 100);
  rtt.OnAck(At(now + rtt_ms), seq + 100);
  seq += 100;
  now += 1000;
}

TEST(RelayTiming, AckRttFloorIgnoresTheLuckiestTwentieth) {
  AckRtt rtt;
  std::uint32_t seq = 1000;
  double now = 0;
  // 19 samples: the least is the floor.
  for (int i = 0; i < 18; ++i)
    SampleRtt(rtt, seq, now, 100 - i);  // descending, to exercise the ordered insert
  SampleRtt(rtt, seq, now, 60);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 60);
  // The twentieth sample: one in twenty is ignored, the next lowest (83) counts.
  SampleRtt(rtt, seq, now, 99);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 83);
  // Thousands of samples ignore at most the four lowest.
  for (int i = 0; i < 3000; ++i)
    SampleRtt(rtt, seq, now, 120);
  SampleRtt(rtt, seq, now, 50);
  SampleRtt(rtt, seq, now, 55);
  SampleRtt(rtt, seq, now, 58);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 83);  // 50 55 58 60 ignored
}

TEST(RelayTiming, AckRttFloorNeedsOnlyFiveUnqueuedSamples) {
  AckRtt rtt;
  std::uint32_t seq = 1000;
  double now = 0;
  for (int i = 0; i < 500; ++i)
    SampleRtt(rtt, seq, now, 80 + i % 7);  // a standing queue of 60 ms or more
  for (int i = 0; i < 4; ++i)
    SampleRtt(rtt, seq, now, 20);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 80);  // four quiet moments are not yet the path
  SampleRtt(rtt, seq, now, 20);
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 20);
}

TEST(RelayTiming, StreamQuantileIsExactForFewSamples) {
  StreamQuantile q(0.15);
  EXPECT_FALSE(q.value().has_value());
  for (double x : {40.0, 10.0, 30.0, 20.0})
    q.Add(x);
  EXPECT_DOUBLE_EQ(*q.value(), 10);  // rank ceil(0.15 x 4) = 1
  q.Add(5);
  q.Add(50);
  EXPECT_EQ(q.count(), 6u);
}

// P-square against the exact nearest-rank quantile, on shapes a path's RTT takes: symmetric
// noise about its mean, a floor with an exponential queueing tail, and two clusters (a
// quiet path and a standing queue).
TEST(RelayTiming, StreamQuantileFollowsTheExactQuantile) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(80, 14);
  std::exponential_distribution<double> queue(1.0 / 20);
  std::uniform_real_distribution<double> u(0, 1);
  const std::vector<std::function<double()>> shapes = {
      [&] { return noise(rng); },
      [&] { return 40 + queue(rng); },
      [&] { return u(rng) < 0.3 ? 20 + u(rng) : 150 + 10 * u(rng); },
  };
  for (std::size_t shape = 0; shape < shapes.size(); ++shape) {
    for (int n : {7, 20, 21, 40, 100, 1000, 5000}) {
      StreamQuantile q(0.15);
      std::vector<double> all;
      for (int i = 0; i < n; ++i) {
        all.push_back(shapes[shape]());
        q.Add(all.back());
      }
      std::sort(all.begin(), all.end());
      // Exact up to 20 samples; then between the exact 10th and 20th percentiles, give or
      // take 3 % (between two clusters the markers' parabola may sit off any sample).
      const double exact = all[static_cast<std::size_t>(std::ceil(0.15 * n)) - 1];
      if (n <= 20) {
        EXPECT_DOUBLE_EQ(*q.value(), static_cast<float>(exact)) << "shape " << shape;
        continue;
      }
      const double lo = all[static_cast<std::size_t>(0.10 * n)];
      const double hi = all[static_cast<std::size_t>(0.20 * n)];
      EXPECT_GE(*q.value(), lo * 0.97) << "shape " << shape << " n " << n;
      EXPECT_LE(*q.value(), hi * 1.03) << "shape " << shape << " n " << n;
    }
  }
}

TEST(RelayTiming, AckRttLowQuantileNeedsTwentySamples) {
  AckRtt rtt;
  std::uint32_t seq = 1000;
  double now = 0;
  for (int i = 0; i < 19; ++i)
    SampleRtt(rtt, seq, now, 60 + i);
  EXPECT_FALSE(rtt.low_quantile().has_value());
  SampleRtt(rtt, seq, now, 79);
  ASSERT_TRUE(rtt.low_quantile().has_value());
  EXPECT_NEAR(ToMs(*rtt.low_quantile()), 63, 1.5);  // rank 3 of 60..79
  EXPECT_DOUBLE_EQ(ToMs(*rtt.floor()), 61);         // the least one of twenty ignored
}

TEST(RelayTiming, TurnaroundIsFromTheFlightsLastSegment) {
  Turnarounds t(4, absl::Seconds(1));
  t.OnData(At(0), true, false);    // ClientHello: answers nothing
  t.OnData(At(10), false, false);  // server flight, three segments
  t.OnData(At(10.1), false, false);
  t.OnData(At(12), false, false);
  t.OnData(At(132), true, false);  // the client's answer, 120 ms after the flight's end
  t.OnData(At(133), true, false);  // more of the same client flight: no new sample
  ASSERT_EQ(t.samples_ms().size(), 1u);
  EXPECT_DOUBLE_EQ(t.samples_ms()[0], 120);
  // The flight took 2 ms to arrive, its first segment to its last.
  ASSERT_EQ(t.spreads_ms().size(), 1u);
  EXPECT_DOUBLE_EQ(t.spreads_ms()[0], 2);
}

TEST(RelayTiming, TurnaroundsRefuseLossAndPauses) {
  Turnarounds t(4, absl::Seconds(1));
  t.OnData(At(0), false, true);  // a retransmitted server segment taints the flight
  t.OnData(At(50), true, false);
  t.OnData(At(60), false, false);
  t.OnData(At(2000), true, false);  // a person's pause
  t.OnData(At(2010), false, false);
  t.OnData(At(2011), true, true);  // a retransmitted answer
  EXPECT_TRUE(t.samples_ms().empty());
  EXPECT_EQ(t.refused(), 3u);
  EXPECT_EQ(t.slow(), 1u);  // only the pause
  t.OnData(At(2020), false, true);
  t.OnData(At(3500), true, false);  // after a retransmitted flight: loss, however long
  EXPECT_EQ(t.refused(), 4u);
  EXPECT_EQ(t.slow(), 1u);
}

TEST(RelayTiming, TheFirstAnswerIsKeptOnlyWhenItBecameASample) {
  Turnarounds kept(4, absl::Seconds(1));
  kept.OnData(At(0), true, false);  // ClientHello
  kept.OnData(At(10), false, false);
  kept.OnData(At(11), true, false);  // the handshake's answer: 1 ms
  kept.OnData(At(20), false, false);
  kept.OnData(At(420), true, false);  // an application's answer
  ASSERT_TRUE(kept.first_answer_ms().has_value());
  EXPECT_DOUBLE_EQ(*kept.first_answer_ms(), 1);

  Turnarounds lost(4, absl::Seconds(1));
  lost.OnData(At(10), false, false);
  lost.OnData(At(11), true, true);  // the first answer, retransmitted: refused
  lost.OnData(At(20), false, false);
  lost.OnData(At(21), true, false);  // a sample, but not of the first answer
  EXPECT_EQ(lost.samples_ms().size(), 1u);
  EXPECT_FALSE(lost.first_answer_ms().has_value());

  Turnarounds interrupted(4, absl::Seconds(1));
  interrupted.OnData(At(10), false, false, 0, 100);
  interrupted.OnData(At(11), true, false, 100);
  EXPECT_TRUE(interrupted.first_answer_ms().has_value());  // provisional
  interrupted.OnData(At(12), false, false, 0, 100);        // the server was still sending
  EXPECT_FALSE(interrupted.first_answer_ms().has_value());
  interrupted.OnData(At(30), true, false, 200);
  EXPECT_EQ(interrupted.samples_ms().size(), 1u);
  EXPECT_FALSE(interrupted.first_answer_ms().has_value());
}

TEST(RelayTiming, TheHandshakesAnswerBoundsTheTurnaround) {
  // A browser: its handshake answered at once, most later answers after the page's script.
  EXPECT_DOUBLE_EQ(TurnaroundMs({0.8, 119, 466, 425, 111}, 0.8), 0.8);
  EXPECT_DOUBLE_EQ(TurnaroundMs({0.8, 119, 466, 425, 111}, std::nullopt), 111);
  // A far client: the handshake's answer carries the hidden leg like every other.
  EXPECT_DOUBLE_EQ(TurnaroundMs({123, 121, 130}, 123), 121);
  EXPECT_DOUBLE_EQ(TurnaroundMs({}, 5), 5);
}

// A relay with Nagle's algorithm on forwards a spread flight's first part at once and holds
// its short tail until the far client acknowledges that part: the answer comes a hidden
// leg, less the spread, after a plain one would.
TEST(RelayTiming, ASpreadFlightBoundsTheLegFromBelow) {
  // 80 ms away, a flight of 10 ms, held: 2 * 80 - 10 after its last segment; not held: 80.
  EXPECT_DOUBLE_EQ(SpreadFlightBoundMs(150, 10, 0), 80);
  EXPECT_DOUBLE_EQ(SpreadFlightBoundMs(80, 10, 0), 45);  // then it says at least 45
  // The client's visible leg is in every reading, held or not.
  EXPECT_DOUBLE_EQ(SpreadFlightBoundMs(152, 10, 2), 82);
  // A flight longer than half the reading: the relay may have released parts while it came
  // in, and the tail waited up to a leg: half the reading is all that is certain.
  EXPECT_DOUBLE_EQ(SpreadFlightBoundMs(113, 58, 0), 56.5);
  // A reading under the client's leg (an early answer): no hidden leg, and a bound never
  // above the reading it bounds.
  EXPECT_DOUBLE_EQ(SpreadFlightBoundMs(0.5, 3, 1), 0.5);
  for (double x : {0.0, 0.5, 1.0, 3.0, 80.0, 150.0})
    for (double spread : {0.0, 0.2, 10.0, 100.0})
      for (double c : {0.0, 1.0, 2.0, 90.0})
        EXPECT_LE(SpreadFlightBoundMs(x, spread, c), x) << x << " " << spread << " " << c;
}

// tests/golden/jump_ssh_obfuscated, 80 ms away with 6 ms of jitter each way: sshd's
// USERAUTH_SUCCESS, then its hostkeys-00 request a server round trip later (Nagle). The
// client answers the first at once: 59.8 ms after the tail, 70.4 after the first part.
TEST(RelayTiming, AnSshAnswerMayComeBeforeItsFlightsTail) {
  const std::vector<double> samples = {100.86, 96.99, 73.6, 62.71, 82.78, 59.79};
  const std::vector<double> spreads = {0, 0.074, 0, 0, 0, 10.61};
  // As a ceiling as read, the short answer pulls the reading to 62.7 ms.
  EXPECT_NEAR(ReadTurnaround(samples, spreads, std::nullopt, 0.03).ms, 62.71, 1e-9);
  const FlowTurnaround ssh =
      ReadTurnaround(samples, spreads, std::nullopt, 0.03, std::nullopt, /*early_answers=*/true);
  EXPECT_NEAR(ssh.ms, 70.4, 1e-9);  // 59.79 + 10.61, under the whole flights' quartile
  EXPECT_FALSE(ssh.lower_bound);
  // It still caps a reading that jitter raised, with its spread added.
  EXPECT_NEAR(
      ReadTurnaround({100, 90, 110, 40}, {0, 0, 0, 5}, std::nullopt, 0, std::nullopt, true).ms, 45,
      1e-9);
}

TEST(RelayTiming, WholeFlightsDecideAndSpreadOnesOnlyBound) {
  // All flights whole (or spreads unknown): TurnaroundMs as ever.
  EXPECT_DOUBLE_EQ(ReadTurnaround({123, 121, 130}, {0, 0.05, 0.1}, 123, 0.2).ms, 121);
  EXPECT_FALSE(ReadTurnaround({123, 121, 130}, {}, 123, 0.2).lower_bound);
  EXPECT_DOUBLE_EQ(ReadTurnaround({123, 121, 130}, {}, 123, 0.2).ms, 121);
  // A whole handshake flight and a spread download after it: the download's answer is
  // never shorter than the leg, so it still lowers a handshake that jitter lengthened.
  const FlowTurnaround jittered = ReadTurnaround({138.5, 115.7}, {0, 95}, 138.5, 0);
  EXPECT_DOUBLE_EQ(jittered.ms, 115.7);
  EXPECT_FALSE(jittered.lower_bound);
  // A held spread handshake (160 for 80) among whole answers: the whole ones decide.
  const FlowTurnaround mixed = ReadTurnaround({160, 81, 80, 82}, {10, 0, 0, 0}, 160, 0);
  EXPECT_DOUBLE_EQ(mixed.ms, 80);
  EXPECT_FALSE(mixed.lower_bound);
  // Only spread flights: the bound, whichever way the relay forwarded them.
  const FlowTurnaround held = ReadTurnaround({150, 151}, {10, 10}, 150, 0);
  EXPECT_DOUBLE_EQ(held.ms, 80);
  EXPECT_TRUE(held.lower_bound);
  const FlowTurnaround forwarded = ReadTurnaround({80, 81}, {10, 10}, 80, 0);
  EXPECT_DOUBLE_EQ(forwarded.ms, 45);
  EXPECT_TRUE(forwarded.lower_bound);
  EXPECT_DOUBLE_EQ(ReadTurnaround({}, {}, 5, 0).ms, 5);
}

TEST(RelayTiming, TheConnectionsWaitDecidesWhereEveryFlightCameSpread) {
  // A relay that forwarded at once (dante), 80 ms away: the answer and the wait agree on one
  // round trip where the bound alone says half.
  const FlowTurnaround forwarded = ReadTurnaround({80.6, 81.2}, {0.8, 0.8}, 80.6, 0.1, 80.9);
  EXPECT_DOUBLE_EQ(forwarded.ms, 80.6);
  EXPECT_TRUE(forwarded.by_connect_wait);
  EXPECT_FALSE(forwarded.lower_bound);
  // Jitter made the wait a little longer than the answer: the answer.
  EXPECT_DOUBLE_EQ(ReadTurnaround({80.6}, {0.8}, 80.6, 0.1, 92).ms, 80.6);
  // One that held the tail (two round trips): the wait, one.
  const FlowTurnaround held = ReadTurnaround({160.1}, {0.8}, 160.1, 0.1, 81);
  EXPECT_DOUBLE_EQ(held.ms, 81);
  EXPECT_TRUE(held.by_connect_wait);
  // A near relay (40 ms) whose far client delayed its acknowledgement by 40 ms: the bound
  // (60) overstates, the wait does not.
  EXPECT_DOUBLE_EQ(ReadTurnaround({119.2}, {0.8}, 119.2, 0.1, 41).ms, 41);
  // Data sent before the far client could answer (an optimistic SOCKS client), or a
  // client that paused after connecting: the bound stands.
  const FlowTurnaround optimistic = ReadTurnaround({160.1}, {0.8}, 160.1, 0.1, 0.6);
  EXPECT_TRUE(optimistic.lower_bound);
  EXPECT_FALSE(optimistic.by_connect_wait);
  EXPECT_DOUBLE_EQ(optimistic.ms, ReadTurnaround({160.1}, {0.8}, 160.1, 0.1).ms);
  const FlowTurnaround paused = ReadTurnaround({80.6}, {0.8}, 80.6, 0.1, 2000);
  EXPECT_TRUE(paused.lower_bound);
  // Whole flights decide by themselves; the wait changes nothing.
  const FlowTurnaround whole = ReadTurnaround({80.6, 81}, {0, 0}, 80.6, 0.1, 40);
  EXPECT_DOUBLE_EQ(whole.ms, 80.6);
  EXPECT_FALSE(whole.by_connect_wait);
  // Never above the reading, whatever the wait.
  for (double w : {0.0, 10.0, 50.0, 79.0, 81.0, 100.0, 200.0})
    EXPECT_LE(ReadTurnaround({80.6}, {0.8}, 80.6, 0.1, w).ms, 80.6) << w;
}

// ---- TLS 1.3: the client's first data --------------------------------------------------

std::string ClientHelloRecord() {
  return tls_wire::AsString(
      tls_wire::Record(22, tls_wire::Handshake(1, tls_wire::ClientHelloBody()), 0x0301));
}
// The server's first flight: ServerHello, the compatibility CCS and the encrypted rest.
std::string ServerFlight(std::uint16_t version) {
  const bool tls13 = version == common::kTls13;
  tls_wire::ByteVec b = tls_wire::Record(
      22, tls_wire::Handshake(
              2, tls_wire::ServerHelloBody(tls13 ? 0x1301 : 0xc02f, tls13 ? version : 0)));
  tls_wire::Append(b, tls_wire::Record(20, {1}));
  tls_wire::Append(b, tls_wire::Record(tls13 ? 23 : 22, tls_wire::ByteVec(900, 0x5a)));
  return tls_wire::AsString(b);
}
// Encrypted records (TLS 1.3 sends every one as application_data): [CCS +] the Finished (53
// bytes with SHA-256), a request, tickets.
std::string Encrypted(std::size_t length, bool ccs = false) {
  tls_wire::ByteVec b;
  if (ccs)
    b = tls_wire::Record(20, {1});
  tls_wire::Append(b, tls_wire::Record(23, tls_wire::ByteVec(length, 0xe5)));
  return tls_wire::AsString(b);
}

// The segments of a flow's setup, numbered as they go, fed to a watch of its setup
// (Tls13FirstData, SshKexInitOrder).
class Segments {
 public:
  template <typename Watch>
  auto Send(Watch& t, bool from_client, const std::string& payload) {
    payloads_.push_back(payload);
    decode::DecodedPacket p;
    p.tcp_flags = kAck | kPsh;
    std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
    p.seq = seq;
    p.payload = {reinterpret_cast<const std::uint8_t*>(payloads_.back().data()), payload.size()};
    p.payload_length = static_cast<std::uint32_t>(payload.size());
    seq += p.payload_length;
    return t.OnSegment(p, from_client);
  }
  // The ClientHello and the server's first flight.
  void Hellos(Tls13FirstData& t, std::uint16_t version) {
    EXPECT_FALSE(Send(t, true, ClientHelloRecord()));
    EXPECT_FALSE(Send(t, false, ServerFlight(version)));
  }
  void Skip(bool from_client, std::uint32_t bytes) {
    (from_client ? client_seq_ : server_seq_) += bytes;
  }

 private:
  std::deque<std::string> payloads_;
  std::uint32_t client_seq_ = 0xFFFFFF00u;  // wraps during the flow
  std::uint32_t server_seq_ = 7000;
};

TEST(RelayTls13, TellsTheDataSentBehindTheFinished) {
  Tls13FirstData t;
  Segments s;
  s.Hellos(t, common::kTls13);
  EXPECT_FALSE(s.Send(t, true, Encrypted(53, true)));  // CCS + Finished: answers the flight
  EXPECT_FALSE(s.Send(t, false, Encrypted(250)));      // a session ticket
  EXPECT_FALSE(t.done());
  EXPECT_TRUE(s.Send(t, true, Encrypted(90)));  // the request: sent unasked
  EXPECT_TRUE(t.done());
  EXPECT_FALSE(s.Send(t, true, Encrypted(90)));  // done: nothing more is told
}

TEST(RelayTls13, DataInTheFinishedsSegmentIsNotTold) {
  Tls13FirstData t;
  Segments s;
  s.Hellos(t, common::kTls13);
  EXPECT_FALSE(s.Send(t, true, Encrypted(53, true) + Encrypted(90)));
  EXPECT_TRUE(t.done());
}

TEST(RelayTls13, FinishedSplitAcrossSegments) {
  Tls13FirstData t;
  Segments s;
  s.Hellos(t, common::kTls13);
  const std::string flight = Encrypted(53, true) + Encrypted(90);
  EXPECT_FALSE(s.Send(t, true, flight.substr(0, 30)));
  // The request's record begins in the Finished's second segment: told, and harmless, as
  // no server flight came between.
  EXPECT_TRUE(s.Send(t, true, flight.substr(30)));
}

TEST(RelayTls13, Tls12ClientsWaitForTheServersFinished) {
  Tls13FirstData t;
  Segments s;
  s.Hellos(t, 0x0303);
  EXPECT_TRUE(t.done());
}

TEST(RelayTls13, GapsAndOtherProtocolsEndTheWatch) {
  {
    Tls13FirstData t;
    Segments s;
    s.Hellos(t, common::kTls13);
    s.Skip(true, 58);  // the Finished's segment was not seen
    EXPECT_FALSE(s.Send(t, true, Encrypted(90)));
    EXPECT_TRUE(t.done());
  }
  {
    Tls13FirstData t;
    Segments s;
    s.Send(t, true, ClientHelloRecord());
    for (int i = 0; i < Tls13FirstData::kMaxSearchSegments && !t.done(); ++i)
      EXPECT_FALSE(s.Send(t, false, "HTTP/1.1 400 Bad Request\r\n"));
    EXPECT_TRUE(t.done());
  }
  {
    Tls13FirstData t;
    Segments s;
    s.Send(t, true, ClientHelloRecord());
    s.Send(t, false, tls_wire::AsString(tls_wire::Record(22, tls_wire::Handshake(2, {1, 2, 3}))));
    EXPECT_TRUE(t.done());  // a ServerHello that does not parse
  }
}

// ---- RFB under VeNCrypt's TLS: update requests told by their records' length -----------

// TlsInput as a watch of Segments: the viewer is the client.
struct RfbTlsWatch {
  explicit RfbTlsWatch(TlsInput::Protocol protocol = TlsInput::Protocol::kRfb) : input(protocol) {}
  TlsInput input;
  bool OnSegment(const decode::DecodedPacket& p, bool from_viewer) {
    if (!from_viewer) {
      input.OnServerSegment(p);
      return false;
    }
    return input.OnClientSegment(p);
  }
};

// The server's first flight choosing `cipher` (TLS 1.3 when `tls13`), and the rest of the
// handshake, after which RFB runs in application_data records.
void RfbTlsHandshake(RfbTlsWatch& w, Segments& s, std::uint16_t cipher, bool tls13 = false) {
  EXPECT_FALSE(s.Send(w, true, ClientHelloRecord()));
  tls_wire::ByteVec flight = tls_wire::Record(
      22, tls_wire::Handshake(2, tls_wire::ServerHelloBody(cipher, tls13 ? common::kTls13 : 0)));
  tls_wire::Append(flight, tls_wire::Record(22, tls_wire::ByteVec(300, 0x5a)));
  EXPECT_FALSE(s.Send(w, false, tls_wire::AsString(flight)));
  EXPECT_FALSE(s.Send(w, true, Encrypted(70, true)));  // key exchange, CCS, Finished
}

// `n` RFB client messages of `bytes` each, one record apiece with `overhead` bytes added.
std::string RfbRecords(std::size_t overhead, std::size_t bytes, int n = 1) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += Encrypted(bytes + overhead);
  return out;
}

TEST(RelayRfbTls, RequestsAreToldFromKeysAndPointerMoves) {
  RfbTlsWatch w;
  Segments s;
  RfbTlsHandshake(w, s, 0x00a7);  // TLS_DH_anon_WITH_AES_256_GCM_SHA384: TigerVNC's TLSNone
  EXPECT_EQ(w.input.overhead(), std::optional<std::size_t>(24));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));       // FramebufferUpdateRequest
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10, 2)));    // two of them
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 8)));       // KeyEvent
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 6)));       // PointerEvent
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 8 + 10)));  // a key and a request, one record
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 10) + RfbRecords(24, 8)));
  EXPECT_FALSE(s.Send(w, false, RfbRecords(24, 10)));  // the server's bytes are never input
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));
}

TEST(RelayRfbTls, EachAeadSuiteHasItsOwnOverhead) {
  const struct {
    std::uint16_t cipher;
    bool tls13;
    std::size_t overhead;
  } cases[] = {{0xc02f, false, 24}, {0xcca8, false, 16}, {0x1301, true, 17}, {0x1303, true, 17}};
  for (const auto& c : cases) {
    RfbTlsWatch w;
    Segments s;
    RfbTlsHandshake(w, s, c.cipher, c.tls13);
    EXPECT_TRUE(s.Send(w, true, RfbRecords(c.overhead, 10))) << c.cipher;
    EXPECT_FALSE(s.Send(w, true, RfbRecords(c.overhead, 8))) << c.cipher;
    // Another suite's request size is no request here.
    EXPECT_FALSE(s.Send(w, true, RfbRecords(c.overhead == 24 ? 16 : 24, 10))) << c.cipher;
  }
}

TEST(RelayRfbTls, BlockCiphersTellNothing) {
  RfbTlsWatch w;
  Segments s;
  RfbTlsHandshake(w, s, 0xc014);  // ECDHE-RSA-AES256-SHA: CBC, padded to its block
  EXPECT_EQ(w.input.overhead(), std::nullopt);
  for (std::size_t length : {10, 16, 24, 32, 48})
    EXPECT_FALSE(s.Send(w, true, RfbRecords(0, length))) << length;
}

TEST(RelayRfbTls, RecordsAcrossSegmentsAndGaps) {
  RfbTlsWatch w;
  Segments s;
  RfbTlsHandshake(w, s, 0x00a7);
  const std::string two = RfbRecords(24, 10, 2);
  // A record split over segments: neither part is a segment of whole requests.
  EXPECT_FALSE(s.Send(w, true, two.substr(0, 40)));
  EXPECT_FALSE(s.Send(w, true, two.substr(40)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));  // the walk kept its place
  // A header split over segments.
  const std::string key_and_request = RfbRecords(24, 8) + RfbRecords(24, 10);
  EXPECT_FALSE(s.Send(w, true, key_and_request.substr(0, 34)));
  EXPECT_FALSE(s.Send(w, true, key_and_request.substr(34)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));
  // Bytes never seen: the place is lost until a segment begins with a record again.
  s.Skip(true, 20);
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 10).substr(20)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));
  s.Skip(true, 34);
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));  // a gap at a record's start: found again
  // Not TLS: lost, and nothing is told until records come again.
  EXPECT_FALSE(s.Send(w, true, "RFB 003.008\n"));
  EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 10).substr(0, 4)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(24, 10)));
}

TEST(RelayRfbTls, NoServerHelloNoRequests) {
  {
    RfbTlsWatch w;
    Segments s;
    EXPECT_FALSE(s.Send(w, true, ClientHelloRecord()));
    for (int i = 0; i < ServerHelloReader::kMaxSearchSegments + 2; ++i)
      s.Send(w, false, "not TLS at all");
    EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 10)));
  }
  {
    RfbTlsWatch w;
    Segments s;
    EXPECT_FALSE(s.Send(w, true, ClientHelloRecord()));
    s.Send(w, false, tls_wire::AsString(tls_wire::Record(22, tls_wire::Handshake(2, {1, 2, 3}))));
    EXPECT_EQ(w.input.overhead(), std::nullopt);  // a ServerHello that does not parse
    EXPECT_FALSE(s.Send(w, true, RfbRecords(24, 10)));
  }
}

// ---- RDP under TLS: frame acknowledgements told by their records' length -----------------

TEST(RelayRdpTls, FrameAcknowledgementsAreToldFromInput) {
  RfbTlsWatch w(TlsInput::Protocol::kRdp);
  Segments s;
  RfbTlsHandshake(w, s, 0x1302, true);  // TLS_AES_256_GCM_SHA384: FreeRDP against its server
  EXPECT_EQ(w.input.overhead(), std::optional<std::size_t>(17));
  // xfreerdp 2.11's, read in the lab's captures: records of 67 bytes under TLS 1.3 (45 of
  // RDPGFX_FRAME_ACKNOWLEDGE_PDU) with the graphics pipeline, 59 (37 of
  // TS_FRAME_ACKNOWLEDGE_PDU) with surface commands.
  EXPECT_TRUE(s.Send(w, true, RfbRecords(17, 45)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(17, 37)));
  EXPECT_TRUE(s.Send(w, true, RfbRecords(17, 45) + RfbRecords(17, 45)));  // and a QoE one
  for (std::size_t other : {36, 44, 46, 47, 48})  // the other encodings of the same PDUs
    EXPECT_TRUE(s.Send(w, true, RfbRecords(17, other))) << other;
  // Fast-path input: a key (its 27-byte records in the lab), a pointer move (32), a few keys.
  for (std::size_t input : {5, 10, 4, 9, 11})
    EXPECT_FALSE(s.Send(w, true, RfbRecords(17, input))) << input;
  EXPECT_FALSE(s.Send(w, true, RfbRecords(17, 45) + RfbRecords(17, 5)));  // a key among them
  EXPECT_FALSE(s.Send(w, true, RfbRecords(17, 10)));  // an RFB update request is no RDP answer
  // TLS 1.2 with AES-GCM, as Windows' servers choose: 24 bytes a record.
  RfbTlsWatch w12(TlsInput::Protocol::kRdp);
  Segments s12;
  RfbTlsHandshake(w12, s12, 0xc030);  // ECDHE-RSA-AES256-GCM-SHA384
  EXPECT_TRUE(s12.Send(w12, true, RfbRecords(24, 45)));
  EXPECT_FALSE(s12.Send(w12, true, RfbRecords(17, 45)));
  EXPECT_FALSE(s12.Send(w12, true, RfbRecords(24, 5)));
}

TEST(RelayRdpTls, AnswerSizesAreTheProtocolsOwn) {
  const std::span<const std::uint16_t> rfb = TlsInput::AnswerBytes(TlsInput::Protocol::kRfb);
  const std::span<const std::uint16_t> rdp = TlsInput::AnswerBytes(TlsInput::Protocol::kRdp);
  EXPECT_EQ(std::vector<std::uint16_t>(rfb.begin(), rfb.end()), std::vector<std::uint16_t>{10});
  // No fast-path PDU of one key (4-5 bytes) or one pointer event (9-10) is an answer.
  for (std::uint16_t n : rdp) {
    EXPECT_GE(n, 36);
    EXPECT_LE(n, 48);
  }
}

// ---- SSH: the client's KEXINIT ----------------------------------------------------------

constexpr const char* kSshBanner = ssh_wire::kBanner;
using ssh_wire::KexInit;
using ssh_wire::Packet;
const std::string kKexInit = KexInit(1554);  // a 9.2p1 client's
const std::string kServerKexInit = KexInit(1082);
const std::string kKexEcdhInit = Packet(30, 1202);  // sntrup761x25519: 1200-byte key

using Order = SshKexInitOrder::Segment;

// The laptop's sshd holds its KEXINIT until its banner is acknowledged (Nagle); the far
// client's ACK comes just before its KEXINIT, which lands behind the server's, in two
// segments as captured (tests/golden/ssh_tunnel).
TEST(RelaySshKexInit, TellsTheKexInitBehindTheServers) {
  SshKexInitOrder t;
  Segments s;
  EXPECT_EQ(s.Send(t, true, kSshBanner), Order::kUnawaited);
  EXPECT_EQ(s.Send(t, false, kSshBanner), Order::kTimed);
  EXPECT_EQ(s.Send(t, false, kServerKexInit), Order::kTimed);
  EXPECT_EQ(s.Send(t, true, kKexInit.substr(0, 1448)), Order::kUnasked);
  EXPECT_EQ(s.Send(t, true, kKexInit.substr(1448)), Order::kUnasked);
  EXPECT_FALSE(t.done());
  EXPECT_EQ(s.Send(t, true, kKexEcdhInit), Order::kTimed);  // the answer to the server's KEXINIT
  EXPECT_TRUE(t.done());
}

TEST(RelaySshKexInit, AKexInitBeforeTheServersIsTimed) {
  SshKexInitOrder t;
  Segments s;
  EXPECT_EQ(s.Send(t, true, kSshBanner), Order::kUnawaited);  // sent on connecting
  EXPECT_EQ(s.Send(t, false, kSshBanner), Order::kTimed);
  EXPECT_EQ(s.Send(t, true, kKexInit), Order::kTimed);  // answers the server's banner
  EXPECT_EQ(s.Send(t, false, kServerKexInit), Order::kTimed);
  EXPECT_EQ(s.Send(t, true, kKexEcdhInit), Order::kTimed);
  EXPECT_TRUE(t.done());
}

// Behind a proxy the far client's banner lands a round trip after the connection opened,
// behind the server's: it answers nothing, whether alone or with the KEXINIT.
TEST(RelaySshKexInit, TheClientsBannerAnswersNothing) {
  for (const bool with_kexinit : {false, true}) {
    SshKexInitOrder t;
    Segments s;
    EXPECT_EQ(s.Send(t, false, kSshBanner), Order::kTimed);
    EXPECT_EQ(s.Send(t, true, std::string("SSH-2.0-") + (with_kexinit ? "" : "x")),
              Order::kUnawaited);  // the line may come in parts
    EXPECT_EQ(s.Send(t, true, std::string("dropbear\r\n") + (with_kexinit ? kKexInit : "")),
              Order::kUnawaited);
    if (!with_kexinit) {
      EXPECT_EQ(s.Send(t, true, kKexInit), Order::kTimed);
    }
    EXPECT_EQ(s.Send(t, false, kServerKexInit), Order::kTimed);
    EXPECT_EQ(s.Send(t, true, kKexEcdhInit), Order::kTimed);
    EXPECT_TRUE(t.done());
  }
}

// Behind a jump host the far client's banner and KEXINIT go together; the server sends its
// own banner and KEXINIT at once (other lines first, as RFC 4253 4.2 lets a server) before
// the banner arrived, as a server that does not wait for the client's does.
TEST(RelaySshKexInit, BannerBehindAnEarlyServerKexInit) {
  SshKexInitOrder t;
  Segments s;
  EXPECT_EQ(s.Send(t, false, std::string("welcome\n") + kSshBanner + kServerKexInit),
            Order::kTimed);
  EXPECT_EQ(s.Send(t, true, kSshBanner), Order::kUnasked);
  EXPECT_EQ(s.Send(t, true, kKexInit), Order::kUnasked);
  EXPECT_EQ(s.Send(t, true, kKexEcdhInit), Order::kTimed);
}

// A segment that begins the key exchange init can hold its answer: it is timed.
TEST(RelaySshKexInit, ASegmentHoldingTheSecondPacketIsTimed) {
  SshKexInitOrder t;
  Segments s;
  EXPECT_EQ(s.Send(t, false, kSshBanner), Order::kTimed);
  EXPECT_EQ(s.Send(t, false, kServerKexInit), Order::kTimed);
  EXPECT_EQ(s.Send(t, true, kSshBanner + kKexInit + kKexEcdhInit.substr(0, 1)), Order::kTimed);
  EXPECT_TRUE(t.done());
}

// first_kex_packet_follows: Dropbear's client sends its banner, a KEXINIT with the flag set
// and its guessed exchange init in one segment on connecting. The guess answers nothing;
// when it is wrong, the exchange init sent again on the server's KEXINIT (the third packet)
// is the answer.
TEST(RelaySshKexInit, AGuessedExchangeInitIsNoAnswer) {
  const std::string guess = Packet(30, 36);  // curve25519: a 32-byte key
  {
    SshKexInitOrder t;
    Segments s;
    EXPECT_EQ(s.Send(t, false, kSshBanner), Order::kTimed);
    EXPECT_EQ(s.Send(t, true, kSshBanner + KexInit(600, true) + guess), Order::kUnawaited);
    EXPECT_EQ(s.Send(t, false, kServerKexInit), Order::kTimed);
    EXPECT_FALSE(t.done());
    EXPECT_EQ(s.Send(t, true, guess), Order::kTimed);
    EXPECT_TRUE(t.done());
  }
  {
    SshKexInitOrder t;  // the guess in a segment of its own, behind the server's KEXINIT
    Segments s;
    EXPECT_EQ(s.Send(t, false, kSshBanner + kServerKexInit), Order::kTimed);
    EXPECT_EQ(s.Send(t, true, kSshBanner + KexInit(600, true)), Order::kUnasked);
    EXPECT_EQ(s.Send(t, true, guess), Order::kUnasked);
    EXPECT_EQ(s.Send(t, true, guess), Order::kTimed);
  }
  {
    SshKexInitOrder t;  // the flag in a segment of its own: read across the boundary
    Segments s;
    const std::string kexinit = KexInit(600, true);
    EXPECT_EQ(s.Send(t, false, kSshBanner + kServerKexInit), Order::kTimed);
    EXPECT_EQ(s.Send(t, true, kSshBanner + kexinit.substr(0, kexinit.size() - 9)), Order::kUnasked);
    EXPECT_EQ(s.Send(t, true, kexinit.substr(kexinit.size() - 9, 1)), Order::kUnasked);
    EXPECT_EQ(s.Send(t, true, kexinit.substr(kexinit.size() - 8) + guess), Order::kUnasked);
    EXPECT_EQ(s.Send(t, true, guess), Order::kTimed);
  }
}

TEST(RelaySshKexInit, BadInputEndsTheWatch) {
  const auto ended_by = [](const std::string& server, const std::string& client) {
    SshKexInitOrder t;
    Segments s;
    s.Send(t, false, server);
    s.Send(t, true, client);
    return t.done() && s.Send(t, true, kKexInit) == Order::kTimed;
  };
  EXPECT_FALSE(ended_by(kSshBanner + kServerKexInit, kSshBanner));
  // Not a KEXINIT first; a length under the RFC's least or over what OpenSSH takes; padding
  // longer than the packet.
  EXPECT_TRUE(ended_by(kSshBanner + Packet(21, 0), kSshBanner));
  EXPECT_TRUE(ended_by(kSshBanner, kSshBanner + ssh_wire::PacketHeader(5, 4, 20)));
  EXPECT_TRUE(ended_by(kSshBanner, kSshBanner + ssh_wire::PacketHeader(
                                                    SshPacketStarts::kMaxPacketLength + 1, 4, 20)));
  EXPECT_TRUE(ended_by(kSshBanner, kSshBanner + ssh_wire::PacketHeader(16, 15, 20)));
  // No version line within the bound.
  EXPECT_TRUE(ended_by(
      std::string(SshPacketStarts::kMaxIdentificationBytes, 'a') + "\n" + kSshBanner, "x"));
  {
    SshKexInitOrder t;  // a gap: the server's KEXINIT segment was not seen
    Segments s;
    s.Send(t, false, kSshBanner);
    s.Skip(false, static_cast<std::uint32_t>(kServerKexInit.size()));
    s.Send(t, false, kServerKexInit);
    EXPECT_TRUE(t.done());
  }
  {
    SshKexInitOrder t;  // a snaplen cut
    Segments s;
    s.Send(t, false, kSshBanner);
    decode::DecodedPacket p;
    p.tcp_flags = kAck | kPsh;
    p.seq = 7000 + static_cast<std::uint32_t>(std::string(kSshBanner).size());
    p.payload = {reinterpret_cast<const std::uint8_t*>(kServerKexInit.data()), 96};
    p.payload_length = static_cast<std::uint32_t>(kServerKexInit.size());
    EXPECT_EQ(t.OnSegment(p, false), Order::kTimed);
    EXPECT_TRUE(t.done());
  }
}

TEST(RelayTiming, IpIdGapsFindAPacketLostBeforeTheSensor) {
  IpIdGaps ids;
  EXPECT_FALSE(ids.OnPacket(100, 0));
  EXPECT_FALSE(ids.OnPacket(101, 0));
  EXPECT_FALSE(ids.OnPacket(102, 0));
  EXPECT_FALSE(ids.OnPacket(104, 0));  // skipped, but two steps do not show a counter yet
  EXPECT_FALSE(ids.OnPacket(105, 0));
  EXPECT_TRUE(ids.OnPacket(107, 0));  // three of four steps were +1: 106 never reached it
  EXPECT_FALSE(ids.OnPacket(108, 0));
  EXPECT_FALSE(ids.OnPacket(108, 0));  // the same packet twice (a duplicate) skips nothing
  EXPECT_FALSE(ids.OnPacket(0, 0));    // ID 0: no counter (a SYN/ACK)
  EXPECT_FALSE(ids.OnPacket(109, 0));  // ...and broke nothing
  EXPECT_FALSE(ids.OnPacket(111, 0));  // 5 of 7 steps were +1: fewer than three in four
  for (std::uint16_t id = 112; id <= 115; ++id)
    EXPECT_FALSE(ids.OnPacket(id, 0));
  EXPECT_TRUE(ids.OnPacket(117, 0));  // 9 of 12
}

TEST(RelayTiming, IpIdGapsJudgeOnlyACounterOfTheConnection) {
  IpIdGaps global;  // one counter for all connections: other traffic takes numbers between
  for (const std::uint16_t id : {10, 14, 15, 19, 23, 24, 26, 27, 31, 32, 35})
    EXPECT_FALSE(global.OnPacket(id, 0));
  IpIdGaps reordered;
  for (std::uint16_t id = 500; id <= 503; ++id)
    EXPECT_FALSE(reordered.OnPacket(id, 0));
  EXPECT_FALSE(reordered.OnPacket(498, 0));  // backwards: reordered before the sensor, not lost
  IpIdGaps merged;
  for (std::uint16_t id = 6; id <= 9; ++id)
    EXPECT_FALSE(merged.OnPacket(id, 0));
  EXPECT_FALSE(merged.OnPacket(10, 2896));  // two segments merged at the sensor (GRO)...
  EXPECT_FALSE(merged.OnPacket(12, 0));     // ...so 11 was seen, inside it
  EXPECT_TRUE(merged.OnPacket(14, 0));
  IpIdGaps wraps;
  for (const std::uint16_t id : {65532, 65533, 65534, 65535, 0, 1})
    EXPECT_FALSE(wraps.OnPacket(id, 0));  // the counter passes through 0
  EXPECT_TRUE(wraps.OnPacket(3, 0));
}

TEST(RelayTiming, TurnaroundsStopWhenFull) {
  Turnarounds t(2, absl::Seconds(1));
  for (int i = 0; i < 5; ++i) {
    t.OnData(At(i * 100), false, false);
    t.OnData(At(i * 100 + 30), true, false);
  }
  EXPECT_EQ(t.samples_ms().size(), 2u);
  EXPECT_TRUE(t.full());
}

// A far TLS 1.3 client sends its request right behind its Finished; jitter on its leg lets
// the request reach the laptop after the server's first session ticket. The server's
// second ticket does not acknowledge the request: it was sent before the request arrived,
// so the request answered nothing and its 2 ms must not read as a hidden leg.
TEST(RelayTiming, TurnaroundDroppedWhenTheServerWasStillSending) {
  Turnarounds t(4, absl::Seconds(1));
  t.OnData(At(0), true, false, 1000);           // ClientHello, 517 bytes
  t.OnData(At(10), false, false, 5000, 1517);   // server flight
  t.OnData(At(130), true, false, 1517);         // Finished, 80 bytes: 120 ms
  t.OnData(At(141), false, false, 5800, 1597);  // first ticket: has seen the Finished
  t.OnData(At(143), true, false, 1597);         // the request, 2 ms after the ticket
  EXPECT_EQ(t.samples_ms().size(), 2u);         // provisional until the server speaks
  t.OnData(At(151), false, false, 6055, 1597);  // second ticket: has not seen it
  ASSERT_EQ(t.samples_ms().size(), 1u);
  EXPECT_DOUBLE_EQ(t.samples_ms()[0], 120);
  EXPECT_EQ(t.interrupted(), 1u);
  EXPECT_EQ(t.refused(), 0u);
}

// The same far client, but the ticket flight was over before its request arrived: the
// response acknowledges the request, so only the record layer tells that the request
// was not waiting for the ticket (Tls13FirstData), and the flight ends unanswered.
TEST(RelayTiming, UnawaitedClientDataEndsTheFlightWithoutASample) {
  Turnarounds t(4, absl::Seconds(1));
  t.OnData(At(0), true, false, 1000);           // ClientHello
  t.OnData(At(10), false, false, 5000, 1517);   // server flight
  t.OnData(At(310), true, false, 1517);         // Finished: 300 ms
  t.OnData(At(321), false, false, 5800, 1597);  // the ticket flight: has seen the Finished
  t.OnUnawaitedClientData();                    // the request, 9 ms after the ticket
  t.OnData(At(333), false, false, 6055, 1687);  // the response: acknowledges the request
  t.OnData(At(634), true, false, 1687);         // close_notify: answers the response
  t.OnUnawaitedClientData();                    // no flight open: nothing happens
  EXPECT_EQ(t.samples_ms(), (std::vector<double>{300, 301}));
  EXPECT_EQ(t.interrupted(), 1u);
  EXPECT_EQ(t.refused(), 0u);
}

TEST(RelayTiming, TurnaroundKeptWhenTheServersNextDataAcknowledgesIt) {
  Turnarounds t(4, absl::Seconds(1));
  t.OnData(At(0), false, false, 0, 0xFFFFFFF0u);
  t.OnData(At(90), true, false, 0xFFFFFFF0u);       // answer across the sequence wrap
  t.OnData(At(101), false, false, 0, 0x00000010u);  // acknowledges it: a response
  t.OnData(At(190), true, false, 0x00000010u);
  t.OnData(At(200), false, false, 0, std::nullopt);  // no ACK flag: nothing to tell
  t.OnData(At(290), true, false, 0x00000020u);       // the flow ends with this answer
  EXPECT_EQ(t.samples_ms(), (std::vector<double>{90, 89, 90}));
  EXPECT_EQ(t.interrupted(), 0u);
}

TEST(RelayTiming, ServerDataAfterTheLastSampleStillSettlesIt) {
  Turnarounds t(1, absl::Seconds(1));
  t.OnData(At(0), false, false, 0, 100);
  t.OnData(At(50), true, false, 100);  // the one sample: full
  ASSERT_TRUE(t.full());
  t.OnServerData(100);  // from the server's flight before the answer arrived
  EXPECT_TRUE(t.samples_ms().empty());
  EXPECT_EQ(t.interrupted(), 1u);
  t.OnServerData(100);  // settled once: nothing left to drop
  EXPECT_EQ(t.interrupted(), 1u);
}

TEST(RelayTiming, FetchFedAWaitWhenStartedInItAndAnsweredJustBefore) {
  // A wait from 0 to 80 ms; the client's slack after a fetch's answer is 20 ms. A fetch: its
  // start, its answer, the next request on its connection (-1: none).
  const auto fed = [](double start, double answered, double next) {
    const Exchange x{At(start), At(answered), next < 0 ? absl::InfiniteFuture() : At(next)};
    return FedWait(x, At(0), 80, 20);
  };
  EXPECT_TRUE(fed(2, 75, -1));    // an OCSP request and its answer, then the Finished
  EXPECT_TRUE(fed(2, 62, 900));   // kept open: the next request comes later
  EXPECT_FALSE(fed(2, 75, 77));   // a TLS handshake's ServerHello: its client goes on
  EXPECT_FALSE(fed(-1, 75, -1));  // started before the wait began
  EXPECT_FALSE(fed(81, 82, -1));  // started after the answer
  EXPECT_FALSE(fed(2, 30, -1));   // answered long before: the client waited on more
  EXPECT_FALSE(fed(2, 85, -1));   // answered after the client's answer left
}

TEST(RelayTiming, ExchangesOfAConnectionKeptOpen) {
  // A connection to a responder carrying three fetches, one of them answered in two
  // segments; the first starts at the SYN.
  Exchanges http(8);
  http.OnOpen(At(0));
  http.OnData(At(10), true);
  http.OnData(At(12), true);  // more of the same request
  http.OnData(At(30), false);
  http.OnData(At(31), false);
  http.OnData(At(500), true);
  http.OnData(At(520), false);
  http.OnData(At(900), true);
  http.OnData(At(930), false);
  const std::vector<Exchange>& x = http.exchanges();
  ASSERT_EQ(x.size(), 3u);
  EXPECT_EQ(x[0].start, At(0));
  EXPECT_EQ(x[0].answered, At(31));
  EXPECT_EQ(x[0].next_request, At(500));
  EXPECT_EQ(x[1].start, At(500));
  EXPECT_EQ(x[1].answered, At(520));
  EXPECT_EQ(x[2].next_request, absl::InfiniteFuture());
  // Capped: the first exchange only, with when the next request came.
  Exchanges first(1);
  first.OnOpen(At(0));
  first.OnData(At(10), true);
  first.OnData(At(30), false);
  first.OnData(At(500), true);
  first.OnData(At(520), false);
  ASSERT_EQ(first.exchanges().size(), 1u);
  EXPECT_EQ(first.exchanges()[0].answered, At(30));
  EXPECT_EQ(first.exchanges()[0].next_request, At(500));
  // A responder that speaks first answers the opening; the client's reply is the next one.
  Exchanges banner(1);
  banner.OnOpen(At(0));
  banner.OnData(At(20), false);
  banner.OnData(At(21), true);
  ASSERT_EQ(banner.exchanges().size(), 1u);
  EXPECT_EQ(banner.exchanges()[0].answered, At(20));
  EXPECT_EQ(banner.exchanges()[0].next_request, At(21));
}

TEST(RelayTiming, HiddenLegAndDistance) {
  EXPECT_DOUBLE_EQ(HiddenLegMs(121.5, 0.5), 121);
  EXPECT_DOUBLE_EQ(HiddenLegMs(0.3, 0.5), 0);  // processing noise, not a negative distance
  EXPECT_DOUBLE_EQ(FibreKm(120), 12000);       // 2/3 c: 100 km per ms of round trip
}

// At a VPN concentrator the visible leg is the laptop's home line, which a far client that
// reaches the laptop over that line never crosses: subtracted once, the operator reads
// whole. (A queue on the laptop's own link, which the far client's answer crosses too, then
// reads as distance: docs/detectors/relay.md, Limits.)
TEST(RelayTiming, HiddenLegSubtractsTheVisibleLegOnce) {
  const double home_line = 30;  // laptop <-> concentrator
  const double far = 80;        // laptop <-> operator, over the home line's other side
  EXPECT_DOUBLE_EQ(HiddenLegMs(home_line + far, home_line), far);
}

// Deterministic stand-in for a person's inter-key gaps: 80..250 ms.
std::vector<double> HumanGaps(int n) {
  std::vector<double> gaps;
  std::uint32_t x = 12345;
  for (int i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    gaps.push_back(80 + (x >> 16) % 171);
  }
  return gaps;
}

TEST(RelayTiming, KeystrokesOfAPersonAreNotObfuscated) {
  KeystrokeTiming k;
  double t = 0;
  for (double gap : HumanGaps(60)) {
    t += gap;
    k.OnClientData(At(t), 36);
    k.OnServerData(At(t + 11), 36);  // echo
  }
  const KeystrokeSummary s = k.Summarise();
  EXPECT_EQ(s.keys, 60u);
  EXPECT_FALSE(s.obfuscated);
  ASSERT_TRUE(s.echo_ms.has_value());
  EXPECT_NEAR(*s.echo_ms, 11, 1e-6);
  ASSERT_TRUE(s.clumped_fraction.has_value());
  EXPECT_DOUBLE_EQ(*s.clumped_fraction, 0);
  ASSERT_TRUE(s.gap_cv.has_value());
  EXPECT_GT(*s.gap_cv, 0.1);  // not machine-regular
}

TEST(RelayTiming, RecognisesOpenSshKeystrokeObfuscation) {
  // OpenSSH >= 9.5: keys and chaff leave on a 20 ms clock, all the same size.
  KeystrokeTiming k;
  double t = 0;
  for (int i = 0; i < 80; ++i) {
    t += 20 * (1 + (i % 7 == 0)) + ((i * 37) % 5 - 2) * 0.3;  // 20/40 ms ticks, sub-ms jitter
    k.OnClientData(At(t), 36);
  }
  EXPECT_TRUE(k.Summarise().obfuscated);
  // The same count of human-timed keys is not.
  KeystrokeTiming human;
  t = 0;
  for (double gap : HumanGaps(80))
    human.OnClientData(At(t += gap), 36);
  EXPECT_FALSE(human.Summarise().obfuscated);
}

// OpenSSH 10.0's clock (clientloop.c set_next_interval): each tick 18-20 ms plus an offset of
// 0-2 ms drawn per burst. With a server >= 9.5 it sends a key or a ping on every tick.
std::vector<double> ChaffTicks(int n, double offset_ms, std::mt19937& rng) {
  std::uniform_real_distribution<double> tick(18.0, 20.0);
  std::vector<double> t;
  double now = 0;
  for (int i = 0; i < n; ++i)
    t.push_back(now += tick(rng) + offset_ms);
  return t;
}

// A path with gaussian jitter that keeps the order (a packet waits for the one ahead).
std::vector<double> ThroughJitter(const std::vector<double>& sent, double sigma_ms,
                                  std::mt19937& rng) {
  std::normal_distribution<double> jitter(0.0, sigma_ms);
  std::vector<double> seen;
  for (double t : sent) {
    const double at = t + 40 + jitter(rng);
    seen.push_back(seen.empty() ? at : std::max(at, seen.back()));
  }
  return seen;
}

// The lab's `ssh_tunnel` (OpenSSH 9.2 at both ends, 50 ms one way): the client's window
// adjustments, 36 bytes like a key, came in bursts at a median gap of 16 ms and were read as
// chaff. A client older than 9.5 has no obfuscation to read.
TEST(RelayTiming, AClientOlderThanObfuscationIsNeverTaggedObfuscated) {
  for (const bool older : {false, true}) {
    KeystrokeTiming k;
    if (older)
      k.RuleOutObfuscation();
    double t = 0;
    for (int i = 0; i < 80; ++i) {
      t += 20 * (1 + (i % 7 == 0)) + ((i * 37) % 5 - 2) * 0.3;  // as on OpenSSH's clock
      k.OnClientData(At(t), 36);
    }
    const KeystrokeSummary s = k.Summarise();
    EXPECT_EQ(s.obfuscated, !older);
    EXPECT_EQ(s.gap_median_ms.has_value(), older);  // its rhythm is read, as a person's
  }
}

TEST(RelayTiming, ReadsWhichOpenSshReleasesPredateKeystrokeObfuscation) {
  EXPECT_TRUE(PredatesKeystrokeObfuscation("OpenSSH_9.2p1"));
  EXPECT_TRUE(PredatesKeystrokeObfuscation("OpenSSH_9.4"));
  EXPECT_TRUE(PredatesKeystrokeObfuscation("OpenSSH_7.4"));
  EXPECT_TRUE(PredatesKeystrokeObfuscation("OpenSSH_for_Windows_8.1"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_9.5"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_9.6p1"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_10.0p2"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_for_Windows_9.5"));
  // Not OpenSSH, or no release we can read: obfuscation stays possible.
  EXPECT_FALSE(PredatesKeystrokeObfuscation("PuTTY_Release_0.78"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("dropbear_2022.83"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_9"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_9.x"));
  EXPECT_FALSE(PredatesKeystrokeObfuscation("OpenSSH_12345.1"));
}

TEST(RelayTiming, RecognisesChaffBehindAJitteryRelay) {
  // The ssh -J lab runs with OpenSSH 10.0 at both ends: behind the operator's 4 ms of jitter
  // each way only 62 % of the laptop's gaps lay within 15-25 ms, but their median was 20.
  for (double offset : {0.0, 1.0, 1.99}) {
    for (double sigma : {0.0, 4.0, 10.0}) {
      std::mt19937 rng(7);
      KeystrokeTiming k;
      for (double t : ThroughJitter(ChaffTicks(400, offset, rng), sigma, rng))
        k.OnClientData(At(t), 36);
      EXPECT_TRUE(k.Summarise().obfuscated) << "offset " << offset << " sigma " << sigma;
    }
  }
}

// Nagle behind a ProxyCommand's nc: a packet goes out at once only when nothing is in flight;
// the rest wait for the acknowledgement, one round trip later, and leave as one segment.
std::vector<std::pair<double, std::uint32_t>> ThroughNagle(const std::vector<double>& sent,
                                                           std::uint32_t packet_bytes,
                                                           double rtt_ms) {
  std::vector<std::pair<double, std::uint32_t>> segments;
  double acked = -1;  // when the segment in flight is acknowledged
  std::uint32_t held = 0;
  for (double t : sent) {
    if (held > 0 && t >= acked) {  // the held packets left when the ack came
      segments.emplace_back(acked, held * packet_bytes);
      acked += rtt_ms;
      held = 0;
    }
    if (t >= acked) {
      segments.emplace_back(t, packet_bytes);
      acked = t + rtt_ms;
    } else {
      ++held;
    }
  }
  return segments;
}

TEST(RelayTiming, RecognisesChaffInSegmentsOfSeveralPackets) {
  // The lab's proxied_ssh with OpenSSH 10.0 through an HTTP CONNECT proxy at 45 and 110 ms one
  // way: segments of 3-6 and of 11 packets of 36 bytes, so few segments are key-sized.
  for (double rtt : {90.0, 220.0, 400.0}) {
    std::mt19937 rng(11);
    KeystrokeTiming k;
    for (const auto& [t, bytes] : ThroughNagle(ChaffTicks(1000, 1.0, rng), 36, rtt))
      k.OnClientData(At(t), bytes);
    const KeystrokeSummary s = k.Summarise();
    EXPECT_TRUE(s.obfuscated) << "rtt " << rtt;
    EXPECT_LT(s.keys, 30u) << "rtt " << rtt;  // the keys' own tests could not tell
  }
}

TEST(RelayTiming, APersonsKeysInSegmentsOfSeveralAreNoChaff) {
  // The same proxy in front of a person's keys: a segment holds the keys of one round trip,
  // all multiples of one size, but they come at a person's rate.
  for (double rtt : {90.0, 220.0}) {
    std::vector<double> sent;
    double t = 0;
    for (double gap : HumanGaps(400))
      sent.push_back(t += gap / 3);  // a fast typist: 27-83 ms apart
    KeystrokeTiming k;
    for (const auto& [at, bytes] : ThroughNagle(sent, 36, rtt))
      k.OnClientData(At(at), bytes);
    EXPECT_FALSE(k.Summarise().obfuscated) << "rtt " << rtt;
  }
}

TEST(RelayTiming, SegmentsOfUnequalPacketsAtTheClockRateAreNoChaff) {
  // A tunnel's packets of many sizes behind Nagle: few segments are multiples of one size.
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> blocks(0, 6);
  SegmentSizes segments;
  double t = 0;
  for (int i = 0; i < 600; ++i) {
    std::uint32_t bytes = 0;
    for (int p = 0; p < 4; ++p)
      bytes += 36 + 16 * static_cast<std::uint32_t>(blocks(rng));
    segments.Add(At(t += 80), bytes);
  }
  EXPECT_FALSE(segments.LooksCoalescedChaff());
  // Nor when half of them happen to be four equal packets, which alone run one a tick.
  SegmentSizes half;
  t = 0;
  for (int i = 0; i < 600; ++i)
    half.Add(At(t += 40), i % 2 == 0 ? 4 * 36 : 150);
  EXPECT_FALSE(half.LooksCoalescedChaff());
  // The same segments of equal packets, 4 a segment every 80 ms, are chaff.
  SegmentSizes chaff;
  t = 0;
  for (int i = 0; i < 600; ++i)
    chaff.Add(At(t += 80), 4 * 36);
  EXPECT_TRUE(chaff.LooksCoalescedChaff());
  // Nor is an upload held to a segment a tick (72 kB/s): its packets are no keys.
  SegmentSizes bulk;
  t = 0;
  for (int i = 0; i < 600; ++i)
    bulk.Add(At(t += 20), 1448);
  EXPECT_FALSE(bulk.LooksCoalescedChaff());
}

TEST(RelayTiming, ASmallPacketStreamAtTheClockRateOfManySizesIsNoChaff) {
  // A tunnel's small packets may run 50 a second too; keys and pings have one size.
  std::mt19937 rng(9);
  KeystrokeTiming k;
  const std::vector<double> t = ChaffTicks(400, 1.0, rng);
  for (std::size_t i = 0; i < t.size(); ++i)
    k.OnClientData(At(t[i]), i % 3 == 0 ? 36 : 52 + 16 * (i % 4));
  EXPECT_FALSE(k.Summarise().obfuscated);
}

TEST(RelayTiming, FastTypingIsNoChaff) {
  // A quick typist's 80-250 ms gaps, every one of them shortened by half: still no clock.
  KeystrokeTiming k;
  double t = 0;
  for (double gap : HumanGaps(200))
    k.OnClientData(At(t += gap / 2), 36);
  EXPECT_FALSE(k.Summarise().obfuscated);
}

TEST(RelayTiming, OutputToInputIgnoresMachineAnswers) {
  KeystrokeTiming k;
  double t = 0;
  for (int i = 0; i < 12; ++i) {
    k.OnClientData(At(t), 36);                 // Enter
    k.OnServerData(At(t + 10), 200);           // command output
    k.OnClientData(At(t + 10.5), 36);          // the client's window adjustment: a machine
    k.OnServerData(At(t + 20), 200);           // more output
    k.OnClientData(At(t + 20 + 400 + i), 36);  // the person types again
    t += 2000;
  }
  const KeystrokeSummary s = k.Summarise();
  ASSERT_TRUE(s.output_to_input_p10_ms.has_value());
  EXPECT_NEAR(*s.output_to_input_p10_ms, 401, 1e-6);
}

// Behind a jump host 60 ms away (the golden `jump_ssh_interactive`) the far client's window
// adjustments reach the sensor a round trip after the output, past the 100 ms floor alone.
TEST(RelayTiming, AFarClientsOwnAnswersAreNoReactions) {
  for (const double answer_ms : {0.5, 121.0}) {
    KeystrokeTiming k;
    k.SetSoftwareAnswer(answer_ms);
    double t = 0;
    for (int i = 0; i < 12; ++i) {
      k.OnClientData(At(t), 36);                             // Enter
      k.OnServerData(At(t + 10), 200);                       // output
      k.OnClientData(At(t + 10 + answer_ms + 2), 36);        // the client's window adjustment
      k.OnServerData(At(t + 20 + answer_ms), 200);           // more output
      k.OnClientData(At(t + 20 + answer_ms + 400 + i), 36);  // the person
      t += 2000;
    }
    const KeystrokeSummary s = k.Summarise();
    ASSERT_TRUE(s.output_to_input_p10_ms.has_value()) << answer_ms;
    EXPECT_NEAR(*s.output_to_input_p10_ms, 401, 1e-6) << answer_ms;
  }
}

TEST(RelayTiming, AKeySentAgainTimesNoReaction) {
  KeystrokeTiming k;
  k.OnClientData(At(100), 36);
  k.OnServerData(At(110), 200);  // output
  // The first key after it was lost before the sensor and sent again.
  k.OnClientData(At(110 + 450 + 216), 36, true);
  k.OnServerData(At(1000), 200);
  k.OnClientData(At(1000 + 450), 36);  // a key that got through
  EXPECT_EQ(k.TakeOutputToInput(), std::vector<double>({450.0}));
  EXPECT_EQ(k.Summarise().keys, 3u);  // it is still a key
}

// The lab's `jump_ssh_interactive` at 40 ms one way: the shell's last output, then the far
// client's answer to the channel close 156 ms later (96 bytes), then its FIN 3 ms after that.
TEST(RelayTiming, TheClientsGoodbyeBeforeItsFinIsNoKey) {
  KeystrokeTiming k;
  double t = 0;
  for (int i = 0; i < 6; ++i) {
    k.OnClientData(At(t), 36);
    k.OnServerData(At(t + 10), 200);
    t += 600;  // reactions of 590 ms
  }
  k.OnClientData(At(t), 36);        // Enter after `exit`
  k.OnServerData(At(t + 10), 140);  // logout, exit status, close
  k.OnClientData(At(t + 166), 96);  // the client's goodbye
  k.OnClientFin(At(t + 169));
  const KeystrokeSummary s = k.Summarise();
  EXPECT_EQ(s.keys, 7u);
  ASSERT_TRUE(s.output_to_input_p10_ms.has_value());
  EXPECT_NEAR(*s.output_to_input_p10_ms, 590, 1e-6);  // not 156
  EXPECT_EQ(k.TakeOutputToInput(), std::vector<double>(6, 590.0));
}

TEST(RelayTiming, AKeyBeforeTheFinStaysWhenAnsweredOrLongBefore) {
  KeystrokeTiming answered;
  answered.OnClientData(At(0), 36);
  answered.OnServerData(At(10), 200);
  answered.OnClientData(At(500), 36);  // a person's key ...
  answered.OnServerData(At(510), 36);  // ... echoed
  answered.OnClientFin(At(520));
  EXPECT_EQ(answered.Summarise().keys, 2u);
  EXPECT_EQ(answered.TakeOutputToInput(), std::vector<double>({490.0}));

  KeystrokeTiming late;
  late.OnClientData(At(0), 36);
  late.OnServerData(At(10), 200);
  late.OnClientData(At(500), 36);
  late.OnClientFin(At(2500));  // the client closed 2 s later: no goodbye of its software
  EXPECT_EQ(late.Summarise().keys, 2u);
  EXPECT_EQ(late.TakeOutputToInput(), std::vector<double>({490.0}));
}

TEST(RelayTiming, AGoodbyeWhoseReactionWasTakenLeavesTheNextWindowAlone) {
  KeystrokeTiming k;
  k.OnClientData(At(0), 36);
  k.OnServerData(At(10), 200);
  k.OnClientData(At(500), 36);
  k.OnServerData(At(510), 200);
  k.OnClientData(At(700), 96);  // its reaction (190 ms) goes out in a window ...
  EXPECT_EQ(k.TakeOutputToInput(), std::vector<double>({490.0, 190.0}));
  k.OnClientFin(At(701));  // ... before the FIN: nothing left to take back
  EXPECT_TRUE(k.TakeOutputToInput().empty());
  EXPECT_EQ(k.Summarise().keys, 2u);  // the goodbye itself is no key
}

TEST(RelayTiming, ReactionsGoOnPastTheKeyCapAndAreTakenOnce) {
  KeystrokeTiming k;
  double t = 0;
  const int pairs = static_cast<int>(KeystrokeTiming::kMaxKeys) + 300;
  for (int i = 0; i < pairs; ++i) {
    k.OnClientData(At(t), 36);
    k.OnServerData(At(t + 10), 200);
    t += 500;
  }
  EXPECT_EQ(k.Summarise().keys, KeystrokeTiming::kMaxKeys);  // the rhythm stops at the cap
  EXPECT_EQ(k.TakeOutputToInput().size(), KeystrokeTiming::kMaxKeys);  // at most this many
  EXPECT_TRUE(k.TakeOutputToInput().empty());
  for (int i = 0; i < 10; ++i) {
    k.OnClientData(At(t), 36);
    k.OnServerData(At(t + 10), 200);
    t += 500;
  }
  const std::vector<double> later = k.TakeOutputToInput();
  ASSERT_EQ(later.size(), 10u);  // the person is still timed after 2048 keys
  EXPECT_NEAR(later[0], 490, 1e-6);
}

// A person's output -> next key delays (ms): reading and thinking, log-normal around a
// second, never below 300 ms; plus `added_ms` of screen round trip.
std::vector<double> Person(std::uint64_t seed, int n, double added_ms = 0) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> think(std::log(700.0), 0.5);
  std::vector<double> v;
  for (int i = 0; i < n; ++i)
    v.push_back(300 + think(rng) + added_ms);
  return v;
}

// The nearest-rank q-quantile of v, by sorting: what the one-pass split must agree with.
double SortedQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

TEST(RelayTiming, ReactionShiftOfTheSamePersonIsNotSignificant) {
  int significant = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const ReactionShift r = CompareReactions(Person(seed, 60), Person(seed + 100, 30), 999, 7);
    EXPECT_LT(std::abs(r.shift_ms), 150) << seed;
    significant += r.p_value <= 0.01;
  }
  EXPECT_LE(significant, 1);  // about 1% of such pairs by chance
}

TEST(RelayTiming, ReactionShiftFindsAScreenRoundTrip) {
  int found = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const ReactionShift r =
        CompareReactions(Person(seed, 600), Person(seed + 100, 60, 300), 999, 7);
    EXPECT_NEAR(r.shift_ms, 300, 120) << seed;
    EXPECT_GT(r.recent_p10_ms, r.baseline_p10_ms) << seed;
    found += r.p_value <= 0.01;
  }
  EXPECT_GE(found, 19);
  // Seeded: the same input decides the same way.
  const ReactionShift a = CompareReactions(Person(1, 60), Person(2, 30, 100), 999, 7);
  const ReactionShift b = CompareReactions(Person(1, 60), Person(2, 30, 100), 999, 7);
  EXPECT_EQ(a.p_value, b.p_value);
  EXPECT_EQ(CompareReactions({}, Person(2, 30), 999, 7).p_value, 1.0);
  EXPECT_EQ(CompareReactions(Person(1, 60), Person(2, 30), 0, 7).p_value, 1.0);
}

// The shift and quantiles come from one pass over the pooled, labelled delays; a plain
// sort of each group must give the same numbers, ties and tiny groups included.
TEST(RelayTiming, ReactionShiftAgreesWithSortingEachGroup) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<double> base(1 + rng() % 40);
    std::vector<double> recent(1 + rng() % 40);
    for (double& d : base)
      d = static_cast<double>(rng() % 20) * 50.0;  // coarse: many ties across the groups
    for (double& d : recent)
      d = static_cast<double>(rng() % 20) * 50.0 + (round % 2 ? 0.0 : 25.0);
    std::vector<double> pooled = base;
    pooled.insert(pooled.end(), recent.begin(), recent.end());
    // The 5th..50th percentiles with enough delays below them in the smaller group, their
    // density off the pooled delays, f = 0 at u = 0 and 1; Ogawa's weights.
    const auto smaller = static_cast<double>(std::min(base.size(), recent.size()));
    const double h = std::max(0.04, 10.0 / static_cast<double>(pooled.size()));
    std::vector<double> u = {0};
    std::vector<double> f = {0};
    std::vector<double> diff = {0};
    for (int i = 1; i <= 10; ++i) {
      const double q = i / 20.0;
      if (q * smaller < 5 && i < 10)
        continue;
      u.push_back(q);
      f.push_back(1 / std::max(1.0, SortedQuantile(pooled, q + h) - SortedQuantile(pooled, q - h)));
      diff.push_back(SortedQuantile(recent, q) - SortedQuantile(base, q));
    }
    u.push_back(1);
    f.push_back(0);
    double want = 0;
    double total = 0;
    for (std::size_t j = 1; j + 1 < u.size(); ++j) {
      const double weight =
          f[j] * ((f[j] - f[j - 1]) / (u[j] - u[j - 1]) - (f[j + 1] - f[j]) / (u[j + 1] - u[j]));
      want += weight * diff[j];
      total += weight;
    }
    const ReactionShift r = CompareReactions(base, recent, 0, 1);
    ASSERT_NEAR(r.shift_ms, want / total, 1e-9) << round;
    EXPECT_EQ(r.baseline_p10_ms, SortedQuantile(base, 0.1)) << round;
    EXPECT_EQ(r.baseline_p50_ms, SortedQuantile(base, 0.5)) << round;
    EXPECT_EQ(r.recent_p10_ms, SortedQuantile(recent, 0.1)) << round;
    EXPECT_EQ(r.recent_p50_ms, SortedQuantile(recent, 0.5)) << round;
  }
}

// Longer pauses (a day of reading long outputs: the slowest third of a person's delays 400 ms
// longer) do not move the shift. Ogawa's weights find an 80 ms round trip in more sessions
// than the plain mean of the 10th..50th percentile differences, at the same false-alarm
// rate, for a right-skewed person (ex-Gaussian) and for one whose thinking is bounded
// (uniform): 61 % and 22 % of sessions against 24 % and 9 %. Counted as the daemon decides,
// not in standard errors: weights read off the pooled delays make a statistic's spread
// under a shift differ from its spread without one.
TEST(RelayTiming, ReactionShiftWeighsTheLeadingEdgeNotLongPauses) {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    std::vector<double> recent = Person(seed + 100, 300);
    std::vector<double> sorted = recent;
    std::sort(sorted.begin(), sorted.end());
    const double slowest_third = sorted[200];
    for (double& d : recent)
      d += d >= slowest_third ? 400.0 : 0.0;
    EXPECT_EQ(CompareReactions(Person(seed, 600), recent, 0, 1).shift_ms,
              CompareReactions(Person(seed, 600), Person(seed + 100, 300), 0, 1).shift_ms)
        << seed;
  }
  const auto plain = [](const std::vector<double>& base, const std::vector<double>& recent) {
    double sum = 0;
    for (double q : {0.1, 0.2, 0.3, 0.4, 0.5})
      sum += SortedQuantile(recent, q) - SortedQuantile(base, q);
    return sum / 5;
  };
  // The share of sessions (270 reactions against a history of 600, 1000 draws) with an 80 ms
  // round trip that a statistic puts beyond 3.5 standard deviations of its own spread without
  // one (about p 0.0002, the threshold after the windows' correction) and the 60 ms budget.
  const auto found = [](auto draw, auto statistic) {
    constexpr int kDraws = 1000;
    std::mt19937_64 rng(5);
    std::vector<double> null;
    std::vector<double> relayed;
    for (int i = 0; i < kDraws; ++i) {
      std::vector<double> base;
      std::vector<double> same;
      std::vector<double> far;
      for (int k = 0; k < 600; ++k)
        base.push_back(draw(rng));
      for (int k = 0; k < 270; ++k) {
        same.push_back(draw(rng));
        far.push_back(same.back() + 80);
      }
      null.push_back(statistic(base, same));
      relayed.push_back(statistic(base, far));
    }
    double mean = 0;
    double var = 0;
    for (double x : null)
      mean += x / kDraws;
    for (double x : null)
      var += (x - mean) * (x - mean) / kDraws;
    const double bar = std::max(60.0, mean + 3.5 * std::sqrt(var));
    return static_cast<double>(std::count_if(relayed.begin(), relayed.end(),
                                             [bar](double x) { return x >= bar; })) /
           kDraws;
  };
  const auto weighted = [](const std::vector<double>& base, const std::vector<double>& recent) {
    return CompareReactions(base, recent, 0, 1).shift_ms;
  };
  const auto ex_gaussian = [](std::mt19937_64& rng) {
    return std::normal_distribution<double>(600, 80)(rng) +
           std::exponential_distribution<double>(1 / 700.0)(rng);
  };
  const auto bounded = [](std::mt19937_64& rng) {
    return std::uniform_real_distribution<double>(600, 2000)(rng) +
           std::lognormal_distribution<double>(std::log(360.0), 0.25)(rng);
  };
  const double ex_gaussian_found = found(ex_gaussian, weighted);
  const double bounded_found = found(bounded, weighted);
  EXPECT_GT(ex_gaussian_found, 1.5 * found(ex_gaussian, plain)) << ex_gaussian_found;
  EXPECT_GT(bounded_found, 1.5 * found(bounded, plain)) << bounded_found;
}

// Under the null the permutation p-value is uniform: about a share p of same-person pairs
// reach p, for any p (here 0.1 over 200 pairs).
TEST(RelayTiming, ReactionShiftPValueIsCalibrated) {
  int below = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed)
    below += CompareReactions(Person(seed, 120), Person(seed + 1000, 60), 199, seed).p_value <= 0.1;
  EXPECT_GE(below, 6);  // 20 expected; binomial(200, 0.1) leaves 6..35 once in 2000
  EXPECT_LE(below, 35);
}

TEST(RelayTiming, SteppingStoneCorrelatesOnTimes) {
  OnTimes in(absl::Milliseconds(500), 100);
  OnTimes out(absl::Milliseconds(500), 100);
  OnTimes unrelated(absl::Milliseconds(500), 100);
  for (int i = 0; i < 12; ++i) {
    const double start = i * 2000.0;
    for (int key = 0; key < 5; ++key) {  // a typing burst: one ON, then keys 150 ms apart
      in.OnData(At(start + key * 150));
      out.OnData(At(start + key * 150 + 3));
      unrelated.OnData(At(start + 900 + key * 150));
    }
  }
  EXPECT_EQ(in.times().size(), 12u);
  const SteppingStone s = CorrelateOnTimes(in.times(), out.times(), absl::Milliseconds(80));
  EXPECT_EQ(s.correlated, 12u);
  EXPECT_DOUBLE_EQ(s.ratio, 1.0);
  EXPECT_NEAR(s.median_lag_ms, 3, 1e-6);
  const SteppingStone none =
      CorrelateOnTimes(in.times(), unrelated.times(), absl::Milliseconds(80));
  EXPECT_EQ(none.correlated, 0u);
  // Outbound leading inbound is not a relay through this host.
  const SteppingStone reversed = CorrelateOnTimes(out.times(), in.times(), absl::Milliseconds(80));
  EXPECT_EQ(reversed.correlated, 0u);
}

// Two flows of a host keep the first packets of the same 10 s slots of packet time, however
// far apart they began: the samples of an hour-long inbound session and of an outbound one
// opened 37 s into it lie side by side.
TEST(RelayTiming, PacketSamplesOfTwoFlowsKeepTheSameStretches) {
  PacketSample early(4, 100);
  PacketSample late(4, 100);
  for (int i = 0; i < 600; ++i) {  // every 100 ms for a minute
    early.OnData(At(i * 100.0));
    if (i >= 370)
      late.OnData(At(i * 100.0 + 0.4));
  }
  ASSERT_EQ(early.times().size(), 24u);  // 4 in each of six slots
  ASSERT_EQ(late.times().size(), 12u);   // from 37 s: the slots from 40 s, and the rest of 30 s
  for (int k = 0; k < 4; ++k) {
    // kT0 lies on a slot boundary: 40 s in is where both keep the first four.
    EXPECT_EQ(late.times()[4 + k] - absl::Milliseconds(0.4), early.times()[16 + k]);
  }
  PacketSample bounded(4, 10);
  for (int i = 0; i < 600; ++i)
    bounded.OnData(At(i * 100.0));
  EXPECT_EQ(bounded.times().size(), 10u);
  EXPECT_EQ(bounded.dropped(), 14u);
}

// A far OpenSSH >= 9.5 client's chaff through a jump host, as the sensor sees it: a packet on
// every 18-20 ms tick for `until_ms`, arriving over a path with `far_jitter_ms` of jitter, and
// forwarded `forwarding()` ms after it came in (both in order); beside them the host's own
// chaffing session, on a clock of its own from `own_at` ms.
struct ChaffThroughAHost {
  PacketSample in{32, 384}, out{32, 384}, own{32, 384};
  OnTimes in_ons{absl::Milliseconds(500), 100}, out_ons{absl::Milliseconds(500), 100};
};
ChaffThroughAHost SimulateChaffThroughAHost(std::mt19937& rng, double until_ms,
                                            double far_jitter_ms, double own_at,
                                            const std::function<double()>& forwarding) {
  std::uniform_real_distribution<double> tick(18, 20);
  std::uniform_real_distribution<double> jitter(0, far_jitter_ms);
  ChaffThroughAHost c;
  double sent = 0;
  double last_in = 0;
  double last_out = 0;
  while (sent < until_ms) {
    sent += tick(rng);
    const double arrival = std::max(last_in, sent + jitter(rng));
    last_in = arrival;
    c.in.OnData(At(arrival));
    c.in_ons.OnData(At(arrival));
    const double forwarded = std::max(last_out, arrival + forwarding());
    last_out = forwarded;
    c.out.OnData(At(forwarded));
    c.out_ons.OnData(At(forwarded));
    while (own_at < forwarded) {
      c.own.OnData(At(own_at));
      own_at += tick(rng);
    }
  }
  return c;
}

// OpenSSH >= 9.5 through a jump host: the far client sends a packet on every tick of its ~20 ms
// clock (keys or chaff) while the person types, so each flow is one long ON period, but the
// host forwards every packet within a millisecond. The host's own chaffing session, on a clock
// of its own, matches only as often as the inbound windows cover the time.
TEST(RelayTiming, PacketsForwardedByAJumpHostMatchWhereOnPeriodsCannot) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> forwarding(0.1, 0.6);
  const ChaffThroughAHost c =
      SimulateChaffThroughAHost(rng, 20000, 6, 7.3, [&] { return forwarding(rng); });
  const PacketSample& in = c.in;
  const PacketSample& out = c.out;
  const PacketSample& own = c.own;
  EXPECT_EQ(c.in_ons.times().size(), 1u);  // nothing for ON periods to match
  const SteppingStone s = CorrelatePackets(in.times(), out.times(), absl::Milliseconds(5));
  EXPECT_GE(s.outbound_ons, 60u);
  EXPECT_EQ(s.correlated, s.outbound_ons);
  EXPECT_DOUBLE_EQ(s.ratio, 1.0);
  EXPECT_LT(s.median_lag_ms, 0.6);
  EXPECT_LT(s.chance, 1e-20);
  const SteppingStone independent =
      CorrelatePackets(in.times(), own.times(), absl::Milliseconds(5));
  EXPECT_GE(independent.outbound_ons, 60u);
  EXPECT_LT(independent.ratio, 0.5);
  EXPECT_GT(independent.chance, 0.01);
  // Outbound leading inbound is no relay through this host: the inbound packet comes after.
  EXPECT_GT(CorrelatePackets(out.times(), in.times(), absl::Milliseconds(5)).chance, 0.01);
}

// Two sessions typed at the same time, each chaffing on its own clock: dense together and
// silent together. Their packets match as often as 5 ms fills a tick where both are dense, a
// quarter; taken against the slot's average density, half of which is silence, that looked
// like twice chance (found pairing real captures: 2026-12-05).
TEST(RelayTiming, SessionsTypedAtTheSameTimeMatchOnlyByChance) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> tick(18, 20);
  std::vector<PacketTime> in, out;
  for (int burst = 0; burst < 3; ++burst) {
    const double start = 300 + burst * 3000.0;
    for (double t = start; t < start + 1500; t += tick(rng))
      in.push_back(At(t));
    for (double t = start + 7.3; t < start + 1500; t += tick(rng))
      out.push_back(At(t));
  }
  const SteppingStone s = CorrelatePackets(in, out, absl::Milliseconds(5));
  EXPECT_GE(s.outbound_ons, 200u);
  EXPECT_LT(s.ratio, 0.5);
  EXPECT_GT(s.chance, 0.01);
}

// Two sessions chaffing on clocks of one rate over clean paths, their ticks 2 ms apart at the
// start (each tick 19.8-20.2 ms, so the phase wanders by a few ms in ten seconds): most
// outbound packets follow an inbound one within 5 ms, which the binomial takes for a relay.
// The gaps tell: each clock's irregularity is its own, while a relay of the same inbound clock
// copies it (found in real captures of independent sessions, 2026-12-05).
TEST(RelayTiming, TwoClocksOfOneRateAreNoRelayWhateverTheirPhase) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> tick(19.8, 20.2);
  std::uniform_real_distribution<double> forwarding(0.1, 0.4);
  PacketSample in(32, 384), out(32, 384), relayed(32, 384);
  double in_at = 0;
  double out_at = 2.0;
  for (int i = 0; i < 2000; ++i) {
    in_at += tick(rng);
    in.OnData(At(in_at));
    relayed.OnData(At(in_at + forwarding(rng)));
    out_at += tick(rng);
    out.OnData(At(out_at));
  }
  const absl::Duration delta = absl::Milliseconds(5);
  const SteppingStone locked = CorrelatePackets(in.times(), out.times(), delta);
  EXPECT_GE(locked.outbound_ons, 100u);
  EXPECT_GT(locked.ratio, 0.5);
  EXPECT_LT(locked.chance, 1e-20);  // the binomial alone: a relay
  EXPECT_GE(locked.gap_pairs, 100u);
  EXPECT_LT(std::abs(locked.gap_rho), 0.3);
  EXPECT_GT(locked.gap_chance, 0.01);
  const SteppingStone relay = CorrelatePackets(in.times(), relayed.times(), delta);
  EXPECT_GT(relay.gap_rho, 0.5);
  EXPECT_LT(relay.gap_chance, 1e-10);
  EXPECT_LT(relay.chance, 1e-20);
}

// The same jump host on a Wi-Fi (at least 3 ms each way, more under contention, order kept):
// each packet leaves 6-16 ms after the sensor saw it come in, so no window that starts with
// the inbound packet holds most of them without holding most of a 20 ms tick too. Windows
// moved and widened up to the host's leg find it, against a chance that counts every window
// tried; without the leg they cannot, and the host's own chaffing session matches in none.
TEST(RelayTiming, PacketsForwardedBehindAWifiMatchInAMovedWindow) {
  std::mt19937 rng(13);
  std::normal_distribution<double> contention(0, 2.5);
  // To the host over the Wi-Fi, forwarded, and back over it to the sensor.
  const ChaffThroughAHost c = SimulateChaffThroughAHost(rng, 40000, 4, 11.1, [&] {
    return 3 + std::abs(contention(rng)) + 0.2 + 3 + std::abs(contention(rng));
  });
  const PacketSample& in = c.in;
  const PacketSample& out = c.out;
  const PacketSample& own = c.own;
  const absl::Duration delta = absl::Milliseconds(5);
  const SteppingStone bare = CorrelatePackets(in.times(), out.times(), delta);
  EXPECT_GE(bare.outbound_ons, 100u);
  EXPECT_LT(bare.ratio, 0.5);
  const std::optional<PacketWindowMatch> m =
      ScanPacketWindows(in.times(), out.times(), delta, absl::Milliseconds(20), 0.5, 16);
  ASSERT_TRUE(m.has_value());
  EXPECT_GT(m->offset, absl::ZeroDuration());
  EXPECT_GE(m->stone.ratio, 0.5);
  EXPECT_GT(m->stone.median_lag_ms, 4.0);
  EXPECT_LT(m->stone.median_lag_ms, 12.0);
  EXPECT_LT(m->stone.chance, 1e-6);
  // The outbound gaps follow the inbound ones through the Wi-Fi's own noise.
  EXPECT_GT(m->stone.gap_rho, 0.3);
  EXPECT_LT(m->stone.gap_chance, 1e-3);
  // The chances count the 27 windows tried (offsets 0..20 ms in 9 steps, 3 widths).
  const SteppingStone same = CorrelatePackets(in.times(), out.times(), m->width, m->offset);
  EXPECT_DOUBLE_EQ(m->stone.chance, std::min(1.0, same.chance * 27));
  EXPECT_DOUBLE_EQ(m->stone.gap_chance, std::min(1.0, same.gap_chance * 27));
  // The host's leg unknown: windows from 0 only, which a 20 ms tick fills.
  const std::optional<PacketWindowMatch> legless =
      ScanPacketWindows(in.times(), out.times(), delta, absl::ZeroDuration(), 0.5, 16);
  EXPECT_TRUE(!legless || legless->stone.chance > 0.001);
  const std::optional<PacketWindowMatch> independent =
      ScanPacketWindows(in.times(), own.times(), delta, absl::Milliseconds(20), 0.5, 16);
  EXPECT_TRUE(!independent || independent->stone.chance > 0.001);
}

// Only the stretch both samples cover counts: an outbound flow that goes on after the
// inbound one ended, or samples of different slots, say nothing either way.
TEST(RelayTiming, PacketsAreMatchedOnlyWhereBothFlowsWereSampled) {
  std::vector<PacketTime> in, out;
  for (int i = 0; i < 40; ++i) {
    in.push_back(At(1000 + i * 100.0));
    out.push_back(At(1000 + i * 100.0 + 0.5));
  }
  for (int i = 0; i < 40; ++i)  // after the inbound flow's last packet: not forwarded
    out.push_back(At(5000 + i * 100.0 + 37));
  const SteppingStone s = CorrelatePackets(in, out, absl::Milliseconds(5));
  EXPECT_EQ(s.outbound_ons, 39u);  // up to the inbound flow's last packet (3.9 s later)
  EXPECT_EQ(s.correlated, 39u);
  std::vector<PacketTime> next_slot;
  for (int i = 0; i < 40; ++i)
    next_slot.push_back(At(11000 + i * 100.0 + 0.5));
  const SteppingStone apart = CorrelatePackets(in, next_slot, absl::Milliseconds(5));
  EXPECT_EQ(apart.outbound_ons, 0u);
  EXPECT_DOUBLE_EQ(apart.chance, 1);
  // A capture whose clock went back leaves a sample out of order: nothing is read past it.
  std::vector<PacketTime> backwards = in;
  std::swap(backwards[10], backwards[39]);
  EXPECT_LE(CorrelatePackets(backwards, out, absl::Milliseconds(5)).outbound_ons, 39u);
}

TEST(RelayTiming, BinomialTail) {
  EXPECT_DOUBLE_EQ(BinomialTail(10, 0, 0.3), 1);
  EXPECT_DOUBLE_EQ(BinomialTail(10, 11, 0.3), 0);
  EXPECT_NEAR(BinomialTail(10, 10, 0.5), 1.0 / 1024, 1e-12);
  EXPECT_NEAR(BinomialTail(4, 2, 0.5), 11.0 / 16, 1e-12);
  EXPECT_NEAR(BinomialTail(200, 1, 0.01), 1 - std::pow(0.99, 200), 1e-9);
  EXPECT_DOUBLE_EQ(BinomialTail(5, 1, 0), 0);
  EXPECT_DOUBLE_EQ(BinomialTail(5, 5, 1), 1);
}

// The chance of the matches under independence: few ON periods that all match are telling;
// an inbound stream busy enough to cover a third of the time matches a third by itself.
TEST(RelayTiming, SteppingStoneChanceOfTheMatches) {
  std::vector<PacketTime> in, out;
  for (int i = 0; i < 7; ++i) {  // 20 s of typing through a remote desktop: 7 and 10 ONs
    in.push_back(At(i * 3000.0));
    out.push_back(At(i * 3000.0 + 5));
  }
  for (int i = 0; i < 3; ++i)
    out.push_back(At(i * 3000.0 + 1500));
  std::sort(out.begin(), out.end());  // ON times come in order
  const SteppingStone few = CorrelateOnTimes(in, out, absl::Milliseconds(80));
  EXPECT_EQ(few.correlated, 7u);
  // The windows cover 6 x 80 ms and, the last cut at the span's end, 5 ms of 18.005 s:
  // q = 0.0269; 7 or more of 10 by chance.
  EXPECT_NEAR(few.chance, BinomialTail(10, 7, (6 * 80 + 5) / 18005.0), 1e-18);
  EXPECT_LT(few.chance, 1e-8);

  std::vector<PacketTime> chatty, unrelated;
  for (int i = 0; i < 250; ++i)  // an ON every 240 ms: a third of the time covered
    chatty.push_back(At(i * 240.0));
  for (int i = 0; i < 30; ++i)  // unrelated activity every 2 s
    unrelated.push_back(At(i * 2000.0 + 37 * (i % 7)));
  const SteppingStone busy = CorrelateOnTimes(chatty, unrelated, absl::Milliseconds(80));
  EXPECT_GE(busy.ratio, 0.3);    // passes the ratio...
  EXPECT_GT(busy.chance, 0.01);  // ...but no more often than chance
  // Overlapping windows are covered once: ONs 50 ms apart cover the whole span.
  std::vector<PacketTime> dense;
  for (int i = 0; i < 100; ++i)
    dense.push_back(At(i * 50.0));
  EXPECT_DOUBLE_EQ(CorrelateOnTimes(dense, {At(10), At(4000)}, absl::Milliseconds(80)).chance, 1);
}

// Output shown on a screen: each output is looked for in the updates after it, not before,
// within the window; the chance is the binomial tail over the outputs at the share of the span
// that the windows before the updates cover.
TEST(RelayTiming, ShownOutputIsTheUpdateAfterEachOutput) {
  std::vector<PacketTime> outputs, updates;
  for (int i = 0; i < 8; ++i) {  // a command every 2.5 s, drawn 20 ms later
    outputs.push_back(At(1000 + i * 2500.0));
    updates.push_back(At(1020 + i * 2500.0));
    updates.push_back(At(1700 + i * 2500.0));  // the echo of the next command's keys
  }
  const SteppingStone shown = CorrelateShownOutput(outputs, updates, absl::Milliseconds(80));
  EXPECT_EQ(shown.outbound_ons, 8u);
  EXPECT_EQ(shown.inbound_ons, 16u);
  EXPECT_EQ(shown.correlated, 8u);
  EXPECT_DOUBLE_EQ(shown.ratio, 1.0);
  EXPECT_DOUBLE_EQ(shown.median_lag_ms, 20.0);
  // 16 windows of 80 ms over the span from the first window's start to the last update.
  const double q = 16 * 80 / (19200.0 - 940.0);
  EXPECT_NEAR(shown.chance, BinomialTail(8, 8, q), 1e-15);
  EXPECT_LT(shown.chance, 1e-8);
  // Updates before the output are not its: the screen changed before the host had it.
  std::vector<PacketTime> early;
  for (PacketTime u : updates)
    early.push_back(u - absl::Milliseconds(40));
  EXPECT_EQ(CorrelateShownOutput(outputs, early, absl::Milliseconds(80)).correlated, 0u);
  // A screen that updates every 50 ms matches every output, and by chance alone.
  std::vector<PacketTime> busy;
  for (int i = 0; i < 400; ++i)
    busy.push_back(At(i * 50.0));
  const SteppingStone any = CorrelateShownOutput(outputs, busy, absl::Milliseconds(80));
  EXPECT_EQ(any.correlated, 8u);
  EXPECT_DOUBLE_EQ(any.chance, 1.0);
  EXPECT_EQ(CorrelateShownOutput({}, updates, absl::Milliseconds(80)).correlated, 0u);
  EXPECT_DOUBLE_EQ(CorrelateShownOutput(outputs, {}, absl::Milliseconds(80)).chance, 1.0);
}

TEST(RelayTiming, OnTimesAreBounded) {
  OnTimes ons(absl::Milliseconds(500), 3);
  for (int i = 0; i < 10; ++i)
    ons.OnData(At(i * 1000));
  EXPECT_EQ(ons.times().size(), 3u);
  EXPECT_EQ(ons.dropped(), 7u);
}

// ---- The detector on a TCP connection --------------------------------------------------

// Drives one TCP connection with exact times, sequence and acknowledgement numbers.
class Wire {
 public:
  explicit Wire(RelayConfig config = {})
      : detector_(config, DetectorContext{}),
        table_(flow::FlowTableConfig{},
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }) {}

  void Send(double ms, bool from_client, std::uint8_t flags, const std::string& payload) {
    decode::DecodedPacket p = Packet(ms, from_client, decode::kProtoTcp);
    p.tcp_flags = flags;
    p.ttl = from_client ? client_ttl_ : server_ttl_;
    std::uint16_t& id = from_client ? client_id_ : server_id_;
    if (id != 0)
      p.ip_id = id++;
    std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
    if (resend_)
      seq -= static_cast<std::uint32_t>(payload.size());  // the same bytes again
    p.seq = behind_ ? *behind_ : seq;
    p.ack = (from_client ? server_seq_ : client_seq_);
    payloads_.push_back(payload);
    const std::string& stored = payloads_.back();
    p.payload = {reinterpret_cast<const std::uint8_t*>(stored.data()), stored.size()};
    p.payload_length = static_cast<std::uint32_t>(stored.size());
    if (!behind_)
      seq += p.payload_length + ((flags & kSyn) ? 1 : 0);
    flow::Direction direction;
    flow::FlowState& flow = table_.Track(p, direction);
    detector_.OnPacket(p, flow, direction, events_);
  }
  // Skips the side's next `bytes`, to be sent later with SendBehind (they come behind what
  // follows, as a jitter that reorders does); returns their first sequence number.
  std::uint32_t Skip(bool from_client, std::uint32_t bytes) {
    std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
    seq += bytes;
    return seq - bytes;
  }
  void SendBehind(double ms, bool from_client, std::uint32_t seq, const std::string& payload) {
    behind_ = seq;
    Send(ms, from_client, kAck | kPsh, payload);
    behind_.reset();
  }
  // A UDP datagram of the flow between the same two ends (ports 50000 and the server's).
  void SendUdp(double ms, bool from_client, std::string payload) {
    decode::DecodedPacket p = Packet(ms, from_client, decode::kProtoUdp);
    p.ttl = from_client ? client_ttl_ : server_ttl_;
    payloads_.push_back(std::move(payload));
    const std::string& stored = payloads_.back();
    p.payload = {reinterpret_cast<const std::uint8_t*>(stored.data()), stored.size()};
    p.payload_length = static_cast<std::uint32_t>(stored.size());
    flow::Direction direction;
    flow::FlowState& flow = table_.Track(p, direction);
    if (!(flow.detectors_done & 1) &&
        detector_.OnPacket(p, flow, direction, events_) == Verdict::kDone) {
      flow.detectors_done |= 1;
    }
  }
  // The side's last segment again, as a retransmission does.
  void Resend(double ms, bool from_client, const std::string& payload) {
    resend_ = true;
    Send(ms, from_client, kAck | kPsh, payload);
    resend_ = false;
  }
  // Connection from client (near) to server (10 ms away); the client side is `client_ms` away.
  void Handshake(double t, double client_ms) {
    Send(t, true, kSyn, "");
    Send(t + 10, false, kSyn | kAck, "");
    Send(t + 10 + client_ms, true, kAck, "");
  }
  void SetTtl(bool client, std::uint8_t ttl) { (client ? client_ttl_ : server_ttl_) = ttl; }
  // The side numbers its IPv4 packets one by one from `first`, as Linux does per connection
  // (default: ID 0, no counter).
  void NumberIpIds(bool client, std::uint16_t first) { (client ? client_id_ : server_id_) = first; }
  // A packet of the client's lost before the sensor: its number is used, nothing is seen.
  void LoseClientPacket() { ++client_id_; }
  void SetServerPort(std::uint16_t port) { server_port_ = port; }
  std::vector<Event> End() {
    table_.EndAll(flow::EndReason::kShutdown);
    return events_.events();
  }
  const RelayCounters& counters() const { return detector_.counters(); }

 private:
  // A packet between the two ends, client port 50000.
  decode::DecodedPacket Packet(double ms, bool from_client, std::uint8_t protocol) const {
    decode::DecodedPacket p;
    p.ts = At(ms);
    p.ip_version = 4;
    p.protocol = protocol;
    p.src = from_client ? client_ : server_;
    p.dst = from_client ? server_ : client_;
    p.src_port = from_client ? 50000 : server_port_;
    p.dst_port = from_client ? server_port_ : 50000;
    return p;
  }

  IpAddress client_ = *IpAddress::Parse("10.0.0.5");
  IpAddress server_ = *IpAddress::Parse("198.51.100.7");
  std::uint32_t client_seq_ = 1000;
  std::uint32_t server_seq_ = 900000;
  std::uint8_t client_ttl_ = 64;
  std::uint8_t server_ttl_ = 52;
  std::uint16_t client_id_ = 0;
  std::uint16_t server_id_ = 0;
  std::uint16_t server_port_ = 443;
  RelayDetector detector_;
  EventBuffer events_;
  flow::FlowTable table_;
  std::vector<std::string> payloads_;
  bool resend_ = false;
  std::optional<std::uint32_t> behind_;  // SendBehind: this sequence number, no advance
};

const std::string kClientHello = std::string("\x16\x03\x01\x00\x30", 5) + std::string(48, 'h');

// A TLS client behind a relay `hidden_ms` away: every answer waits that long.
std::vector<Event> TlsThroughRelay(double hidden_ms, const RelayConfig& config = {}) {
  Wire w(config);
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, kClientHello);
  w.Send(21, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
  w.Send(21.1, false, kAck | kPsh, std::string(800, 's'));
  w.Send(21.3, true, kAck, "");  // the near TCP end acknowledges at once
  w.Send(21.1 + hidden_ms + 0.5, true, kAck | kPsh, std::string(80, 'f'));    // Finished
  w.Send(21.1 + hidden_ms + 0.6, true, kAck | kPsh, std::string(90, 'g'));    // request
  w.Send(31.7 + hidden_ms, false, kAck | kPsh, std::string(500, 'r'));        // response
  w.Send(31.7 + 2 * hidden_ms + 1, true, kAck | kPsh, std::string(24, 'c'));  // close_notify
  return w.End();
}

TEST(RelayDetector, MeasuresTheHiddenLegOfATlsClient) {
  const std::vector<Event> events = TlsThroughRelay(120);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(events[0].event_type, "relay");
  EXPECT_EQ(r["app"], "tls");
  EXPECT_DOUBLE_EQ(r["handshake"]["responder_ms"].get<double>(), 10);
  EXPECT_NEAR(r["rtt_originator_ms"].get<double>(), 0.2, 1e-6);
  EXPECT_EQ(r["turnaround_samples_ms"].size(), 2u);
  // The handshake's answer (the Finished) waits on the hidden leg like every other.
  EXPECT_NEAR(r["handshake_turnaround_ms"].get<double>(), 120.5, 1e-6);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 120.3, 0.01);
  EXPECT_NEAR(r["min_distance_km"].get<double>(), 12030, 1);
  EXPECT_FALSE(r.contains("keystrokes"));
  EXPECT_TRUE(r.contains("_on_times_us"));  // for the host stage, removed there
  // Also for it: when each turnaround's wait began, and the flow's first exchange as a
  // possible fetch (from its SYN to the server's last data before the client's Finished).
  const auto us = [](double ms) {
    return absl::ToUnixMicros(At(ms));
  };
  EXPECT_EQ(r["_waits_us"], nlohmann::json({us(21.1), us(31.7 + 120)}));
  EXPECT_EQ(r["_exchanges_us"], nlohmann::json({{us(0), us(21.1), us(21.1 + 120 + 0.5)}}));
}

// RFB (RFC 6143) from a viewer whose TCP end (a forwarder) is 2 ms from the sensor and whose
// person is `hidden_ms` beyond it: the setup is lock-step; then each update comes in three
// parts 60 ms apart (a large one, paced by the server's window) and the viewer asks for the
// next as the update begins to arrive, as TigerVNC does; keys and pointer moves go out
// whenever the person moves.
std::vector<Event> RfbThroughAForwarder(double hidden_ms) {
  Wire w;
  w.SetServerPort(5900);
  w.Handshake(0, 2);
  const double far = 2 + hidden_ms;
  w.Send(10.5, false, kAck | kPsh, "RFB 003.008\n");
  w.Send(10.5 + far, true, kAck | kPsh, "RFB 003.008\n");
  w.Send(11 + far, false, kAck | kPsh, std::string("\x01\x01", 2));  // security: None
  w.Send(11 + 2 * far, true, kAck | kPsh, std::string("\x01", 1));
  w.Send(11.5 + 2 * far, false, kAck | kPsh, std::string(4, '\0'));   // SecurityResult: OK
  w.Send(11.5 + 3 * far, true, kAck | kPsh, std::string("\x01", 1));  // ClientInit
  w.Send(12 + 3 * far, false, kAck | kPsh, std::string(24, '\0'));    // ServerInit
  const std::string full_request("\x03\x00\x00\x00\x00\x00\x03\x20\x02\x58", 10);
  std::string next_request = full_request;
  next_request[1] = 1;
  w.Send(12 + 4 * far, true, kAck | kPsh, full_request);
  double t = 20 + 4 * far;
  for (int i = 0; i < 8; ++i) {
    // The update's parts, the forwarder's ACKs, a key the person typed meanwhile, and the
    // request for the next update, which leaves as the first part arrives; in time order.
    struct Segment {
      double at;
      bool from_viewer;
      std::string payload;
    };
    std::vector<Segment> segments = {
        {t + 3, true, std::string("\x04\x01\x00\x00\x00\x00\x00\x61", 8)},
        {t + far + 0.5, true, next_request}};
    for (int part = 0; part < 3; ++part) {
      segments.push_back({t + 60 * part, false, std::string(1400, '\0')});
      segments.push_back({t + 60 * part + 2, true, ""});
    }
    std::stable_sort(segments.begin(), segments.end(),
                     [](const Segment& a, const Segment& b) { return a.at < b.at; });
    for (const Segment& s : segments)
      w.Send(s.at, s.from_viewer, s.payload.empty() ? kAck : kAck | kPsh, s.payload);
    t += far + 200;  // the screen changes again a while later
  }
  return w.End();
}

// An RFB session's start, a viewer 2 ms from the sensor: TCP's handshake and the versions, the
// viewer's at 12.5 ms.
void RfbVersions(Wire& w) {
  w.SetServerPort(5900);
  w.Handshake(0, 2);
  w.Send(10.5, false, kAck | kPsh, "RFB 003.008\n");
  w.Send(12.5, true, kAck | kPsh, "RFB 003.008\n");
}

// A screen whose cursor blinks, from `from` ms on: an `update` every 300 ms, each answered 4 ms
// later by the viewer's `request` for the next, and a person's keys (`down`, then `up` 80 ms
// later) after pauses of 1.2-2 s, whose times are added to `keys`.
void BlinkingScreen(Wire& w, double from, const std::string& update, const std::string& request,
                    const std::string& down, const std::string& up, std::vector<double>& keys) {
  struct Segment {
    double at;
    bool from_viewer;
    std::string payload;
  };
  std::vector<Segment> segments;
  for (double t = from; t < 9000; t += 300) {
    segments.push_back({t, false, update});
    segments.push_back({t + 4, true, request});
  }
  for (double key = 700; keys.size() < 6; key += 1200 + 150 * keys.size()) {
    keys.push_back(key);
    segments.push_back({key, true, down});
    segments.push_back({key + 80, true, up});
  }
  std::stable_sort(segments.begin(), segments.end(),
                   [](const Segment& a, const Segment& b) { return a.at < b.at; });
  for (const Segment& s : segments)
    w.Send(s.at, s.from_viewer, kAck | kPsh, s.payload);
}

// A viewer of a screen whose cursor blinks: an update every 300 ms, each answered by the
// viewer's request for the next, and a person's keys (down and up) after pauses of 1.2-2 s.
// The requests come whatever the person does: they are no input, and the ON periods are the
// keys' (with them, the viewer's data never paused and made one ON period).
TEST(RelayDetector, AViewersRequestsAreNoInputForItsOnPeriods) {
  Wire w;
  RfbVersions(w);
  w.Send(13, false, kAck | kPsh, std::string("\x01\x01", 2));  // security: None
  w.Send(15, true, kAck | kPsh, std::string("\x01", 1));
  w.Send(15.5, false, kAck | kPsh, std::string(4, '\0'));   // SecurityResult: OK
  w.Send(17.5, true, kAck | kPsh, std::string("\x01", 1));  // ClientInit
  w.Send(18, false, kAck | kPsh, std::string(24, '\0'));    // ServerInit
  std::string request("\x03\x00\x00\x00\x00\x00\x03\x20\x02\x58", 10);
  w.Send(20, true, kAck | kPsh, request);
  request[1] = 1;  // incremental from now on
  std::vector<double> keys;
  BlinkingScreen(w, 30, std::string(268, '\0'), request,
                 std::string("\x04\x01\x00\x00\x00\x00\x00\x61", 8),
                 std::string("\x04\x00\x00\x00\x00\x00\x00\x61", 8), keys);
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(12.5))};  // the setup's
  for (double key : keys)
    want.push_back(absl::ToUnixMicros(At(key)));
  EXPECT_EQ(events[0].body["_on_times_us"].get<std::vector<std::int64_t>>(), want);
}

// The same under VeNCrypt's TLS (TigerVNC's TLSNone: anonymous DH, AES-256-GCM), where only
// the records' lengths show: a request's record is 10 + 24 bytes, a key's 8 + 24.
std::vector<Event> EncryptedViewerOfABlinkingCursor(std::uint16_t cipher,
                                                    std::vector<double>& keys) {
  Wire w;
  RfbVersions(w);
  w.Send(13, false, kAck | kPsh, std::string("\x01\x13", 2));  // security: VeNCrypt
  w.Send(15, true, kAck | kPsh, std::string("\x13", 1));
  w.Send(15.5, false, kAck | kPsh, std::string("\x00\x02", 2));  // VeNCrypt 0.2
  w.Send(17.5, true, kAck | kPsh, std::string("\x00\x02", 2));
  w.Send(18, false, kAck | kPsh, std::string("\x00\x01\x00\x00\x01\x02", 6));  // TLSNone
  w.Send(20, true, kAck | kPsh, std::string("\x00\x00\x01\x02", 4));
  w.Send(20.5, false, kAck | kPsh, std::string("\x01", 1));
  w.Send(22.5, true, kAck | kPsh, ClientHelloRecord());
  tls_wire::ByteVec flight =
      tls_wire::Record(22, tls_wire::Handshake(2, tls_wire::ServerHelloBody(cipher)));
  tls_wire::Append(flight, tls_wire::Record(22, tls_wire::ByteVec(300, 0x5a)));
  w.Send(23, false, kAck | kPsh, tls_wire::AsString(flight));
  w.Send(25, true, kAck | kPsh, Encrypted(70, true));
  w.Send(25.5, false, kAck | kPsh, Encrypted(40, true));
  w.Send(26, false, kAck | kPsh, Encrypted(4 + 24));     // SecurityResult
  w.Send(28, true, kAck | kPsh, Encrypted(1 + 24));      // ClientInit
  w.Send(28.5, false, kAck | kPsh, Encrypted(24 + 24));  // ServerInit
  w.Send(30.5, true, kAck | kPsh, Encrypted(20 + 24) + Encrypted(10 + 24));
  BlinkingScreen(w, 40, Encrypted(268 + 24), Encrypted(10 + 24), Encrypted(8 + 24),
                 Encrypted(8 + 24), keys);
  return w.End();
}

TEST(RelayDetector, AnEncryptedViewersRequestsAreNoInputEither) {
  std::vector<double> keys;
  const std::vector<Event> events = EncryptedViewerOfABlinkingCursor(0x00a7, keys);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["app"], "vnc");
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(12.5))};  // the setup's
  for (double key : keys)
    want.push_back(absl::ToUnixMicros(At(key)));
  EXPECT_EQ(events[0].body["_on_times_us"].get<std::vector<std::int64_t>>(), want);
  // A block cipher's records tell nothing: the requests count, and the viewer never pauses.
  keys.clear();
  const std::vector<Event> cbc = EncryptedViewerOfABlinkingCursor(0xc014, keys);
  ASSERT_EQ(cbc.size(), 1u);
  EXPECT_EQ(cbc[0].body["_on_times_us"].size(), 1u);
}

TEST(RelayDetector, AViewersSetupTimesItsLegAndItsLaterRequestsDoNot) {
  const std::vector<Event> events = RfbThroughAForwarder(90);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["app"], "vnc");
  EXPECT_NEAR(r["rtt_originator_ms"].get<double>(), 2, 1e-6);
  // The setup's four answers (version, security type, ClientInit, the first messages after
  // ServerInit). The requests, which land 32.5 ms after an update's second part here, and
  // the keys that go out 3 ms after an update's first part answer nothing.
  ASSERT_EQ(r["turnaround_samples_ms"].size(), 4u);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(r["turnaround_samples_ms"][i].get<double>(), 92, 1e-6) << i;
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 90, 0.01);
  EXPECT_FALSE(r.contains("_client_responder"));  // the viewer opened the connection
  // Near (the forwarder is the person): the setup's answers come after its own round trip.
  EXPECT_NEAR(RfbThroughAForwarder(0)[0].body["hidden_leg_rtt_ms"].get<double>(), 0, 0.01);
}

// RDP's X.224 exchange (MS-RDPBCGR 2.2.1.1-2): the client's Connection Request (TPKT,
// X.224 CR, RDP_NEG_REQ with the `requested` protocols) and the server's Confirm (RDP_NEG_RSP
// with the `selected` one).
void X224Exchange(Wire& w, double request_at, double confirm_at, char requested, char selected) {
  w.Send(request_at, true, kAck | kPsh,
         std::string("\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00"
                     "\x01\x00\x08\x00",
                     15) +
             requested + std::string(3, '\0'));
  w.Send(confirm_at, false, kAck | kPsh,
         std::string("\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00"
                     "\x02\x1f\x08\x00",
                     15) +
             selected + std::string(3, '\0'));
}

// RDP (MS-RDPBCGR 2.2.1.1-2): the client's X.224 Connection Request asking for TLS, the
// server's Confirm choosing it, then TLS from a client whose person is `hidden_ms` beyond
// its TCP end (a forwarder 2 ms from the sensor).
std::vector<Event> RdpThroughAForwarder(double hidden_ms) {
  Wire w;
  w.SetServerPort(3389);
  w.Handshake(0, 2);
  const double far = 2 + hidden_ms;
  X224Exchange(w, 12, 22, /*requested=*/0x03, /*selected=*/0x01);  // TLS, CredSSP; TLS
  w.Send(22 + far, true, kAck | kPsh, kClientHello);
  w.Send(32 + far, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(900, 's'));
  w.Send(34 + far, true, kAck, "");
  w.Send(32 + 2 * far + 0.5, true, kAck | kPsh, std::string(150, 'k'));  // key exchange
  w.Send(42 + 2 * far, false, kAck | kPsh, std::string(60, 'f'));        // its Finished
  w.Send(42 + 3 * far + 0.5, true, kAck | kPsh, std::string(90, 'c'));   // CredSSP
  w.Send(52 + 3 * far, false, kAck | kPsh, std::string(200, 'n'));
  w.Send(52 + 4 * far + 0.5, true, kAck | kPsh, std::string(300, 'a'));
  return w.End();
}

TEST(RelayDetector, RdpsTlsIsTimedPastItsX224Exchange) {
  const std::vector<Event> events = RdpThroughAForwarder(90);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  // The Connection Request and Confirm are no TLS and no turnaround; the client's next
  // segment, its ClientHello, names the flow.
  EXPECT_EQ(r["app"], "tls");
  EXPECT_NEAR(r["handshake_turnaround_ms"].get<double>(), 92.5, 1e-6);
  EXPECT_EQ(r["turnaround_samples_ms"].size(), 3u);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 90.5, 0.01);
}

// RDP under TLS (`tls13`: TLS 1.3, else 1.2) of a screen whose cursor blinks, as FreeRDP
// speaks it with the graphics pipeline: every frame acknowledged (RDPGFX_FRAME_ACKNOWLEDGE_PDU,
// 45 bytes a record), the person's keys as fast-path input (5 bytes a record). With `socks`
// the client comes through a SOCKS 5 proxy on the host, whose setup comes first.
std::vector<Event> RdpOfABlinkingScreen(std::uint16_t cipher, bool tls13, std::vector<double>& keys,
                                        bool socks = false) {
  Wire w;
  w.SetServerPort(socks ? 1080 : 3389);
  w.Handshake(0, 2);
  if (socks) {
    w.Send(5, true, kAck | kPsh, std::string("\x05\x01\x00", 3));
    w.Send(6, false, kAck | kPsh, std::string("\x05\x00", 2));
    w.Send(7, true, kAck | kPsh, std::string("\x05\x01\x00\x01\x7f\x00\x00\x01\x0d\x3d", 10));
    w.Send(8, false, kAck | kPsh, std::string("\x05\x00\x00\x01\x7f\x00\x00\x01\x0d\x3d", 10));
  }
  X224Exchange(w, 12, 13, /*requested=*/0x03, /*selected=*/0x01);
  w.Send(15, true, kAck | kPsh, ClientHelloRecord());
  tls_wire::ByteVec flight = tls_wire::Record(
      22, tls_wire::Handshake(2, tls_wire::ServerHelloBody(cipher, tls13 ? common::kTls13 : 0)));
  tls_wire::Append(flight, tls_wire::Record(22, tls_wire::ByteVec(900, 0x5a)));
  w.Send(16, false, kAck | kPsh, tls_wire::AsString(flight));
  w.Send(18, true, kAck | kPsh, Encrypted(70, true));
  const std::size_t overhead = tls13 ? 17 : 24;
  w.Send(20, true, kAck | kPsh, Encrypted(420 + overhead));  // MCS Connect Initial
  w.Send(21, false, kAck | kPsh, Encrypted(300 + overhead));
  BlinkingScreen(w, 40, Encrypted(268 + overhead), Encrypted(45 + overhead),
                 Encrypted(5 + overhead), Encrypted(5 + overhead), keys);
  return w.End();
}

TEST(RelayDetector, AnRdpClientsFrameAcknowledgementsAreNoInput) {
  for (const bool tls13 : {true, false}) {
    std::vector<double> keys;
    const std::vector<Event> events = RdpOfABlinkingScreen(tls13 ? 0x1302 : 0xc030, tls13, keys);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].body["app"], "tls");
    std::vector<std::int64_t> want = {absl::ToUnixMicros(At(12))};  // the X.224 request's
    for (double key : keys)
      want.push_back(absl::ToUnixMicros(At(key)));
    EXPECT_EQ(events[0].body["_on_times_us"].get<std::vector<std::int64_t>>(), want) << tls13;
  }
  // A block cipher's records tell nothing: the acknowledgements count, and never pause.
  std::vector<double> keys;
  const std::vector<Event> cbc = RdpOfABlinkingScreen(0xc014, false, keys);
  ASSERT_EQ(cbc.size(), 1u);
  EXPECT_EQ(cbc[0].body["_on_times_us"].size(), 1u);
  // Through the host's SOCKS proxy: the X.224 request opens the tunnel, and the TLS after it
  // is read as without the proxy.
  keys.clear();
  const std::vector<Event> socks = RdpOfABlinkingScreen(0x1302, true, keys, /*socks=*/true);
  ASSERT_EQ(socks.size(), 1u);
  EXPECT_EQ(socks[0].body["proxy"], "socks5");
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(5))};  // the proxy setup's
  for (double key : keys)
    want.push_back(absl::ToUnixMicros(At(key)));
  EXPECT_EQ(socks[0].body["_on_times_us"].get<std::vector<std::int64_t>>(), want);
}

// A remote desktop's screen updates (`_update_times_us`): the server's data after 5 ms of
// silence, for output shown on its screen. Past the bound in one window they are left out and
// the window counted; a flow that is no remote desktop keeps none.
TEST(RelayDetector, ARemoteDesktopKeepsItsScreenUpdates) {
  std::vector<double> keys;
  const std::vector<Event> rdp = RdpOfABlinkingScreen(0x1302, true, keys);
  ASSERT_EQ(rdp.size(), 1u);
  std::vector<std::int64_t> want;
  for (double t : {16.0, 21.0})  // the server's TLS flight and its MCS answer
    want.push_back(absl::ToUnixMicros(At(t)));
  for (double t = 40; t < 9000; t += 300)  // the cursor's blinks
    want.push_back(absl::ToUnixMicros(At(t)));
  EXPECT_EQ(rdp[0].body["_update_times_us"].get<std::vector<std::int64_t>>(), want);

  RelayConfig config;
  config.report_after = absl::Minutes(3);
  Wire w(config);
  w.SetServerPort(3389);
  w.Handshake(0, 2);
  X224Exchange(w, 12, 13, /*requested=*/0x03, /*selected=*/0x01);
  w.Send(15, true, kAck | kPsh, ClientHelloRecord());
  w.Send(16, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(900, 's'));
  for (std::size_t i = 0; i <= RelayDetector::kMaxUpdateTimes; ++i) {  // video: 100 a second
    w.Send(100 + 10.0 * i, false, kAck | kPsh, std::string(1200, 'v'));
    w.Send(100.5 + 10.0 * i, false, kAck | kPsh, std::string(1200, 'v'));  // the same update
  }
  const std::vector<Event> video = w.End();
  ASSERT_EQ(video.size(), 1u);
  EXPECT_FALSE(video[0].body.contains("_update_times_us"));
  EXPECT_EQ(w.counters().update_windows_full.Read(), 1u);

  const std::vector<Event> tls = RdpThroughAForwarder(90);  // the setup's flights only
  ASSERT_EQ(tls.size(), 1u);
  EXPECT_TRUE(tls[0].body.contains("_update_times_us"));
  Wire ssh;
  ssh.Handshake(0, 0.2);
  ssh.Send(11, true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  ssh.Send(21, false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  for (int i = 0; i < 10; ++i)
    ssh.Send(100 + 700.0 * i, false, kAck | kPsh, std::string(300, 'o'));
  const std::vector<Event> shell = ssh.End();
  ASSERT_EQ(shell.size(), 1u);
  EXPECT_FALSE(shell[0].body.contains("_update_times_us"));
}

// RDP with standard security (MS-RDPBCGR 1.3.1.1), as FreeRDP speaks it through a
// forwarder 2 ms from the sensor, its person `hidden_ms` beyond: the X.224 exchange choosing
// PROTOCOL_RDP, the MCS Connect Initial at once, then MCS requests (Erect Domain, Attach
// User, Channel Joins) each on the client's next 100 ms tick, not when the answer came.
std::vector<Event> RdpStandardSecurityThroughAForwarder(double hidden_ms) {
  Wire w;
  w.SetServerPort(3389);
  w.Handshake(0, 2);
  const double far = 2 + hidden_ms;
  X224Exchange(w, 12, 13, /*requested=*/0x00, /*selected=*/0x00);  // PROTOCOL_RDP
  // TPKT, X.224 Data, MCS Connect-Initial (BER [APPLICATION 101]) with its GCC request.
  const std::string data_tpdu("\x02\xf0\x80", 3);
  w.Send(13 + far, true, kAck | kPsh,
         std::string("\x03\x00\x01\xab", 4) + data_tpdu + "\x7f\x65" + std::string(418, 'g'));
  w.Send(13.5 + far, false, kAck | kPsh,
         std::string("\x03\x00\x02\x09", 4) + data_tpdu + "\x7f\x66" + std::string(512, 'r'));
  // The client's sends pass the sensor on its grid: each request at the first tick after
  // the last answer reached the person.
  double tick = 13 + far;
  for (int i = 0; i < 6; ++i) {
    tick += 100 * std::ceil((0.5 + far) / 100);
    w.Send(tick, true, kAck | kPsh, std::string("\x03\x00\x00\x0c", 4) + data_tpdu + "\x38xxxxx");
    w.Send(tick + 0.5, false, kAck | kPsh,
           std::string("\x03\x00\x00\x0f", 4) + data_tpdu + "\x3exxxxxxxx");
  }
  return w.End();
}

TEST(RelayDetector, RdpsStandardSecurityIsTimedByItsConnectInitial) {
  const std::vector<Event> events = RdpStandardSecurityThroughAForwarder(90);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["app"], "rdp");
  // The Connect Initial answers the Connection Confirm a whole round trip later.
  EXPECT_NEAR(r["handshake_turnaround_ms"].get<double>(), 92, 1e-6);
  // The ticks' answers wait for the tick (99.5 ms); the handshake's bounds the flow.
  const auto samples = r["turnaround_samples_ms"].get<std::vector<double>>();
  EXPECT_GE(samples.size(), 3u);
  EXPECT_NEAR(*std::min_element(samples.begin() + 1, samples.end()), 99.5, 1e-6);
  EXPECT_NEAR(r["turnaround_ms"].get<double>(), 92, 1e-6);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 90, 0.01);
  // Near: the person is the forwarder, yet the ticks' answers still wait 99.5 ms.
  const nlohmann::json near = RdpStandardSecurityThroughAForwarder(0)[0].body;
  EXPECT_NEAR(near["turnaround_samples_ms"][1].get<double>(), 99.5, 1e-6);
  EXPECT_NEAR(near["hidden_leg_rtt_ms"].get<double>(), 0, 0.01);
}

// The server's flight in two parts 10 ms apart (its congestion window let two segments
// out), through a relay 80 ms away that held the tail: the answer comes 150 ms after the
// flight's last segment. The record keeps the reading and says what is certain.
// A TLS connection (SYN/ACK at 10 ms, the client's leg 0.2 ms) whose ClientHello comes at
// `hello`, the server's flight in two parts at `flight` and `gap` later, the Finished at
// `finished`.
std::vector<Event> SpreadFlight(double hello, double flight, double gap, double finished) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(hello, true, kAck | kPsh, kClientHello);
  w.Send(flight, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
  w.Send(flight + 0.3, true, kAck, "");
  w.Send(flight + gap, false, kAck | kPsh, std::string(800, 's'));
  w.Send(flight + gap + 0.3, true, kAck, "");
  w.Send(finished, true, kAck | kPsh, std::string(80, 'f'));
  return w.End();
}

TEST(RelayDetector, AFlightInPartsGivesALowerBound) {
  const std::vector<Event> events = SpreadFlight(11, 21, 10, 181);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnaround_samples_ms"], nlohmann::json({150.0}));
  EXPECT_EQ(r["turnaround_flight_spread_ms"], nlohmann::json({10.0}));
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 79.9, 0.01);  // (150 - 0.2 + 10) / 2
  EXPECT_TRUE(r["hidden_leg_lower_bound"].get<bool>());
  EXPECT_NEAR(r["min_distance_km"].get<double>(), 7990, 1);
  // The ClientHello came 1 ms after the SYN/ACK: the client's own software, no relay's
  // answer; the bound stands.
  EXPECT_DOUBLE_EQ(r["connect_wait_ms"].get<double>(), 1);
  EXPECT_FALSE(r.contains("hidden_leg_by_connect_wait"));
  // The same flight whole: the reading is the leg.
  const nlohmann::json whole = TlsThroughRelay(120)[0].body;
  EXPECT_FALSE(whole.contains("hidden_leg_lower_bound"));
  EXPECT_EQ(whole["turnaround_flight_spread_ms"].size(), 2u);
}

// A SOCKS relay 80 ms away that forwards at once: the ClientHello comes a far round trip
// after the connection is up, and the client answers the spread flight one round trip
// after its last segment. The bound alone says half; the connection's wait says which.
TEST(RelayDetector, TheConnectionsWaitReadsARelayThatForwardsAtOnce) {
  const std::vector<Event> events = SpreadFlight(90.1, 100, 1, 181.2);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnaround_flight_spread_ms"], nlohmann::json({1.0}));
  EXPECT_DOUBLE_EQ(r["connect_wait_ms"].get<double>(), 80.1);
  EXPECT_TRUE(r["hidden_leg_by_connect_wait"].get<bool>());
  EXPECT_FALSE(r.contains("hidden_leg_lower_bound"));
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 79.9, 0.01);  // the wait less 0.2
}

// A laptop whose web traffic goes through the company's proxy (HTTP CONNECT, or SOCKS 5):
// the TLS inside is named and timed as any other, and the setup's own exchanges are not
// turnarounds. The far client also answers the proxy late; only TLS is measured.
std::vector<Event> TlsThroughProxyAndRelay(const std::vector<std::string>& client_setup,
                                           const std::vector<std::string>& proxy_setup,
                                           double hidden_ms) {
  Wire w;
  w.SetServerPort(3128);
  w.Handshake(0, 0.2);
  double t = 10.2;
  for (std::size_t i = 0; i < client_setup.size(); ++i) {
    w.Send(t += hidden_ms, true, kAck | kPsh, client_setup[i]);
    if (i < proxy_setup.size())
      w.Send(t += 10, false, kAck | kPsh, proxy_setup[i]);
  }
  w.Send(t += hidden_ms, true, kAck | kPsh, kClientHello);
  w.Send(t += 10, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
  w.Send(t += 0.1, false, kAck | kPsh, std::string(800, 's'));
  w.Send(t + 0.2, true, kAck, "");
  w.Send(t + hidden_ms + 0.5, true, kAck | kPsh, std::string(80, 'f'));  // Finished
  w.Send(t + hidden_ms + 0.6, true, kAck | kPsh, std::string(90, 'g'));  // request
  w.Send(t + hidden_ms + 10.6, false, kAck | kPsh, std::string(500, 'r'));
  w.Send(t + 2 * hidden_ms + 12, true, kAck | kPsh, std::string(24, 'c'));
  return w.End();
}

TEST(RelayDetector, MeasuresTheHiddenLegOfTlsInsideAProxysTunnel) {
  const std::vector<std::vector<std::string>> clients = {
      {"CONNECT www.example:443 HTTP/1.1\r\nHost: www.example:443\r\n\r\n"},
      {std::string("\x05\x01\x00", 3),
       std::string("\x05\x01\x00\x03\x0b", 5) + "www.example" + std::string("\x01\xbb", 2)}};
  const std::vector<std::vector<std::string>> proxies = {
      {"HTTP/1.1 200 Connection established\r\n\r\n"},
      {std::string("\x05\x00", 2), std::string("\x05\x00\x00\x01\x0a\x00\x00\x01\x01\xbb", 10)}};
  for (int i = 0; i < 2; ++i) {
    const std::vector<Event> events = TlsThroughProxyAndRelay(clients[i], proxies[i], 120);
    ASSERT_EQ(events.size(), 1u);
    const nlohmann::json& r = events[0].body;
    EXPECT_EQ(r["app"], "tls");
    EXPECT_EQ(r["proxy"], i == 0 ? "http_connect" : "socks5");
    EXPECT_EQ(r["turnaround_samples_ms"].size(), 2u);
    EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 120.3, 0.01);
    // The tunnel's opening waited on the far client as the connection's would have.
    EXPECT_NEAR(r["tunnel_wait_ms"].get<double>(), 120, 0.01);
  }
  // A refused setup: nothing after it is read as TLS.
  const std::vector<Event> events = TlsThroughProxyAndRelay(
      clients[0], {"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"}, 120);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["app"], "other");
  EXPECT_FALSE(events[0].body.contains("proxy"));
  EXPECT_FALSE(events[0].body.contains("hidden_leg_rtt_ms"));
}

// Through a proxy the client's wait to open its TLS runs from the proxy's grant, not from
// the SYN/ACK (which its proxy request answered). None when its ClientHello came with the
// request (it waited on nothing), the grant came twice (the client may have had only the
// second) or the server spoke first in the tunnel.
TEST(RelayDetector, TimesTheTunnelsOpeningFromTheProxysGrant) {
  const std::string connect = "CONNECT www.example:443 HTTP/1.1\r\nHost: www.example:443\r\n\r\n";
  const std::string granted = "HTTP/1.1 200 Connection established\r\n\r\n";
  const auto opening = [&](int variant) {
    Wire w;
    w.SetServerPort(3128);
    w.Handshake(0, 0.2);
    w.Send(12, true, kAck | kPsh, variant == 1 ? connect + kClientHello : connect);
    w.Send(22, false, kAck | kPsh, granted);
    if (variant == 2)
      w.Resend(222, false, granted);
    if (variant == 3)
      w.Send(222, false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
    if (variant != 1)
      w.Send(722, true, kAck | kPsh, kClientHello);
    w.Send(732, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
    w.Send(732.2, true, kAck, "");
    w.Send(882, true, kAck | kPsh, std::string(80, 'f'));
    const std::vector<Event> events = w.End();
    EXPECT_EQ(events.size(), 1u);
    return events.empty() ? nlohmann::json() : events[0].body;
  };
  const nlohmann::json waited = opening(0);
  EXPECT_EQ(waited["proxy"], "http_connect");
  EXPECT_NEAR(waited["connect_wait_ms"].get<double>(), 2, 0.01);
  EXPECT_NEAR(waited["tunnel_wait_ms"].get<double>(), 700, 0.01);
  EXPECT_FALSE(opening(1).contains("tunnel_wait_ms"));
  EXPECT_FALSE(opening(2).contains("tunnel_wait_ms"));
  EXPECT_EQ(opening(2)["proxy"], "http_connect");
  EXPECT_FALSE(opening(3).contains("tunnel_wait_ms"));
}

// A far TLS 1.3 client 300 ms behind a relay, whose request, sent right behind its
// Finished, reached the laptop 9 ms after the server's session ticket (jitter on its leg).
// The response acknowledges the request, so only the record layer tells that the request
// answered nothing: read as an answer, its 9 ms became the flow's hidden leg.
TEST(RelayDetector, ATls13RequestLandingAfterTheTicketIsNoTurnaround) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, ClientHelloRecord());
  w.Send(21, false, kAck | kPsh, ServerFlight(common::kTls13));
  w.Send(21.3, true, kAck, "");
  w.Send(321, true, kAck | kPsh, Encrypted(53, true));  // CCS + Finished
  w.Send(331, false, kAck | kPsh, Encrypted(250));      // session ticket
  w.Send(340, true, kAck | kPsh, Encrypted(90));        // the request
  w.Send(350, false, kAck | kPsh, Encrypted(500));      // the response
  w.Send(651, true, kAck | kPsh, Encrypted(19));        // close_notify
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnaround_samples_ms"], nlohmann::json({300, 301}));
  EXPECT_EQ(r["turnarounds_interrupted"], 1);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 300, 0.5);
}

// A real client's OCSP fetch (ocsp.digicert.com; nDPI's crawler_false_positive.pcapng,
// times in ms and payload sizes as captured): its request in two segments (Nagle holds the
// body for the header's ACK), one response, then only the client's FIN. As a fetch it is
// complete at the response, with nothing from the client behind it.
TEST(RelayDetector, RealOcspFetchIsOneCompleteExchange) {
  Wire w;
  w.Send(0, true, kSyn, "");
  w.Send(7.700, false, kSyn | kAck, "");
  w.Send(8.869, true, kAck, "");
  w.Send(10.625, true, kAck | kPsh, "POST / HTTP/1.1");
  w.Send(18.031, false, kAck, "");
  w.Send(19.062, true, kAck | kPsh, std::string(218, 'q'));
  w.Send(26.146, false, kAck, "");
  w.Send(26.213, false, kAck | kPsh, std::string(799, 'r'));
  w.Send(27.360, true, kAck, "");
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& x = events[0].body["_exchanges_us"];
  const auto us = [](double ms) {
    return absl::ToUnixMicros(At(ms));
  };
  EXPECT_EQ(x, nlohmann::json({{us(0), us(26.213), -1}}));
  // A TLS client that waited on it from before its SYN answers 1 ms after the response:
  // fed; answering 40 ms after it, the client waited on something else.
  const Exchange fetch{At(0), At(26.213)};
  EXPECT_TRUE(FedWait(fetch, At(-2), 29.213, 20));
  EXPECT_FALSE(FedWait(fetch, At(-2), 68.213, 20));
}

// An OCSP responder's connection kept open (plain HTTP): each answered request goes to the
// host stage at once, not in the record, which may come minutes after the handshakes that
// waited on them.
TEST(RelayDetector, PlainHttpRequestsAreToldAsTheyAreAnswered) {
  Wire w;
  w.SetServerPort(80);
  w.Handshake(0, 0.2);
  w.Send(12, true, kAck | kPsh, "GET /ocsp HTTP/1.1");
  w.Send(60, false, kAck | kPsh, std::string(300, 'h'));
  w.Send(60.1, false, kAck | kPsh, std::string(1400, 'b'));  // the same answer, at once
  w.Send(75, false, kAck | kPsh, std::string(100, 'b'));     // its last segment, late
  w.Send(900, true, kAck | kPsh, "GET /ocsp HTTP/1.1");
  w.Send(950, false, kAck | kPsh, std::string(300, 'h'));
  const std::vector<Event> events = w.End();
  const auto us = [](double ms) {
    return absl::ToUnixMicros(At(ms));
  };
  std::vector<nlohmann::json> told;
  for (const Event& e : events) {
    if (e.event_type == kExchangeEvent) {
      told.push_back(e.body["_exchanges_us"]);
    } else {
      EXPECT_EQ(e.event_type, "relay");
      EXPECT_FALSE(e.body.contains("_exchanges_us"));  // told already
    }
  }
  // The first from its SYN; told again when its answer's late segment came (5 ms or more
  // after the last telling), not for the segment right behind the first.
  ASSERT_EQ(told.size(), 3u);
  EXPECT_EQ(told[0], nlohmann::json({{us(0), us(60), -1}}));
  EXPECT_EQ(told[1], nlohmann::json({{us(0), us(75), -1}}));
  EXPECT_EQ(told[2], nlohmann::json({{us(900), us(950), -1}}));
  EXPECT_EQ(w.counters().http_exchanges.Read(), 3u);
}

// Behind an explicit proxy the fetches are plain HTTP to the proxy's port, in absolute form:
// told one by one as on port 80. A CONNECT is no fetch; its tunnel's TLS is timed instead.
TEST(RelayDetector, FetchesThroughAProxyAreToldLikePort80) {
  Wire w;
  w.SetServerPort(3128);
  w.Handshake(0, 0.2);
  w.Send(12, true, kAck | kPsh, "GET http://ocsp.example/x HTTP/1.1\r\n\r\n");
  w.Send(60, false, kAck | kPsh, std::string(300, 'h'));
  w.Send(900, true, kAck | kPsh, "GET http://ocsp.example/y HTTP/1.1\r\n\r\n");
  w.Send(950, false, kAck | kPsh, std::string(300, 'h'));
  int told = 0;
  for (const Event& e : w.End())
    told += e.event_type == kExchangeEvent;
  EXPECT_EQ(told, 2);
  Wire origin_form;  // the same to a server, not a proxy: only the record's first exchange
  origin_form.SetServerPort(3128);
  origin_form.Handshake(0, 0.2);
  origin_form.Send(12, true, kAck | kPsh, "GET /x HTTP/1.1\r\n\r\n");
  origin_form.Send(60, false, kAck | kPsh, std::string(300, 'h'));
  for (const Event& e : origin_form.End())
    EXPECT_NE(e.event_type, kExchangeEvent);
}

TEST(RelayDetector, RecordsTheTtlOfTheFirstSynAndSynAck) {
  Wire w;
  w.SetTtl(true, 63);  // a SYN the host forwarded for another device
  w.Send(0, true, kSyn, "");
  w.SetTtl(true, 64);
  w.Send(1000, true, kSyn, "");  // the retransmission does not replace the first
  w.Send(1010, false, kSyn | kAck, "");
  w.Send(1010.2, true, kAck, "");
  w.Send(1011, true, kAck | kPsh, kClientHello);
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& hs = events[0].body["handshake"];
  EXPECT_EQ(hs["originator_ttl"], 63);
  EXPECT_EQ(hs["responder_ttl"], 52);
  EXPECT_TRUE(hs["retransmitted"].get<bool>());
}

// A browser near the sensor: it answers its TLS handshake at once, then asks for more only
// after it ran each answer's script, 100-500 ms later. Its handshake shows no hidden leg can
// hide behind it, however many slow answers follow (a real capture: PcapPlusPlus's tls2.pcap).
TEST(RelayDetector, ABrowsersQuickHandshakeOutweighsItsSlowRequests) {
  Wire w;
  w.Handshake(0, 0.3);
  w.Send(11, true, kAck | kPsh, kClientHello);
  w.Send(21, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(150, 's'));
  w.Send(21.8, true, kAck | kPsh, std::string(51, 'f'));  // CCS and Finished: 0.8 ms
  double t = 21.8;
  for (double think : {119.0, 466.0, 425.0, 111.0}) {
    w.Send(t += 14, false, kAck | kPsh, std::string(400, 'r'));
    w.Send(t += think, true, kAck | kPsh, std::string(700, 'q'));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnaround_samples_ms"].size(), 5u);
  EXPECT_NEAR(r["handshake_turnaround_ms"].get<double>(), 0.8, 1e-6);
  EXPECT_NEAR(r["turnaround_ms"].get<double>(), 0.8, 1e-6);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 0.5, 1e-6);
}

TEST(RelayDetector, DirectClientHasNoHiddenLeg) {
  const std::vector<Event> events = TlsThroughRelay(0.5);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_LT(events[0].body["hidden_leg_rtt_ms"].get<double>(), 2.0);
}

TEST(RelayDetector, NoTurnaroundsForUnknownProtocols) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, "GET / HTTP/1.1\r\n\r\n");
  w.Send(21, false, kAck | kPsh, "HTTP/1.1 200 OK\r\n\r\n");
  w.Send(500, true, kAck | kPsh, "GET /next HTTP/1.1\r\n\r\n");  // a person clicking
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["app"], "other");
  EXPECT_FALSE(events[0].body.contains("hidden_leg_rtt_ms"));
  EXPECT_TRUE(events[0].body.contains("rtt_responder_ms"));
}

TEST(RelayDetector, ReportsLongFlowsAfterReportAfter) {
  RelayConfig config;
  config.report_after = absl::Seconds(5);
  Wire w(config);
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, kClientHello);
  w.Send(6000, false, kAck | kPsh, std::string(100, 'x'));
  EXPECT_EQ(w.counters().flows_measured.Read(), 1u);
  w.Send(7000, true, kAck | kPsh, std::string(100, 'y'));
  EXPECT_EQ(w.End().size(), 1u);  // once per flow
}

// After its record a long flow's input goes on, window by window, for stepping stones that
// start late in a session; nothing of the kind when stepping_stone is off.
std::vector<Event> LongInteractiveFlow(const RelayConfig& config) {
  Wire w(config);
  w.Handshake(0, 0.2);
  for (int s = 1; s <= 30; ++s)
    w.Send(s * 1000.0, true, kAck | kPsh, "k");  // an ON period every second
  return w.End();
}

TEST(RelayDetector, LongFlowsGoOnInSteppingStoneWindows) {
  RelayConfig config;
  config.report_after = absl::Seconds(5);
  config.stepping_stone_min_ons = 3;
  const std::vector<Event> events = LongInteractiveFlow(config);
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events[0].event_type, "relay");
  const PacketTime record_ts = events[0].ts;
  std::size_t on_times = events[0].body["_on_times_us"].size();
  for (std::size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].event_type, kOnWindowEvent);
    const nlohmann::json& ons = events[i].body["_on_times_us"];
    EXPECT_GE(ons.size(), 3u);
    EXPECT_GT(absl::FromUnixMicros(ons[0].get<std::int64_t>()), record_ts);
    on_times += ons.size();
  }
  EXPECT_EQ(on_times, 30u);  // every ON period once, in the record or one window

  config.methods.stepping_stone = false;
  const std::vector<Event> off = LongInteractiveFlow(config);
  ASSERT_EQ(off.size(), 1u);
  EXPECT_EQ(off[0].event_type, "relay");
}

absl::StatusOr<RelayConfig> ParseRelay(const std::string& yaml) {
  absl::StatusOr<config::Section> root = config::LoadString(yaml, "r.yaml");
  if (!root.ok())
    return root.status();
  return ParseRelayConfig(root->Child("detectors").Child("relay"));
}

TEST(RelayConfig, MethodsDefaultToAllAndRejectUnknownOrRepeatedNames) {
  absl::StatusOr<RelayConfig> defaults = ParseRelay("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->methods, RelayMethods{});
  EXPECT_TRUE(defaults->methods.hidden_leg && defaults->methods.controller_rtt &&
              defaults->methods.stepping_stone && defaults->methods.keystrokes &&
              defaults->methods.routed_relay);

  absl::StatusOr<RelayConfig> two =
      ParseRelay("detectors:\n  relay:\n    methods: [controller_rtt, keystrokes]\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->methods, (RelayMethods{.hidden_leg = false,
                                        .controller_rtt = true,
                                        .stepping_stone = false,
                                        .keystrokes = true,
                                        .routed_relay = false}));

  absl::StatusOr<RelayConfig> unknown =
      ParseRelay("detectors:\n  relay:\n    methods:\n      - hidden_leg\n      - rtt\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(),
            "r.yaml:5:9: detectors.relay.methods: unknown method \"rtt\"; known: hidden_leg, "
            "controller_rtt, stepping_stone, keystrokes, routed_relay");

  absl::StatusOr<RelayConfig> twice =
      ParseRelay("detectors:\n  relay: {methods: [hidden_leg, hidden_leg]}\n");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("\"hidden_leg\" listed twice"), std::string::npos);

  EXPECT_FALSE(ParseRelay("detectors:\n  relay: {methods: [[hidden_leg]]}\n").ok());
}

TEST(RelayConfig, MinFlowsDefaultAndBounds) {
  absl::StatusOr<RelayConfig> defaults = ParseRelay("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->min_flows, 3u);
  absl::StatusOr<RelayConfig> set = ParseRelay("detectors:\n  relay:\n    min_flows: 8\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->min_flows, 8u);
  // More than the host keeps (64 flows) could never decide: an error, as is none.
  for (const char* bad : {"min_flows: 0", "min_flows: 65", "min_flows: three"}) {
    absl::StatusOr<RelayConfig> r =
        ParseRelay(std::string("detectors:\n  relay:\n    ") + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("r.yaml:3:"), std::string::npos) << r.status();
  }
}

TEST(RelayConfig, HiddenLegExemptServersAreAddressPrefixes) {
  absl::StatusOr<RelayConfig> defaults = ParseRelay("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_TRUE(defaults->hidden_leg_exempt_servers.empty());
  absl::StatusOr<RelayConfig> set = ParseRelay(
      "detectors:\n  relay:\n    hidden_leg_exempt_servers: [203.0.113.9, 2001:db8::/32]\n");
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->hidden_leg_exempt_servers.size(), 2u);
  EXPECT_TRUE(set->hidden_leg_exempt_servers[0].Contains(*IpAddress::Parse("203.0.113.9")));
  EXPECT_FALSE(set->hidden_leg_exempt_servers[0].Contains(*IpAddress::Parse("203.0.113.8")));
  // The bad entry itself is located (line 5, column 9), not just the list.
  absl::StatusOr<RelayConfig> bad = ParseRelay(
      "detectors:\n  relay:\n    hidden_leg_exempt_servers:\n      - 203.0.113.9\n"
      "      - vpn.example.com\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("r.yaml:5:9: detectors.relay.hidden_leg_exempt_servers: "
                                        "not a CIDR prefix: \"vpn.example.com\""),
            std::string::npos)
      << bad.status();
  EXPECT_FALSE(ParseRelay("detectors:\n  relay: {hidden_leg_exempt_servers: 203.0.113.9}\n").ok());
}

TEST(RelayConfig, HiddenLegMaxOpeningRatioIsANumberOrOff) {
  absl::StatusOr<RelayConfig> defaults = ParseRelay("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_DOUBLE_EQ(defaults->hidden_leg_max_opening_ratio, 2.5);
  for (const auto& [text, value] : {std::pair("0", 0.0), std::pair("4", 4.0)}) {
    absl::StatusOr<RelayConfig> set = ParseRelay(
        std::string("detectors:\n  relay:\n    hidden_leg_max_opening_ratio: ") + text + "\n");
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_DOUBLE_EQ(set->hidden_leg_max_opening_ratio, value);
  }
  for (const char* bad : {"-1", "101", "often"}) {
    absl::StatusOr<RelayConfig> r = ParseRelay(
        std::string("detectors:\n  relay:\n    hidden_leg_max_opening_ratio: ") + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("r.yaml:3:"), std::string::npos) << r.status();
  }
}

TEST(RelayConfig, TypingBaselineKeysAndTheirBounds) {
  absl::StatusOr<RelayConfig> defaults = ParseRelay("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->typing_baseline_samples, 600u);
  EXPECT_EQ(defaults->typing_window_samples, 60u);
  EXPECT_EQ(defaults->typing_longest_window_samples, 1920u);
  EXPECT_DOUBLE_EQ(defaults->typing_max_p, 0.001);
  absl::StatusOr<RelayConfig> set = ParseRelay(
      "detectors:\n  relay:\n    typing_baseline_samples: 60\n    typing_window_samples: 30\n"
      "    typing_longest_window_samples: 120\n    typing_max_p: 0.01\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->typing_baseline_samples, 60u);
  EXPECT_EQ(set->typing_window_samples, 30u);
  EXPECT_EQ(set->typing_longest_window_samples, 120u);
  EXPECT_DOUBLE_EQ(set->typing_max_p, 0.01);
  // A window too small to judge, or a threshold no test can mean, is a clear error.
  for (const char* bad : {"typing_window_samples: 5", "typing_baseline_samples: 10",
                          "typing_longest_window_samples: 59", "typing_max_p: 0",
                          "typing_max_p: 0.9", "typing_max_p: often"}) {
    absl::StatusOr<RelayConfig> r =
        ParseRelay(std::string("detectors:\n  relay:\n    ") + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("r.yaml:3:"), std::string::npos) << r.status();
  }
}

RelayConfig WithMethods(RelayMethods methods) {
  RelayConfig config;
  config.methods = methods;
  return config;
}

TEST(RelayDetector, DisabledHiddenLegTracksNoTurnarounds) {
  Wire w(WithMethods({.hidden_leg = false}));
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, kClientHello);
  w.Send(21, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
  w.Send(141.6, true, kAck | kPsh, std::string(80, 'f'));
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(w.counters().turnarounds.Read(), 0u);
  EXPECT_EQ(w.counters().turnarounds_refused.Read(), 0u);
  EXPECT_FALSE(r.contains("turnaround_samples_ms"));
  EXPECT_FALSE(r.contains("hidden_leg_rtt_ms"));
  EXPECT_TRUE(r.contains("rtt_originator_ms"));  // the round trips stay: other methods use them
  EXPECT_TRUE(r.contains("_on_times_us"));

  const std::vector<Event> on = TlsThroughRelay(120, WithMethods({}));
  ASSERT_EQ(on.size(), 1u);
  EXPECT_NEAR(on[0].body["hidden_leg_rtt_ms"].get<double>(), 120.3, 0.01);
}

TEST(RelayDetector, DisabledSteppingStoneKeepsNoOnTimes) {
  const std::vector<Event> events = TlsThroughRelay(120, WithMethods({.stepping_stone = false}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].body.contains("_on_times_us"));
  EXPECT_TRUE(events[0].body.contains("hidden_leg_rtt_ms"));
}

// An SSH connection's opening: the handshake, the client's banner (`software`), then the
// server's banner and five setup segments of 612 bytes, each answered at once with 300.
void OpenSsh(Wire& w, const char* software) {
  const std::string banner = absl::StrCat("SSH-2.0-", software, "\r\n");
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, banner);
  for (int i = 0; i < 6; ++i) {
    const double t = 21 + 10 * i;
    w.Send(t, false, kAck | kPsh, i == 0 ? banner : std::string(612, 'k'));
    w.Send(t + 0.5, true, kAck | kPsh, std::string(300, 'c'));
  }
}

// An SSH session: banners, six setup exchanges answered at once, then `keys` typed keys with
// echoes and, every fourth key, command output.
std::vector<Event> SshSession(const RelayConfig& config, int keys) {
  Wire w(config);
  OpenSsh(w, "OpenSSH_9.2");
  for (int i = 0; i < keys; ++i) {
    const double t = 1000 + 150 * i + 37 * (i % 3);
    w.Send(t, true, kAck | kPsh, std::string(36, 'x'));
    w.Send(t + 10.5, false, kAck | kPsh, std::string(i % 4 == 3 ? 400 : 36, 'e'));
  }
  return w.End();
}

// Output ON periods: the server's segments larger than the client's least (after its
// identification string). Echoes of keys, as large as the keys, are not output.
TEST(RelayDetector, SshOutputOnPeriodsLeaveEchoesOut) {
  RelayConfig config;
  const std::vector<Event> events = SshSession(config, 40);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  ASSERT_TRUE(r.contains("_output_on_times_us"));
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(31))};  // the key exchange's
  for (int i = 3; i < 40; i += 4)  // each 4th key's answer is 400 bytes of output
    want.push_back(absl::ToUnixMicros(At(1000 + 150 * i + 37 * (i % 3) + 10.5)));
  EXPECT_EQ(r["_output_on_times_us"].get<std::vector<std::int64_t>>(), want);
  EXPECT_FALSE(r.contains("_coalesced"));  // one key's echo per segment, some output
  config.methods.stepping_stone = false;
  EXPECT_FALSE(SshSession(config, 40)[0].body.contains("_output_on_times_us"));
}

// A person typing through OpenSSH >= 9.5's keystroke obfuscation: five bursts of keys, each
// first key sent at once, the rest and the chaff on the client's ~20 ms clock up to 1.5 s past
// the burst's last key, then a pause. Returns the bursts' first keys (ms).
std::vector<double> TypeThroughChaff(Wire& w) {
  std::vector<double> firsts;
  double t = 1000;
  for (int burst = 0; burst < 5; ++burst) {
    firsts.push_back(t);
    w.Send(t, true, kAck | kPsh, std::string(36, 'k'));
    w.Send(t + 10.5, false, kAck | kPsh, std::string(36, 'e'));
    const double end = t + 400 + 1500;  // keys for 400 ms, chaff for 1.5 s after
    for (double tick = t + 19.3; tick < end; tick += 19.3 + 0.4 * (burst % 3)) {
      w.Send(tick, true, kAck | kPsh, std::string(36, 'k'));
      w.Send(tick + 10.5, false, kAck | kPsh, std::string(36, 'e'));
    }
    t = end + 900 + 300 * burst;  // the person reads, thinks and types on
  }
  return firsts;
}

// Burst starts (`_burst_starts_us`): the client's first segment after 100 ms of silence, kept
// for a session whose keys are obfuscated only. A client older than obfuscation (9.2 here,
// the same packets) is never tagged, and keeps none.
TEST(RelayDetector, ChaffingSshClientsKeepTheirBurstStarts) {
  for (const char* software : {"OpenSSH_10.0", "OpenSSH_9.2"}) {
    Wire w;
    w.Handshake(0, 0.2);
    const std::string banner = absl::StrCat("SSH-2.0-", software, "\r\n");
    w.Send(11, true, kAck | kPsh, banner);
    for (int i = 0; i < 6; ++i) {
      const double t = 21 + 10 * i;
      w.Send(t, false, kAck | kPsh, i == 0 ? banner : std::string(600, 'k'));
      w.Send(t + 0.5, true, kAck | kPsh, std::string(300, 'c'));
    }
    const std::vector<double> firsts = TypeThroughChaff(w);
    const std::vector<Event> events = w.End();
    ASSERT_EQ(events.size(), 1u);
    const nlohmann::json& r = events[0].body;
    const bool obfuscating = std::string_view(software) == "OpenSSH_10.0";
    EXPECT_EQ(r["ssh_obfuscated"], obfuscating) << software;
    if (!obfuscating) {
      EXPECT_FALSE(r.contains("_burst_starts_us"));
      continue;
    }
    ASSERT_TRUE(r.contains("_burst_starts_us"));
    std::vector<std::int64_t> want;
    for (double t : firsts)
      want.push_back(absl::ToUnixMicros(At(t)));
    EXPECT_EQ(r["_burst_starts_us"].get<std::vector<std::int64_t>>(), want);
  }
}

// Echoes and answers to pings that left in one segment (72 bytes: two of the client's 36-byte
// packets) are no output; a 52-byte packet, however small, is.
TEST(RelayDetector, SshOutputLeavesEchoesInOneSegmentOut) {
  Wire w;
  OpenSsh(w, "OpenSSH_10.0");
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(31))};  // the key exchange's
  for (int i = 0; i < 12; ++i) {
    const double t = 1000 + 700 * i;
    const bool output = i % 3 == 2;
    w.Send(t, true, kAck | kPsh, std::string(36, 'x'));
    w.Send(t + 10.5, false, kAck | kPsh, std::string(output ? 52 : 72, 'e'));
    if (output)
      want.push_back(absl::ToUnixMicros(At(t + 10.5)));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["_output_on_times_us"].get<std::vector<std::int64_t>>(), want);
}

// `ssh -J` through the host's sshd, the inbound flow: each inner packet (36 bytes) rides in an
// outer one of 76, and the outer connection's own window adjusts (36) set the client's least.
// The host's sshd waits for the controller's ACK before it sends again (Nagle), so a round
// trip's echoes leave in one segment: 4-6 x 76 bytes, no output; an output packet among them
// (84 bytes outer) is. Most server segments are such echoes held together: `_coalesced`.
TEST(RelayDetector, SshRelayedInOuterPacketsCountsOutputModuloItsKeys) {
  Wire w;
  OpenSsh(w, "OpenSSH_10.0");
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(31))};  // the key exchange's
  for (int i = 0; i < 400; ++i) {
    const double t = 1000 + 20 * i;
    w.Send(t, true, kAck | kPsh, std::string(i % 10 == 9 ? 36 : 76, 'k'));
    if (i % 5 != 4)
      continue;
    const double sent = t + 8;  // one segment per 100 ms round trip
    const int keys = 4 + i % 3;
    const bool output = i % 60 == 59;  // every 1.2 s
    w.Send(sent, false, kAck | kPsh, std::string(76 * keys + (output ? 84 : 0), 'e'));
    if (output)
      want.push_back(absl::ToUnixMicros(At(sent)));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["_output_on_times_us"].get<std::vector<std::int64_t>>(), want);
  EXPECT_EQ(r.value("_coalesced", false), true);
}

// A client that sends a round trip's keys at once (behind Nagle, through a proxy command's
// pipe): its most frequent segment is four keys (144 bytes), a whole number of its least,
// so output is still counted in the least: a 52-byte prompt is output, echoes are not.
TEST(RelayDetector, SshOutputBehindAClientThatBunchesItsKeys) {
  Wire w;
  OpenSsh(w, "OpenSSH_10.0");
  std::vector<std::int64_t> want = {absl::ToUnixMicros(At(31))};  // the key exchange's
  for (int i = 0; i < 60; ++i) {
    const double t = 1000 + 80 * i;
    w.Send(t, true, kAck | kPsh, std::string(i % 10 == 0 ? 36 : 144, 'k'));
    const bool output = i % 10 == 9;  // every 800 ms
    w.Send(t + 10.5, false, kAck | kPsh, std::string(output ? 52 : 72, 'e'));
    if (output)
      want.push_back(absl::ToUnixMicros(At(t + 10.5)));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["_output_on_times_us"].get<std::vector<std::int64_t>>(), want);
  EXPECT_FALSE(events[0].body.contains("_coalesced"));
}

TEST(RelayDetector, LossInTheSshSetupDoesNotEndIt) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  for (int i = 0; i < 7; ++i) {
    const double t = 21 + 200 * i;
    w.Send(t, false, kAck | kPsh, i == 0 ? "SSH-2.0-OpenSSH_9.2\r\n" : std::string(600, 'k'));
    if (i == 2)
      w.Resend(t + 5, false, std::string(600, 'k'));  // a lost segment sent again
    w.Send(t + 90, true, kAck | kPsh, std::string(300, 'c'));  // a client 90 ms away
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnarounds_refused"], 1);
  // The other six exchanges are still the setup's: software answering, 90 ms away.
  ASSERT_EQ(r["turnaround_samples_ms"].size(), 6u);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 89.8, 0.01);
  EXPECT_EQ(w.counters().turnarounds_refused.Read(), 1u);
}

// A path whose jitter reorders (netem's, in other labs' captures): the server's flight
// reaches the sensor scrambled. The piece that came last ends the flight, and the client,
// 90 ms away, answers from there: a sample, where it was refused as a retransmission's
// before. The flight came in parts (8 ms apart), so the sample is read as a spread
// flight's, a lower bound unless a whole flight's sample decides. The same bytes sent
// twice still refuse it.
TEST(RelayDetector, AReorderedServerFlightIsTimedFromItsLastPiece) {
  for (const bool repeat : {false, true}) {
    Wire w;
    w.Handshake(0, 0.2);
    w.Send(11, true, kAck | kPsh, kClientHello);
    const std::string head = std::string("\x16\x03\x03", 3) + std::string(1200, 's');
    const std::string middle(1200, 'm');
    w.Send(21, false, kAck | kPsh, head);
    const std::uint32_t late = w.Skip(false, static_cast<std::uint32_t>(middle.size()));
    w.Send(21.1, false, kAck | kPsh, std::string(600, 't'));
    w.SendBehind(29, false, late, middle);  // 8 ms behind the tail
    if (repeat)
      w.SendBehind(30, false, late, middle);
    w.Send(29.3, true, kAck, "");
    w.Send(119, true, kAck | kPsh, std::string(80, 'f'));  // 90 ms after the last piece
    w.Send(129, false, kAck | kPsh, std::string(300, 'r'));
    const std::vector<Event> events = w.End();
    ASSERT_EQ(events.size(), 1u);
    const nlohmann::json& r = events[0].body;
    EXPECT_EQ(r["out_of_order"], 1) << r.dump();
    EXPECT_EQ(r["retransmissions"], repeat ? 1 : 0);
    if (repeat) {
      EXPECT_EQ(r["turnarounds_refused"], 1) << r.dump();
      EXPECT_FALSE(r.contains("hidden_leg_rtt_ms"));
    } else {
      EXPECT_FALSE(r.contains("turnarounds_refused")) << r.dump();
      ASSERT_EQ(r["turnaround_samples_ms"].size(), 1u) << r.dump();
      EXPECT_NEAR(r["turnaround_samples_ms"][0].get<double>(), 90, 0.01);
      EXPECT_NEAR(r["turnaround_flight_spread_ms"][0].get<double>(), 8, 0.01);
      // The leg 0.2 ms in, a hidden 89.8 ms: forwarded at once it is that, held it is at
      // least (89.8 + 8) / 2.
      EXPECT_EQ(r["hidden_leg_lower_bound"], true);
      EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 48.9, 0.01) << r.dump();
    }
  }
}

// A laptop on a lossy Wi-Fi: its Finished is lost before the sensor and sent again after
// Linux's timeout for a lone segment (200 ms + 1.5 RTT). The sensor sees one copy, late; the
// IPv4 ID the lost copy took tells it.
std::vector<Event> TlsAnswerLostBeforeTheSensor(bool numbered, std::uint64_t* unseen_loss) {
  Wire w;
  if (numbered)
    w.NumberIpIds(true, 4000);
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, kClientHello);
  w.Send(21, false, kAck | kPsh, std::string("\x16\x03\x03", 3) + std::string(1200, 's'));
  w.Send(21.1, false, kAck | kPsh, std::string(800, 's'));
  // Its ACK of the flight got through; its Finished did not, and is sent again.
  w.Send(21.3, true, kAck, "");
  w.LoseClientPacket();
  w.Send(21.1 + 216, true, kAck | kPsh, std::string(80, 'f'));
  w.Send(21.1 + 216.1, true, kAck | kPsh, std::string(90, 'g'));
  w.Send(247.5, false, kAck | kPsh, std::string(500, 'r'));
  std::vector<Event> events = w.End();
  if (unseen_loss != nullptr)
    *unseen_loss = w.counters().turnarounds_unseen_loss.Read();
  return events;
}

TEST(RelayDetector, AnAnswerAfterAPacketLostBeforeTheSensorIsRefused) {
  std::uint64_t unseen_loss = 0;
  const std::vector<Event> events = TlsAnswerLostBeforeTheSensor(true, &unseen_loss);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_FALSE(r.contains("hidden_leg_rtt_ms")) << r.dump();
  EXPECT_EQ(r["turnarounds_refused"], 1);
  EXPECT_EQ(unseen_loss, 1u);
  // Without IDs to read (ID 0: a stack without a per-connection counter) the late copy is
  // all there is, and it reads as a hidden leg: what the rule prevents.
  const std::vector<Event> blind = TlsAnswerLostBeforeTheSensor(false, nullptr);
  ASSERT_EQ(blind.size(), 1u);
  EXPECT_NEAR(blind[0].body["hidden_leg_rtt_ms"].get<double>(), 215.8, 0.2) << blind[0].body.dump();
}

// A far client behind a jump host (lab: `ssh -J` at 250 ms one way): the server speaks
// first, and the client's banner comes two round trips later, past `max_turnaround`. No
// person answers before the host key arrives, so the setup goes on.
TEST(RelayDetector, ASlowFirstSshAnswerDoesNotEndTheSetup) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(11, false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  w.Send(1021, true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  for (int i = 0; i < 6; ++i) {
    const double t = 1031 + 600 * i;
    w.Send(t, false, kAck | kPsh, std::string(600, 'k'));
    w.Send(t + 505, true, kAck | kPsh, std::string(300, 'c'));  // one 505 ms round trip
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  // The banner answers nothing (sent on connecting): no sample, nor a refused one.
  EXPECT_FALSE(r.contains("turnarounds_refused")) << r.dump();
  EXPECT_EQ(r["turnarounds_interrupted"], 1);
  ASSERT_EQ(r["turnaround_samples_ms"].size(), 6u);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 504.8, 0.01);
}

// An operator's ssh into the laptop, 60 ms away (times in ms and sizes as in
// tests/golden/ssh_tunnel): sshd's KEXINIT waits for its banner's ACK, and the client's
// KEXINIT, sent on the banner's arrival too, lands 0.3 ms behind it. It answers the banner;
// the server's KEXINIT is answered by the key exchange init, 218 ms later.
TEST(RelayDetector, AnSshKexInitBehindTheServersIsNoTurnaround) {
  for (const bool rule : {true, false}) {
    RelayConfig config;
    config.turnaround_samples = 3;
    Wire w(config);
    w.Handshake(0, 120);
    w.Send(131, true, kAck | kPsh, kSshBanner);
    w.Send(175, false, kAck | kPsh, kSshBanner);
    w.Send(295.5, true, kAck, "");
    w.Send(296, false, kAck | kPsh, kServerKexInit);
    const std::string first_kex = rule ? kKexInit : std::string(kKexInit.size(), 'k');
    w.Send(296.3, true, kAck | kPsh, first_kex.substr(0, 1448));
    w.Send(296.4, true, kAck | kPsh, first_kex.substr(1448));
    w.Send(514, true, kAck | kPsh, kKexEcdhInit);
    w.Send(540, false, kAck | kPsh, std::string(1564, 'r'));  // reply and NEWKEYS
    w.Send(700, true, kAck | kPsh, std::string(16, 'n'));     // NEWKEYS
    w.Send(864, true, kAck | kPsh, std::string(44, 's'));     // service request
    w.Send(865, false, kAck | kPsh, std::string(44, 'a'));
    w.Send(986, true, kAck | kPsh, std::string(60, 'u'));
    const std::vector<Event> events = w.End();
    ASSERT_EQ(events.size(), 1u);
    const nlohmann::json& samples = events[0].body["turnaround_samples_ms"];
    ASSERT_EQ(samples.size(), 3u) << events[0].body.dump();
    // Without the packet layer (the same bytes unreadable) the KEXINIT is a 0.3 ms answer.
    EXPECT_NEAR(samples[0].get<double>(), rule ? 218 : 0.3, 0.01);
    EXPECT_NEAR(samples[1].get<double>(), 160, 0.01);
    EXPECT_EQ(w.counters().ssh_kexinit_unasked.Read(), rule ? 2u : 0u);
  }
}

// Dropbear's client 50 ms away behind an HTTP proxy on the laptop (lab: proxied_ssh with
// tests/lab/helpers/ssh_dropbear.sh, times in ms as captured): the proxy connects, sshd
// sends its banner 37 ms later, and the client's banner, KEXINIT and guessed exchange init
// arrive a far round trip after the proxy's "200", 61 ms behind the banner. They answer
// nothing; the exchange init sent again on the server's KEXINIT does.
TEST(RelayDetector, AnSshClientsBannerBehindAProxyIsNoTurnaround) {
  RelayConfig config;
  config.turnaround_samples = 3;
  Wire w(config);
  w.Handshake(0, 0.05);
  w.Send(47.4, false, kAck | kPsh, kSshBanner);
  w.Send(108.1, true, kAck | kPsh,
         std::string("SSH-2.0-dropbear_2022.83\r\n") + KexInit(600, true) + Packet(30, 36));
  w.Send(125.4, false, kAck | kPsh, kServerKexInit);
  w.Send(225.9, true, kAck | kPsh, Packet(30, 36));
  w.Send(236.5, false, kAck | kPsh, std::string(524, 'r'));  // reply and NEWKEYS
  w.Send(337, true, kAck | kPsh, std::string(120, 'n'));     // NEWKEYS, service request
  w.Send(348, false, kAck | kPsh, std::string(44, 'a'));
  w.Send(448.3, true, kAck | kPsh, std::string(140, 'u'));
  w.Send(460, false, kAck | kPsh, std::string(100, 'b'));
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  ASSERT_EQ(r["turnaround_samples_ms"].size(), 3u) << r.dump();
  EXPECT_NEAR(r["turnaround_samples_ms"][0].get<double>(), 100.5, 0.01);
  EXPECT_NEAR(r["hidden_leg_rtt_ms"].get<double>(), 100.25, 0.01);
  EXPECT_EQ(r["turnarounds_interrupted"], 1);  // the banner, left unanswered
  EXPECT_EQ(w.counters().ssh_identification_unawaited.Read(), 1u);
}

// A person asked to trust the host key answers the server's key exchange (2.5 s): from there
// on answers may be a person's, so the setup ends and later exchanges are no samples.
TEST(RelayDetector, ASlowSshAnswerAfterTheKeyExchangeEndsTheSetup) {
  Wire w;
  w.Handshake(0, 0.2);
  w.Send(1, true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");  // sent at once, answers nothing
  w.Send(11, false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  w.Send(11.5, true, kAck | kPsh, std::string(1200, 'i'));  // KEXINIT
  w.Send(21, false, kAck | kPsh, std::string(1000, 'i'));   // the server's KEXINIT
  w.Send(21.5, true, kAck | kPsh, std::string(1200, 'e'));  // key-exchange init
  w.Send(31, false, kAck | kPsh, std::string(1500, 'r'));   // reply with the host key
  w.Send(2531, true, kAck | kPsh, std::string(16, 'n'));    // NEWKEYS after "yes"
  for (int i = 0; i < 4; ++i) {
    const double t = 2541 + 20 * i;
    w.Send(t, false, kAck | kPsh, std::string(60, 's'));
    w.Send(t + 0.5, true, kAck | kPsh, std::string(60, 'c'));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["turnarounds_refused"], 1);
  ASSERT_EQ(r["turnaround_samples_ms"].size(), 2u);  // the two before the person
  EXPECT_NEAR(r["turnaround_ms"].get<double>(), 0.5, 0.01);
}

// A window samples at most 12 slots' first packets (kMaxPacketTimes); past that, packets are
// counted. With report_after at 3 min, 13 slots of typing fill one window's sample.
TEST(RelayDetector, PacketSamplesAreBoundedAndCounted) {
  RelayConfig config;
  config.report_after = absl::Minutes(3);
  Wire w(config);
  w.Handshake(0, 0.2);
  w.Send(11, true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  w.Send(21, false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  for (int i = 0; i < 1000; ++i) {  // a key every 135 ms for 135 s: 14 slots
    w.Send(1000 + 135.0 * i, true, kAck | kPsh, std::string(36, 'x'));
    w.Send(1010 + 135.0 * i, false, kAck | kPsh, std::string(36, 'e'));
  }
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].body["_packet_times_us"].size(), RelayDetector::kMaxPacketTimes);
  // Slot 0 holds the banner and 31 keys; slots 12 and 13 would have held 64 more.
  EXPECT_EQ(w.counters().packet_times_dropped.Read(), 2u * RelayDetector::kPacketsPerSlot);
}

TEST(RelayDetector, KeystrokesNeedNoHiddenLegAndCanBeSwitchedOff) {
  const std::vector<Event> all = SshSession(WithMethods({}), 20);
  ASSERT_EQ(all.size(), 1u);
  ASSERT_TRUE(all[0].body.contains("keystrokes"));
  EXPECT_EQ(all[0].body["keystrokes"]["count"], 20);
  EXPECT_TRUE(all[0].body.contains("ssh_obfuscated"));
  EXPECT_EQ(all[0].body["turnaround_samples_ms"].size(), 6u);

  // Without the hidden leg the setup is still found, so the same keys are counted.
  const std::vector<Event> keys_only = SshSession(WithMethods({.hidden_leg = false}), 20);
  ASSERT_EQ(keys_only.size(), 1u);
  EXPECT_EQ(keys_only[0].body["keystrokes"], all[0].body["keystrokes"]);
  EXPECT_FALSE(keys_only[0].body.contains("turnaround_samples_ms"));
  EXPECT_FALSE(keys_only[0].body.contains("hidden_leg_rtt_ms"));

  const std::vector<Event> no_keys = SshSession(WithMethods({.keystrokes = false}), 20);
  ASSERT_EQ(no_keys.size(), 1u);
  EXPECT_FALSE(no_keys[0].body.contains("keystrokes"));
  EXPECT_FALSE(no_keys[0].body.contains("ssh_obfuscated"));
  EXPECT_TRUE(no_keys[0].body.contains("hidden_leg_rtt_ms"));
}

// Output -> next key delays that the SSH session above produces, in order: an output follows
// every fourth key, and a delay under 100 ms is the client's own answer, not a person.
std::size_t SessionReactions(int keys) {
  std::size_t n = 0;
  for (int i = 3; i + 1 < keys; i += 4) {
    const double next = 1000 + 150 * (i + 1) + 37 * ((i + 1) % 3);
    const double output = 1000 + 150 * i + 37 * (i % 3) + 10.5;
    n += next - output >= 100;
  }
  return n;
}

std::size_t ReactionsIn(const std::vector<Event>& events) {
  std::size_t n = 0;
  for (const Event& e : events) {
    if (e.body.contains("_reactions_ms"))
      n += e.body["_reactions_ms"].size();
  }
  return n;
}

TEST(RelayDetector, SshReactionsGoOnInWindowsAfterTheRecord) {
  RelayConfig config;
  config.report_after = absl::Seconds(5);
  const std::vector<Event> events = SshSession(config, 200);  // 31 s of typing
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].event_type, "relay");
  ASSERT_TRUE(events[0].body.contains("_reactions_ms"));
  std::size_t windows_with_reactions = 0;
  for (std::size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].event_type, kOnWindowEvent);
    windows_with_reactions += events[i].body.contains("_reactions_ms");
  }
  EXPECT_GE(windows_with_reactions, 4u);
  EXPECT_EQ(ReactionsIn(events), SessionReactions(200));  // each one once

  // The packet-level stepping-stone test's sample, each 10 s slot's first 32 client packets
  // once, in whichever window reached them; not the last slot's 6 (fewer than a test needs).
  std::set<std::int64_t> packets;
  std::size_t sent = 0;
  for (const Event& e : events) {
    if (!e.body.contains("_packet_times_us"))
      continue;
    EXPECT_GE(e.body["_packet_times_us"].size(), PacketSample::kMinPackets);
    for (const nlohmann::json& t : e.body["_packet_times_us"]) {
      packets.insert(t.get<std::int64_t>());
      ++sent;
    }
  }
  EXPECT_EQ(sent, 3u * RelayDetector::kPacketsPerSlot);
  EXPECT_EQ(packets.size(), sent);
  config.stepping_stone_packet_delta = absl::ZeroDuration();
  for (const Event& e : SshSession(config, 200))
    EXPECT_FALSE(e.body.contains("_packet_times_us"));

  // Switched off: no reactions, and no windows for them.
  config.methods.keystrokes = false;
  config.methods.stepping_stone = false;
  const std::vector<Event> off = SshSession(config, 200);
  ASSERT_EQ(off.size(), 1u);
  EXPECT_EQ(ReactionsIn(off), 0u);
}

// ---- Host decisions ---------------------------------------------------------------------

Event RelayRecord(std::uint64_t id, const std::string& src, const std::string& dst, double minute,
                  nlohmann::json body) {
  Event e;
  e.event_type = "relay";
  e.ts = kT0 + absl::Minutes(minute);
  FlowRef f;
  f.flow_id = id;
  f.src_ip = *IpAddress::Parse(src);
  f.dest_ip = *IpAddress::Parse(dst);
  f.protocol = 6;
  e.flow = f;
  e.body = std::move(body);
  return e;
}

host::HostStageConfig HostConfig() {
  host::HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  c.sites = {{"seattle", {*Cidr::Parse("10.1.0.0/16")}, "Seattle, US", absl::Milliseconds(40)}};
  return c;
}

std::vector<const Event*> Alerts(const std::vector<Event>& out, const std::string& detector) {
  std::vector<const Event*> found;
  for (const Event& e : out) {
    if (e.alert && e.alert->detector == detector)
      found.push_back(&e);
  }
  return found;
}

TEST(RelayHostStage, HiddenLegNeedsSeveralSamplesAboveTheSiteBudget) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  const nlohmann::json slow = {
      {"app", "tls"}, {"hidden_leg_rtt_ms", 150.0}, {"turnaround_samples_ms", {150.0, 151.0}}};
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, slow), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, slow), out);
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());  // 4 samples: not yet
  stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 2, slow), out);
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->alert->signature_id, host::kSidHiddenLeg);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.5");
  EXPECT_EQ(alerts[0]->evidence["site"], "seattle");
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 150);
  EXPECT_EQ(alerts[0]->evidence["turnarounds"], 6);
  for (const Event& e : out)
    EXPECT_FALSE(e.body.contains("_on_times_us"));
}

TEST(RelayHostStage, OneSlowHandshakeAmongLocalOnesIsNoAlert) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  for (int i = 0; i < 6; ++i) {
    const double hidden = i == 3 ? 300.0 : 1.0;
    stage.Process(
        RelayRecord(
            i, "10.1.0.5", "198.51.100.7", i,
            {{"app", "tls"}, {"hidden_leg_rtt_ms", hidden}, {"turnaround_samples_ms", {hidden}}}),
        out);
  }
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());
}

// The median of an even count is the mean of the middle two: two slow handshakes among
// two near ones would carry it over the budget (nDPI's android.pcap, a phone whose own TLS
// answers wait 120-200 ms in some handshakes, gave 60.1 for 60). Most flows must be far.
TEST(RelayHostStage, HiddenLegMedianNeedsMostFlowsFar) {
  host::HostStage stage(HostConfig());  // site budget 40 ms
  std::vector<Event> out;
  const auto flow = [](std::vector<double> turnarounds) {
    return nlohmann::json{
        {"app", "tls"},
        {"hidden_leg_rtt_ms", *std::min_element(turnarounds.begin(), turnarounds.end())},
        {"turnaround_samples_ms", turnarounds}};
  };
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, flow({204, 120})), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.8", 1, flow({650, 0})), out);
  stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.8", 2, flow({0})), out);
  stage.Process(RelayRecord(4, "10.1.0.5", "198.51.100.7", 3, flow({129})), out);
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());  // median 60 of 0, 0, 120, 129: half near
  stage.Process(RelayRecord(5, "10.1.0.5", "198.51.100.7", 4, flow({140})), out);
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);  // three of five far
  EXPECT_EQ(alerts[0]->evidence["rule"], "median_over_window");
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 120);
}

// TLS 1.3 answers one turnaround per connection: three far connections in a row decide
// before min_samples turnarounds, the median over the window does not have to wait.
TEST(RelayHostStage, HiddenLegOfConsecutiveFarFlowsWithOneTurnaroundEach) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  const auto flow = [](double hidden) {
    return nlohmann::json{
        {"app", "tls"}, {"hidden_leg_rtt_ms", hidden}, {"turnaround_samples_ms", {hidden}}};
  };
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, flow(405)), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, flow(402)), out);
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());  // two flows: not yet
  stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 2, flow(407)), out);
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["rule"], "consecutive_flows");
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 405);
  EXPECT_EQ(alerts[0]->evidence["turnarounds"], 3);
}

TEST(RelayHostStage, HiddenLegConsecutiveFlowsMustAllBeFar) {
  // A local flow among the last three: no decision until the turnarounds suffice for the
  // median, and then the median (two far flows of five) is local.
  for (const std::vector<double>& hidden :
       {std::vector<double>{300, 2, 300}, std::vector<double>{300, 2, 300, 2, 2}}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (std::size_t i = 0; i < hidden.size(); ++i) {
      stage.Process(RelayRecord(i, "10.1.0.5", "198.51.100.7", i,
                                {{"app", "tls"},
                                 {"hidden_leg_rtt_ms", hidden[i]},
                                 {"turnaround_samples_ms", {hidden[i]}}}),
                    out);
    }
    EXPECT_TRUE(Alerts(out, "hidden_leg").empty()) << hidden.size() << " flows";
  }
  // min_flows is a setting: with four the three far flows above wait for a fourth.
  host::HostStageConfig config = HostConfig();
  config.relay.min_flows = 4;
  host::HostStage stage(config);
  std::vector<Event> out;
  for (int i = 0; i < 4; ++i) {
    stage.Process(
        RelayRecord(
            i, "10.1.0.5", "198.51.100.7", i,
            {{"app", "tls"}, {"hidden_leg_rtt_ms", 300.0}, {"turnaround_samples_ms", {300.0}}}),
        out);
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), i == 3 ? 1u : 0u) << i;
  }
}

// A relay makes its far client wait about one answer to open; a client slow on its own (a
// cold JVM per fetch on a quarter of one CPU: ClientHello 520-590 ms after the SYN/ACK,
// answers 40-190 ms, in the lab's direct_tls) waits several. Its far readings decide nothing.
TEST(RelayHostStage, HiddenLegNotDecidedForClientsSlowToOpen) {
  struct Case {
    const char* what;
    std::vector<nlohmann::json> opening;  // per flow, merged into the record
    double max_ratio;
    bool alert;
  };
  const nlohmann::json jvm = {{"connect_wait_ms", 560.0}};
  const nlohmann::json relay = {{"connect_wait_ms", 151.0}};
  const nlohmann::json held = {{"connect_wait_ms", 300.0}};  // the far client held its data
  const nlohmann::json proxied_jvm = {
      {"proxy", "http_connect"}, {"connect_wait_ms", 3.0}, {"tunnel_wait_ms", 700.0}};
  const nlohmann::json proxied_unknown = {{"proxy", "http_connect"}, {"connect_wait_ms", 600.0}};
  const nlohmann::json none = nlohmann::json::object();
  const std::vector<Case> cases = {
      {"slow opener", {jvm, jvm, jvm, jvm, jvm}, 2.5, false},
      {"relay", {relay, relay, relay, relay, relay}, 2.5, true},
      {"relay holding its first data", {held, held, relay, held, held}, 2.5, true},
      {"check off", {jvm, jvm, jvm, jvm, jvm}, 0, true},
      {"tunnel's opening",
       {proxied_jvm, proxied_jvm, proxied_jvm, proxied_jvm, proxied_jvm},
       2.5,
       false},
      {"proxy request's wait is not the opening",
       {proxied_unknown, proxied_unknown, proxied_unknown, proxied_unknown, proxied_unknown},
       2.5,
       true},
      {"fewer than half with a wait", {none, none, none, jvm, jvm}, 2.5, true},
  };
  for (const Case& c : cases) {
    host::HostStageConfig config = HostConfig();
    config.relay.hidden_leg_max_opening_ratio = c.max_ratio;
    host::HostStage stage(config);
    std::vector<Event> out;
    for (std::size_t i = 0; i < c.opening.size(); ++i) {
      nlohmann::json body = {{"app", "tls"},
                             {"hidden_leg_rtt_ms", 150.0},
                             {"turnaround_ms", 150.2},
                             {"turnaround_samples_ms", {150.2}}};
      body.update(c.opening[i]);
      stage.Process(RelayRecord(i, "10.1.0.5", "198.51.100.7", i, body), out);
    }
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), c.alert ? 1u : 0u) << c.what;
    EXPECT_EQ(stage.stats().hidden_leg_slow_openings > 0, !c.alert) << c.what;
    if (!c.alert) {
      // The records that would have decided say why they did not.
      ASSERT_FALSE(out.empty()) << c.what;
      const nlohmann::json& last = out.back().body;
      EXPECT_EQ(last["hidden_leg_withheld"], "slow_opening") << c.what;
      EXPECT_GT(last["opening_wait_ratio"].get<double>(), 3.7) << c.what;
    }
  }
}

// The evidence names each flow's server and counts the servers: a far operator's flows
// reach what they work on, a client slow on its own (forticlient.pcap in ../shared/pcaps:
// four handshakes to one VPN gateway, each answered 131-142 ms late) reaches one.
TEST(RelayHostStage, HiddenLegEvidenceNamesAndCountsTheServers) {
  for (const bool one_server : {true, false}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (int i = 0; i < 3; ++i) {
      Event e =
          RelayRecord(i, "10.2.0.5", one_server ? "203.0.113.9" : absl::StrCat("203.0.113.", i), i,
                      {{"app", "tls"},
                       {"hidden_leg_rtt_ms", 135.0 + i},
                       {"turnaround_samples_ms", {135.0 + i}}});
      e.flow->dest_port = static_cast<std::uint16_t>(one_server ? 10443 : 443 + i);
      stage.Process(std::move(e), out);
    }
    const auto alerts = Alerts(out, "hidden_leg");
    ASSERT_EQ(alerts.size(), 1u) << one_server;
    const nlohmann::json& evidence = alerts[0]->evidence;
    EXPECT_EQ(evidence["servers"], one_server ? 1 : 3);
    ASSERT_EQ(evidence["recent_flows"].size(), 3u);
    // Newest first.
    EXPECT_EQ(evidence["recent_flows"][0]["dest_ip"], one_server ? "203.0.113.9" : "203.0.113.2");
    EXPECT_EQ(evidence["recent_flows"][0]["dest_port"], one_server ? 10443 : 445);
    EXPECT_EQ(evidence["recent_flows"][2]["flow_id"], 0);
  }
}

// A server listed as exempt (a VPN gateway whose client is slow on its own): its flows keep
// their record, marked, and count toward nothing; the host's other flows still decide.
TEST(RelayHostStage, HiddenLegExemptServersCountTowardNothing) {
  host::HostStageConfig config = HostConfig();
  config.relay.hidden_leg_exempt_servers = {*Cidr::Parse("203.0.113.9/32")};
  host::HostStage stage(config);
  std::vector<Event> out;
  for (int i = 0; i < 6; ++i) {
    stage.Process(RelayRecord(i, "10.2.0.5", "203.0.113.9", i,
                              {{"app", "tls"},
                               {"hidden_leg_rtt_ms", 135.0},
                               {"turnaround_samples_ms", {135.0, 333.0}}}),
                  out);
  }
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());
  EXPECT_EQ(stage.stats().hidden_leg_exempt_flows, 6u);
  std::size_t marked = 0;
  for (const Event& e : out) {
    if (e.event_type == "relay") {
      EXPECT_EQ(e.body.value("hidden_leg_exempt", false), true);
      EXPECT_EQ(e.body["hidden_leg_rtt_ms"], 135.0);  // still measured and logged
      ++marked;
    }
  }
  EXPECT_EQ(marked, 6u);
  // Three far flows of the same host to another server alert as ever.
  for (int i = 0; i < 3; ++i) {
    stage.Process(
        RelayRecord(
            10 + i, "10.2.0.5", "203.0.113.10", 10 + i,
            {{"app", "tls"}, {"hidden_leg_rtt_ms", 135.0}, {"turnaround_samples_ms", {135.0}}}),
        out);
  }
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["flows_in_window"], 3);
  EXPECT_EQ(stage.stats().hidden_leg_exempt_flows, 6u);
}

// The laptop's own flows (hidden legs of a millisecond) beside the operator's, from a host
// in no site (the default budget, 60 ms).
using HiddenAndTurns = std::pair<double, int>;
constexpr HiddenAndTurns kOwn{1.0, 1};
constexpr HiddenAndTurns Far(double hidden_ms, int turnarounds = 1) {
  return {hidden_ms, turnarounds};
}

std::vector<Event> FlowsInOrder(const std::vector<HiddenAndTurns>& flows) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const auto [hidden, turns] = flows[i];
    stage.Process(RelayRecord(i, "10.2.0.5", "198.51.100.7", 0.1 * i,
                              {{"app", turns > 1 ? "ssh" : "tls"},
                               {"hidden_leg_rtt_ms", hidden},
                               {"turnaround_samples_ms", std::vector<double>(turns, hidden)}}),
                  out);
  }
  return out;
}

TEST(RelayHostStage, HiddenLegOfFarFlowsAmongTheLaptopsOwn) {
  // Five far flows among eight of the laptop's own: the median is local, no three far
  // flows come in a row, yet they are one operator's.
  const std::vector<Event> out = FlowsInOrder({kOwn, Far(120), kOwn, kOwn, Far(118), kOwn, Far(125),
                                               kOwn, kOwn, Far(121), kOwn, Far(119), kOwn});
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["rule"], "far_flows");
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 120);
  EXPECT_EQ(alerts[0]->evidence["flows_decided"], 5);
  EXPECT_EQ(alerts[0]->evidence["recent_flows"].size(), 5u);  // the far ones
  // One SSH session through the laptop (six turnarounds) among its own https fetches.
  std::vector<HiddenAndTurns> ssh(12, kOwn);
  ssh.push_back(Far(150, 6));
  EXPECT_EQ(Alerts(FlowsInOrder(ssh), "hidden_leg").size(), 1u);
}

// Flows whose flights all came spread out give only a lower bound b of the leg, which lies
// from b up to about 2b (a relay that forwarded every part at once reads half as far as it
// is): under half the budget such a flow is near, at or over it far, in between nothing.
std::vector<Event> FlowsWithBounds(const std::vector<std::pair<double, bool>>& flows) {
  host::HostStage stage(HostConfig());  // 10.2.0.5: in no site, the default 60 ms
  std::vector<Event> out;
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const auto [hidden, bound] = flows[i];
    nlohmann::json r = {{"app", "tls"},
                        {"hidden_leg_rtt_ms", hidden},
                        {"turnaround_ms", hidden},
                        {"turnaround_samples_ms", {bound ? 2 * hidden - 10 : hidden}},
                        {"turnaround_flight_spread_ms", {bound ? 10.0 : 0.0}}};
    if (bound)
      r["hidden_leg_lower_bound"] = true;
    stage.Process(RelayRecord(i, "10.2.0.5", "198.51.100.7", 0.1 * i, r), out);
  }
  return out;
}

TEST(RelayHostStage, HiddenLegBoundsCountOnlyWhereTheyAreCertain) {
  // A far relay that forwards every part at once, 80 ms away: its spread flights bound
  // the leg at 45, its whole ones read 80. The bounds would straddle the budget.
  const std::vector<Event> mixed =
      FlowsWithBounds({{80, false}, {45, true}, {81, false}, {44, true}, {79, false}, {46, true}});
  const auto alerts = Alerts(mixed, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 80);
  EXPECT_EQ(alerts[0]->evidence["flows_lower_bound"], 0);
  EXPECT_EQ(alerts[0]->evidence["flows_in_window"], 5);  // when it decided
  // Bounds alone under the budget: nothing certain, no alert.
  EXPECT_TRUE(
      Alerts(FlowsWithBounds({{45, true}, {44, true}, {46, true}, {45, true}}), "hidden_leg")
          .empty());
  // Bounds past it: the leg is at least that.
  const std::vector<Event> bounds = FlowsWithBounds({{85, true}, {84, true}, {86, true}});
  const auto far = Alerts(bounds, "hidden_leg");
  ASSERT_EQ(far.size(), 1u);
  EXPECT_EQ(far[0]->evidence["flows_lower_bound"], 3);
  EXPECT_EQ(far[0]->evidence["recent_flows"][0]["hidden_leg_lower_bound"], true);
  // The laptop's own flows, bounds of a few ms, still outvote one far flow in the median.
  EXPECT_TRUE(Alerts(FlowsWithBounds({{2, true}, {3, true}, {90, false}, {2, true}, {2, true}}),
                     "hidden_leg")
                  .empty());
  // A near relay 40 ms away that held every tail: whole flights read 40, the bounds 40.
  EXPECT_TRUE(
      Alerts(FlowsWithBounds({{40, false}, {40, true}, {41, false}, {39, true}, {40, true}}),
             "hidden_leg")
          .empty());
}

TEST(RelayHostStage, HiddenLegFarFlowsMustStandApartAndAgree) {
  // A flow in the band under the budget (half of it up to it): the host's flows straddle
  // the budget, as a near relay's do under jitter; the median decides, and it is local.
  EXPECT_TRUE(Alerts(FlowsInOrder({kOwn, Far(65), kOwn, Far(45), Far(70), kOwn, Far(62), kOwn,
                                   Far(66), kOwn, Far(68), kOwn}),
                     "hidden_leg")
                  .empty());
  // Far flows that disagree (70 to 300 ms): scattered stalls, not one operator's round trip.
  EXPECT_TRUE(Alerts(FlowsInOrder({kOwn, Far(70), kOwn, kOwn, Far(150), kOwn, Far(300), kOwn, kOwn,
                                   Far(90), kOwn, Far(200), kOwn}),
                     "hidden_leg")
                  .empty());
  // Four far turnarounds are not enough.
  EXPECT_TRUE(Alerts(FlowsInOrder({kOwn, Far(120), kOwn, kOwn, Far(118), kOwn, Far(125), kOwn, kOwn,
                                   Far(121), kOwn}),
                     "hidden_leg")
                  .empty());
}

// A client that checks revocation while it verifies the certificate: each TLS flow's one
// turnaround waits on a fetch (srv:80) the host opens and hears back from within it.
std::int64_t WaitUs(double minute, double ms) {
  return absl::ToUnixMicros(kT0 + absl::Minutes(minute) +
                            absl::Microseconds(std::llround(ms * 1000)));
}

// A TLS flow whose one turnaround waited 80 ms, from 100 ms into `minute`.
nlohmann::json WaitedFlow(double minute) {
  return {{"app", "tls"},
          {"hidden_leg_rtt_ms", 79.5},
          {"turnaround_samples_ms", {80.0}},
          {"_waits_us", {WaitUs(minute, 100)}}};
}

// A connection of the host's opened `opened` ms into that wait, answered at `first` and
// last at `last` (ms into the wait).
// A connection of the host's whose one request started `start` ms into that wait (its SYN)
// and was answered at `answered`; the next request on it at `next` (-1: none).
nlohmann::json FetchFlow(double minute, double start, double answered, double next = -1) {
  return {{"app", "other"},
          {"rtt_originator_ms", 0.3},
          {"_exchanges_us",
           {{WaitUs(minute, 100 + start), WaitUs(minute, 100 + answered),
             next < 0 ? std::int64_t{-1} : WaitUs(minute, 100 + next)}}}};
}

TEST(RelayHostStage, HiddenLegWaitsFedByTheHostsOwnFetchesAreNoHiddenLeg) {
  for (const bool fetches : {false, true}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (int i = 0; i < 6; ++i) {
      if (fetches)
        stage.Process(RelayRecord(100 + i, "10.1.0.5", "198.51.100.7", i, FetchFlow(i, 2, 75)),
                      out);
      stage.Process(RelayRecord(i, "10.1.0.5", "198.51.100.7", i, WaitedFlow(i)), out);
    }
    // Without the fetches in sight the same flows are a hidden leg.
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), fetches ? 0u : 1u) << fetches;
    EXPECT_EQ(stage.stats().turnarounds_explained, fetches ? 6u : 0u);
    for (const Event& e : out) {
      EXPECT_FALSE(e.body.contains("_waits_us"));
      EXPECT_FALSE(e.body.contains("_exchanges_us"));
      if (fetches && e.event_type == "relay" && e.body["app"] == "tls") {
        // No turnaround left: the record has no hidden leg, only what was measured.
        EXPECT_EQ(e.body["turnarounds_explained"], 1);
        EXPECT_FALSE(e.body.contains("hidden_leg_rtt_ms"));
        EXPECT_EQ(e.body["turnaround_samples_ms"], nlohmann::json({80.0}));
      }
    }
  }
}

TEST(RelayHostStage, HiddenLegOfTheTurnaroundsNoFetchFed) {
  // A flow's turnarounds (client leg 0.5 ms) of which a fetch fed the one waiting from 100 ms
  // into the minute (80 ms).
  // `fed`: the sample whose wait the fetch fed; `handshake`: the first sample is the TLS
  // handshake's answer.
  const auto explained = [](std::vector<double> samples, const char* app = "tls",
                            std::size_t fed = 0, bool handshake = false,
                            std::vector<double> spreads = {},
                            std::optional<double> connect_wait = std::nullopt) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(RelayRecord(100, "10.1.0.5", "198.51.100.7", 0, FetchFlow(0, 2, 75)), out);
    nlohmann::json flow = WaitedFlow(0);
    flow["app"] = app;
    flow["turnaround_samples_ms"] = samples;
    std::optional<double> first;
    if (handshake) {
      first = samples[0];
      flow["handshake_turnaround_ms"] = samples[0];
    }
    flow["hidden_leg_rtt_ms"] = TurnaroundMs(samples, first) - 0.5;
    if (connect_wait)
      flow["connect_wait_ms"] = *connect_wait;
    if (!spreads.empty()) {
      const FlowTurnaround read = ReadTurnaround(samples, spreads, first, 0.5, connect_wait);
      flow["turnaround_flight_spread_ms"] = spreads;
      flow["turnaround_ms"] = read.ms;
      flow["hidden_leg_rtt_ms"] = read.ms - 0.5;
    }
    flow["_waits_us"] = nlohmann::json::array();
    for (std::size_t i = 0; i < samples.size(); ++i) {
      // The fed wait begins 100 ms into the minute; the others where no fetch ran.
      flow["_waits_us"].push_back(WaitUs(0, i == fed ? 100 : 100 + 1000 * (i + 1)));
    }
    stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, flow), out);
    for (const Event& e : out) {
      if (e.event_type == "relay" && e.flow->flow_id == 1)
        return e.body;
    }
    return nlohmann::json();
  };
  // Above the lower quartile: the others still read the flow (the quartile of five was the
  // second, 41 ms; of the four left it is the first, 40 ms).
  const nlohmann::json above = explained({80, 40, 41, 42, 43});
  EXPECT_EQ(above["turnarounds_explained"], 1);
  EXPECT_DOUBLE_EQ(above["turnaround_ms"].get<double>(), 40);
  EXPECT_DOUBLE_EQ(above["hidden_leg_rtt_ms"].get<double>(), 39.5);
  // At the lower quartile: what is left (a close_notify that waited for a download) cannot
  // stand for the flow, which gives no reading.
  const nlohmann::json rested = explained({80, 865});
  EXPECT_EQ(rested["turnarounds_explained"], 1);
  EXPECT_FALSE(rested.contains("hidden_leg_rtt_ms"));
  EXPECT_FALSE(rested.contains("turnaround_ms"));
  // A TLS flow's later turnarounds are its application's (think time): no reading either,
  // or a near flow would read far from them.
  EXPECT_FALSE(explained({80, 300, 500, 600})["hidden_leg_rtt_ms"].is_number());
  // An SSH setup's six are software answers: the five left still read it.
  const nlohmann::json ssh = explained({80, 150, 151, 152, 190, 400}, "ssh");
  EXPECT_DOUBLE_EQ(ssh["turnaround_ms"].get<double>(), 151);
  EXPECT_DOUBLE_EQ(ssh["hidden_leg_rtt_ms"].get<double>(), 150.5);
  // The fed one was the only whole flight: the ones left came spread and give a bound.
  const nlohmann::json spread =
      explained({80, 150, 151, 152, 190, 400}, "ssh", 0, false, {0, 10, 10, 10, 10, 10});
  EXPECT_EQ(spread["turnarounds_explained"], 1);
  EXPECT_TRUE(spread["hidden_leg_lower_bound"].get<bool>());
  EXPECT_DOUBLE_EQ(spread["turnaround_ms"].get<double>(), 80.75);  // (150.5 + 10) / 2 + 0.5
  EXPECT_DOUBLE_EQ(spread["hidden_leg_rtt_ms"].get<double>(), 80.25);
  EXPECT_FALSE(spread.contains("hidden_leg_by_connect_wait"));
  // With the connection's wait beside them (an SSH client through a SOCKS relay sends its
  // banner once the relay has answered), one far round trip like the answers: it decides.
  const nlohmann::json waited =
      explained({80, 150, 151, 152, 190, 400}, "ssh", 0, false, {0, 10, 10, 10, 10, 10}, 151);
  EXPECT_EQ(waited["turnarounds_explained"], 1);
  EXPECT_FALSE(waited.contains("hidden_leg_lower_bound"));
  EXPECT_TRUE(waited["hidden_leg_by_connect_wait"].get<bool>());
  EXPECT_DOUBLE_EQ(waited["turnaround_ms"].get<double>(), 151);
  EXPECT_DOUBLE_EQ(waited["hidden_leg_rtt_ms"].get<double>(), 150.5);
  // A handshake's answer that waited on the fetch bounds nothing any more.
  const nlohmann::json checked = explained({80, 40, 41, 42, 43}, "tls", 0, true);
  EXPECT_DOUBLE_EQ(checked["turnaround_ms"].get<double>(), 40);
  EXPECT_DOUBLE_EQ(checked["hidden_leg_rtt_ms"].get<double>(), 39.5);
  // One answered at once still does, whatever the fetch fed later: the flow stays near
  // (read by the lower quartile alone, it rested on the fed wait and gave no reading).
  const nlohmann::json quick = explained({2, 80, 300, 500, 600}, "tls", 1, true);
  EXPECT_EQ(quick["turnarounds_explained"], 1);
  EXPECT_DOUBLE_EQ(quick["turnaround_ms"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(quick["hidden_leg_rtt_ms"].get<double>(), 1.5);
  EXPECT_FALSE(explained({2, 80, 300, 500, 600}, "tls", 1)["hidden_leg_rtt_ms"].is_number());
}

TEST(RelayHostStage, HiddenLegWaitsFedOverAConnectionKeptOpen) {
  // One connection to the responder carries every fetch; its record never comes before the
  // flows', but each answered request is told at once.
  for (const bool told : {false, true}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (int i = 0; i < 5; ++i) {
      if (told) {
        // Told at the answer's first segment (too early to have fed the wait), then at its
        // last: the later telling replaces the first.
        for (const double answered : {150.0, 175.0}) {
          Event x = RelayRecord(100, "10.1.0.5", "198.51.100.9", i, {});
          x.event_type = std::string(kExchangeEvent);
          x.body = {{"_exchanges_us", {{WaitUs(i, 102), WaitUs(i, answered), -1}}}};
          stage.Process(std::move(x), out);
        }
      }
      stage.Process(RelayRecord(i, "10.1.0.5", "198.51.100.7", i, WaitedFlow(i)), out);
    }
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), told ? 0u : 1u) << told;
    for (const Event& e : out)
      EXPECT_NE(e.event_type, kExchangeEvent);  // internal: never written out
  }
}

TEST(RelayHostStage, HiddenLegFetchesWhoseRecordsComeLaterStillExplain) {
  // Two flows' records before their fetches' (a fetch kept open outlives the flow), then a
  // third far flow: without the late fetches the last three flows are far.
  for (const bool late_fetches : {false, true}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, WaitedFlow(0)), out);
    stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, WaitedFlow(1)), out);
    if (late_fetches) {
      stage.Process(RelayRecord(101, "10.1.0.5", "198.51.100.7", 1.5, FetchFlow(0, 3, 76)), out);
      stage.Process(RelayRecord(102, "10.1.0.5", "198.51.100.7", 1.5, FetchFlow(1, 3, 76)), out);
    }
    stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 2, WaitedFlow(2)), out);
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), late_fetches ? 0u : 1u) << late_fetches;
    EXPECT_EQ(stage.stats().turnarounds_explained, late_fetches ? 2u : 0u);
  }
}

TEST(RelayHostStage, HiddenLegWaitsNotFedByOtherConnectionsStillCount) {
  // Connections of the host's around the waits that cannot have fed them: opened before the
  // wait, answered long before the client answered, answered after it, or still talking (a
  // TLS handshake of the laptop's own, whose client answers the ServerHello).
  struct Case {
    double opened, reply, next;
  };
  for (const auto& [opened, reply, next] :
       {Case{-5, 75, -1}, Case{2, 30, -1}, Case{2, 85, -1}, Case{2, 77, 78.5}}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (int i = 0; i < 3; ++i) {
      stage.Process(
          RelayRecord(100 + i, "10.1.0.5", "198.51.100.7", i, FetchFlow(i, opened, reply, next)),
          out);
      stage.Process(RelayRecord(i, "10.1.0.5", "198.51.100.7", i, WaitedFlow(i)), out);
    }
    EXPECT_EQ(Alerts(out, "hidden_leg").size(), 1u) << opened << " " << reply;
    EXPECT_EQ(stage.stats().turnarounds_explained, 0u);
  }
}

TEST(RelayHostStage, SiteBudgetDecides) {
  // 50 ms is local for the default budget (60 ms) but not for the Seattle site (40 ms).
  const nlohmann::json body = {{"app", "ssh"},
                               {"hidden_leg_rtt_ms", 50.0},
                               {"turnaround_samples_ms", {50, 50, 50, 50, 50, 50}}};
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, body), out);
  stage.Process(RelayRecord(2, "10.2.0.5", "198.51.100.7", 0, body), out);
  const auto alerts = Alerts(out, "hidden_leg");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.5");
}

// A flow the host opened (or answered): its round trip and the TTL of its SYN (SYN/ACK).
nlohmann::json LegRecord(bool originated, double rtt_ms, int ttl) {
  nlohmann::json hs = {{originated ? "originator_ms" : "responder_ms", rtt_ms},
                       {originated ? "originator_ttl" : "responder_ttl", ttl}};
  return {{"app", "tls"},
          {"handshake", hs},
          {originated ? "rtt_originator_ms" : "rtt_responder_ms", rtt_ms},
          {"rtt_samples", {12, 12}}};
}

TEST(RelayHostStage, RoutedRelayFindsFlowsEndingFarBeyondTheHost) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  // The laptop's own connection: 0.3 ms away, TTL 64. Forwarded ones: 120 ms, TTL 63.
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, LegRecord(true, 0.3, 64)), out);
  for (int i = 0; i < 4; ++i) {
    stage.Process(
        RelayRecord(10 + i, "10.1.0.5", "198.51.100.7", 1 + i, LegRecord(true, 120.0 + i, 63)),
        out);
  }
  EXPECT_TRUE(Alerts(out, "routed_relay").empty());  // four flows: not yet
  stage.Process(RelayRecord(20, "10.1.0.5", "198.51.100.8", 6, LegRecord(true, 124.0, 63)), out);
  const auto alerts = Alerts(out, "routed_relay");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->alert->signature_id, host::kSidRoutedRelay);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.5");
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 121.7);
  EXPECT_EQ(alerts[0]->evidence["ttl_host"], 64);
  EXPECT_EQ(alerts[0]->evidence["ttls_forwarded"], nlohmann::json::array({63}));
  EXPECT_EQ(alerts[0]->evidence["flows_forwarded"], 5);
  EXPECT_EQ(alerts[0]->evidence["host_flow_id"], 1);
  EXPECT_EQ(alerts[0]->evidence["recent_flows"][0]["dest_ip"], "198.51.100.8");
  EXPECT_EQ(alerts[0]->evidence["site"], "seattle");
}

TEST(RelayHostStage, RoutedRelayNeedsATtlTheHostDoesNotSend) {
  // Slow connections in the host's own TTL are a queue or a bad link, not forwarding.
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, LegRecord(true, 0.3, 64)), out);
  for (int i = 0; i < 8; ++i) {
    stage.Process(
        RelayRecord(10 + i, "10.1.0.5", "198.51.100.7", 1 + i, LegRecord(true, 150.0, 64)), out);
  }
  EXPECT_TRUE(Alerts(out, "routed_relay").empty());
}

TEST(RelayHostStage, RoutedRelayNeedsTheHostsOwnNearRoundTrip) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  // A host whose every flow is far is itself far (a travelling employee): no alert.
  for (int i = 0; i < 6; ++i) {
    stage.Process(RelayRecord(10 + i, "10.1.0.5", "198.51.100.7", i, LegRecord(true, 150.0, 63)),
                  out);
  }
  EXPECT_TRUE(Alerts(out, "routed_relay").empty());
  // Then the host answers a connection in 0.2 ms with TTL 64: it is near, the others are
  // forwarded. The budget counts from the host's own round trip (site budget 40 ms).
  stage.Process(RelayRecord(30, "10.1.0.9", "10.1.0.5", 7, LegRecord(false, 0.2, 64)), out);
  ASSERT_EQ(Alerts(out, "routed_relay").size(), 1u);
  EXPECT_DOUBLE_EQ(Alerts(out, "routed_relay")[0]->evidence["rtt_host_ms"].get<double>(), 0.2);

  // Forwarded flows within the budget of the host's own round trip are near.
  host::HostStage near(HostConfig());
  std::vector<Event> near_out;
  near.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, LegRecord(true, 20.0, 64)), near_out);
  for (int i = 0; i < 6; ++i) {
    near.Process(RelayRecord(10 + i, "10.1.0.5", "198.51.100.7", 1 + i, LegRecord(true, 55.0, 63)),
                 near_out);
  }
  EXPECT_TRUE(Alerts(near_out, "routed_relay").empty());
}

TEST(RelayHostStage, RoutedRelayForgetsFlowsOutsideTheWindow) {
  host::HostStage stage(HostConfig());  // window: 1 h
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, LegRecord(true, 0.3, 64)), out);
  for (int i = 0; i < 5; ++i) {
    // One forwarded flow every 20 minutes: never five within the hour.
    stage.Process(
        RelayRecord(10 + i, "10.1.0.5", "198.51.100.7", 20.0 * (i + 1), LegRecord(true, 120.0, 63)),
        out);
    stage.Process(RelayRecord(100 + i, "10.1.0.5", "198.51.100.9", 20.0 * (i + 1) + 1,
                              LegRecord(true, 0.3, 64)),
                  out);
  }
  EXPECT_TRUE(Alerts(out, "routed_relay").empty());
}

// A remote-control session on flow 7, driven from 203.0.113.9, then its relay record.
std::vector<Event> ControlledFromOutside(const std::string& app, const std::string& controlled,
                                         const nlohmann::json& record) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  Event session;
  session.event_type = "remote_session";
  session.ts = kT0;
  session.flow = RelayRecord(7, "203.0.113.9", controlled, 0, {}).flow;
  session.body = {{"app", app}, {"controlled", controlled}, {"controller", "203.0.113.9"}};
  stage.Process(session, out);
  stage.Process(RelayRecord(7, "203.0.113.9", controlled, 1, record), out);
  return out;
}

TEST(RelayHostStage, ControllerRttOfARemoteSession) {
  const std::vector<Event> out = ControlledFromOutside("vnc", "10.1.0.5",
                                                       {{"app", "other"},
                                                        {"rtt_originator_ms", 121.0},
                                                        {"rtt_responder_ms", 0.1},
                                                        {"rtt_samples", {250, 3}}});
  const Event* found = nullptr;
  for (const Event& e : out) {
    if (e.event_type == "relay")
      found = &e;
  }
  ASSERT_NE(found, nullptr);
  const Event& relay = *found;
  EXPECT_DOUBLE_EQ(relay.body["controller_rtt_ms"].get<double>(), 121);
  EXPECT_DOUBLE_EQ(relay.body["controller_distance_km"].get<double>(), 12100);
  const auto alerts = Alerts(out, "controller_rtt");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["controller"], "203.0.113.9");
}

// The controller's round trip from a record with the 15th percentile of its samples (a host
// outside the sites: the 60 ms default budget).
std::vector<Event> ControllerRecord(double floor_ms, std::optional<double> p15_ms) {
  nlohmann::json body = {{"rtt_originator_ms", floor_ms}, {"rtt_samples", {250, 3}}};
  body["_rtt_p15_ms"] = {p15_ms ? nlohmann::json(*p15_ms) : nlohmann::json(), 0.1};
  return ControlledFromOutside("vnc", "10.2.0.5", body);
}

// An 80 ms path with 8 ms of jitter each way both ways about its mean (a lab run held out
// of every earlier choice: seed 51 at 40 ms, docs/relay-quality.md "Seeds 51 and 52"): its
// floor read 56.6 ms, under the 60 ms budget, its 15th percentile 65.6.
TEST(RelayHostStage, ControllerRttOfAJitteryPathLeavesItsFloor) {
  const std::vector<Event> out = ControllerRecord(56.6, 65.6);
  const auto alerts = Alerts(out, "controller_rtt");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_rtt_ms"].get<double>(), 65.6);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_rtt_floor_ms"].get<double>(), 56.6);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_rtt_p15_ms"].get<double>(), 65.6);
  for (const Event& e : out)
    EXPECT_FALSE(e.body.contains("_rtt_p15_ms")) << e.event_type;
  // Without the percentile (fewer than 20 samples) the floor decides.
  EXPECT_TRUE(Alerts(ControllerRecord(56.6, std::nullopt), "controller_rtt").empty());
}

// A near controller behind a queue that holds nearly every sample: the percentile is the
// queue's, and the estimate moves at most a quarter above the floor.
TEST(RelayHostStage, ControllerRttOfAQueuedNearPathStaysNear) {
  const std::vector<Event> out = ControllerRecord(30, 150);
  EXPECT_TRUE(Alerts(out, "controller_rtt").empty());
  EXPECT_DOUBLE_EQ(out.back().body["controller_rtt_ms"].get<double>(), 37.5);
  // A percentile under the floor (the handshake leg was the least) leaves the floor.
  EXPECT_DOUBLE_EQ(ControllerRecord(30, 25).back().body["controller_rtt_ms"].get<double>(), 30);
}

// The controller 203.0.113.9 (RTT 8 ms) only forwards: the viewer's requests for the next
// update come `hidden_ms` later, from the person beyond it.
std::vector<Event> ControllerBeyondAForwarder(double hidden_ms, bool client_responder = false,
                                              nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json body = {{"app", "vnc"},
                         {"rtt_originator_ms", 8.0},
                         {"rtt_responder_ms", 0.1},
                         {"rtt_samples", {250, 3}},
                         {"turnaround_samples_ms", {8 + hidden_ms, 8.5 + hidden_ms, 9 + hidden_ms}},
                         {"turnaround_ms", 8 + hidden_ms},
                         {"hidden_leg_rtt_ms", hidden_ms}};
  if (client_responder)
    body["_client_responder"] = true;
  body.update(extra);
  return ControlledFromOutside("vnc", "10.1.0.5", body);
}

const nlohmann::json& RelayBody(const std::vector<Event>& out) {
  for (const Event& e : out) {
    if (e.event_type == "relay")
      return e.body;
  }
  static const nlohmann::json kNone;
  return kNone;
}

// 10.1.0.5 is in the Seattle site: a 40 ms budget.
TEST(RelayHostStage, AControllerThatOnlyForwardsIsJudgedByThePersonBeyondIt) {
  const std::vector<Event> out = ControllerBeyondAForwarder(90);
  const auto alerts = Alerts(out, "controller_rtt");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_rtt_ms"].get<double>(), 8);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_hidden_leg_ms"].get<double>(), 90);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["operator_rtt_ms"].get<double>(), 98);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["operator_distance_km"].get<double>(), 9800);
  EXPECT_DOUBLE_EQ(RelayBody(out)["operator_rtt_ms"].get<double>(), 98);
  EXPECT_FALSE(RelayBody(out).contains("_client_responder"));
  // A person near the forwarder (25 ms beyond it, 33 in all) is near.
  const std::vector<Event> near = ControllerBeyondAForwarder(25);
  EXPECT_TRUE(Alerts(near, "controller_rtt").empty());
  EXPECT_DOUBLE_EQ(RelayBody(near)["operator_rtt_ms"].get<double>(), 33);
  // Under half the budget the leg may be the client's own work (an SSH client's key
  // exchange): it adds nothing.
  EXPECT_FALSE(RelayBody(ControllerBeyondAForwarder(19)).contains("operator_rtt_ms"));
  // A jittery path seen by its floor: the answers exceed the floor by 25 ms but not the
  // peer's typical (smoothed) round trip, 30 ms.
  EXPECT_FALSE(RelayBody(ControllerBeyondAForwarder(25, false, {{"srtt_originator_ms", 30.0}}))
                   .contains("operator_rtt_ms"));
  // TLS (RDP) only by its handshake's answer: an RDP client's later answers wait on their own.
  EXPECT_FALSE(RelayBody(ControllerBeyondAForwarder(90, false, {{"app", "tls"}}))
                   .contains("operator_rtt_ms"));
  EXPECT_TRUE(RelayBody(ControllerBeyondAForwarder(
                            90, false, {{"app", "tls"}, {"handshake_turnaround_ms", 98.0}}))
                  .contains("operator_rtt_ms"));
  // So is RDP's standard security, by its MCS Connect Initial.
  EXPECT_FALSE(RelayBody(ControllerBeyondAForwarder(90, false, {{"app", "rdp"}}))
                   .contains("operator_rtt_ms"));
  EXPECT_TRUE(RelayBody(ControllerBeyondAForwarder(
                            90, false, {{"app", "rdp"}, {"handshake_turnaround_ms", 98.0}}))
                  .contains("operator_rtt_ms"));
  // Turnarounds of the controlled end (it dialled its viewer) say nothing of the controller.
  const std::vector<Event> reverse = ControllerBeyondAForwarder(90, true);
  EXPECT_TRUE(Alerts(reverse, "controller_rtt").empty());
  EXPECT_FALSE(RelayBody(reverse).contains("operator_rtt_ms"));
  EXPECT_FALSE(RelayBody(reverse).contains("_client_responder"));
}

TEST(RelayHostStage, NearControllerIsNoAlert) {
  const std::vector<Event> out = ControlledFromOutside(
      "rdp", "10.1.0.5", {{"rtt_originator_ms", 18.0}, {"rtt_samples", {250, 3}}});
  EXPECT_TRUE(Alerts(out, "controller_rtt").empty());
  EXPECT_DOUBLE_EQ(out.back().body["controller_rtt_ms"].get<double>(), 18);
}

nlohmann::json WithOns(const std::vector<double>& seconds) {
  nlohmann::json ons = nlohmann::json::array();
  for (double s : seconds)
    ons.push_back(absl::ToUnixMicros(kT0 + absl::Milliseconds(s * 1000)));
  return {{"app", "ssh"}, {"_on_times_us", ons}};
}

TEST(RelayHostStage, SteppingStoneFromOutsideThroughAHost) {
  std::vector<double> in, out_ons, other;
  for (int i = 0; i < 12; ++i) {
    in.push_back(i * 2.0);
    out_ons.push_back(i * 2.0 + 0.004);
    other.push_back(i * 2.0 + 0.9);
  }
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 1, WithOns(in)), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, WithOns(other)), out);
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
  stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 1, WithOns(out_ons)), out);
  const auto alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["inbound_flow_id"], 1);
  EXPECT_EQ(alerts[0]->evidence["outbound_flow_id"], 3);
  EXPECT_EQ(alerts[0]->evidence["correlated"], 12);

  // The same through an internal hop (an admin's jump host) is not alerted.
  host::HostStage inside(HostConfig());
  std::vector<Event> quiet;
  inside.Process(RelayRecord(1, "10.9.0.1", "10.1.0.5", 1, WithOns(in)), quiet);
  inside.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 1, WithOns(out_ons)), quiet);
  EXPECT_TRUE(Alerts(quiet, "stepping_stone").empty());
}

// An IP-KVM beside the laptop (or a second machine whose screen shows the laptop's): the far
// person's session goes to the device, 10.1.0.20, and their keys leave the laptop, 10.1.0.5,
// in its own ssh 6 ms later. The alert is the laptop's; the evidence names the device.
TEST(RelayHostStage, SteppingStoneAcrossHostsThroughADeviceBesideTheLaptop) {
  std::vector<double> in, out_ons;
  for (int i = 0; i < 12; ++i) {
    in.push_back(i * 2.0 + 0.2 * (i % 4));
    out_ons.push_back(i * 2.0 + 0.2 * (i % 4) + 0.006);
  }
  const auto ssh_out = [&](const std::string& app) {
    nlohmann::json body = WithOns(out_ons);
    body["app"] = app;
    return body;
  };
  const auto stones = [&](bool inbound_first, const std::string& laptop, const std::string& app,
                          bool across = true) {
    host::HostStageConfig config = HostConfig();
    config.relay.stepping_stone_across_hosts = across;
    host::HostStage stage(config);
    std::vector<Event> out;
    const Event kvm = RelayRecord(1, "203.0.113.9", "10.1.0.20", 1, WithOns(in));
    const Event egress = RelayRecord(2, laptop, "198.51.100.7", 1, ssh_out(app));
    stage.Process(inbound_first ? kvm : egress, out);
    stage.Process(inbound_first ? egress : kvm, out);
    std::vector<const Event*> found = Alerts(out, "stepping_stone");
    return found.empty() ? std::optional<Event>() : std::optional<Event>(*found[0]);
  };
  for (const bool inbound_first : {true, false}) {
    const std::optional<Event> a = stones(inbound_first, "10.1.0.5", "ssh");
    ASSERT_TRUE(a.has_value()) << inbound_first;
    EXPECT_EQ(a->host_ip->ToString(), "10.1.0.5");
    EXPECT_EQ(a->evidence["host"], "10.1.0.5");
    EXPECT_EQ(a->evidence["inbound_host"], "10.1.0.20");
    EXPECT_EQ(a->evidence["pairs_tested"], 1);
    EXPECT_EQ(a->evidence["controller"], "203.0.113.9");
    EXPECT_EQ(a->evidence["inbound_flow_id"], 1);
    EXPECT_EQ(a->evidence["outbound_flow_id"], 2);
    EXPECT_EQ(a->evidence["correlated"], 12);
  }
  // Only the laptop's SSH flows are paired across hosts; nor across sites; nor when off.
  EXPECT_FALSE(stones(true, "10.1.0.5", "tls").has_value());
  EXPECT_FALSE(stones(true, "10.2.0.5", "ssh").has_value());
  EXPECT_FALSE(stones(true, "10.1.0.5", "ssh", /*across=*/false).has_value());
}

// A device's 20 inbound ON periods (seconds) and a laptop's 10, four of which follow the
// device's within 80 ms by chance (about 10^-4).
std::pair<std::vector<double>, std::vector<double>> DeviceAndWeakFollower() {
  std::vector<double> in;
  for (int i = 0; i < 20; ++i)
    in.push_back(i * 3.0 + 0.4 * (i % 5));
  std::vector<double> weak;
  for (int k = 0; k < 10; ++k)
    weak.push_back(in[2 * k] + (k % 3 == 0 ? 0.01 : 1.0));
  return {in, weak};
}

// Forty laptops of a site type in their own SSH sessions while a far person's session to a
// device beside one of them comes in: every pair the kept flows make is one more chance. A
// laptop four of whose ten ON periods follow the device's by chance (about 10^-4) would be a
// stepping stone within one host, or as the only laptop; among 41 it is not, and only the
// laptop the device types into is alerted.
TEST(RelayHostStage, SteppingStoneAcrossHostsPaysForEveryPairTested) {
  const auto [in, weak] = DeviceAndWeakFollower();
  const auto weak_alone = [&](const std::string& inbound_host) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(RelayRecord(1, "203.0.113.9", inbound_host, 1, WithOns(in)), out);
    stage.Process(RelayRecord(2, "10.1.0.7", "198.51.100.7", 1, WithOns(weak)), out);
    return Alerts(out, "stepping_stone").size();
  };
  EXPECT_EQ(weak_alone("10.1.0.7"), 1u);   // through the laptop itself: one pair
  EXPECT_EQ(weak_alone("10.1.0.20"), 1u);  // across hosts, one pair tested
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.20", 1, WithOns(in)), out);
  for (int laptop = 0; laptop < 40; ++laptop) {
    std::vector<double> own;
    for (int k = 0; k < 20; ++k)
      own.push_back(in[k] + 1.0 + 0.02 * laptop);  // typing of their own, never within 80 ms
    stage.Process(
        RelayRecord(10 + laptop, absl::StrCat("10.1.1.", laptop), "198.51.100.7", 1, WithOns(own)),
        out);
  }
  stage.Process(RelayRecord(2, "10.1.0.7", "198.51.100.7", 1, WithOns(weak)), out);
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
  std::vector<double> typed;
  for (double t : in)
    typed.push_back(t + 0.004);
  stage.Process(RelayRecord(99, "10.1.0.5", "198.51.100.7", 1, WithOns(typed)), out);
  const std::vector<const Event*> alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.5");
  EXPECT_LT(alerts[0]->evidence["chance"].get<double>(), 1e-3 / 42);
  EXPECT_EQ(alerts[0]->evidence["pairs_tested"], 42);
  EXPECT_EQ(stage.stats().cross_host_flows, 43u);
}

// The same weak laptop after an hour of the site's SSH: 200 laptops kept 8 windows each over
// the last 50 minutes, and 3 type at the device's time. Only pairs whose times overlap can
// ever be tested, so only they divide the threshold: 4 pairs, not 1604, and the laptop four of
// whose ten ON periods follow the device's is found (among 1604 it would not be).
TEST(RelayHostStage, SteppingStoneAcrossHostsCountsOnlyPairsThatOverlap) {
  const auto at_minute = [](double minute, const std::vector<double>& seconds) {
    std::vector<double> shifted;
    for (double t : seconds)
      shifted.push_back(t + minute * 60);
    return shifted;
  };
  const auto [in, weak] = DeviceAndWeakFollower();
  std::vector<double> own;
  for (int k = 0; k < 20; ++k)
    own.push_back(in[k] + 1.0);  // typing of their own, never within 80 ms
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  constexpr int kLaptops = 200;
  for (int window = 0; window < 8; ++window) {
    const double minute = 1 + 6 * window;  // 1 to 43, each window a minute long
    for (int laptop = 0; laptop < kLaptops; ++laptop) {
      stage.Process(RelayRecord(1000 + window * kLaptops + laptop,
                                absl::StrCat("10.1.", 1 + laptop / 100, ".", laptop % 100),
                                "198.51.100.7", minute + 1, WithOns(at_minute(minute, own))),
                    out);
    }
  }
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.20", 51, WithOns(at_minute(50, in))), out);
  for (int laptop = 0; laptop < 3; ++laptop) {
    stage.Process(RelayRecord(10 + laptop, absl::StrCat("10.1.9.", laptop), "198.51.100.7", 51,
                              WithOns(at_minute(50, own))),
                  out);
  }
  EXPECT_EQ(stage.stats().cross_host_flows, 1u + 8 * kLaptops + 3);
  EXPECT_EQ(stage.stats().cross_host_flows_evicted, 0u);
  stage.Process(RelayRecord(2, "10.1.0.7", "198.51.100.7", 51, WithOns(at_minute(50, weak))), out);
  const std::vector<const Event*> alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.7");
  EXPECT_EQ(alerts[0]->evidence["inbound_host"], "10.1.0.20");
  EXPECT_EQ(alerts[0]->evidence["pairs_tested"], 4);
  EXPECT_GT(alerts[0]->evidence["chance"].get<double>(), 1e-3 / (2 + 8 * kLaptops + 3));
}

// A server of the site takes 300 sessions from outside after the far person's session to the
// device began: it keeps only its latest few, and the device's session is still there when the
// laptop's ssh comes.
TEST(RelayHostStage, SteppingStoneAcrossHostsOutlastsABusyServer) {
  std::vector<double> in, typed, browsing;
  for (int i = 0; i < 12; ++i) {
    in.push_back(i * 2.0 + 0.2 * (i % 4));
    typed.push_back(in.back() + 0.005);
    browsing.push_back(i * 2.0 + 1.0);
  }
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.20", 1, WithOns(in)), out);
  for (int i = 0; i < 300; ++i) {
    nlohmann::json body = WithOns(browsing);
    body["app"] = "tls";
    stage.Process(
        RelayRecord(100 + i, absl::StrCat("198.51.100.", i % 200), "10.1.0.30", 1, std::move(body)),
        out);
  }
  EXPECT_EQ(stage.stats().cross_host_flows, 1u + host::HostStage::kMaxCrossHostFlowsPerHost);
  EXPECT_EQ(stage.stats().cross_host_flows_evicted,
            300u - host::HostStage::kMaxCrossHostFlowsPerHost);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, WithOns(typed)), out);
  const std::vector<const Event*> alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["inbound_host"], "10.1.0.20");
  EXPECT_EQ(alerts[0]->evidence["pairs_tested"], 1 + host::HostStage::kMaxCrossHostFlowsPerHost);
}

// A large site: a thousand laptops' SSH windows come between the device's session and the
// laptop's (windows of long sessions interleave so). The SSH flows have a table of their own,
// so they do not push the session out; the laptop is found, and it pays for every pair.
TEST(RelayHostStage, SteppingStoneAcrossHostsAmongAThousandLaptops) {
  std::vector<double> in, typed;
  for (int i = 0; i < 20; ++i) {
    in.push_back(i * 3.0 + 0.4 * (i % 5));
    typed.push_back(in.back() + 0.004);
  }
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.20", 1, WithOns(in)), out);
  constexpr int kLaptops = 1000;
  for (int laptop = 0; laptop < kLaptops; ++laptop) {
    std::vector<double> own;
    for (int k = 0; k < 20; ++k)
      own.push_back(in[k] + 1.0 + 0.001 * laptop);  // typing of their own, never within 80 ms
    stage.Process(
        RelayRecord(10 + laptop, absl::StrCat("10.1.", 1 + laptop / 250, ".", laptop % 250),
                    "198.51.100.7", 1, WithOns(own)),
        out);
  }
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
  EXPECT_EQ(stage.stats().cross_host_flows, 1u + kLaptops);
  EXPECT_EQ(stage.stats().cross_host_flows_evicted, 0u);
  stage.Process(RelayRecord(9, "10.1.0.5", "198.51.100.7", 1, WithOns(typed)), out);
  const std::vector<const Event*> alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->host_ip->ToString(), "10.1.0.5");
  EXPECT_EQ(alerts[0]->evidence["inbound_host"], "10.1.0.20");
  EXPECT_EQ(alerts[0]->evidence["pairs_tested"], kLaptops + 1);
  EXPECT_LT(alerts[0]->evidence["chance"].get<double>(), 1e-3 / (kLaptops + 1));
}

// The host on a queued Wi-Fi (lab: 2 Mbit/s, its own download filling a 400 ms buffer): the
// operator's keys wait in the queue before the host relays them, so each outbound ON comes
// 180 ms after the inbound one. The flows' records say how far the host is (`_on_legs_ms`:
// [originator, responder]); the window grows by that, and without it the keys do not match.
TEST(RelayHostStage, SteppingStoneBehindTheHostsQueuedLink) {
  std::vector<double> in, out_ons;
  for (int i = 0; i < 12; ++i) {
    in.push_back(i * 2.0 + 0.3 * (i % 3));
    out_ons.push_back(i * 2.0 + 0.3 * (i % 3) + 0.18);
  }
  const auto stones = [&](std::optional<double> inbound_leg, std::optional<double> outbound_leg) {
    nlohmann::json in_body = WithOns(in);
    nlohmann::json out_body = WithOns(out_ons);
    // The inbound flow's host is its responder, the outbound flow's its originator.
    in_body["_on_legs_ms"] = {80.0, inbound_leg ? nlohmann::json(*inbound_leg) : nlohmann::json()};
    out_body["_on_legs_ms"] = {outbound_leg ? nlohmann::json(*outbound_leg) : nlohmann::json(),
                               10.0};
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 1, in_body), out);
    stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, out_body), out);
    std::vector<nlohmann::json> evidence;
    for (const Event& e : out)
      EXPECT_FALSE(e.body.contains("_on_legs_ms")) << e.event_type;
    for (const Event* a : Alerts(out, "stepping_stone"))
      evidence.push_back(a->evidence);
    return evidence;
  };
  const std::vector<nlohmann::json> queued = stones(150.0, 40.0);
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0]["correlated"], 12);
  EXPECT_DOUBLE_EQ(queued[0]["window_ms"].get<double>(), 230);
  EXPECT_DOUBLE_EQ(queued[0]["median_lag_ms"].get<double>(), 180);
  // Either flow's leg widens it: the keys wait on the way in and on the way out.
  EXPECT_EQ(stones(std::nullopt, 150.0).size(), 1u);
  // A host on a clean wire: the sensor's 80 ms window, which 180 ms lags miss.
  EXPECT_TRUE(stones(0.5, 0.5).empty());
  EXPECT_TRUE(stones(std::nullopt, std::nullopt).empty());
}

// An inbound stream from outside that is on every 240 ms (a chatty sync client) and the
// host's own browsing: a third of its ON periods fall in the stream's windows, as a third of
// the time is covered; no stepping stone. Seven ONs of typing that all match are one.
TEST(RelayHostStage, SteppingStoneNeedsMoreMatchesThanChanceGives) {
  // An inbound flow from outside and an outbound one of 10.1.0.5, ON times in seconds.
  const auto stones = [](const std::vector<double>& in, const std::vector<double>& out_ons) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 1, WithOns(in)), out);
    stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, WithOns(out_ons)), out);
    std::vector<double> chances;
    for (const Event* a : Alerts(out, "stepping_stone"))
      chances.push_back(a->evidence["chance"].get<double>());
    return chances;
  };
  std::vector<double> chatty, browsing, typing_in, typing_out;
  for (int i = 0; i < 250; ++i)
    chatty.push_back(i * 0.24);
  for (int i = 0; i < 30; ++i)
    browsing.push_back(i * 2.0 + 0.037 * (i % 7));
  for (int i = 0; i < 7; ++i) {
    typing_in.push_back(100 + i * 3.0);
    typing_out.push_back(100 + i * 3.0 + 0.005);
  }
  EXPECT_TRUE(stones(chatty, browsing).empty());
  const std::vector<double> typed = stones(typing_in, typing_out);
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_LT(typed[0], 1e-6);
}

// The stepping-stone evidence of a host stage given an inbound SSH flow's record, then an
// outbound one's (flows 1 and 2 of the host 10.1.0.5), with the packet test's window `delta`.
// `internal` is the records' field that must not be written out.
std::vector<nlohmann::json> SshSteppingStones(nlohmann::json inbound, nlohmann::json outbound,
                                              absl::Duration delta, const char* internal) {
  host::HostStageConfig config = HostConfig();
  config.relay.stepping_stone_packet_delta = delta;
  host::HostStage stage(config);
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 2, std::move(inbound)), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 2, std::move(outbound)), out);
  for (const Event& e : out)
    EXPECT_FALSE(e.body.contains(internal)) << e.event_type;
  std::vector<nlohmann::json> evidence;
  for (const Event* a : Alerts(out, "stepping_stone"))
    evidence.push_back(a->evidence);
  return evidence;
}

// Times `ms` after At(0), as a record's internal array of unix microseconds.
nlohmann::json TimesUs(const std::vector<double>& ms) {
  nlohmann::json times = nlohmann::json::array();
  for (double t : ms)
    times.push_back(absl::ToUnixMicros(At(t)));
  return times;
}

// An SSH record whose input has no ON periods and whose internal `field` holds `ms`.
nlohmann::json SshRecordWith(const char* field, const std::vector<double>& ms) {
  return {{"app", "ssh"}, {"_on_times_us", nlohmann::json::array()}, {field, TimesUs(ms)}};
}

nlohmann::json WithPackets(const std::vector<double>& ms) {
  return SshRecordWith("_packet_times_us", ms);
}

// A jump host between a far OpenSSH >= 9.5 client and a server: both flows carry a packet on
// every ~20 ms tick while the person types (one ON period each), and the host forwards each
// within a millisecond. The packets find it; the host's own chaffing session, on a clock of
// its own, does not; nor does anything with the packet test switched off.
TEST(RelayHostStage, SteppingStoneOfPacketsThroughAChaffingJumpHost) {
  std::vector<double> in, forwarded, own;
  for (int i = 0; i < 32; ++i) {
    in.push_back(60000 + i * 19.0 + (i % 3));
    forwarded.push_back(60000 + i * 19.0 + (i % 3) + 0.3);
    own.push_back(60007 + i * 19.7);
  }
  const auto stones = [&](const std::vector<double>& out_packets,
                          absl::Duration delta = absl::Milliseconds(5)) {
    return SshSteppingStones(WithPackets(in), WithPackets(out_packets), delta, "_packet_times_us");
  };
  const std::vector<nlohmann::json> jump = stones(forwarded);
  ASSERT_EQ(jump.size(), 1u);
  EXPECT_EQ(jump[0]["correlation"], "packets");
  EXPECT_EQ(jump[0]["inbound_flow_id"], 1);
  EXPECT_EQ(jump[0]["outbound_flow_id"], 2);
  // All but the last, which comes after the inbound sample's end.
  EXPECT_EQ(jump[0]["outbound_packets"], 31);
  EXPECT_EQ(jump[0]["correlated"], 31);
  EXPECT_DOUBLE_EQ(jump[0]["median_lag_ms"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(jump[0]["window_ms"].get<double>(), 5);
  EXPECT_LT(jump[0]["chance"].get<double>(), 1e-15);
  EXPECT_TRUE(stones(own).empty());
  EXPECT_TRUE(stones(forwarded, absl::ZeroDuration()).empty());
}

nlohmann::json WithOutputOns(const std::vector<double>& ms) {
  return SshRecordWith("_output_on_times_us", ms);
}

// ssh onward from a shell on the host, both clients OpenSSH >= 9.5: each re-times the keys on
// its own clock and chaffs through every pause, so neither input has ON periods or packets to
// match. The output the server sends the host's ssh is written to the controller's session at
// once: the outbound flow's output ON periods lead the inbound's by a fraction of a ms.
TEST(RelayHostStage, SteppingStoneOfOutputBehindChaffingClients) {
  std::vector<double> server_output, relayed, own;
  for (int i = 0; i < 9; ++i) {
    server_output.push_back(60000 + i * 2100.0 + 300 * (i % 3));
    relayed.push_back(server_output.back() + 0.3);
    own.push_back(60000 + i * 2250.0 + 170 * (i % 4) + 900);
  }
  const auto stones = [&](const std::vector<double>& inbound_output,
                          absl::Duration delta = absl::Milliseconds(5)) {
    return SshSteppingStones(WithOutputOns(inbound_output), WithOutputOns(server_output), delta,
                             "_output_on_times_us");
  };
  const std::vector<nlohmann::json> nested = stones(relayed);
  ASSERT_EQ(nested.size(), 1u);
  EXPECT_EQ(nested[0]["correlation"], "output_on_periods");
  EXPECT_EQ(nested[0]["inbound_flow_id"], 1);
  EXPECT_EQ(nested[0]["outbound_flow_id"], 2);
  EXPECT_EQ(nested[0]["inbound_output_ons"], 9);
  EXPECT_EQ(nested[0]["outbound_output_ons"], 9);
  EXPECT_EQ(nested[0]["correlated"], 9);
  EXPECT_DOUBLE_EQ(nested[0]["median_lag_ms"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(nested[0]["window_ms"].get<double>(), 5);  // no leg in these records
  EXPECT_LT(nested[0]["chance"].get<double>(), 1e-9);
  EXPECT_TRUE(stones(relayed, absl::ZeroDuration()).empty());  // off with the packet test
  // 20 ms behind: within the input's 80 ms, not a forwarder's window (two clocks in phase).
  std::vector<double> late;
  for (double t : server_output)
    late.push_back(t + 20);
  EXPECT_TRUE(stones(late).empty());
  // An independent session of the controller's, busy at the same times: no match.
  EXPECT_TRUE(stones(own).empty());
  // The output came before the server's: the host made it, it did not forward it.
  std::vector<double> before;
  for (double t : server_output)
    before.push_back(t - 300);
  EXPECT_TRUE(stones(before).empty());
}

// `ssh -J` through a host whose sshd coalesces what it forwards (no terminal, so Nagle): the
// server's output waits at the host until the far controller (180 ms round trip) has
// acknowledged the host's last segment, 0-180 ms. The inbound record says it coalesces
// (`_coalesced`) and carries its legs: the output window grows by the controller's round trip.
// Not coalescing, the same lags are beyond a forward's window; lags beyond the round trip, or
// an independent session's output, match nothing.
TEST(RelayHostStage, SteppingStoneOfOutputThroughACoalescingJumpHost) {
  std::vector<double> server_output, held, own, later;
  for (int i = 0; i < 9; ++i) {
    server_output.push_back(60000 + i * 2100.0 + 300 * (i % 3));
    held.push_back(server_output.back() + 8 + 19.0 * i);  // 8-160 ms
    own.push_back(60000 + i * 2250.0 + 170 * (i % 4) + 900);
    later.push_back(server_output.back() + 230 + 10.0 * i);
  }
  const auto stones = [&](const std::vector<double>& inbound_output, bool coalesced) {
    nlohmann::json in = WithOutputOns(inbound_output);
    in["_on_legs_ms"] = {180.0, 6.0};
    if (coalesced)
      in["_coalesced"] = true;
    return SshSteppingStones(in, WithOutputOns(server_output), absl::Milliseconds(5), "_coalesced");
  };
  const std::vector<nlohmann::json> jump = stones(held, true);
  ASSERT_EQ(jump.size(), 1u);
  EXPECT_EQ(jump[0]["correlation"], "output_on_periods");
  EXPECT_EQ(jump[0]["correlated"], 9);
  EXPECT_DOUBLE_EQ(jump[0]["median_lag_ms"].get<double>(), 84);
  EXPECT_DOUBLE_EQ(jump[0]["window_ms"].get<double>(), 191);  // 5 + the host's 6 + 180
  EXPECT_LT(jump[0]["chance"].get<double>(), 1e-6);
  EXPECT_TRUE(stones(held, false).empty());
  EXPECT_TRUE(stones(later, true).empty());
  EXPECT_TRUE(stones(own, true).empty());
}

nlohmann::json WithBurstStarts(const std::vector<double>& ms) {
  return SshRecordWith("_burst_starts_us", ms);
}

// A far person types through a remote desktop into the host's own ssh, which obfuscates
// keystroke timing: its chaff fills every pause up to 1-3 s past a key, so its input has no
// ON periods or packets of the person's. The key after a longer pause leaves at once, a few
// ms after the remote desktop brought it in: the outbound burst starts follow inbound ON
// periods. An independent session's bursts do not; nor do bursts before the input, too few
// bursts, or bursts an inbound flow's client sent.
TEST(RelayHostStage, SteppingStoneOfBurstStartsBehindAChaffingClient) {
  std::vector<double> input;  // the remote desktop's ON periods, ms
  for (int i = 0; i < 12; ++i)
    input.push_back(60000 + i * 1900.0 + 450 * (i % 4));
  std::vector<double> bursts, own, before;
  for (int i : {1, 4, 7, 10}) {  // the longer pauses' ends
    bursts.push_back(input[i] + 4 + i % 4);
    own.push_back(input[i] + 700);
    before.push_back(input[i] - 30);
  }
  const auto stones = [&](const std::vector<double>& outbound_bursts) {
    const nlohmann::json in = {{"app", "vnc"}, {"_on_times_us", TimesUs(input)}};
    return SshSteppingStones(in, WithBurstStarts(outbound_bursts), absl::Milliseconds(5),
                             "_burst_starts_us");
  };
  const std::vector<nlohmann::json> typed = stones(bursts);
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_EQ(typed[0]["correlation"], "burst_starts");
  EXPECT_EQ(typed[0]["inbound_flow_id"], 1);
  EXPECT_EQ(typed[0]["outbound_flow_id"], 2);
  EXPECT_EQ(typed[0]["inbound_ons"], 12);
  EXPECT_EQ(typed[0]["outbound_burst_starts"], 4);
  EXPECT_EQ(typed[0]["correlated"], 4);
  EXPECT_DOUBLE_EQ(typed[0]["median_lag_ms"].get<double>(), 5.5);
  EXPECT_DOUBLE_EQ(typed[0]["window_ms"].get<double>(), 80);  // the ON periods' window
  EXPECT_LT(typed[0]["chance"].get<double>(), 1e-5);
  EXPECT_TRUE(stones(own).empty());
  EXPECT_TRUE(stones(before).empty());
  EXPECT_TRUE(stones({bursts[0], bursts[1]}).empty());  // fewer than half of min_ons
  // Burst starts on the inbound flow: its client is the far one, not the host's.
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  const nlohmann::json outbound = {{"app", "ssh"}, {"_on_times_us", TimesUs(input)}};
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 2, WithBurstStarts(bursts)), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 2, outbound), out);
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
}

// A far person types through a remote desktop into the host's own chaffing ssh, pausing too
// little for burst starts: what the server sends (each command's output) the host draws, and
// its remote desktop sends the person within tens of ms. The outbound flow's output ON periods
// lead the inbound flow's screen updates. An independent screen's updates, updates before the
// output, a screen busy all the time, or too few outputs: no match.
TEST(RelayHostStage, SteppingStoneOfOutputShownOnAScreen) {
  std::vector<double> outputs, updates, other, early, busy;
  for (int i = 0; i < 6; ++i) {
    outputs.push_back(60000 + i * 3100.0 + 400 * (i % 3));
    updates.push_back(outputs.back() + 12 + 5 * (i % 4));
    early.push_back(outputs.back() - 60);
  }
  for (int i = 0; i < 60; ++i) {  // the echoes of the person's keys, 3 a second
    updates.push_back(60150 + i * 330.0);
    other.push_back(60150 + i * 330.0);
    early.push_back(60150 + i * 330.0);
  }
  for (int i = 0; i < 400; ++i)  // a video playing: an update every 50 ms
    busy.push_back(60000 + i * 50.0);
  for (auto* v : {&updates, &early})
    std::sort(v->begin(), v->end());
  const auto stones = [&](const std::vector<double>& screen, const std::vector<double>& output) {
    const nlohmann::json in = {{"app", "tls"},
                               {"_on_times_us", nlohmann::json::array()},
                               {"_update_times_us", TimesUs(screen)}};
    return SshSteppingStones(in, WithOutputOns(output), absl::Milliseconds(5), "_update_times_us");
  };
  const std::vector<nlohmann::json> typed = stones(updates, outputs);
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_EQ(typed[0]["correlation"], "shown_output");
  EXPECT_EQ(typed[0]["inbound_flow_id"], 1);
  EXPECT_EQ(typed[0]["outbound_flow_id"], 2);
  EXPECT_EQ(typed[0]["inbound_screen_updates"], 66);
  EXPECT_EQ(typed[0]["outbound_output_ons"], 6);
  EXPECT_EQ(typed[0]["correlated"], 6);
  EXPECT_DOUBLE_EQ(typed[0]["median_lag_ms"].get<double>(), 17);
  EXPECT_DOUBLE_EQ(typed[0]["window_ms"].get<double>(), 80);  // the ON periods' window
  EXPECT_LT(typed[0]["chance"].get<double>(), 1e-3);  // the echoes cover a quarter of the time
  EXPECT_TRUE(stones(other, outputs).empty());
  EXPECT_TRUE(stones(early, outputs).empty());
  EXPECT_TRUE(stones(busy, outputs).empty());
  EXPECT_TRUE(stones(updates, {outputs[0], outputs[1]}).empty());  // fewer than half of min_ons
  // The screen on the outbound flow and the output on the inbound one: no relay that way.
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  const nlohmann::json screen = {{"app", "tls"},
                                 {"_on_times_us", nlohmann::json::array()},
                                 {"_update_times_us", TimesUs(updates)}};
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 2, WithOutputOns(outputs)), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 2, screen), out);
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
}

// The operator opens the relayed connection ten minutes into the inbound session: only the
// inbound flow's later window can correlate with it.
TEST(RelayHostStage, SteppingStoneLateInALongSession) {
  std::vector<double> early, late_in, late_out;
  for (int i = 0; i < 12; ++i) {
    early.push_back(i * 2.0);
    late_in.push_back(600 + i * 2.0);
    late_out.push_back(600 + i * 2.0 + 0.004);
  }
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(RelayRecord(1, "203.0.113.9", "10.1.0.5", 2, WithOns(early)), out);
  stage.Process(RelayRecord(3, "10.1.0.5", "198.51.100.7", 12, WithOns(late_out)), out);
  EXPECT_TRUE(Alerts(out, "stepping_stone").empty());
  Event window = RelayRecord(1, "203.0.113.9", "10.1.0.5", 12, WithOns(late_in));
  window.event_type = std::string(kOnWindowEvent);
  const std::size_t before = out.size();
  stage.Process(window, out);
  const auto alerts = Alerts(out, "stepping_stone");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]->evidence["inbound_flow_id"], 1);
  EXPECT_EQ(alerts[0]->evidence["outbound_flow_id"], 3);
  for (std::size_t i = before; i < out.size(); ++i) {
    EXPECT_NE(out[i].event_type, kOnWindowEvent);  // internal: never written out
  }
}

bool AnyRecordHas(const std::vector<Event>& out, const char* field) {
  for (const Event& e : out) {
    if (e.event_type == "relay" && e.body.contains(field))
      return true;
  }
  return false;
}

// The typing baseline: a laptop's SSH reactions, first its person's own (the history), then
// windows of later ones. The Seattle site's budget is 40 ms.
// Smaller than the defaults (600, windows of 60 up to 1920, 0.001), so that a few records
// reach a decision.
host::HostStageConfig TypingConfig() {
  host::HostStageConfig c = HostConfig();
  c.relay.typing_baseline_samples = 60;
  c.relay.typing_window_samples = 30;
  c.relay.typing_max_p = 0.01;
  return c;
}

Event TypingRecord(std::uint64_t id, double minute, const std::vector<double>& reactions) {
  return RelayRecord(id, "10.1.0.5", "198.51.100.7", minute,
                     {{"app", "ssh"}, {"_reactions_ms", reactions}});
}

std::vector<Event> TypingHistoryThen(host::HostStage& stage, double added_ms,
                                     bool as_window = false) {
  std::vector<Event> out;
  stage.Process(TypingRecord(1, 0, Person(1, 60)), out);
  for (int w = 0; w < 4; ++w) {
    Event e = TypingRecord(2, 60 + w, Person(10 + w, 15, added_ms));
    if (as_window)
      e.event_type = std::string(kOnWindowEvent);
    stage.Process(e, out);
  }
  return out;
}

TEST(RelayHostStage, TypingBaselineOfTheSamePersonIsQuiet) {
  host::HostStage stage(TypingConfig());
  const std::vector<Event> out = TypingHistoryThen(stage, 0);
  EXPECT_TRUE(Alerts(out, "keystrokes").empty());
  EXPECT_FALSE(AnyRecordHas(out, "_reactions_ms"));  // internal: never written out
  EXPECT_EQ(stage.stats().typing_profiles, 1u);
}

TEST(RelayHostStage, TypingBaselineFindsTheScreenSeenFromFar) {
  host::HostStage stage(TypingConfig());
  const std::vector<Event> out = TypingHistoryThen(stage, 250);
  const auto alerts = Alerts(out, "keystrokes");
  ASSERT_EQ(alerts.size(), 1u);  // then deduplicated
  const Event& a = *alerts[0];
  EXPECT_EQ(a.alert->signature_id, host::kSidTypingShift);
  EXPECT_EQ(a.alert->severity, 3);
  EXPECT_EQ(a.evidence["method"], "keystrokes");
  EXPECT_NEAR(a.evidence["reaction_shift_ms"].get<double>(), 250, 120);
  EXPECT_LE(a.evidence["p_value"].get<double>(), 0.01);
  EXPECT_EQ(a.evidence["baseline_samples"], 60);
  EXPECT_EQ(a.evidence["window_samples"], 30);
  EXPECT_EQ(a.evidence["local_rtt_ms"], 40.0);
  EXPECT_EQ(a.evidence["site"], "seattle");

  // The same reactions in the windows of a long session count as well.
  host::HostStage windows(TypingConfig());
  EXPECT_EQ(Alerts(TypingHistoryThen(windows, 250, true), "keystrokes").size(), 1u);
}

// A shift a few times smaller than the person's spread (100 ms against about 420) hides in
// one window and shows over four: over 20 people, windows up to 400 reactions find more of
// them than windows of 50 alone, though the threshold is split between the windows tested.
TEST(RelayHostStage, TypingSmallShiftShowsOverLongerWindows) {
  // The window of the first alert, 0 without one; its p-value in *p_value.
  const auto alerted = [](int longest, std::uint64_t seed, double* p_value) {
    host::HostStageConfig c = TypingConfig();
    c.relay.typing_baseline_samples = 200;
    c.relay.typing_window_samples = 50;
    c.relay.typing_longest_window_samples = longest;
    host::HostStage stage(c);
    std::vector<Event> out;
    stage.Process(TypingRecord(1, 0, Person(seed, 200)), out);
    for (int w = 0; w < 8; ++w)
      stage.Process(TypingRecord(2, 60 + w, Person(seed * 100 + w, 25, 100)), out);
    const auto alerts = Alerts(out, "keystrokes");
    if (alerts.empty())
      return 0;
    *p_value = alerts[0]->evidence["p_value"].get<double>();
    return alerts[0]->evidence["window_samples"].get<int>();
  };
  int short_only = 0;
  int longer = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    double p = 1;
    const bool short_found = alerted(50, seed, &p) != 0;
    short_only += short_found;
    const int window = alerted(400, seed, &p);
    if (window == 0)
      continue;
    ++longer;
    // The threshold is split between the window sizes tested: 50, 100, ... up to this one.
    EXPECT_LE(p, 0.01 / (1 + std::log2(window / 50.0))) << seed;
    if (!short_found) {
      EXPECT_GT(window, 50) << seed;  // what one window missed, a longer one decided
    }
  }
  EXPECT_GE(longer, short_only + 3) << short_only;  // 19 against 15
  EXPECT_GE(longer, 17);
}

// A person who thinks for 0.6-2 s before each command (the lab's `steady` typist: a
// log-normal reaction of 250-600 ms, the thinking, then the first key's 80-250 ms).
std::vector<double> Thinker(std::uint64_t seed, int n, double added_ms = 0) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> react(std::log(360.0), 0.25);
  std::uniform_real_distribution<double> think(600, 2000);
  std::uniform_real_distribution<double> key(80, 250);
  std::vector<double> v;
  for (int i = 0; i < n; ++i)
    v.push_back(std::clamp(react(rng), 250.0, 600.0) + think(rng) + key(rng) + added_ms);
  return v;
}

// With the defaults (history 600, windows of 60 up to 1920, p <= 0.001), a relay of a few
// tens of ms (90 ms more per reaction against seconds of thinking) hides in one window and
// is found over hundreds of reactions; the same person near stays quiet as long.
TEST(RelayHostStage, TypingDefaultsFindATensOfMsRelayOverHundredsOfReactions) {
  for (double added : {0.0, 90.0}) {
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    for (int i = 0; i < 10; ++i)
      stage.Process(TypingRecord(1, i, Thinker(1 + i, 60)), out);
    for (int i = 0; i < 24; ++i)
      stage.Process(TypingRecord(2, 60 + i, Thinker(100 + i, 60, added)), out);
    std::size_t judged = 0;
    int first_far_window = 0;
    for (const Event& e : out) {
      if (e.event_type != "typing")
        continue;
      ++judged;
      EXPECT_EQ(e.body["baseline_samples"], 600);
      if (e.body["verdict"] == "far" && first_far_window == 0)
        first_far_window = e.body["window_samples"].get<int>();
    }
    // Not from one window: the first to decide holds hundreds of reactions. (Once found,
    // the history stops learning, and a short slow stretch may say far too.)
    if (first_far_window != 0) {
      EXPECT_GE(first_far_window, 240);
    }
    EXPECT_EQ(judged, 47u);  // every 30 reactions once the first window of 60 is full
    const auto alerts = Alerts(out, "keystrokes");
    if (added == 0) {
      EXPECT_TRUE(alerts.empty());
      continue;
    }
    ASSERT_EQ(alerts.size(), 1u);
    EXPECT_GE(alerts[0]->evidence["reaction_shift_ms"].get<double>(), 40);  // Seattle's budget
    EXPECT_LE(alerts[0]->evidence["p_value"].get<double>(), 0.001 / 3);
  }
}

// Hours of one unchanging person (170 records of 60 reactions, the longest window full for
// most of them): the history keeps renewing from the same person, so the longest window's
// shift stays near zero on average and nothing alerts. Renewing it only after windows that
// looked near kept the histories that were low by chance: +20..+60 ms here.
TEST(RelayHostStage, TypingHistoryOfAnUnchangingPersonDoesNotDrift) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  for (int i = 0; i < 170; ++i)
    stage.Process(TypingRecord(1 + i / 20, i, Thinker(1 + i, 60)), out);
  double sum = 0;
  int longest = 0;
  for (const Event& e : out) {
    if (e.event_type == "typing" && e.body["window_samples"] == 1920) {
      sum += e.body["reaction_shift_ms"].get<double>();
      ++longest;
    }
  }
  ASSERT_GT(longest, 200);
  EXPECT_LT(std::abs(sum / longest), 15.0) << "mean shift over " << longest << " judgements";
  EXPECT_TRUE(Alerts(out, "keystrokes").empty());
}

// A relay that shows stays out of the history: long after its reactions left the longest
// window (120 here), the windows still say far.
TEST(RelayHostStage, TypingHistoryDoesNotLearnARelayItShows) {
  host::HostStageConfig c = TypingConfig();
  c.relay.typing_longest_window_samples = 120;
  host::HostStage stage(c);
  std::vector<Event> out;
  stage.Process(TypingRecord(1, 0, Person(1, 60)), out);
  for (int w = 0; w < 20; ++w)
    stage.Process(TypingRecord(2, 60 + w, Person(10 + w, 30, 250)), out);
  std::vector<std::string> verdicts;
  for (const Event& e : out) {
    if (e.event_type == "typing")
      verdicts.push_back(e.body["verdict"].get<std::string>());
  }
  ASSERT_EQ(verdicts.size(), 39u);  // 600 reactions, judged every 15 once the first 30 are in
  const auto first_far = std::find(verdicts.begin(), verdicts.end(), "far");
  ASSERT_NE(first_far, verdicts.end());
  EXPECT_EQ(std::count(first_far, verdicts.end(), "far"), verdicts.end() - first_far);
}

TEST(RelayHostStage, TypingShiftBelowTheLocalBudgetIsQuiet) {
  host::HostStage stage(TypingConfig());
  // 20 ms later every time: real, but within the site's 40 ms of local round trip.
  EXPECT_TRUE(Alerts(TypingHistoryThen(stage, 20), "keystrokes").empty());
  host::HostStageConfig off = TypingConfig();
  off.relay.methods.keystrokes = false;
  host::HostStage disabled(off);
  const std::vector<Event> out = TypingHistoryThen(disabled, 250);
  EXPECT_TRUE(Alerts(out, "keystrokes").empty());
  EXPECT_FALSE(AnyRecordHas(out, "_reactions_ms"));
  EXPECT_EQ(disabled.stats().typing_profiles, 0u);
}

TEST(RelayHostStage, TypingBaselineSurvivesARestart) {
  char path[] = "/tmp/relay_typing_stateXXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    host::HostStage stage(TypingConfig());
    std::vector<Event> out;
    stage.Process(TypingRecord(1, 0, Person(1, 60)), out);
    ASSERT_TRUE(stage.SaveState(path).ok());
  }
  host::HostStage restarted(TypingConfig());
  ASSERT_TRUE(restarted.LoadState(path).ok());
  EXPECT_EQ(restarted.stats().typing_profiles, 1u);
  std::vector<Event> out;
  for (int w = 0; w < 2; ++w)
    restarted.Process(TypingRecord(2, 60 + w, Person(10 + w, 15, 250)), out);
  EXPECT_EQ(Alerts(out, "keystrokes").size(), 1u);  // judged against the kept history
  // The verdict is kept too: a restart in the middle of a relay does not let it into the
  // history.
  ASSERT_TRUE(restarted.SaveState(path).ok());
  std::ifstream saved_file(path);
  const nlohmann::json saved = nlohmann::json::parse(saved_file);
  EXPECT_EQ(saved["typing_profiles"]["10.1.0.5"]["far"], true);

  // A damaged profile is a clear error, and leaves no half-loaded baseline.
  FILE* f = std::fopen(path, "w");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"format":"relaywatch-scores","hosts":{},)"
             R"("typing_profiles":{"10.1.0.5":{"person":"","baseline_ms":["x"]}}})",
             f);
  std::fclose(f);
  host::HostStage damaged(TypingConfig());
  const absl::Status status = damaged.LoadState(path);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("bad typing profile"), std::string::npos) << status;
  EXPECT_EQ(damaged.stats().typing_profiles, 0u);
  std::remove(path);
}

TEST(RelayHostStage, TypingProfilesAreBounded) {
  host::HostStageConfig c = TypingConfig();
  c.max_hosts = 2;
  host::HostStage stage(c);
  std::vector<Event> out;
  for (int h = 0; h < 3; ++h) {
    stage.Process(RelayRecord(h + 1, "10.1.0." + std::to_string(h + 1), "198.51.100.7", h,
                              {{"app", "ssh"}, {"_reactions_ms", Person(h, 5)}}),
                  out);
  }
  EXPECT_EQ(stage.stats().typing_profiles, 2u);
  EXPECT_EQ(stage.stats().typing_profiles_evicted, 1u);
}

host::HostStageConfig HostConfigWithMethods(RelayMethods methods) {
  host::HostStageConfig c = HostConfig();
  c.relay.methods = methods;
  return c;
}

// Three hosts' worth of evidence, one per method: a far hidden leg from 10.1.0.5, a far
// controller of 10.1.0.6, and a stepping stone through 10.1.0.7.
std::vector<Event> EveryMethodsEvidence(const RelayMethods& methods) {
  host::HostStage stage(HostConfigWithMethods(methods));
  std::vector<Event> out;
  const nlohmann::json slow = {
      {"app", "tls"}, {"hidden_leg_rtt_ms", 150.0}, {"turnaround_samples_ms", {150, 151, 152}}};
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, slow), out);
  stage.Process(RelayRecord(2, "10.1.0.5", "198.51.100.7", 1, slow), out);

  Event session;
  session.event_type = "remote_session";
  session.ts = kT0;
  session.flow = RelayRecord(7, "203.0.113.9", "10.1.0.6", 0, {}).flow;
  session.body = {{"app", "vnc"}, {"controlled", "10.1.0.6"}, {"controller", "203.0.113.9"}};
  stage.Process(session, out);
  stage.Process(RelayRecord(7, "203.0.113.9", "10.1.0.6", 1,
                            {{"app", "other"},
                             {"rtt_originator_ms", 121.0},
                             {"rtt_responder_ms", 0.1},
                             {"rtt_samples", {250, 3}}}),
                out);

  std::vector<double> in, out_ons;
  for (int i = 0; i < 12; ++i) {
    in.push_back(i * 2.0);
    out_ons.push_back(i * 2.0 + 0.004);
  }
  stage.Process(RelayRecord(11, "203.0.113.9", "10.1.0.7", 1, WithOns(in)), out);
  stage.Process(RelayRecord(12, "10.1.0.7", "198.51.100.7", 1, WithOns(out_ons)), out);

  stage.Process(RelayRecord(20, "10.1.0.8", "198.51.100.7", 1, LegRecord(true, 0.3, 64)), out);
  for (int i = 0; i < 5; ++i) {
    stage.Process(RelayRecord(21 + i, "10.1.0.8", "198.51.100.7", 2, LegRecord(true, 130.0, 127)),
                  out);
  }
  return out;
}

TEST(RelayHostStage, EveryMethodAlertsByDefault) {
  const std::vector<Event> out = EveryMethodsEvidence({});
  EXPECT_EQ(Alerts(out, "hidden_leg").size(), 1u);
  EXPECT_EQ(Alerts(out, "controller_rtt").size(), 1u);
  EXPECT_EQ(Alerts(out, "stepping_stone").size(), 1u);
  EXPECT_EQ(Alerts(out, "routed_relay").size(), 1u);
  EXPECT_TRUE(AnyRecordHas(out, "controller_rtt_ms"));
}

TEST(RelayHostStage, DisabledMethodsDoNotAlertAndTheOthersStillDo) {
  const std::vector<Event> no_hidden = EveryMethodsEvidence({.hidden_leg = false});
  EXPECT_TRUE(Alerts(no_hidden, "hidden_leg").empty());
  EXPECT_EQ(Alerts(no_hidden, "controller_rtt").size(), 1u);
  EXPECT_EQ(Alerts(no_hidden, "stepping_stone").size(), 1u);

  const std::vector<Event> no_controller = EveryMethodsEvidence({.controller_rtt = false});
  EXPECT_TRUE(Alerts(no_controller, "controller_rtt").empty());
  EXPECT_FALSE(AnyRecordHas(no_controller, "controller_rtt_ms"));
  EXPECT_FALSE(AnyRecordHas(no_controller, "controller_distance_km"));
  EXPECT_EQ(Alerts(no_controller, "hidden_leg").size(), 1u);
  EXPECT_EQ(Alerts(no_controller, "stepping_stone").size(), 1u);

  const std::vector<Event> no_stones = EveryMethodsEvidence({.stepping_stone = false});
  EXPECT_TRUE(Alerts(no_stones, "stepping_stone").empty());
  EXPECT_EQ(Alerts(no_stones, "hidden_leg").size(), 1u);
  EXPECT_EQ(Alerts(no_stones, "controller_rtt").size(), 1u);
  EXPECT_FALSE(AnyRecordHas(no_stones, "_on_times_us"));

  const std::vector<Event> no_routed = EveryMethodsEvidence({.routed_relay = false});
  EXPECT_TRUE(Alerts(no_routed, "routed_relay").empty());
  EXPECT_EQ(Alerts(no_routed, "hidden_leg").size(), 1u);
  EXPECT_EQ(Alerts(no_routed, "controller_rtt").size(), 1u);

  const std::vector<Event> none = EveryMethodsEvidence({false, false, false, false, false});
  for (const char* method : {"hidden_leg", "controller_rtt", "stepping_stone", "routed_relay"})
    EXPECT_TRUE(Alerts(none, method).empty()) << method;
}

// ---- ICE checks in UDP flows -------------------------------------------------------------

using stun_wire::IceAnswer;
using stun_wire::IceCheck;
using stun_wire::InChannel;
using stun_wire::InIndication;
using stun_wire::XorPeerAddress;

// A STUN message of `type` (0x0001 Binding request, 0x0101 its success response, 0x0003
// Allocate request) whose transaction id starts with `id`.
std::string Stun(std::uint16_t type, std::uint8_t id, bool ice = false) {
  return stun_wire::Message(type, id, ice);
}
std::span<const std::uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(RelayStun, AnIceCheckIsTimedByItsAnswer) {
  StunRtt stun;
  stun.OnDatagram(At(0), 0, Bytes(IceCheck(1)));
  stun.OnDatagram(At(80), 1, Bytes(IceAnswer(1)));
  stun.OnDatagram(At(100), 1, Bytes(IceCheck(2)));  // the far agent checks too
  stun.OnDatagram(At(100.3), 0, Bytes(IceAnswer(2)));
  ASSERT_EQ(stun.rtt(0).count(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(0).floor()), 80);  // the responder's leg
  ASSERT_EQ(stun.rtt(1).count(), 1u);
  EXPECT_NEAR(ToMs(*stun.rtt(1).floor()), 0.3, 1e-9);  // the originator's
  EXPECT_EQ(stun.checks(), 2u);
  EXPECT_EQ(stun.answered(), 2u);
  EXPECT_FALSE(stun.via_turn());
}

TEST(RelayStun, OnlyIceChecksAnsweredOnceCount) {
  StunRtt stun;
  // A reflexive-address lookup (no credentials) and a TURN Allocate: the server answers.
  stun.OnDatagram(At(0), 0, Bytes(Stun(0x0001, 1)));
  stun.OnDatagram(At(5), 1, Bytes(IceAnswer(1)));
  stun.OnDatagram(At(10), 0, Bytes(Stun(0x0003, 2, true)));
  stun.OnDatagram(At(15), 1, Bytes(Stun(0x0103, 2)));
  // A check sent again keeps its id: which copy did the answer follow? (Karn)
  stun.OnDatagram(At(20), 0, Bytes(IceCheck(3)));
  stun.OnDatagram(At(520), 0, Bytes(IceCheck(3)));
  stun.OnDatagram(At(600), 1, Bytes(IceAnswer(3)));
  // An answer going the same way as its request, to an unknown id, or a second copy.
  stun.OnDatagram(At(700), 0, Bytes(IceCheck(4)));
  stun.OnDatagram(At(710), 0, Bytes(IceAnswer(4)));
  stun.OnDatagram(At(720), 1, Bytes(IceAnswer(9)));
  stun.OnDatagram(At(780), 1, Bytes(IceAnswer(4)));
  stun.OnDatagram(At(790), 1, Bytes(IceAnswer(4)));
  // Media and garbage are ignored.
  stun.OnDatagram(At(800), 0, Bytes(std::string("\x80\x6f", 2) + std::string(100, 'r')));
  stun.OnDatagram(At(801), 0, Bytes(IceCheck(5).substr(0, 30)));
  EXPECT_EQ(stun.checks(), 2u);
  EXPECT_EQ(stun.resent(), 1u);
  ASSERT_EQ(stun.rtt(0).count(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(0).floor()), 80);
  EXPECT_EQ(stun.rtt(1).count(), 0u);
}

TEST(RelayStun, ChecksThroughATurnChannelAreTimedEndToEnd) {
  StunRtt stun;
  EXPECT_TRUE(StunRtt::Carries(Bytes(InChannel(IceCheck(1)))));
  EXPECT_FALSE(StunRtt::Carries(Bytes(InChannel(std::string(40, '\x80')))));
  stun.OnDatagram(At(0), 0, Bytes(InChannel(IceCheck(1))));
  stun.OnDatagram(At(150), 1, Bytes(InChannel(IceAnswer(1))));
  ASSERT_EQ(stun.rtt(0).count(), 1u);
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(0).floor()), 150);
  EXPECT_TRUE(stun.via_turn());
  EXPECT_FALSE(stun.turn_peer().has_value());  // its binding was not seen
}

TEST(RelayStun, ChecksInTurnIndicationsAreTimedAndNameTheirPeer) {
  StunRtt stun;
  const std::string peer = XorPeerAddress(203, 0, 113, 9, 50000);
  const std::string send = InIndication(stun_wire::kSendIndication, peer, IceCheck(1));
  EXPECT_TRUE(StunRtt::Carries(Bytes(send)));
  // Before a channel is bound: a Send indication out, a Data indication back.
  stun.OnDatagram(At(0), 0, Bytes(send));
  stun.OnDatagram(At(120), 1, Bytes(InIndication(stun_wire::kDataIndication, peer, IceAnswer(1))));
  // The client's own transaction with the server (answered by it) and media for the peer:
  // neither is a check.
  stun.OnDatagram(At(130), 0, Bytes(stun_wire::ChannelBind(0x4001, peer)));
  stun.OnDatagram(At(135), 1, Bytes(Stun(0x0109, 0xcb)));
  stun.OnDatagram(At(140), 0,
                  Bytes(InIndication(stun_wire::kSendIndication, peer,
                                     std::string("\x80\x60", 2) + std::string(100, 'v'))));
  // On the bound channel, which names only the channel.
  stun.OnDatagram(At(2500), 0, Bytes(InChannel(IceCheck(2), 0x4001)));
  stun.OnDatagram(At(2610), 1, Bytes(InChannel(IceAnswer(2), 0x4001)));
  EXPECT_EQ(stun.checks(), 2u);
  ASSERT_EQ(stun.rtt(0).count(), 2u);
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(0).floor()), 110);
  EXPECT_TRUE(stun.via_turn());
  ASSERT_TRUE(stun.turn_peer().has_value());
  EXPECT_EQ(stun.turn_peer()->ip.ToString(), "203.0.113.9");
  EXPECT_EQ(stun.turn_peer()->port, 50000);
  // An indication must name its peer (RFC 8656 11.1): without, its data is not looked into.
  stun.OnDatagram(At(5000), 0,
                  Bytes(stun_wire::Message(stun_wire::kSendIndication, 7, false,
                                           stun_wire::Attribute(0x0013, IceCheck(3)))));
  EXPECT_EQ(stun.checks(), 2u);
}

TEST(RelayStun, ChecksGiveTheirLowQuantileFromTen) {
  // Sparse, clean samples: the 15th percentile from StunRtt::kQuantileAfter of them on.
  StunRtt stun;
  const double rtts[] = {60, 95, 92, 70, 88, 91, 75, 93, 90, 94};
  for (int i = 0; i < 10; ++i) {
    const auto id = static_cast<std::uint8_t>(i);
    stun.OnDatagram(At(i * 2500), 1, Bytes(IceCheck(id)));
    stun.OnDatagram(At(i * 2500 + rtts[i]), 0, Bytes(IceAnswer(id)));
    EXPECT_EQ(stun.rtt(1).low_quantile().has_value(), i + 1 >= 10) << i;
  }
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(1).floor()), 60);
  EXPECT_DOUBLE_EQ(ToMs(*stun.rtt(1).low_quantile()), 70);  // the second lowest of ten
  // A TCP leg waits for 20.
  AckRtt ack;
  std::uint32_t seq = 1;
  for (int i = 0; i < 19; ++i) {
    ack.OnData(At(i * 100), seq, 10);
    seq += 10;
    ack.OnAck(At(i * 100 + 50), seq);
  }
  EXPECT_FALSE(ack.low_quantile().has_value());
}

TEST(RelayStun, OldRequestsAreForgotten) {
  StunRtt stun;
  for (int i = 0; i <= StunRtt::kOutstanding; ++i)
    stun.OnDatagram(At(i), 0, Bytes(IceCheck(static_cast<std::uint8_t>(i))));
  stun.OnDatagram(At(100), 1, Bytes(IceAnswer(0)));  // pushed out by the newest
  EXPECT_EQ(stun.rtt(0).count(), 0u);
  stun.OnDatagram(At(101), 1, Bytes(IceAnswer(1)));
  EXPECT_EQ(stun.rtt(0).count(), 1u);
}

// How a WebRTC session's datagrams pass the sensor: between the two agents, or through a
// TURN server, over UDP or TCP (RFC 8656 12.5: framed in the stream, ChannelData padded).
enum class Via { kDirect, kTurn, kTurnTcp };

// A WebRTC session between a laptop (10.0.0.5) and a peer `peer_ms` beyond the sensor: video
// and input datagrams, and each agent's consent checks every 2.5 s, answered at once.
// Through TURN the responder is the server (10 ms away) and the peer 203.0.113.9 beyond it:
// every datagram on the channel the laptop bound first. Over TCP some frames share a
// segment (media behind the next frame) and some are cut across two, as a stream carries them.
std::vector<Event> WebRtcSession(double peer_ms, double seconds, RelayConfig config = {},
                                 Via via = Via::kDirect) {
  Wire w(config);
  w.SetServerPort(3478);
  const bool turn = via != Via::kDirect;
  std::string pending[2];  // TCP: frames held for the side's next segment
  const auto segment = [&](double t, bool from_laptop, const std::string& bytes) {
    std::string& held = pending[from_laptop ? 0 : 1];
    w.Send(t, from_laptop, kAck | kPsh, held + bytes);
    held.clear();
  };
  int frames = 0;
  const auto send = [&](double t, bool from_laptop, const std::string& datagram) {
    const std::string framed = turn ? InChannel(datagram) : datagram;
    if (via != Via::kTurnTcp) {
      w.SendUdp(t, from_laptop, framed);
      return;
    }
    const std::string padded = framed + std::string((4 - framed.size() % 4) % 4, '\0');
    const bool media = static_cast<std::uint8_t>(datagram[0]) >= 0x40;
    switch (++frames % 5) {
      case 1:  // media written behind the side's next frame, in one segment
        if (media) {
          pending[from_laptop ? 0 : 1] += padded;
          break;
        }
        [[fallthrough]];
      case 2:  // cut in two
        segment(t, from_laptop, padded.substr(0, 7));
        segment(t, from_laptop, padded.substr(7));
        break;
      default:
        segment(t, from_laptop, padded);
    }
  };
  if (via == Via::kTurnTcp) {
    w.Handshake(-100, 0.05);
    segment(-90, true, stun_wire::Message(0x0003, 0xa1));   // Allocate
    segment(-80, false, stun_wire::Message(0x0103, 0xa1));  // its success
  }
  if (turn) {
    const std::string bind = stun_wire::ChannelBind(0x4000, XorPeerAddress(203, 0, 113, 9, 50000));
    if (via == Via::kTurnTcp)
      segment(0, true, bind);
    else
      w.SendUdp(0, true, bind);
  }
  for (double t = 0; t < seconds * 1000; t += 2500) {
    const auto id = static_cast<std::uint8_t>(t / 2500);
    send(t, true, IceCheck(id));
    send(t + 5, true, std::string("\x80\x60", 2) + std::string(1100, 'v'));
    send(t + peer_ms, false, IceAnswer(id));
    send(t + 1000, false, IceCheck(static_cast<std::uint8_t>(id + 128)));
    send(t + 1000.2, true, IceAnswer(static_cast<std::uint8_t>(id + 128)));
    send(t + 1200, false, std::string("\x17\xfe\xfd", 3) + std::string(60, 'k'));
  }
  return w.End();
}

// What flow_shape reports on such a flow at `at`: the laptop controlled from outside.
Event ShapeSession(const Event& record, absl::Duration at) {
  Event session;
  session.event_type = "remote_session";
  session.ts = kT0 + at;
  session.flow = record.flow;
  session.body = {{"app", "unknown_remote_control"},
                  {"controlled", "10.0.0.5"},
                  {"controller", "198.51.100.7"},
                  {"confirmed_by", "flow_shape"}};
  return session;
}

TEST(RelayDetector, AUdpFlowIsTimedByItsIceChecks) {
  const std::vector<Event> events = WebRtcSession(90, 40);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["app"], "stun");
  EXPECT_DOUBLE_EQ(r["rtt_responder_ms"].get<double>(), 90);
  EXPECT_DOUBLE_EQ(r["rtt_originator_ms"].get<double>(), 0.2);
  EXPECT_EQ(r["rtt_samples"], nlohmann::json({16, 16}));
  EXPECT_EQ(r["stun"]["checks"], 32);
  EXPECT_EQ(r["stun"]["answered"], 32);
  EXPECT_FALSE(r.contains("retransmissions"));
  EXPECT_FALSE(r.contains("_on_times_us"));
  // Read past report_after: the record comes then, once.
  RelayConfig early;
  early.report_after = absl::Seconds(20);
  const std::vector<Event> long_flow = WebRtcSession(90, 40, early);
  ASSERT_EQ(long_flow.size(), 1u);
  EXPECT_EQ(long_flow[0].body["rtt_samples"], nlohmann::json({8, 8}));
  // The controller's method off: UDP is not looked at.
  RelayConfig off;
  off.methods.controller_rtt = false;
  EXPECT_TRUE(WebRtcSession(90, 40, off).empty());
}

TEST(RelayDetector, ATcpFlowToATurnServerIsTimedByTheChecksItCarries) {
  // The laptop reaches its TURN server over TCP (no UDP out): the checks inside time the far
  // agent, as over UDP; the connection's own handshake only the server (10 ms).
  const std::vector<Event> events = WebRtcSession(90, 40, {}, Via::kTurnTcp);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["app"], "stun");
  EXPECT_DOUBLE_EQ(r["rtt_responder_ms"].get<double>(), 90);
  EXPECT_DOUBLE_EQ(r["rtt_originator_ms"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(r["handshake"]["responder_ms"].get<double>(), 10);
  EXPECT_EQ(r["rtt_samples"], nlohmann::json({16, 16}));
  EXPECT_EQ(r["stun"]["checks"], 32);
  EXPECT_EQ(r["stun"]["answered"], 32);
  EXPECT_TRUE(r["stun"]["via_turn"].get<bool>());
  EXPECT_EQ(r["stun"]["turn_peer"], "203.0.113.9");
  EXPECT_FALSE(r.contains("_on_times_us"));  // nor stepping-stone windows after it
  // A TCP flow that does not open with STUN is not read for it, whatever comes later.
  Wire other;
  other.SetServerPort(3478);
  other.Handshake(0, 0.05);
  other.Send(20, true, kAck | kPsh, "GET / HTTP/1.1\r\n\r\n");
  other.Send(40, true, kAck | kPsh, IceCheck(1));
  other.Send(130, false, kAck | kPsh, IceAnswer(1));
  const std::vector<Event> plain = other.End();
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].body["app"], "other");
  EXPECT_FALSE(plain[0].body.contains("stun"));
}

TEST(RelayDetector, UdpWithoutStunIsLeftAlone) {
  Wire w;
  for (int i = 0; i < 100; ++i)
    w.SendUdp(i * 500.0, i % 2 == 0, std::string("\x80\x60", 2) + std::string(200, 'v'));
  // Past kStunLookFor the flow is given up: a check after it is not seen.
  w.SendUdp(50000, true, IceCheck(1));
  w.SendUdp(50090, false, IceAnswer(1));
  EXPECT_TRUE(w.End().empty());
}

TEST(RelayHostStage, AWebRtcSessionNamedByItsShapeIsJudgedByItsChecks) {
  for (const Via via : {Via::kDirect, Via::kTurn, Via::kTurnTcp}) {
    const bool turn = via != Via::kDirect;
    for (const double peer_ms : {90.0, 20.0}) {
      SCOPED_TRACE(absl::StrCat("via ", static_cast<int>(via), " peer ", peer_ms));
      const std::vector<Event> record = WebRtcSession(peer_ms, 40, {}, via);
      ASSERT_EQ(record.size(), 1u);
      host::HostStage stage(HostConfig());
      std::vector<Event> out;
      stage.Process(ShapeSession(record[0], absl::Seconds(20)), out);
      stage.Process(record[0], out);
      EXPECT_DOUBLE_EQ(RelayBody(out)["controller_rtt_ms"].get<double>(), peer_ms);
      const auto alerts = Alerts(out, "controller_rtt");
      if (peer_ms == 90.0) {
        ASSERT_EQ(alerts.size(), 1u);
        EXPECT_EQ(alerts[0]->evidence["app"], "unknown_remote_control");
        EXPECT_EQ(alerts[0]->evidence["rtt_samples"], 16);
        // Through TURN the controller is the server; the evidence names the far agent too.
        EXPECT_EQ(alerts[0]->evidence.value("turn_peer", ""), turn ? "203.0.113.9" : "");
      } else {
        EXPECT_TRUE(alerts.empty());
      }
    }
  }
}

TEST(RelayHostStage, ASessionNamedAfterItsRecordIsJudgedByIt) {
  // flow_shape names a session when the person's input shows, which may be minutes in; the
  // record comes at report_after (here 20 s) while the flow goes on.
  RelayConfig early;
  early.report_after = absl::Seconds(20);
  const auto late_session = [](const std::vector<Event>& record) {
    return ShapeSession(record[0], absl::Seconds(35));
  };
  for (const double peer_ms : {90.0, 20.0}) {
    SCOPED_TRACE(peer_ms);
    const std::vector<Event> record = WebRtcSession(peer_ms, 40, early);
    ASSERT_EQ(record.size(), 1u);
    host::HostStage stage(HostConfig());
    std::vector<Event> out;
    stage.Process(record[0], out);
    EXPECT_FALSE(RelayBody(out).contains("_open"));  // internal: never written
    EXPECT_TRUE(Alerts(out, "controller_rtt").empty());
    out.clear();
    stage.Process(late_session(record), out);
    const auto alerts = Alerts(out, "controller_rtt");
    if (peer_ms == 90.0) {
      ASSERT_EQ(alerts.size(), 1u);
      EXPECT_DOUBLE_EQ(alerts[0]->evidence["controller_rtt_ms"].get<double>(), 90);
      EXPECT_EQ(alerts[0]->ts, kT0 + absl::Seconds(35));  // the session's time
      EXPECT_EQ(stage.stats().late_sessions_paired, 1u);
      // Paired once: the session named again (a direction filled in) does not repeat it.
      out.clear();
      stage.Process(late_session(record), out);
      EXPECT_TRUE(Alerts(out, "controller_rtt").empty());
    } else {
      EXPECT_TRUE(alerts.empty());  // a near controller's record is not even kept
      EXPECT_EQ(stage.stats().late_sessions_paired, 0u);
    }
  }
  // A record written at the flow's end comes after every session on it: not kept.
  const std::vector<Event> ended = WebRtcSession(90, 15);
  ASSERT_EQ(ended.size(), 1u);
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  stage.Process(ended[0], out);
  stage.Process(late_session(ended), out);
  EXPECT_TRUE(Alerts(out, "controller_rtt").empty());
  EXPECT_EQ(stage.stats().late_sessions_paired, 0u);
}

// ---- QUIC: a connection's opening --------------------------------------------------------

// A QUIC v1 long-header packet of `type` (0 Initial, 2 Handshake, 3 Retry) between the two
// connection IDs, its datagram padded to `bytes`.
std::string QuicLong(int type, const std::string& dcid, const std::string& scid,
                     std::size_t bytes = 1200) {
  return quic_wire::LongPacket(static_cast<std::uint8_t>(0xc0 | (type << 4)), dcid, scid, "",
                               bytes);
}
// A 1-RTT packet to `dcid`.
std::string QuicShort(const std::string& dcid) {
  return "\x40" + dcid + std::string(40, 's');
}
const std::string kClientId = "client-1";  // the client's first Destination Connection ID
const std::string kServerId = "srv-id-9";  // the ID the server chose
// The server's flight from `scid`: its ServerHello in an Initial, its Handshake packets behind.
std::string QuicFlight(const std::string& scid) {
  return QuicLong(0, "c", scid, 200) + QuicLong(2, "c", scid, 1000);
}

std::vector<Event> QuicOpening(double server_ms, double client_ms, RelayConfig config = {},
                               int client_ttl = 64) {
  Wire w(config);
  w.SetTtl(true, static_cast<std::uint8_t>(client_ttl));
  w.SendUdp(0, true, QuicLong(0, kClientId, "c"));
  w.SendUdp(server_ms, false, QuicFlight(kServerId));
  w.SendUdp(server_ms + 0.2, false, QuicLong(2, "c", kServerId, 1000));
  w.SendUdp(server_ms + client_ms, true, QuicLong(2, kServerId, "c", 80));
  w.SendUdp(server_ms + client_ms + 20, true, QuicShort(kServerId));
  return w.End();
}

std::span<const std::uint8_t> QuicBytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Datagrams played into a QuicHandshake: the client's (from 0) with TTL 63, the server's 52.
struct QuicDatagram {
  double ms;
  int from;
  std::string bytes;
};
void Play(QuicHandshake& q, std::initializer_list<QuicDatagram> datagrams) {
  for (const QuicDatagram& d : datagrams)
    q.OnDatagram(At(d.ms), d.from, QuicBytes(d.bytes), d.from == 0 ? 63 : 52);
}

TEST(RelayQuic, TheOpeningGivesBothLegsAndTheirTtls) {
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {0.1, 0, QuicLong(0, kClientId, "c")},  // a ClientHello in two
          });
  EXPECT_FALSE(q.responder_leg());
  Play(q, {
              {20.1, 1, QuicFlight(kServerId)},
              {20.3, 1, QuicLong(2, "c", kServerId, 900)},
          });
  EXPECT_FALSE(q.settled());
  q.OnDatagram(At(100.6), 0, QuicBytes(QuicLong(2, kServerId, "c", 80)), 63);
  EXPECT_TRUE(q.settled());
  EXPECT_NEAR(ToMs(*q.responder_leg()), 20, 1e-9);     // from the Initial's last datagram
  EXPECT_NEAR(ToMs(*q.originator_leg()), 80.5, 1e-9);  // from the flight's first
  EXPECT_EQ(q.originator_ttl(), 63);
  EXPECT_EQ(q.responder_ttl(), 52);
  EXPECT_FALSE(q.resent());
}

TEST(RelayQuic, AnAcknowledgementBeforeTheFlightAsksForNoAnswer) {
  // Chromium's ClientHello in two datagrams, 2.2 ms apart; ngtcp2's server acknowledges the
  // first at once in an Initial of its own and sends its flight after the second (loopback).
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "")},
              {0.7, 1, QuicLong(0, "", kServerId, 60)},
              {2.2, 0, QuicLong(0, kClientId, "")},
              {2.8, 1, QuicFlight(kServerId)},
              {82.8, 0, QuicLong(0, kServerId, "") + QuicLong(2, kServerId, "", 80)},
          });
  EXPECT_NEAR(ToMs(*q.responder_leg()), 0.7, 1e-9);
  EXPECT_NEAR(ToMs(*q.originator_leg()), 80, 1e-9);
}

TEST(RelayQuic, OnlyAClientsPaddedInitialOpensAConnection) {
  EXPECT_TRUE(QuicHandshake::OpensConnection(QuicBytes(QuicLong(0, kClientId, "c"))));
  // Under 1200 bytes (RFC 9000 14.1), a Handshake packet, a short header, an unknown version.
  EXPECT_FALSE(QuicHandshake::OpensConnection(QuicBytes(QuicLong(0, kClientId, "c", 1199))));
  EXPECT_FALSE(QuicHandshake::OpensConnection(QuicBytes(QuicLong(2, kClientId, "c"))));
  EXPECT_FALSE(
      QuicHandshake::OpensConnection(QuicBytes(QuicShort(kClientId) + std::string(1200, 's'))));
  std::string unknown = QuicLong(0, kClientId, "c");
  unknown[4] = 0x07;
  EXPECT_FALSE(QuicHandshake::OpensConnection(QuicBytes(unknown)));
  // A flow picked up after its opening is not timed.
  QuicHandshake q;
  q.OnDatagram(At(0), 0, QuicBytes(QuicShort(kServerId)), 64);
  EXPECT_TRUE(q.settled());
  EXPECT_FALSE(q.responder_leg());
  EXPECT_FALSE(q.originator_leg());
}

TEST(RelayQuic, AnInitialSentAgainLeavesNoLeg) {
  // Karn: the server's packet may answer either copy, and the client's answer either.
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {300, 0, QuicLong(0, kClientId, "c")},
              {320, 1, QuicLong(0, "c", kServerId)},
              {321, 0, QuicLong(2, kServerId, "c", 80)},
          });
  EXPECT_TRUE(q.resent());
  EXPECT_FALSE(q.responder_leg());
  EXPECT_FALSE(q.originator_leg());
}

TEST(RelayQuic, AClientDatagramToItsOldIdAnswersNothing) {
  // The server's first packet was lost after the sensor: the client's timer resends its
  // Initial, still to its own ID, and what follows may answer the server's resend.
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {20, 1, QuicFlight(kServerId)},
              {300, 0, QuicLong(0, kClientId, "c")},
          });
  EXPECT_FALSE(q.settled());  // an acknowledgement could still tell
  Play(q, {
              {1020, 1, QuicFlight(kServerId)},
              {1021, 0, QuicLong(2, kServerId, "c", 80)},
          });
  EXPECT_TRUE(q.settled());
  EXPECT_NEAR(ToMs(*q.responder_leg()), 20, 1e-9);
  EXPECT_FALSE(q.originator_leg());  // none did: 1001 ms or 1 ms
  EXPECT_TRUE(q.resent());
}

TEST(RelayQuic, AServerThatSentAgainBeforeTheAnswerLeavesNoOriginatorLeg) {
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {20, 1, QuicFlight(kServerId)},
              {1020, 1, QuicFlight(kServerId)},  // its timer
              {1021, 0, QuicShort(kServerId)},
          });
  EXPECT_TRUE(q.settled());
  EXPECT_TRUE(q.resent());
  EXPECT_FALSE(q.originator_leg());
}

TEST(RelayQuic, ARetryIsAnsweredByTheClientsNextInitial) {
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {20, 1, QuicLong(3, "c", "retry-id", 60)},
              {20.4, 0, QuicLong(0, "retry-id", "c")},
          });
  EXPECT_NEAR(ToMs(*q.responder_leg()), 20, 1e-9);
  EXPECT_NEAR(ToMs(*q.originator_leg()), 0.4, 1e-9);
}

TEST(RelayQuic, WhereTheServerKeptTheClientsIdOnlyKeysOfItsFlightAnswer) {
  // Google's servers often answer from the client's own ID: an Initial to it may be the
  // client's timer resending, a Handshake packet (alone or behind an Initial) cannot.
  for (const bool coalesced : {false, true}) {
    QuicHandshake q;
    Play(q, {
                {0, 0, QuicLong(0, kClientId, "c")},
                {20, 1, QuicFlight(kClientId)},
            });
    const std::string handshake = QuicLong(2, kClientId, "c", 80);
    q.OnDatagram(At(20.4), 0,
                 QuicBytes(coalesced ? QuicLong(0, kClientId, "c", 60) + handshake : handshake),
                 64);
    EXPECT_NEAR(ToMs(*q.responder_leg()), 20, 1e-9);
    EXPECT_NEAR(ToMs(*q.originator_leg()), 0.4, 1e-9) << coalesced;
  }
  QuicHandshake q;
  Play(q, {
              {0, 0, QuicLong(0, kClientId, "c")},
              {20, 1, QuicFlight(kClientId)},
              {20.4, 0, QuicLong(0, kClientId, "c")},
              {30, 0, QuicLong(2, kClientId, "c", 80)},
          });
  EXPECT_TRUE(q.settled());
  EXPECT_FALSE(q.originator_leg());  // the Initial at 20.4 may have been the answer
}

// Sealed Initials (quic_wire) of the connection whose client wrote first to kClientId.
std::string ClientInitial(const std::string& dcid, std::uint8_t number, const std::string& frames,
                          std::size_t bytes = 1200) {
  return quic_wire::SealedInitial(kClientId, false, dcid, "", number, frames, bytes);
}
std::string ServerInitial(std::uint8_t number, const std::string& frames, std::size_t bytes) {
  return quic_wire::SealedInitial(kClientId, true, "", kServerId, number, frames, bytes);
}

TEST(RelayQuic, SealedInitialsReadBackWithTheirNumbersAndAcknowledgements) {
  const std::string sealed = ServerInitial(5, quic_wire::Ack(3) + quic_wire::Crypto(40), 300);
  common::QuicLongHeader header;
  ASSERT_TRUE(common::ParseQuicLongHeader(QuicBytes(sealed), header));
  common::QuicInitialKeys keys;
  ASSERT_TRUE(common::DeriveQuicInitialKeys(1, QuicBytes(kClientId), true, keys));
  std::vector<std::uint8_t> plain;
  std::uint64_t number = 0;
  ASSERT_TRUE(common::DecryptQuicInitial(QuicBytes(sealed), header, keys, plain, &number));
  EXPECT_EQ(number, 5u);
  EXPECT_EQ(common::QuicLargestAcknowledged(plain), 3u);
  EXPECT_FALSE(common::QuicLargestAcknowledged(
      QuicBytes(std::string(quic_wire::Crypto(10)) + std::string(20, '\0'))));
}

TEST(RelayQuic, AnAnswerIsTimedFromTheInitialItAcknowledges) {
  // Chromium 150 ms away (lab, routed_quic): its timer resends its Initial before the
  // server's flight reaches it, the server sends its flight again, and the answer could
  // be to either; its acknowledgement names which. Both stories, told by what it acks.
  for (const std::uint8_t acked : {1, 2}) {
    QuicHandshake q;
    Play(q, {
                {0, 0, ClientInitial(kClientId, 0, quic_wire::Crypto(40))},
                {13, 1, ServerInitial(0, quic_wire::Ack(0), 60)},
                {23.5, 0, ClientInitial(kClientId, 1, quic_wire::Crypto(40))},
                {35.5, 1,
                 ServerInitial(1, quic_wire::Ack(1) + quic_wire::Crypto(40), 300) +
                     QuicLong(2, "", kServerId, 900)},
                {299.4, 0, ClientInitial(kClientId, 2, quic_wire::Crypto(40))},
            });
    EXPECT_FALSE(q.settled());
    Play(q, {
                {310, 1,
                 ServerInitial(2, quic_wire::Ack(2) + quic_wire::Crypto(40), 300) +
                     QuicLong(2, "", kServerId, 900)},
                {339.4, 0,
                 ClientInitial(kServerId, 3, quic_wire::Ack(acked), 200) +
                     QuicLong(2, kServerId, "", 80)},
            });
    ASSERT_TRUE(q.settled());
    EXPECT_TRUE(q.by_acknowledgement());
    EXPECT_TRUE(q.resent());
    EXPECT_NEAR(ToMs(*q.originator_leg()), acked == 1 ? 303.9 : 29.4, 1e-9);
    EXPECT_NEAR(ToMs(*q.responder_leg()), 13, 1e-9);
  }
  // An acknowledgement of only what came before the flight answers nothing.
  QuicHandshake q;
  Play(q, {
              {0, 0, ClientInitial(kClientId, 0, quic_wire::Crypto(40))},
              {13, 1, ServerInitial(0, quic_wire::Ack(0), 60)},
              {35.5, 1, ServerInitial(1, quic_wire::Crypto(40), 300)},
              {40, 0, ClientInitial(kServerId, 1, quic_wire::Ack(0), 200)},
          });
  EXPECT_FALSE(q.settled());
  EXPECT_FALSE(q.originator_leg());
}

TEST(RelayDetector, AResentQuicOpeningTimedByItsAcknowledgementIsNotCountedAsRefused) {
  Wire w;
  w.SendUdp(0, true, ClientInitial(kClientId, 0, quic_wire::Crypto(40)));
  w.SendUdp(13, false, ServerInitial(0, quic_wire::Ack(0) + quic_wire::Crypto(40), 300));
  w.SendUdp(290, true, ClientInitial(kClientId, 1, quic_wire::Crypto(40)));  // crossed
  w.SendUdp(300, false, ServerInitial(1, quic_wire::Ack(1) + quic_wire::Crypto(40), 300));
  w.SendUdp(313, true, ClientInitial(kServerId, 2, quic_wire::Ack(0), 200));
  const std::vector<Event> events = w.End();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_DOUBLE_EQ(events[0].body["handshake"]["originator_ms"].get<double>(), 300);
  EXPECT_TRUE(events[0].body["handshake"]["retransmitted"].get<bool>());
  EXPECT_EQ(w.counters().handshakes_karn.Read(), 0u);
  EXPECT_EQ(w.counters().quic_openings.Read(), 1u);
}

TEST(RelayDetector, AQuicConnectionIsTimedByItsOpening) {
  const std::vector<Event> events = QuicOpening(20, 80.5, {}, 63);
  ASSERT_EQ(events.size(), 1u);
  const nlohmann::json& r = events[0].body;
  EXPECT_EQ(r["app"], "quic");
  EXPECT_DOUBLE_EQ(r["rtt_originator_ms"].get<double>(), 80.5);
  EXPECT_DOUBLE_EQ(r["rtt_responder_ms"].get<double>(), 20);
  EXPECT_EQ(r["handshake"]["originator_ttl"], 63);
  EXPECT_EQ(r["handshake"]["responder_ttl"], 52);
  EXPECT_DOUBLE_EQ(r["handshake"]["originator_ms"].get<double>(), 80.5);
  EXPECT_FALSE(r.contains("retransmissions"));
  EXPECT_FALSE(r.contains("_on_times_us"));
  EXPECT_FALSE(r.contains("_rtt_p15_ms"));
  // The routed relay off: QUIC is not timed (the controller's method still reads STUN).
  RelayConfig off;
  off.methods.routed_relay = false;
  EXPECT_TRUE(QuicOpening(20, 80.5, off).empty());
  // The controller's method off: QUIC still is.
  RelayConfig no_stun;
  no_stun.methods.controller_rtt = false;
  EXPECT_EQ(QuicOpening(20, 80.5, no_stun).size(), 1u);
}

TEST(RelayHostStage, RoutedRelayCountsQuicConnectionsAsTcpOnes) {
  host::HostStage stage(HostConfig());
  std::vector<Event> out;
  // The laptop's own TCP connection: 0.3 ms away, TTL 64. Then QUIC it forwards (TTL 63)
  // for a device 120 ms away, and its own QUIC, near.
  stage.Process(RelayRecord(1, "10.1.0.5", "198.51.100.7", 0, LegRecord(true, 0.3, 64)), out);
  for (int i = 0; i < 5; ++i) {
    for (const bool forwarded : {true, false}) {
      std::vector<Event> records =
          QuicOpening(20, forwarded ? 120 + i : 0.4, {}, forwarded ? 63 : 64);
      ASSERT_EQ(records.size(), 1u);
      Event& e = records[0];
      e.flow->src_ip = *IpAddress::Parse("10.1.0.5");
      e.flow->flow_id = static_cast<std::uint64_t>(10 + 2 * i + (forwarded ? 0 : 1));
      e.ts = kT0 + absl::Seconds(1 + i);
      stage.Process(e, out);
    }
  }
  const auto alerts = Alerts(out, "routed_relay");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_DOUBLE_EQ(alerts[0]->evidence["hidden_leg_rtt_ms"].get<double>(), 121.7);
  EXPECT_EQ(alerts[0]->evidence["ttls_forwarded"], nlohmann::json::array({63}));
  EXPECT_EQ(alerts[0]->evidence["recent_flows"][0]["app"], "quic");
  EXPECT_TRUE(Alerts(out, "hidden_leg").empty());
}

}  // namespace
}  // namespace relaywatch::detectors::relay
