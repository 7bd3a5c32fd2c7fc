// The host risk score: every alert is a piece of evidence against its host, weighted by its
// kind, graded by its severity and decaying with packet time; kinds combine as independent
// chances, 1 - prod(1 - w * s * decay), strongest piece per kind (research brief section 9).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "capture/base/status_macros.h"
#include "detectors/host/host_stage.h"

namespace relaywatch::host {
namespace {

constexpr std::size_t kMaxEvidenceKinds = 32;

// Severity 1 is the strongest finding, 3 a weak one.
double StrengthOf(int severity) {
  switch (severity) {
    case 1:
      return 1.0;
    case 2:
      return 0.8;
    default:
      return 0.5;
  }
}

bool IsKvm(const Event& alert) {
  const std::string app = alert.evidence.is_object() ? alert.evidence.value("app", "") : "";
  for (const char* kvm : {"pikvm", "tinypilot", "jetkvm", "nanokvm", "glkvm"}) {
    if (app == kvm)
      return true;
  }
  return false;
}

}  // namespace

HostScore HostStage::ScoreOf(const IpAddress& host, const HostState& state, PacketTime now) const {
  HostScore s;
  s.host = host;
  const ScoringConfig& c = config_.scoring;
  double keep = 1.0;
  for (const auto& [kind, e] : state.evidence) {
    auto w = c.weights.find(kind);
    const double weight = w != c.weights.end() ? w->second : c.default_weight;
    const double age_h = std::max(0.0, absl::ToDoubleHours(now - e.ts));
    const double decay = std::exp2(-age_h / absl::ToDoubleHours(c.half_life));
    const double contribution = std::clamp(weight * e.strength * decay, 0.0, 1.0);
    keep *= 1.0 - contribution;
    s.evidence.push_back({kind, contribution, e.signature_id, e.signature, e.ts});
  }
  s.score = 1.0 - keep;
  std::sort(s.evidence.begin(), s.evidence.end(),
            [](const auto& a, const auto& b) { return a.contribution > b.contribution; });
  return s;
}

void HostStage::ScoreAlert(const Event& alert, std::vector<Event>& publish) {
  if (!alert.host_ip || alert.alert->signature_id == kSidRiskScore)
    return;
  const std::string kind = IsKvm(alert) ? "kvm" : alert.alert->detector;
  HostState& state = Host(*alert.host_ip, alert.ts);
  auto it = state.evidence.find(kind);
  if (it == state.evidence.end() && state.evidence.size() >= kMaxEvidenceKinds)
    return;
  HostState::Evidence& e = state.evidence[kind];
  // The newest piece of a kind replaces an older one unless that is still stronger.
  const double strength = StrengthOf(alert.alert->severity);
  if (e.signature_id == 0 || strength >= e.strength || alert.ts > e.ts) {
    e = {strength, alert.ts, alert.alert->signature_id, alert.alert->signature};
  }
  const HostScore score = ScoreOf(*alert.host_ip, state, now_);
  const bool above = score.score >= config_.scoring.alert_threshold;
  const bool crossed = above && !state.above_threshold;
  state.above_threshold = above;
  if (!crossed || !Admit(*alert.host_ip, absl::StrCat(kSidRiskScore), alert.ts))
    return;
  Event out;
  out.event_type = "alert";
  out.ts = alert.ts;
  out.flow = alert.flow;
  out.host_ip = alert.host_ip;
  out.alert =
      AlertInfo{kSidRiskScore, absl::StrFormat("RELAYWATCH host risk score %.2f", score.score),
                "Risk score", 1, "risk_score"};
  nlohmann::json ranked = nlohmann::json::array();
  for (const HostScore::Item& item : score.evidence) {
    ranked.push_back({{"kind", item.kind},
                      {"contribution", std::round(item.contribution * 1000) / 1000},
                      {"signature_id", item.signature_id},
                      {"signature", item.signature},
                      {"timestamp_us", absl::ToUnixMicros(item.ts)}});
  }
  out.evidence = {{"method", "risk_score"},
                  {"score", std::round(score.score * 1000) / 1000},
                  {"threshold", config_.scoring.alert_threshold},
                  {"half_life_h", absl::ToDoubleHours(config_.scoring.half_life)},
                  {"evidence", ranked}};
  PublishAlert(std::move(out), publish);
}

std::vector<HostScore> HostStage::Scores(std::size_t limit) const {
  std::vector<HostScore> all;
  for (const auto& [host, state] : hosts_) {
    if (!state.evidence.empty())
      all.push_back(ScoreOf(host, state, now_));
  }
  std::sort(all.begin(), all.end(), [](const HostScore& a, const HostScore& b) {
    return a.score != b.score ? a.score > b.score : a.host < b.host;
  });
  if (all.size() > limit)
    all.resize(limit);
  return all;
}

void HostStage::RefreshTopScores(PacketTime now) {
  top_scores_at_ = now;
  std::vector<std::pair<std::string, double>> top;
  std::uint64_t above = 0;
  for (const HostScore& s : Scores(hosts_.size())) {
    if (top.size() < config_.scoring.top_hosts)
      top.emplace_back(s.host.ToString(), s.score);
    if (s.score >= config_.scoring.alert_threshold)
      ++above;
  }
  absl::MutexLock lock(&mu_);
  stats_.top_scores = std::move(top);
  stats_.hosts_above_threshold = above;
}

absl::Status HostStage::SaveState(const std::string& path) const {
  nlohmann::json hosts = nlohmann::json::object();
  for (const auto& [host, state] : hosts_) {
    if (state.evidence.empty())
      continue;
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [kind, e] : state.evidence) {
      items.push_back({{"kind", kind},
                       {"strength", e.strength},
                       {"timestamp_us", absl::ToUnixMicros(e.ts)},
                       {"signature_id", e.signature_id},
                       {"signature", e.signature}});
    }
    hosts[host.ToString()] = std::move(items);
  }
  const nlohmann::json doc = {
      {"format", "relaywatch-scores"},
      {"version", 1},
      {"now_us", now_ == absl::InfinitePast() ? 0 : absl::ToUnixMicros(now_)},
      {"hosts", std::move(hosts)},
      {"work_profiles", SaveWorkProfiles()},
      {"typing_profiles", SaveTypingProfiles()}};
  // Write beside the target and rename over it: a crash leaves the old file or the new one.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f)
      return absl::ErrnoToStatus(errno, absl::StrCat(tmp, ": cannot write"));
    f << doc.dump(1) << '\n';
    f.flush();
    if (!f) {
      // A full disk: the last good file stays, and the stub must not take its space.
      const absl::Status status = absl::ErrnoToStatus(errno, absl::StrCat(tmp, ": write failed"));
      f.close();
      std::remove(tmp.c_str());
      return status;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": cannot rename ", tmp, " over it"));
  }
  return absl::OkStatus();
}

absl::Status HostStage::LoadState(const std::string& path) {
  // The stage is empty at start: a damaged file leaves it empty, never half loaded, and a
  // field of the wrong type is an error like any other (json throws on it).
  absl::Status status;
  try {
    status = ReadState(path);
  } catch (const nlohmann::json::exception& e) {
    status = absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (!status.ok()) {
    hosts_.clear();
    work_profiles_.clear();
    typing_profiles_.clear();
    RefreshTopScores(now_);
    absl::MutexLock lock(&mu_);
    stats_.hosts_tracked = 0;
    stats_.work_profiles = 0;
    stats_.typing_profiles = 0;
  }
  return status;
}

absl::Status HostStage::ReadState(const std::string& path) {
  std::ifstream f(path);
  if (!f)
    return absl::OkStatus();  // first start
  std::stringstream text;
  text << f.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || doc.value("format", "") != "relaywatch-scores" ||
      !doc.contains("hosts") || !doc["hosts"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a relaywatch score file"));
  }
  std::size_t loaded = 0;
  for (const auto& [address, items] : doc["hosts"].items()) {
    absl::StatusOr<IpAddress> host = IpAddress::Parse(address);
    if (!host.ok() || !items.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad host entry \"", address, "\""));
    }
    for (const nlohmann::json& item : items) {
      if (!item.is_object() || !item.contains("kind") || !item["kind"].is_string() ||
          !item.contains("strength") || !item["strength"].is_number() ||
          !item.contains("timestamp_us") || !item["timestamp_us"].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": bad evidence for host ", address));
      }
      const PacketTime ts = absl::FromUnixMicros(item["timestamp_us"].get<std::int64_t>());
      HostState& state = Host(*host, ts);
      if (state.evidence.size() >= kMaxEvidenceKinds)
        break;
      state.evidence[item["kind"].get<std::string>()] = {
          std::clamp(item["strength"].get<double>(), 0.0, 1.0), ts, item.value("signature_id", 0u),
          item.value("signature", "")};
      ++loaded;
    }
  }
  if (doc.contains("work_profiles")) {
    RW_RETURN_IF_ERROR(LoadWorkProfiles(doc["work_profiles"], path));
  }
  if (doc.contains("typing_profiles")) {
    RW_RETURN_IF_ERROR(LoadTypingProfiles(doc["typing_profiles"], path));
  }
  if (doc.contains("now_us") && doc["now_us"].is_number_integer()) {
    now_ = std::max(now_, absl::FromUnixMicros(doc["now_us"].get<std::int64_t>()));
  }
  for (auto& [host, state] : hosts_) {
    state.above_threshold = !state.evidence.empty() &&
                            ScoreOf(host, state, now_).score >= config_.scoring.alert_threshold;
  }
  RefreshTopScores(now_);
  return absl::OkStatus();
}

}  // namespace relaywatch::host
