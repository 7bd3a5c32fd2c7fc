#include "detectors/host/host_stage.h"

#include "absl/strings/str_cat.h"

namespace relaywatch::host {

HostStage::HostStage(HostStageConfig config) : config_(std::move(config)) {}

void HostStage::Reconfigure(HostStageConfig config) { config_ = std::move(config); }

bool HostStage::IsHome(const IpAddress& address) const {
  for (const Cidr& net : config_.home_networks) {
    if (net.Contains(address)) {
      return true;
    }
  }
  return false;
}

HostStageStats HostStage::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

HostStage::HostState& HostStage::Host(const IpAddress& host, PacketTime now) {
  auto it = hosts_.find(host);
  if (it == hosts_.end()) {
    if (hosts_.size() >= config_.max_hosts) {
      // Forget the idlest host. A linear scan, but only when the table is full, and the
      // table holds hosts that alerted, which are few.
      auto idlest = hosts_.begin();
      for (auto h = hosts_.begin(); h != hosts_.end(); ++h) {
        if (h->second.last_seen < idlest->second.last_seen) {
          idlest = h;
        }
      }
      hosts_.erase(idlest);
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

void HostStage::RemoteSession(const Event& finding, std::vector<Event>& publish) {
  const nlohmann::json& s = finding.body;
  const std::string app = s.value("app", "");
  {
    absl::MutexLock lock(&mu_);
    ++stats_.remote_sessions_by_app[app];
  }
  absl::StatusOr<IpAddress> controlled = IpAddress::Parse(s.value("controlled", ""));
  absl::StatusOr<IpAddress> controller = IpAddress::Parse(s.value("controller", ""));
  if (!controlled.ok() || !controller.ok()) {
    return;  // direction unknown: nothing to say about which host is operated
  }
  if (!IsHome(*controlled) || IsHome(*controller)) {
    return;
  }
  const std::string key = absl::StrCat(kSidRemoteControlFromOutside, "/", app, "/",
                                       controller->ToString());
  if (!Admit(*controlled, key, finding.ts)) {
    return;
  }
  Event alert;
  alert.event_type = "alert";
  alert.ts = finding.ts;
  alert.flow = finding.flow;
  alert.host_ip = *controlled;
  AlertInfo info;
  info.signature_id = kSidRemoteControlFromOutside;
  info.signature = absl::StrCat("RELAYWATCH internal host remotely controlled from outside (",
                                app, ")");
  info.category = "Remote access";
  // A screen (RDP, VNC) is the laptop-farm pattern itself; a shell is one step removed.
  info.severity = app == "ssh" ? 2 : 1;
  info.detector = "remote_access";
  alert.alert = info;
  alert.evidence = {{"app", app},
                    {"controlled", controlled->ToString()},
                    {"controller", controller->ToString()},
                    {"remote_session", s}};
  {
    absl::MutexLock lock(&mu_);
    ++stats_.alerts[{info.detector, info.severity}];
  }
  publish.push_back(std::move(alert));
}

void HostStage::Process(Event finding, std::vector<Event>& publish) {
  // The finding goes out before the alert it causes, so a reader meets the session first.
  std::vector<Event> alerts;
  if (finding.event_type == "remote_session") {
    RemoteSession(finding, alerts);
  }
  publish.push_back(std::move(finding));
  for (Event& alert : alerts) {
    publish.push_back(std::move(alert));
  }
}

}  // namespace relaywatch::host
