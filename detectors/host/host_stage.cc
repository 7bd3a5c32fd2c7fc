#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "detectors/flow_shape/flow_shape.h"
#include "detectors/relay/relay.h"

namespace relaywatch::host {

HostStage::HostStage(HostStageConfig config) : config_(std::move(config)) {}

void HostStage::Reconfigure(HostStageConfig config) {
  absl::MutexLock lock(&mu_);
  pending_config_ = std::move(config);
  has_pending_config_.store(true, std::memory_order_release);
}

bool HostStage::IsHome(const IpAddress& address) const {
  return AnyContains(config_.home_networks, address);
}

HostStageStats HostStage::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

HostStage::HostState& HostStage::Host(const IpAddress& host, PacketTime now) {
  auto it = hosts_.find(host);
  if (it == hosts_.end()) {
    if (hosts_.size() >= config_.max_hosts) {
      // Forget the idlest host.
      hosts_.erase(Oldest(hosts_, [](const HostState& s) { return s.last_seen; }));
      absl::MutexLock lock(&mu_);
      ++stats_.hosts_evicted;
    }
    it = hosts_.emplace(host, HostState{}).first;
  }
  if (now > it->second.last_seen) {
    it->second.last_seen = now;
  }
  absl::MutexLock lock(&mu_);
  stats_.hosts_tracked = hosts_.size();
  return it->second;
}

bool HostStage::Admit(const IpAddress& host, const std::string& key, PacketTime now) {
  HostState& state = Host(host, now);
  auto [it, inserted] = state.alerted.try_emplace(key, now);
  if (!inserted) {
    if (now - it->second < config_.dedup_window) {
      absl::MutexLock lock(&mu_);
      ++stats_.suppressed_duplicate;
      return false;
    }
    it->second = now;
  }
  if (state.window_start == absl::InfinitePast() || now - state.window_start >= absl::Hours(1)) {
    state.window_start = now;
    state.window_alerts = 0;
  }
  if (state.window_alerts >= config_.max_alerts_per_host_per_hour) {
    absl::MutexLock lock(&mu_);
    ++stats_.suppressed_rate_limited;
    return false;
  }
  ++state.window_alerts;
  // Keys older than the window will never suppress again; drop them to bound the map.
  if (state.alerted.size() > 64) {
    absl::erase_if(state.alerted,
                   [&](const auto& kv) { return now - kv.second >= config_.dedup_window; });
  }
  return true;
}

Event HostStage::NewAlert(PacketTime ts, const std::optional<FlowRef>& flow,
                         const IpAddress& host, std::uint32_t signature_id, std::string signature,
                         std::string category, int severity, std::string detector) {
  Event alert;
  alert.event_type = "alert";
  alert.ts = ts;
  alert.flow = flow;
  alert.host_ip = host;
  AlertInfo info;
  info.signature_id = signature_id;
  info.signature = std::move(signature);
  info.category = std::move(category);
  info.severity = severity;
  info.detector = std::move(detector);
  alert.alert = std::move(info);
  return alert;
}

bool HostStage::Allowed(const std::string& app, const IpAddress& host,
                        const std::optional<IpAddress>& controller) const {
  for (const AllowRule& rule : config_.allow) {
    if (!rule.app.empty() && rule.app != "*" && rule.app != app) {
      continue;
    }
    if (!rule.host.empty() && !AnyContains(rule.host, host)) {
      continue;
    }
    if (!rule.controller.empty() && (!controller || !AnyContains(rule.controller, *controller))) {
      continue;
    }
    return true;
  }
  return false;
}

std::vector<std::string> HostStage::Tools(const IpAddress& host, const std::string& app,
                                          PacketTime now) {
  constexpr std::size_t kMaxToolsPerHost = 32;
  HostState& state = Host(host, now);
  if (state.tools.size() >= kMaxToolsPerHost && !state.tools.contains(app)) {
    absl::erase_if(state.tools, [&](const auto& kv) {
      return now - kv.second >= config_.multi_tool_window;
    });
  }
  if (state.tools.size() < kMaxToolsPerHost || state.tools.contains(app)) {
    state.tools[app] = now;
  }
  std::vector<std::string> recent;
  for (const auto& [name, seen] : state.tools) {
    if (now - seen < config_.multi_tool_window) {
      recent.push_back(name);
    }
  }
  std::sort(recent.begin(), recent.end());
  return recent;
}

void HostStage::RemoteSession(const Event& finding, std::vector<Event>& publish) {
  const nlohmann::json& s = finding.body;
  const std::string app = s.value("app", "");
  // A direction filled in later (direction_from) is the same session, not a new one.
  if (!s.contains("direction_from")) {
    absl::MutexLock lock(&mu_);
    ++stats_.remote_sessions_by_app[app];
  }
  absl::StatusOr<IpAddress> controlled = IpAddress::Parse(s.value("controlled", ""));
  absl::StatusOr<IpAddress> controller = IpAddress::Parse(s.value("controller", ""));
  std::uint32_t sid = kSidRemoteControlFromOutside;
  IpAddress host;
  std::optional<IpAddress> peer;
  if (controlled.ok() && controller.ok()) {
    if (!IsHome(*controlled) || IsHome(*controller)) {
      return;  // internal admin work, or our host is the one controlling
    }
    host = *controlled;
    peer = *controller;
  } else if (finding.flow) {
    // Direction unknown (tools that meet at a relay): an internal host in a session with a
    // remote-control tool is worth an alert of its own, a notch lower.
    const bool src_home = IsHome(finding.flow->src_ip);
    const bool dest_home = IsHome(finding.flow->dest_ip);
    if (src_home == dest_home || app == "ssh") {
      return;
    }
    host = src_home ? finding.flow->src_ip : finding.flow->dest_ip;
    peer = src_home ? finding.flow->dest_ip : finding.flow->src_ip;
    sid = kSidRemoteToolSession;
  } else {
    return;
  }
  if (Allowed(app, host, peer)) {
    absl::MutexLock lock(&mu_);
    ++stats_.suppressed_allowed;
    return;
  }
  const std::vector<std::string> tools = Tools(host, app, finding.ts);
  const std::string key = absl::StrCat(sid, "/", app, "/", peer->ToString());
  if (!Admit(host, key, finding.ts)) {
    return;
  }
  AlertInfo info;
  info.signature_id = sid;
  info.signature =
      sid == kSidRemoteControlFromOutside
          ? absl::StrCat("RELAYWATCH internal host remotely controlled from outside (", app, ")")
          : absl::StrCat("RELAYWATCH internal host in a remote-control session (", app,
                         ", direction unknown)");
  info.category = "Remote access";
  // A screen (RDP, VNC, desktop tools, KVMs) is the laptop-farm pattern itself; a shell or a
  // session whose direction is unknown is one step removed. Several tools on one host within
  // the window is the pattern again.
  info.severity = (app == "ssh" || sid == kSidRemoteToolSession) ? 2 : 1;
  if (tools.size() >= 2) {
    info.severity = 1;
  }
  info.detector = "remote_access";
  if (app == detectors::flow_shape::kUnknownRemoteControl) {
    // A shape is weaker evidence than a handshake: a notch lower, whatever else the host ran.
    info.severity = 2;
    info.detector = "flow_shape";
  }
  Event alert = NewAlert(finding.ts, finding.flow, host, info.signature_id,
                         std::move(info.signature), std::move(info.category), info.severity,
                         std::move(info.detector));
  alert.evidence = {{"app", app},
                    {"host", host.ToString()},
                    {"peer", peer->ToString()},
                    {"tools_within_window", tools},
                    {"remote_session", s}};
  if (sid == kSidRemoteControlFromOutside) {
    alert.evidence["controlled"] = host.ToString();
    alert.evidence["controller"] = peer->ToString();
  }
  PublishAlert(std::move(alert), publish);
}

void HostStage::DnsClue(const Event& finding) {
  const nlohmann::json& answers = finding.body.value("answers", nlohmann::json::array());
  if (!config_.signatures || !answers.is_array()) {
    return;
  }
  // CNAME chains: the queried name decides; every address in the answer inherits it.
  const std::string query = finding.body.value("rrname", "");
  const detectors::AppSignature* app = config_.signatures->MatchDns(query);
  for (const nlohmann::json& a : answers) {
    if (!a.is_object() || !a.contains("rdata") || !a["rdata"].is_string()) {
      continue;
    }
    const detectors::AppSignature* by_name =
        app ? app : config_.signatures->MatchDns(a.value("rrname", ""));
    absl::StatusOr<IpAddress> address = IpAddress::Parse(a["rdata"].get<std::string>());
    if (by_name == nullptr || !address.ok()) {
      continue;
    }
    if (resolved_.size() >= config_.max_resolved_addresses && !resolved_.contains(*address)) {
      resolved_.erase(Oldest(resolved_, [](const Resolved& r) { return r.seen; }));
      absl::MutexLock lock(&mu_);
      ++stats_.resolved_evicted;
    }
    resolved_[*address] = Resolved{by_name, query, finding.ts};
  }
}

void HostStage::TlsClue(const Event& finding, std::vector<Event>& publish) {
  if (!config_.signatures || !finding.flow) {
    return;
  }
  const nlohmann::json& t = finding.body;
  const detectors::SignatureSet& sigs = *config_.signatures;
  const detectors::AppSignature* app = nullptr;
  std::string evidence;
  if (const std::string sni = t.value("sni", ""); !sni.empty() && (app = sigs.MatchSni(sni))) {
    evidence = absl::StrCat("TLS server name ", sni);
  }
  if (!app && t.contains("alpn") && t["alpn"].is_array()) {
    for (const nlohmann::json& alpn : t["alpn"]) {
      if (alpn.is_string() && (app = sigs.MatchAlpn(alpn.get<std::string>()))) {
        evidence = absl::StrCat("TLS ALPN ", alpn.get<std::string>());
        break;
      }
    }
  }
  for (const char* field : {"subject", "issuer"}) {
    const std::string text = t.value(field, "");
    if (!app && !text.empty() && (app = sigs.MatchCertificate(text))) {
      evidence = absl::StrCat("TLS certificate ", field, " ", text);
    }
  }
  if (!app) {
    if (auto it = resolved_.find(finding.flow->dest_ip);
        it != resolved_.end() && finding.ts - it->second.seen < config_.max_resolved_age) {
      app = it->second.app;
      evidence = absl::StrCat("server address resolved from ", it->second.name);
    }
  }
  if (!app) {
    return;
  }
  // One session per flow; forget flows after a day so the map stays small.
  if (attributed_flows_.size() > 65536) {
    absl::erase_if(attributed_flows_,
                   [&](const auto& kv) { return finding.ts - kv.second > absl::Hours(24); });
  }
  if (!attributed_flows_.try_emplace(finding.flow->flow_id, finding.ts).second) {
    return;
  }
  Event session;
  session.event_type = "remote_session";
  session.ts = finding.ts;
  session.flow = finding.flow;
  nlohmann::json& b = session.body;
  b["app"] = app->name;
  b["category"] = app->category;
  b["transport"] = "tcp";
  const FlowRef& f = *finding.flow;
  if (app->controlled == detectors::AppSignature::Controlled::kUnknown) {
    b["controlled"] = "unknown";
    b["controller"] = "unknown";
    b["controlled_side"] = "unknown";
  } else {
    const bool responder = app->controlled == detectors::AppSignature::Controlled::kResponder;
    b["controlled"] = (responder ? f.dest_ip : f.src_ip).ToString();
    b["controlled_port"] = responder ? f.dest_port : f.src_port;
    b["controller"] = (responder ? f.src_ip : f.dest_ip).ToString();
    b["controlled_side"] = responder ? "dest" : "src";
  }
  b["confirmed_by"] = "tls_clue";
  b["evidence"] = evidence;
  if (sigs.PortHint(*app, 6, f.dest_port)) {
    b["port_hint"] = f.dest_port;
  }
  std::vector<Event> alerts;
  NoteNamedSession(session);
  SessionFound(session, alerts);
  publish.push_back(std::move(session));
  for (Event& alert : alerts) {
    publish.push_back(std::move(alert));
  }
}

void HostStage::SessionFound(const Event& session, std::vector<Event>& alerts) {
  RememberSession(session);
  RemoteSession(session, alerts);
  ContextSession(session, alerts);
  LateSession(session, alerts);
}

void HostStage::Process(Event finding, std::vector<Event>& publish) {
  if (has_pending_config_.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&mu_);
    config_ = std::move(*pending_config_);
    pending_config_.reset();
    has_pending_config_.store(false, std::memory_order_relaxed);
  }
  if (finding.ts > now_) now_ = finding.ts;
  const std::size_t first = publish.size();
  ProcessFinding(std::move(finding), publish);
  std::vector<Event> score_alerts;
  for (std::size_t i = first; i < publish.size(); ++i) {
    if (!publish[i].alert) continue;
    EnrichAlert(publish[i]);
    ScoreAlert(publish[i], score_alerts);
  }
  for (Event& e : score_alerts) {
    EnrichAlert(e);
    publish.push_back(std::move(e));
  }
  if (now_ - top_scores_at_ >= absl::Minutes(1)) RefreshTopScores(now_);
}

void HostStage::ProcessFinding(Event finding, std::vector<Event>& publish) {
  // The finding goes out before the alert it causes, so a reader meets the session first.
  std::vector<Event> alerts;
  if (ShapeFinding(finding, publish)) {
    return;  // a flow_shape finding about a named tool's flow (host_stage_shape.cc)
  }
  if (finding.event_type == "remote_session") {
    SessionFound(finding, alerts);
  } else if (finding.event_type == "relay") {
    Relay(finding, alerts);
  } else if (finding.event_type == "tunnel") {
    ContextTunnel(finding);
    TunnelRecord(finding, alerts);
  } else if (finding.event_type == "path_mtu") {
    PathMtuRecord(finding, publish);  // internal: decides pending nested tunnels
    return;
  } else if (finding.event_type == detectors::relay::kOnWindowEvent) {
    // Consumed here: internal, it feeds the stepping stones and the typing baseline.
    RelayOnWindow(finding, publish);
    return;
  } else if (finding.event_type == detectors::relay::kExchangeEvent) {
    // Consumed here: internal, a possible fetch for the hidden leg.
    RelayExchange(finding);
    return;
  } else if (finding.event_type == "stack") {
    // Consumed here: its conclusions go out as shared_line records and context alerts.
    ContextConnection(finding, alerts);
    StackRecord(finding, publish);
    for (Event& alert : alerts) publish.push_back(std::move(alert));
    return;
  } else if (finding.event_type == "dns") {
    DnsClue(finding);
  } else if (finding.event_type == "tls") {
    std::vector<Event> sessions;
    TlsClue(finding, sessions);
    publish.push_back(std::move(finding));
    for (Event& e : sessions) {
      publish.push_back(std::move(e));
    }
    return;
  }
  publish.push_back(std::move(finding));
  for (Event& alert : alerts) {
    publish.push_back(std::move(alert));
  }
}

}  // namespace relaywatch::host
