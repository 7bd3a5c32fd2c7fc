#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/config_reader.h"

namespace relaywatch::detectors::flow_shape {

// The decision thresholds (detectors.flow_shape.thresholds). A flow is reported when every
// one of them holds for one orientation (screen side, input side); see Decide().
struct Thresholds {
  // Payload bytes screen side / input side.
  double byte_ratio = 0.5;
  // Share of the input side's input events followed by a screen burst within the reaction
  // window (the research brief's "reaction coupling"; pointer moves the client draws itself
  // get no answer, hence the low bar).
  double coupling = 0.25;
  // Share of the screen side's bursts that start within the reaction window after an input
  // event: the screen speaks when driven.
  double response_share = 0.6;
  // Median answering burst / median input event, in bytes: a screen update is larger than
  // the key or pointer event that caused it (a terminal echo is not).
  double size_ratio = 2.0;
  // Share of the input side's payload packets that are input-sized (<= input_max_bytes).
  double input_share = 0.75;
  // Input events (input-sized packets that start a burst) needed before deciding.
  std::uint64_t input_events = 40;
  // Seconds with at least kInputsPerActiveSecond spontaneous input events: sustained human
  // input rather than an application's occasional request.
  std::uint64_t active_input_seconds = 8;
  // Coefficient of variation of the input side's inter-packet gaps: people type and point in
  // bursts and pauses (CV > 1); polling, media and machine chatter are regular.
  double input_gap_cv = 1.0;
  // Call suppression: a window in which both directions send at least call_pps packets per
  // second with inter-packet CV below call_cv is media, not a screen and its input.
  double call_pps = 20;
  double call_cv = 0.5;
};

struct FlowShapeConfig {
  bool enabled = true;
  // A flow is judged once it has lasted this long, then at every window boundary and at its
  // end (remote-control sessions are long; short flows are never judged).
  absl::Duration min_duration = absl::Seconds(20);
  // Call-suppression window and decision cadence.
  absl::Duration window = absl::Seconds(10);
  // Largest payload that counts as an input event (keys, pointer moves, frame acks;
  // includes TLS/DTLS record overhead).
  std::uint64_t input_max_bytes = 130;
  // Packets of one direction closer than this belong to one burst (one screen update, one
  // application write).
  absl::Duration burst_gap = absl::Milliseconds(5);
  // An answer counts when it reaches the sensor between half the screen side's RTT and that
  // RTT plus this window after the input.
  absl::Duration reaction_window = absl::Milliseconds(300);
  // An input is spontaneous when the screen side has been silent at least this long before
  // it (and it does not arrive one input-side RTT after the screen's last packet, which is
  // what an acknowledgement or a lock-step request does).
  absl::Duration quiet_gap = absl::Milliseconds(50);
  // Report the screen side of named-tool sessions whose direction is unknown (AnyDesk,
  // TeamViewer through a relay) to the host stage, which fills in remote_session.controlled.
  bool direction_for_named_tools = true;
  Thresholds thresholds;
};

// Reads detectors.flow_shape; unknown keys and bad values are errors with file:line:col.
absl::StatusOr<FlowShapeConfig> ParseFlowShapeConfig(const config::Section& section);

}  // namespace relaywatch::detectors::flow_shape
