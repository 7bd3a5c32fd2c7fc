#pragma once

#include <string>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

#include "detectors/event.h"

namespace relaywatch::sinks {

// Formats `t` as RFC 3339 UTC with exactly six fractional digits and a `Z` suffix, e.g.
// "2024-05-06T10:11:12.123456Z". Sub-microsecond parts are truncated, not rounded, so a
// record never appears to come from a later microsecond than its packet.
std::string FormatTimestamp(absl::Time t);

// Converts an Event to an EVE-compatible JSON object (Suricata eve.json field names).
//
// Returns nlohmann::ordered_json so keys keep insertion order: golden tests diff the output
// byte for byte and EVE readers expect `timestamp` first. Key order:
//   timestamp, flow_id, event_type, src_ip, src_port, dest_ip, dest_port, proto,
//   community_id, host_ip, alert, <event_type> (the body), evidence
// - `timestamp` is the packet time e.ts (FormatTimestamp), never the wall clock.
// - flow_id and the five-tuple fields appear only when e.flow is set; ports only for TCP,
//   UDP and SCTP (EVE omits them for port-less protocols such as ICMP).
// - `alert` = {action:"allowed", gid:1, signature_id, rev:1, signature, category, severity,
//   detector} when e.alert is set.
// - The body is written under the key e.event_type unless it is empty (null, {} or []),
//   the event type is "alert" or "evidence", or that key is already taken by a field above.
// - `evidence` when not null.
// Never throws on bad string content (strings are copied, not validated); serialise with
// dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) so invalid UTF-8 taken
// from packets becomes U+FFFD instead of an exception.
nlohmann::ordered_json EventToJson(const Event& e);

}  // namespace relaywatch::sinks
