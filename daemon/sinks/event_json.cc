#include "daemon/sinks/event_json.h"

#include <cstdint>
#include <string_view>

namespace relaywatch::sinks {
namespace {

// EVE writes src_port/dest_port only for protocols that have ports.
bool HasPorts(std::uint8_t protocol) {
  return protocol == 6 || protocol == 17 || protocol == 132;  // TCP, UDP, SCTP
}

}  // namespace

std::string FormatTimestamp(absl::Time t) {
  // %E6S prints seconds with exactly six fractional digits (truncated).
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

nlohmann::ordered_json EventToJson(const Event& e) {
  nlohmann::ordered_json j;
  j["timestamp"] = FormatTimestamp(e.ts);
  if (e.flow.has_value()) {
    j["flow_id"] = e.flow->flow_id;
  }
  j["event_type"] = e.event_type;
  if (e.flow.has_value()) {
    const FlowRef& f = *e.flow;
    const bool ports = HasPorts(f.protocol);
    j["src_ip"] = f.src_ip.ToString();
    if (ports) {
      j["src_port"] = f.src_port;
    }
    j["dest_ip"] = f.dest_ip.ToString();
    if (ports) {
      j["dest_port"] = f.dest_port;
    }
    j["proto"] = ProtoName(f.protocol);
    if (!f.community_id.empty()) {
      j["community_id"] = f.community_id;
    }
  }
  if (e.host_ip.has_value()) {
    j["host_ip"] = e.host_ip->ToString();
  }
  if (e.alert.has_value()) {
    const AlertInfo& a = *e.alert;
    // A passive sensor never blocks, and gid 1 / rev 1 are Suricata's defaults for rules
    // that have no generator or revision of their own; EVE consumers key on them.
    j["alert"] = nlohmann::ordered_json{{"action", "allowed"},
                                        {"gid", 1},
                                        {"signature_id", a.signature_id},
                                        {"rev", 1},
                                        {"signature", a.signature},
                                        {"category", a.category},
                                        {"severity", a.severity},
                                        {"detector", a.detector}};
  }
  // An event type that names a header field ("timestamp", "alert", ...) must not replace
  // it: the header is what consumers join on.
  if (!e.body.empty() && !e.event_type.empty() && e.event_type != "alert" &&
      e.event_type != "evidence" && !j.contains(e.event_type)) {
    j[e.event_type] = nlohmann::ordered_json(e.body);
  }
  if (!e.evidence.is_null()) {
    j["evidence"] = nlohmann::ordered_json(e.evidence);
  }
  return j;
}

}  // namespace relaywatch::sinks
