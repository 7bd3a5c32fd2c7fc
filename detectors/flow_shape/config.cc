#include "detectors/flow_shape/config.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::flow_shape {
namespace {

absl::StatusOr<Thresholds> ParseThresholds(const config::Section& s) {
  RW_RETURN_IF_ERROR(
      s.CheckKeys({"byte_ratio", "coupling", "response_share", "size_ratio", "input_share",
                   "input_events", "active_input_seconds", "input_gap_cv", "call_pps", "call_cv"}));
  Thresholds t;
  RW_ASSIGN_OR_RETURN(t.byte_ratio, s.Double("byte_ratio", t.byte_ratio, 0, 1e6));
  RW_ASSIGN_OR_RETURN(t.coupling, s.Double("coupling", t.coupling, 0, 1));
  RW_ASSIGN_OR_RETURN(t.response_share, s.Double("response_share", t.response_share, 0, 1));
  RW_ASSIGN_OR_RETURN(t.size_ratio, s.Double("size_ratio", t.size_ratio, 0, 1e6));
  RW_ASSIGN_OR_RETURN(t.input_share, s.Double("input_share", t.input_share, 0, 1));
  RW_ASSIGN_OR_RETURN(t.input_events, s.Uint("input_events", t.input_events, 1, 1000000));
  RW_ASSIGN_OR_RETURN(t.active_input_seconds,
                      s.Uint("active_input_seconds", t.active_input_seconds, 0, 1000000));
  RW_ASSIGN_OR_RETURN(t.input_gap_cv, s.Double("input_gap_cv", t.input_gap_cv, 0, 100));
  RW_ASSIGN_OR_RETURN(t.call_pps, s.Double("call_pps", t.call_pps, 0, 1e6));
  RW_ASSIGN_OR_RETURN(t.call_cv, s.Double("call_cv", t.call_cv, 0, 100));
  return t;
}

}  // namespace

absl::StatusOr<FlowShapeConfig> ParseFlowShapeConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(section.CheckKeys({"enabled", "min_duration", "window", "input_max_bytes",
                                        "burst_gap", "reaction_window", "quiet_gap",
                                        "direction_for_named_tools", "thresholds"}));
  FlowShapeConfig c;
  RW_ASSIGN_OR_RETURN(c.enabled, section.Bool("enabled", c.enabled));
  RW_ASSIGN_OR_RETURN(c.min_duration, section.Duration("min_duration", c.min_duration,
                                                       absl::Seconds(1), absl::Hours(24)));
  RW_ASSIGN_OR_RETURN(c.window,
                      section.Duration("window", c.window, absl::Seconds(1), absl::Minutes(10)));
  // 16 bytes: the smallest input event plus framing; 1500: one Ethernet MTU.
  RW_ASSIGN_OR_RETURN(c.input_max_bytes,
                      section.Uint("input_max_bytes", c.input_max_bytes, 16, 1500));
  RW_ASSIGN_OR_RETURN(
      c.burst_gap,
      section.Duration("burst_gap", c.burst_gap, absl::Microseconds(100), absl::Milliseconds(100)));
  RW_ASSIGN_OR_RETURN(c.reaction_window,
                      section.Duration("reaction_window", c.reaction_window, absl::Milliseconds(10),
                                       absl::Seconds(5)));
  RW_ASSIGN_OR_RETURN(c.quiet_gap, section.Duration("quiet_gap", c.quiet_gap, absl::Milliseconds(1),
                                                    absl::Seconds(1)));
  RW_ASSIGN_OR_RETURN(c.direction_for_named_tools,
                      section.Bool("direction_for_named_tools", c.direction_for_named_tools));
  RW_ASSIGN_OR_RETURN(c.thresholds, ParseThresholds(section.Child("thresholds")));
  if (c.window > c.min_duration) {
    return section.Error(section.At("window"), "window",
                         "must not be longer than min_duration (decisions run per window)");
  }
  return c;
}

}  // namespace relaywatch::detectors::flow_shape
