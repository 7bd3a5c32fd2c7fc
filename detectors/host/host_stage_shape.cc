// The host stage's side of the flow_shape detector. A flow's named identification (the
// remote_access detector's handshake parsing, a TLS or DNS clue) always reaches this stage
// before the same flow's shape finding: the named one is made from the flow's first packets
// on the same worker, and the shape one needs min_duration of traffic. So the stage can
// (1) drop an unknown_remote_control finding for a flow it already holds a named session
// for, and (2) use the shape detector's screen side to fill in `controlled` of a named
// session whose traffic did not say it (tools meeting at a vendor relay), as a second
// remote_session record for the flow with `direction_from: flow_shape`. A flow whose TLS or
// QUIC handshake offers only DNS transports (RFC 7858 `dot`, RFC 9250 `doq`) is named too: a
// resolver answering a browser's lookups has the shape of a screen answering keys, and the
// protocol says it is not one.
#include <algorithm>

#include "absl/strings/match.h"

#include "detectors/flow_shape/flow_shape.h"
#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"

namespace relaywatch::host {
namespace {

// Named sessions remembered for later shape findings; a week covers any session we judge.
constexpr std::size_t kMaxNamedFlows = 65536;
constexpr absl::Duration kNamedFlowAge = absl::Hours(24 * 7);

bool DirectionKnown(const nlohmann::json& session) {
  return session.value("controlled", "unknown") != "unknown";
}

// Every ALPN the client offers is a DNS transport (drafts of DoQ were `doq-i00`..`doq-i12`).
bool OffersOnlyDns(const nlohmann::json& tls) {
  const auto alpn = tls.find("alpn");
  if (alpn == tls.end() || !alpn->is_array() || alpn->empty())
    return false;
  return std::all_of(alpn->begin(), alpn->end(), [](const nlohmann::json& a) {
    if (!a.is_string())
      return false;
    const std::string& p = a.get_ref<const std::string&>();
    return p == "dot" || p == "doq" || absl::StartsWith(p, "doq-i");
  });
}

}  // namespace

HostStage::NamedFlow& HostStage::NamedFlowEntry(std::uint64_t flow_id, PacketTime ts) {
  if (named_flows_.size() >= kMaxNamedFlows && !named_flows_.contains(flow_id)) {
    const std::size_t before = named_flows_.size();
    absl::erase_if(named_flows_, [&](const auto& kv) { return ts - kv.second.ts > kNamedFlowAge; });
    if (named_flows_.size() >= kMaxNamedFlows) {
      // Still full of recent sessions: forget the oldest.
      named_flows_.erase(Oldest(named_flows_, [](const NamedFlow& n) { return n.ts; }));
    }
    absl::MutexLock lock(&mu_);
    stats_.named_flows_evicted += before - named_flows_.size();
  }
  return named_flows_[flow_id];
}

void HostStage::NoteDnsTransport(const Event& tls) {
  if (!tls.flow || !OffersOnlyDns(tls.body))
    return;
  NamedFlow& named = NamedFlowEntry(tls.flow->flow_id, tls.ts);
  if (named.ts == absl::InfinitePast()) {
    named.ts = tls.ts;
    named.direction_known = true;  // nothing to fill in
    named.dns = true;
    named.flow = *tls.flow;
  }
}

void HostStage::NoteNamedSession(const Event& session) {
  if (!session.flow ||
      session.body.value("app", "") == detectors::flow_shape::kUnknownRemoteControl) {
    return;
  }
  NamedFlow& named = NamedFlowEntry(session.flow->flow_id, session.ts);
  if (named.ts == absl::InfinitePast() || !named.direction_known) {
    named.ts = session.ts;
    named.direction_known = DirectionKnown(session.body);
    named.flow = *session.flow;
    // Only a session that may still get its direction needs its record kept.
    named.session = named.direction_known ? nlohmann::json() : session.body;
  }
}

void HostStage::FillDirection(NamedFlow& named, const Event& finding, std::vector<Event>& publish) {
  if (named.direction_known || !DirectionKnown(finding.body)) {
    return;
  }
  Event update;
  update.event_type = "remote_session";
  update.ts = finding.ts;
  update.flow = named.flow;
  update.body = named.session;
  for (const char* key : {"controlled", "controlled_port", "controller", "controlled_side"}) {
    update.body[key] = finding.body[key];
  }
  update.body["direction_from"] = "flow_shape";
  update.body["flow_shape"] = finding.body.value("flow_shape", nlohmann::json::object());
  named.direction_known = true;
  named.session = nlohmann::json();
  {
    absl::MutexLock lock(&mu_);
    ++stats_.shape_directions_filled;
  }
  std::vector<Event> alerts;
  SessionFound(update, alerts);
  publish.push_back(std::move(update));
  for (Event& alert : alerts) {
    publish.push_back(std::move(alert));
  }
}

bool HostStage::ShapeFinding(const Event& finding, std::vector<Event>& publish) {
  const bool direction_only = finding.event_type == detectors::flow_shape::kDirectionFinding;
  const bool shape_session =
      finding.event_type == "remote_session" &&
      finding.body.value("app", "") == detectors::flow_shape::kUnknownRemoteControl;
  if (!direction_only && !shape_session) {
    if (finding.event_type == "remote_session") {
      NoteNamedSession(finding);
    } else if (finding.event_type == "tls") {
      NoteDnsTransport(finding);
    }
    return false;
  }
  auto named = finding.flow ? named_flows_.find(finding.flow->flow_id) : named_flows_.end();
  if (named == named_flows_.end()) {
    // Not a named tool's flow: a shape session stands on its own; a bare screen side is of
    // no use and is not published.
    return direction_only;
  }
  FillDirection(named->second, finding, publish);
  if (shape_session) {
    absl::MutexLock lock(&mu_);
    ++(named->second.dns ? stats_.shape_suppressed_dns : stats_.shape_suppressed_named);
  }
  return true;
}

}  // namespace relaywatch::host
