#pragma once

#include <array>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"

#include "capture/base/packet_time.h"
#include "detectors/flow_shape/config.h"

namespace relaywatch::detectors::flow_shape {

// Spontaneous input events a second must hold to count as a second of active input. One
// isolated packet is what applications send (polls, heartbeats); a person typing or moving
// a pointer sends several.
inline constexpr int kInputsPerActiveSecond = 3;
// Input events of one direction waiting for the other side's answer; more are not sampled.
inline constexpr int kPendingInputs = 8;

// A histogram of byte counts in bins growing by sqrt(2) from 16 bytes (16, 23, 32, 45, 64,
// ..., 64 KiB, more): fine enough for a median ratio, 52 bytes of state. Counts are halved
// when one would overflow, which keeps the shape (the median) of long sessions.
class SizeHistogram {
 public:
  static constexpr int kBins = 26;
  void Add(std::uint64_t bytes);
  std::uint64_t total() const;
  // The upper limit of the bin holding the median, or 0 when empty.
  std::uint64_t Median() const;
  static int Bin(std::uint64_t bytes);
  static std::uint64_t UpperLimit(int bin);

 private:
  std::array<std::uint16_t, kBins> counts_{};
};

// The research brief's per-direction payload size classes: <=64, 65-128, 129-256, 257-576,
// 577-1200, >1200 bytes.
inline constexpr int kSizeClasses = 6;
int SizeClass(std::uint64_t bytes);

inline constexpr std::int64_t kNoInput = std::numeric_limits<std::int64_t>::min();

// What one direction of a flow has sent so far. Times are packet times.
struct DirectionShape {
  // Totals.
  std::uint64_t payload_bytes = 0;
  std::uint32_t payload_packets = 0;
  std::uint32_t small_packets = 0;  // payload <= input_max_bytes
  std::array<std::uint32_t, kSizeClasses> size_classes{};
  std::uint32_t bursts = 0;
  std::uint64_t max_burst_bytes = 0;
  std::uint32_t response_bursts = 0;  // bursts starting in the reaction window of an input
  std::uint32_t active_seconds = 0;   // seconds with any payload from this side
  std::uint32_t rtp_media = 0;        // UDP datagrams shaped like RTP media (not RTCP)
  std::uint32_t rtcp_packets = 0;     // RTCP and RTP padding: counted here only, as no payload
  // This side as the input side.
  std::uint32_t input_events = 0;  // input-sized packets that start a burst
  std::uint32_t spontaneous_inputs = 0;
  std::uint32_t locked_inputs = 0;  // one RTT after the other side's packet: a reaction
  std::uint32_t active_input_seconds = 0;
  // The same, with the other side's RTP media left out of its silence (MediaOneWay()).
  std::uint32_t media_spontaneous_inputs = 0;
  std::uint32_t media_active_input_seconds = 0;
  std::uint32_t inputs_resolved = 0;  // sampled inputs whose answer window has passed
  std::uint32_t inputs_answered = 0;  // of those, answered by a burst of the other side
  std::uint32_t inputs_unsampled = 0;
  SizeHistogram input_sizes;     // this side's input events
  SizeHistogram response_sizes;  // this side's bursts that answered the other side's input
  // Inter-packet gaps of payload packets (seconds), for the CV.
  double gap_sum = 0;
  double gap_sq_sum = 0;
  std::uint32_t gaps = 0;

  // Running state.
  PacketTime last_payload = absl::InfinitePast();
  std::uint64_t burst_bytes = 0;
  bool burst_open = false;
  bool burst_is_response = false;
  std::int64_t second = -1;  // index of the current one-second bin since the start
  std::uint8_t second_inputs = 0;  // counted up to kInputsPerActiveSecond
  std::uint8_t media_second_inputs = 0;
  // Inputs of this side not yet answered (oldest first, a ring) and the two most recent, in
  // microseconds since the flow's measurement start: half the size of PacketTime, and this
  // state exists for every long flow.
  std::array<std::int64_t, kPendingInputs> pending{};
  std::uint8_t pending_head = 0;
  std::uint8_t pending_size = 0;
  std::array<std::int64_t, 2> recent_inputs = {kNoInput, kNoInput};
  std::int64_t last_prompt = kNoInput;  // the last payload packet that is not RTP media
  // The current call-suppression window.
  std::uint32_t window_packets = 0;
  double window_gap_sum = 0;
  double window_gap_sq_sum = 0;
  std::uint32_t window_gaps = 0;
};

// The features of one orientation: `screen` is the direction index whose sender serves the
// screen (flow::Direction: 0 = sent by the originator), the other direction carries input.
struct Orientation {
  int screen = 0;
  absl::Duration duration;
  double byte_ratio = 0;      // screen payload bytes / input payload bytes
  double coupling = 0;        // input events answered / input events resolved
  double response_share = 0;  // screen bursts answering input / screen bursts
  double size_ratio = 0;      // median answering burst / median input event
  double input_share = 0;     // input-sized packets / payload packets of the input side
  std::uint64_t median_input_bytes = 0;
  std::uint64_t median_response_bytes = 0;
  std::uint32_t input_events = 0;
  std::uint32_t spontaneous_inputs = 0;
  std::uint32_t active_input_seconds = 0;
  double input_gap_cv = 0;
};

// Bounded per-flow measurements for the flow-shape decision: per-direction sizes, bursts,
// idle seconds, input events and how the other side answers them, and fixed windows for
// call suppression. O(1) work per payload packet (at most kPendingInputs steps).
// Not thread-safe; lives in one flow on one worker.
class FlowShape {
 public:
  // `leg_rtt[d]`: round-trip time between the sensor and the sender of direction d, from
  // the TCP handshake; zero when unknown (UDP, mid-stream captures).
  //
  // The config is passed to each call rather than kept: per-flow state outlives a detector
  // rebuilt on reload, and must not point into it.
  FlowShape(PacketTime start, std::array<absl::Duration, 2> leg_rtt);

  // One payload-carrying packet of direction `d`. `first_byte` and `second_byte` (valid when
  // `has_header_bytes`) are read only for the RTP media test on UDP.
  void Add(const FlowShapeConfig& config, PacketTime ts, int d, std::uint32_t payload_bytes,
           std::uint8_t first_byte, std::uint8_t second_byte, bool has_header_bytes, bool udp);
  // The flow relays the session for its ends (TURN over TCP): its handshake timed the relay,
  // not them, so their round trips are unknown from here on, as over UDP.
  void ForgetLegRtts() { leg_rtt_ = {}; }
  // Moves the window clock to `now`; returns true when at least one window closed.
  bool Advance(const FlowShapeConfig& config, PacketTime now);
  // Closes the open bursts and settles pending inputs (flow end).
  void Finish(const FlowShapeConfig& config);

  Orientation View(int screen, PacketTime now) const;
  const DirectionShape& direction(int d) const { return dir_[d]; }
  PacketTime start() const { return start_; }
  std::uint32_t windows() const { return windows_; }
  std::uint32_t call_windows() const { return call_windows_; }
  // Both directions are mostly RTP media (first byte 0x80-0xBF, payload type outside the
  // RTCP range): an audio/video call.
  bool MediaBothWays() const;
  // Direction `screen` is mostly RTP media and the other is not: a screen sent as video
  // (WebRTC) with input on a data channel. Media is acknowledged, if at all, by RTCP, which
  // is no input: an input right after a video packet cannot be its acknowledgement. So the
  // input side's silence-before-input is measured against the screen side's other packets.
  bool MediaOneWay(int screen) const;
  bool LooksLikeCall() const;
  // Idle share of one-second bins of direction d over [start, now].
  double IdleFraction(int d, PacketTime now) const;

 private:
  static void CloseBurst(DirectionShape& s);
  void CloseWindow(const FlowShapeConfig& config);
  // Resolves the pending inputs of `input` against a burst of the other side at `ts`.
  static void ResolvePending(DirectionShape& input, std::int64_t now_us, std::int64_t lo_us,
                             std::int64_t hi_us);
  std::int64_t Micros(PacketTime ts) const { return absl::ToInt64Microseconds(ts - start_); }

  PacketTime start_;
  std::array<absl::Duration, 2> leg_rtt_;
  std::array<DirectionShape, 2> dir_;
  PacketTime window_start_;
  std::uint32_t windows_ = 0;  // windows that carried payload
  std::uint32_t call_windows_ = 0;
};

// What the evidence says about a flow.
enum class ShapeVerdict {
  kUndecided,      // not enough evidence yet, or not the remote-control shape
  kRemoteControl,  // the screen/input shape, with `screen` the screen-serving direction
  kCall,           // media both ways: never remote control
};

struct Decision {
  ShapeVerdict verdict = ShapeVerdict::kUndecided;
  Orientation features;     // the deciding orientation (or the better one when undecided)
  const char* failed = "";  // the first threshold the better orientation missed
};

// The decision rule: the screen side is the one for which every threshold holds. Both
// orientations are tried; at most one can pass, because the input side must send mostly
// input-sized packets and the screen side's answers must be size_ratio times larger.
// `flow_age` is the time since the flow's first packet (min_duration counts from there).
Decision Decide(const FlowShape& shape, const FlowShapeConfig& config, PacketTime now,
                absl::Duration flow_age);

// The screen side for a flow already known to be a remote-control session (a named tool
// whose traffic does not say who is controlled): the orientation in which the other side
// sends input-sized packets that the screen side answers with larger bursts. Looser than
// Decide() (half the input events, no active-seconds or coupling floor) because the tool is
// already identified; -1 when neither or both orientations fit.
int DecideScreenSide(const FlowShape& shape, const FlowShapeConfig& config, PacketTime now);

}  // namespace relaywatch::detectors::flow_shape
