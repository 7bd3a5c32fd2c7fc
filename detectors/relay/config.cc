#include "detectors/relay/config.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::relay {
namespace {

// `methods:` lists the methods that run; an absent key runs all of them.
absl::StatusOr<RelayMethods> ReadMethods(const config::Section& section) {
  if (!section.Has("methods")) {
    return RelayMethods{};
  }
  RW_ASSIGN_OR_RETURN(const std::vector<std::string> names, section.StringList("methods", {}));
  const YAML::Node list = section.At("methods");
  RelayMethods m{false, false, false, false, false};
  for (std::size_t i = 0; i < names.size(); ++i) {
    bool* on = names[i] == "hidden_leg"       ? &m.hidden_leg
               : names[i] == "controller_rtt" ? &m.controller_rtt
               : names[i] == "stepping_stone" ? &m.stepping_stone
               : names[i] == "keystrokes"     ? &m.keystrokes
               : names[i] == "routed_relay"   ? &m.routed_relay
                                              : nullptr;
    if (on == nullptr) {
      return section.Error(list[i], "methods",
                           absl::StrCat("unknown method \"", names[i],
                                        "\"; known: hidden_leg, controller_rtt, stepping_stone, "
                                        "keystrokes, routed_relay"));
    }
    if (*on) {
      return section.Error(list[i], "methods", absl::StrCat("\"", names[i], "\" listed twice"));
    }
    *on = true;
  }
  return m;
}

}  // namespace

absl::StatusOr<RelayConfig> ParseRelayConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(section.CheckKeys({"enabled",
                                        "methods",
                                        "turnaround_samples",
                                        "max_turnaround",
                                        "report_after",
                                        "idle",
                                        "window",
                                        "min_samples",
                                        "min_flows",
                                        "hidden_leg_exempt_servers",
                                        "hidden_leg_max_opening_ratio",
                                        "local_rtt",
                                        "stepping_stone_delta",
                                        "stepping_stone_ratio",
                                        "stepping_stone_min_ons",
                                        "stepping_stone_max_p",
                                        "stepping_stone_packet_delta",
                                        "stepping_stone_across_hosts",
                                        "typing_baseline_samples",
                                        "typing_window_samples",
                                        "typing_longest_window_samples",
                                        "typing_max_p"}));
  RelayConfig c;
  RW_ASSIGN_OR_RETURN(c.enabled, section.Bool("enabled", c.enabled));
  RW_ASSIGN_OR_RETURN(c.methods, ReadMethods(section));
  RW_ASSIGN_OR_RETURN(c.turnaround_samples,
                      section.Uint("turnaround_samples", c.turnaround_samples, 1, 64));
  RW_ASSIGN_OR_RETURN(c.max_turnaround,
                      section.Duration("max_turnaround", c.max_turnaround, absl::Milliseconds(10),
                                       absl::Seconds(10)));
  RW_ASSIGN_OR_RETURN(c.report_after, section.Duration("report_after", c.report_after,
                                                       absl::Seconds(1), absl::Hours(24)));
  RW_ASSIGN_OR_RETURN(c.idle,
                      section.Duration("idle", c.idle, absl::Milliseconds(50), absl::Seconds(60)));
  RW_ASSIGN_OR_RETURN(c.window,
                      section.Duration("window", c.window, absl::Minutes(1), absl::Hours(24 * 7)));
  RW_ASSIGN_OR_RETURN(c.min_samples, section.Uint("min_samples", c.min_samples, 1, 10000));
  RW_ASSIGN_OR_RETURN(c.min_flows, section.Uint("min_flows", c.min_flows, 1, 64));
  RW_ASSIGN_OR_RETURN(c.hidden_leg_exempt_servers, section.CidrList("hidden_leg_exempt_servers"));
  RW_ASSIGN_OR_RETURN(
      c.hidden_leg_max_opening_ratio,
      section.Double("hidden_leg_max_opening_ratio", c.hidden_leg_max_opening_ratio, 0.0, 100.0));
  RW_ASSIGN_OR_RETURN(c.local_rtt, section.Duration("local_rtt", c.local_rtt, absl::Milliseconds(1),
                                                    absl::Seconds(5)));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_delta,
                      section.Duration("stepping_stone_delta", c.stepping_stone_delta,
                                       absl::Milliseconds(1), absl::Seconds(5)));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_ratio,
                      section.Double("stepping_stone_ratio", c.stepping_stone_ratio, 0.01, 1.0));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_min_ons,
                      section.Uint("stepping_stone_min_ons", c.stepping_stone_min_ons, 2, 100000));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_max_p,
                      section.Double("stepping_stone_max_p", c.stepping_stone_max_p, 1e-12, 1.0));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_packet_delta,
                      section.Duration("stepping_stone_packet_delta", c.stepping_stone_packet_delta,
                                       absl::ZeroDuration(), absl::Seconds(1)));
  RW_ASSIGN_OR_RETURN(c.stepping_stone_across_hosts,
                      section.Bool("stepping_stone_across_hosts", c.stepping_stone_across_hosts));
  RW_ASSIGN_OR_RETURN(
      c.typing_baseline_samples,
      section.Uint("typing_baseline_samples", c.typing_baseline_samples, 20, 100000));
  RW_ASSIGN_OR_RETURN(c.typing_window_samples,
                      section.Uint("typing_window_samples", c.typing_window_samples, 10, 10000));
  RW_ASSIGN_OR_RETURN(
      c.typing_longest_window_samples,
      section.Uint("typing_longest_window_samples", c.typing_longest_window_samples, 10, 100000));
  if (c.typing_longest_window_samples < c.typing_window_samples) {
    return section.Error(
        section.At("typing_longest_window_samples"), "typing_longest_window_samples",
        absl::StrCat("must be at least typing_window_samples (", c.typing_window_samples, ")"));
  }
  RW_ASSIGN_OR_RETURN(c.typing_max_p, section.Double("typing_max_p", c.typing_max_p, 0.0001, 0.5));
  return c;
}

}  // namespace relaywatch::detectors::relay
