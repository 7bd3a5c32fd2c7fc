#include "detectors/flow_shape/features.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace relaywatch::detectors::flow_shape {
namespace {

constexpr std::array<std::uint64_t, kSizeClasses - 1> kSizeClassLimits = {64, 128, 256, 576, 1200};

// Bin upper limits: round(16 * 2^(k/2)); the last bin is open.
constexpr std::array<std::uint64_t, SizeHistogram::kBins - 1> kBinLimits = {
    16,   23,   32,   45,   64,   91,   128,   181,   256,   362,   512,   724,  1024,
    1448, 2048, 2896, 4096, 5793, 8192, 11585, 16384, 23170, 32768, 46341, 65536};

double Cv(double sum, double sq_sum, std::uint32_t n) {
  if (n < 2 || sum <= 0) {
    return 0;
  }
  const double mean = sum / n;
  const double variance = std::max(0.0, sq_sum / n - mean * mean);
  return std::sqrt(variance) / mean;
}

double Ratio(double num, double den) {
  return den > 0 ? num / den : 0;
}

// An input at `ts` is spontaneous when the other side has been silent for `quiet_gap` since
// `other_last`, and it does not come one round trip (to the input side, `leg_rtt`, when
// known) after it: that is what an acknowledgement or a lock-step request does; a person's
// input is not tied to it (then `*locked`).
bool Spontaneous(PacketTime ts, PacketTime other_last, absl::Duration leg_rtt,
                 absl::Duration quiet_gap, bool* locked) {
  *locked = false;
  if (other_last == absl::InfinitePast()) {
    return true;
  }
  const absl::Duration since_other = ts - other_last;
  if (since_other < quiet_gap) {
    return false;
  }
  if (leg_rtt > absl::ZeroDuration()) {
    const absl::Duration tolerance = std::max(absl::Milliseconds(5), leg_rtt / 10);
    *locked = absl::AbsDuration(since_other - leg_rtt) <= tolerance;
  }
  return !*locked;
}

// One spontaneous input; the second it falls in becomes active at kInputsPerActiveSecond.
void CountSpontaneous(std::uint32_t& inputs, std::uint8_t& second_inputs,
                      std::uint32_t& active_seconds) {
  ++inputs;
  if (second_inputs < kInputsPerActiveSecond && ++second_inputs == kInputsPerActiveSecond) {
    ++active_seconds;
  }
}

}  // namespace

int SizeHistogram::Bin(std::uint64_t bytes) {
  const auto it = std::lower_bound(kBinLimits.begin(), kBinLimits.end(), bytes);
  return static_cast<int>(it - kBinLimits.begin());
}

std::uint64_t SizeHistogram::UpperLimit(int bin) {
  // The open last bin reports twice the last limit: "more than 64 KiB".
  return bin < kBins - 1 ? kBinLimits[bin] : 2 * kBinLimits.back();
}

void SizeHistogram::Add(std::uint64_t bytes) {
  std::uint16_t& c = counts_[Bin(bytes)];
  if (c == std::numeric_limits<std::uint16_t>::max()) {
    for (std::uint16_t& x : counts_) {
      x /= 2;
    }
  }
  ++c;
}

std::uint64_t SizeHistogram::total() const {
  std::uint64_t n = 0;
  for (std::uint16_t c : counts_) {
    n += c;
  }
  return n;
}

std::uint64_t SizeHistogram::Median() const {
  const std::uint64_t n = total();
  if (n == 0) {
    return 0;
  }
  std::uint64_t seen = 0;
  for (int b = 0; b < kBins; ++b) {
    seen += counts_[b];
    if (2 * seen >= n) {
      return UpperLimit(b);
    }
  }
  return UpperLimit(kBins - 1);
}

int SizeClass(std::uint64_t bytes) {
  const auto it = std::lower_bound(kSizeClassLimits.begin(), kSizeClassLimits.end(), bytes);
  return static_cast<int>(it - kSizeClassLimits.begin());
}

FlowShape::FlowShape(PacketTime start, std::array<absl::Duration, 2> leg_rtt)
    : start_(start), leg_rtt_(leg_rtt), window_start_(start) {}

void FlowShape::CloseBurst(DirectionShape& s) {
  if (!s.burst_open) {
    return;
  }
  s.max_burst_bytes = std::max(s.max_burst_bytes, s.burst_bytes);
  if (s.burst_is_response) {
    s.response_sizes.Add(s.burst_bytes);
  }
  s.burst_open = false;
}

void FlowShape::ResolvePending(DirectionShape& input, std::int64_t now_us, std::int64_t lo_us,
                               std::int64_t hi_us) {
  while (input.pending_size > 0) {
    const std::int64_t t = input.pending[input.pending_head];
    if (now_us < t + lo_us) {
      break;  // too early to be an answer to this input, or to any later one
    }
    ++input.inputs_resolved;
    if (now_us <= t + hi_us) {
      ++input.inputs_answered;
    }
    input.pending_head = (input.pending_head + 1) % kPendingInputs;
    --input.pending_size;
  }
}

void FlowShape::CloseWindow(const FlowShapeConfig& config) {
  const double seconds = absl::ToDoubleSeconds(config.window);
  const auto steady = [&](const DirectionShape& s) {
    return s.window_packets >= config.thresholds.call_pps * seconds &&
           Cv(s.window_gap_sum, s.window_gap_sq_sum, s.window_gaps) < config.thresholds.call_cv &&
           s.window_gaps >= 2;
  };
  if (dir_[0].window_packets + dir_[1].window_packets > 0) {
    ++windows_;
    if (steady(dir_[0]) && steady(dir_[1])) {
      ++call_windows_;
    }
  }
  for (DirectionShape& s : dir_) {
    s.window_packets = 0;
    s.window_gap_sum = 0;
    s.window_gap_sq_sum = 0;
    s.window_gaps = 0;
  }
}

bool FlowShape::Advance(const FlowShapeConfig& config, PacketTime now) {
  if (now - window_start_ < config.window) {
    return false;
  }
  CloseWindow(config);
  // After a long silence skip the empty windows at once instead of closing them one by one.
  const std::int64_t elapsed = (now - window_start_) / config.window;
  window_start_ += elapsed * config.window;
  return true;
}

void FlowShape::Add(const FlowShapeConfig& config, PacketTime ts, int d,
                    std::uint32_t payload_bytes, std::uint8_t first_byte, std::uint8_t second_byte,
                    bool has_header_bytes, bool udp) {
  DirectionShape& s = dir_[d];
  DirectionShape& other = dir_[1 - d];
  bool media = false;
  if (udp && has_header_bytes && payload_bytes >= 8 && (first_byte & 0xc0) == 0x80) {
    // RTP version 2 (RFC 3550; SRTP and SRTCP keep these two bytes in the clear). Payload
    // types 64-95 (with the marker bit: 192-223) are RTCP when multiplexed on one port (RFC
    // 5761): the receiver's reports and feedback on the media, sent by its stack on a clock
    // (a WebRTC viewer's congestion feedback, 5-10 a second). RTP with the padding bit is a
    // sender's bandwidth probe (libwebrtc sends padding-only packets, 255 bytes of padding,
    // 5-10 a second while it probes). Both are the stacks talking, like TCP's ACKs, which
    // carry no payload: no input, no burst, no gap.
    const int payload_type = second_byte & 0x7f;
    const bool rtcp = payload_type >= 64 && payload_type <= 95;
    if (rtcp || (first_byte & 0x20) != 0) {
      ++s.rtcp_packets;
      if (rtcp) {
        // But the other stack answers the feedback (a retransmission after a NACK, a key
        // frame after a PLI, a probe after a new estimate): a screen burst after it is not
        // the screen speaking on its own. It prompts; it is no one's input.
        s.recent_inputs[0] = s.recent_inputs[1];
        s.recent_inputs[1] = Micros(ts);
      }
      return;
    }
    media = payload_bytes >= 12;
    s.rtp_media += media ? 1 : 0;
  }
  const bool small = payload_bytes <= config.input_max_bytes;
  ++s.payload_packets;
  s.payload_bytes += payload_bytes;
  ++s.size_classes[SizeClass(payload_bytes)];
  s.small_packets += small ? 1 : 0;

  const bool first = s.last_payload == absl::InfinitePast();
  if (!first) {
    const double gap = absl::ToDoubleSeconds(ts - s.last_payload);
    s.gap_sum += gap;
    s.gap_sq_sum += gap * gap;
    ++s.gaps;
    s.window_gap_sum += gap;
    s.window_gap_sq_sum += gap * gap;
    ++s.window_gaps;
  }
  ++s.window_packets;

  const absl::Duration reaction = config.reaction_window;
  const std::int64_t now_us = Micros(ts);
  const bool new_burst = first || ts - s.last_payload >= config.burst_gap;
  if (new_burst) {
    CloseBurst(s);
    s.burst_open = true;
    s.burst_bytes = 0;
    ++s.bursts;
    // As a screen side: does this burst answer the other side's input? An answer cannot
    // reach the sensor sooner than the round trip to this side allows.
    const std::int64_t lo = absl::ToInt64Microseconds(leg_rtt_[d] / 2);
    const std::int64_t hi = absl::ToInt64Microseconds(leg_rtt_[d] + reaction);
    ResolvePending(other, now_us, lo, hi);
    s.burst_is_response = false;
    for (std::int64_t t : other.recent_inputs) {
      if (t != kNoInput && now_us >= t + lo && now_us <= t + hi) {
        s.burst_is_response = true;
      }
    }
    s.response_bursts += s.burst_is_response ? 1 : 0;
  }
  s.burst_bytes += payload_bytes;

  const std::int64_t second = std::max<std::int64_t>(0, (ts - start_) / absl::Seconds(1));
  if (second != s.second) {
    s.second = second;
    s.second_inputs = 0;
    s.media_second_inputs = 0;
    ++s.active_seconds;
  }

  if (small && new_burst) {
    // As an input side: an input event (a key, a pointer move, a frame acknowledgement).
    ++s.input_events;
    s.input_sizes.Add(payload_bytes);
    bool locked = false;
    if (Spontaneous(ts, other.last_payload, leg_rtt_[d], config.quiet_gap, &locked)) {
      CountSpontaneous(s.spontaneous_inputs, s.second_inputs, s.active_input_seconds);
    }
    s.locked_inputs += locked ? 1 : 0;
    // A far screen sent as video answers one input while the next comes, so its media is
    // rarely silent for quiet_gap: counted apart, used when the flow is MediaOneWay().
    const PacketTime other_prompt = other.last_prompt == kNoInput
                                        ? absl::InfinitePast()
                                        : start_ + absl::Microseconds(other.last_prompt);
    if (Spontaneous(ts, other_prompt, leg_rtt_[d], config.quiet_gap, &locked)) {
      CountSpontaneous(s.media_spontaneous_inputs, s.media_second_inputs,
                       s.media_active_input_seconds);
    }
    s.recent_inputs[0] = s.recent_inputs[1];
    s.recent_inputs[1] = now_us;
    // Inputs whose answer window has passed make room; beyond the ring, inputs are not sampled.
    const std::int64_t hi = absl::ToInt64Microseconds(leg_rtt_[1 - d] + reaction);
    while (s.pending_size > 0 && s.pending[s.pending_head] + hi < now_us) {
      ++s.inputs_resolved;
      s.pending_head = (s.pending_head + 1) % kPendingInputs;
      --s.pending_size;
    }
    if (s.pending_size < kPendingInputs) {
      s.pending[(s.pending_head + s.pending_size) % kPendingInputs] = now_us;
      ++s.pending_size;
    } else {
      ++s.inputs_unsampled;
    }
  }
  s.last_payload = ts;
  if (!media) {
    s.last_prompt = now_us;
  }
}

void FlowShape::Finish(const FlowShapeConfig& config) {
  for (int d = 0; d < 2; ++d) {
    DirectionShape& s = dir_[d];
    CloseBurst(s);
    // An input whose window passed before the other side's last packet went unanswered;
    // the rest were cut off by the end of the flow and say nothing.
    const PacketTime other_last = dir_[1 - d].last_payload;
    const std::int64_t hi = absl::ToInt64Microseconds(leg_rtt_[1 - d] + config.reaction_window);
    while (s.pending_size > 0) {
      if (other_last != absl::InfinitePast() &&
          s.pending[s.pending_head] + hi < Micros(other_last)) {
        ++s.inputs_resolved;
      }
      s.pending_head = (s.pending_head + 1) % kPendingInputs;
      --s.pending_size;
    }
  }
}

bool FlowShape::MediaBothWays() const {
  for (const DirectionShape& s : dir_) {
    if (s.payload_packets < 10 || 2 * s.rtp_media < s.payload_packets) {
      return false;
    }
  }
  return true;
}

bool FlowShape::MediaOneWay(int screen) const {
  const DirectionShape& s = dir_[screen];
  const DirectionShape& in = dir_[1 - screen];
  return s.payload_packets >= 10 && 2 * s.rtp_media >= s.payload_packets &&
         2 * in.rtp_media < in.payload_packets;
}

bool FlowShape::LooksLikeCall() const {
  return MediaBothWays() || (call_windows_ > 0 && 5 * call_windows_ >= windows_);
}

double FlowShape::IdleFraction(int d, PacketTime now) const {
  const double bins = std::ceil(absl::ToDoubleSeconds(now - start_));
  if (bins <= 0) {
    return 0;
  }
  return std::clamp(1.0 - dir_[d].active_seconds / bins, 0.0, 1.0);
}

Orientation FlowShape::View(int screen, PacketTime now) const {
  const DirectionShape& s = dir_[screen];
  const DirectionShape& in = dir_[1 - screen];
  Orientation o;
  o.screen = screen;
  o.duration = now - start_;
  o.byte_ratio = Ratio(static_cast<double>(s.payload_bytes),
                       static_cast<double>(std::max<std::uint64_t>(in.payload_bytes, 1)));
  o.coupling = Ratio(in.inputs_answered, in.inputs_resolved);
  o.response_share = Ratio(s.response_bursts, s.bursts);
  o.median_input_bytes = in.input_sizes.Median();
  o.median_response_bytes = s.response_sizes.Median();
  o.size_ratio = Ratio(static_cast<double>(o.median_response_bytes),
                       static_cast<double>(o.median_input_bytes));
  o.input_share = Ratio(in.small_packets, in.payload_packets);
  o.input_events = in.input_events;
  const bool media = MediaOneWay(screen);
  o.spontaneous_inputs = media ? in.media_spontaneous_inputs : in.spontaneous_inputs;
  o.active_input_seconds = media ? in.media_active_input_seconds : in.active_input_seconds;
  o.input_gap_cv = Cv(in.gap_sum, in.gap_sq_sum, in.gaps);
  return o;
}

namespace {

// The thresholds in the order they are checked; the rank of the first one missed says how
// close an orientation came.
constexpr const char* kCheckNames[] = {"input_events",   "input_share", "size_ratio",
                                       "response_share", "coupling",    "active_input_seconds",
                                       "input_gap_cv",   "byte_ratio"};
constexpr int kChecks = 8;

// The index in kCheckNames of the first threshold `o` misses, or kChecks when it meets all.
int FirstMiss(const Orientation& o, const Thresholds& t) {
  const bool met[kChecks] = {
      o.input_events >= t.input_events, o.input_share >= t.input_share,
      o.size_ratio >= t.size_ratio,     o.response_share >= t.response_share,
      o.coupling >= t.coupling,         o.active_input_seconds >= t.active_input_seconds,
      o.input_gap_cv >= t.input_gap_cv, o.byte_ratio >= t.byte_ratio};
  for (int i = 0; i < kChecks; ++i) {
    if (!met[i]) {
      return i;
    }
  }
  return kChecks;
}

}  // namespace

Decision Decide(const FlowShape& shape, const FlowShapeConfig& config, PacketTime now,
                absl::Duration flow_age) {
  Decision d;
  const Orientation views[2] = {shape.View(0, now), shape.View(1, now)};
  const int reached[2] = {FirstMiss(views[0], config.thresholds),
                          FirstMiss(views[1], config.thresholds)};
  // Report the orientation that got further down the list (ties: the heavier sender).
  int best = views[0].byte_ratio >= 1 ? 0 : 1;
  if (reached[1 - best] > reached[best]) {
    best = 1 - best;
  }
  d.features = views[best];
  if (flow_age < config.min_duration) {
    d.failed = "min_duration";
    return d;
  }
  if (shape.LooksLikeCall()) {
    d.verdict = ShapeVerdict::kCall;
    d.failed = "call";
    return d;
  }
  if (reached[best] < kChecks) {
    d.failed = kCheckNames[reached[best]];
    return d;
  }
  d.verdict = ShapeVerdict::kRemoteControl;
  return d;
}

int DecideScreenSide(const FlowShape& shape, const FlowShapeConfig& config, PacketTime now) {
  if (shape.LooksLikeCall()) {
    return -1;
  }
  const Thresholds& t = config.thresholds;
  const auto fits = [&](const Orientation& o) {
    return o.input_events >= std::max<std::uint64_t>(10, t.input_events / 2) &&
           o.input_share >= t.input_share && o.size_ratio >= t.size_ratio &&
           o.response_share >= t.response_share && o.byte_ratio >= t.byte_ratio;
  };
  const bool fit0 = fits(shape.View(0, now));
  const bool fit1 = fits(shape.View(1, now));
  if (fit0 == fit1) {
    return -1;
  }
  return fit0 ? 0 : 1;
}

}  // namespace relaywatch::detectors::flow_shape
