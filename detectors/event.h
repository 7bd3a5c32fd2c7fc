#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "capture/base/ip_address.h"
#include "capture/base/packet_time.h"
#include "nlohmann/json.hpp"

namespace relaywatch::flow {
struct FlowState;
}

namespace relaywatch {

// The flow an event is about, oriented originator -> responder (src = SYN sender).
struct FlowRef {
  std::uint64_t flow_id = 0;
  IpAddress src_ip;
  IpAddress dest_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dest_port = 0;
  std::uint8_t protocol = 0;
  std::string community_id;

  static FlowRef FromFlow(const flow::FlowState& flow, std::uint16_t community_id_seed);
};

struct AlertInfo {
  std::uint32_t signature_id = 0;
  std::string signature;
  std::string category;
  int severity = 3;  // 1 = highest, as in Suricata
  std::string detector;
};

// One output record (EVE style). `body` is written under the key named by `event_type`
// ("remote_session": {...}); alerts add `alert`, `host_ip` and `evidence`.
struct Event {
  std::string event_type;
  PacketTime ts;
  std::optional<FlowRef> flow;
  nlohmann::json body = nlohmann::json::object();
  std::optional<AlertInfo> alert;
  std::optional<IpAddress> host_ip;
  nlohmann::json evidence;  // null unless set
  // Alerts are never shed under back-pressure; other records may be, and are counted.
  bool must_deliver() const { return alert.has_value(); }
};

// Protocol number -> EVE "proto" text ("TCP", "UDP", "ICMP", "IPv6-ICMP", or the number).
std::string ProtoName(std::uint8_t protocol);

}  // namespace relaywatch
