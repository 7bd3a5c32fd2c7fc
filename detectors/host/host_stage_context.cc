// Context rules (issue 6; detection-research.md 8): what the organisation knows about its
// hosts (the inventory: person, claimed location and time zone) and about the far ends
// (address lists, GeoIP), turned into evidence for the risk score:
//   work_hours   (9100040) a host worked mostly outside its claimed zone's working day;
//   address_list (9100041) a consumer VPN, Tor, proxy or hosting address in the path;
//   geo          (9100042) a controller or an entry-point client in an unexpected country,
//                          or one person's hosts controlled from several countries in an hour.
// Every alert of the stage also carries the asset and the peer's country, AS and lists.
#include <algorithm>
#include <array>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"

namespace relaywatch::host {
namespace {

using detectors::context::Asset;
using detectors::context::Context;
using detectors::context::ListKind;

constexpr absl::Duration kCountriesWindow = absl::Hours(1);
constexpr std::size_t kMaxCountriesPerPerson = 64;

const Asset* AssetOf(const Context& context, const IpAddress& host) {
  return context.inventory.empty() ? nullptr : context.inventory.FindByAddress(host);
}

nlohmann::json AssetJson(const Asset& asset) {
  nlohmann::json a = {{"inventory_line", asset.line}};
  if (!asset.hostname.empty()) a["hostname"] = asset.hostname;
  if (asset.mac) a["mac"] = asset.mac->ToString();
  if (!asset.person.empty()) a["person"] = asset.person;
  if (!asset.location.empty()) a["location"] = asset.location;
  if (!asset.timezone_name.empty()) a["timezone"] = asset.timezone_name;
  if (!asset.country.empty()) a["country"] = asset.country;
  return a;
}

// The lists that name `address`, corporate ones (our own exits) left out.
nlohmann::json ListsJson(const Context& context, const IpAddress& address) {
  nlohmann::json lists = nlohmann::json::array();
  for (const auto& match : context.address_lists.Lookup(address)) {
    const auto& info = context.address_lists.list(match.list);
    if (info.kind == ListKind::kCorporate) continue;
    lists.push_back({{"name", info.name},
                     {"kind", std::string(ListKindName(info.kind))},
                     {"prefix", match.prefix.ToString()}});
  }
  return lists;
}

nlohmann::json GeoJson(const detectors::context::GeoIpRecord& geo) {
  nlohmann::json g = nlohmann::json::object();
  if (!geo.country.empty()) g["country"] = geo.country;
  if (geo.asn != 0) g["asn"] = geo.asn;
  if (!geo.organization.empty()) g["organization"] = geo.organization;
  return g;
}

bool Expected(const Context& context, const std::string& country) {
  return std::find(context.expected_countries.begin(), context.expected_countries.end(),
                   country) != context.expected_countries.end();
}

}  // namespace

void HostStage::EnrichAlert(Event& alert) const {
  const Context* context = config_.context.get();
  if (context == nullptr || !alert.alert) return;
  if (alert.host_ip) {
    if (const Asset* asset = AssetOf(*context, *alert.host_ip)) {
      alert.evidence["asset"] = AssetJson(*asset);
    }
  }
  const nlohmann::json& peer_text = alert.evidence.is_object() && alert.evidence.contains("peer")
                                        ? alert.evidence["peer"]
                                        : nlohmann::json();
  if (!peer_text.is_string()) return;
  const absl::StatusOr<IpAddress> peer = IpAddress::Parse(peer_text.get<std::string>());
  if (!peer.ok()) return;
  if (const auto geo = context->LookupGeo(*peer)) {
    alert.evidence["peer_geo"] = GeoJson(*geo);
  }
  if (nlohmann::json lists = ListsJson(*context, *peer); !lists.empty()) {
    alert.evidence["peer_lists"] = std::move(lists);
  }
}

void HostStage::ContextTunnel(Event& finding) const {
  const Context* context = config_.context.get();
  if (context == nullptr || !finding.flow) return;
  // A tunnel's far end on a consumer-VPN or hosting list names the provider: the server for
  // a host of ours, the public address it came from at an entry point.
  const IpAddress& far =
      IsEntryPoint(finding.flow->dest_ip) ? finding.flow->src_ip : finding.flow->dest_ip;
  if (nlohmann::json lists = ListsJson(*context, far); !lists.empty()) {
    finding.body["address_lists"] = std::move(lists);
  }
}

void HostStage::ContextConnection(const Event& finding, std::vector<Event>& publish) {
  const Context* context = config_.context.get();
  if (context == nullptr || !finding.flow ||
      (context->inventory.empty() && context->address_lists.lists().empty() &&
       context->expected_countries.empty())) {
    return;
  }
  const FlowRef& f = *finding.flow;
  const bool vpn_port = IsVpnService(f);
  if (IsHome(f.src_ip)) {
    if (IsHome(f.dest_ip)) return;
    // The host opened a connection: a worked minute when enough of them come together.
    if (finding.body.contains("signature")) {
      PacketTime start = finding.ts;
      if (finding.body.contains("syn_us") && finding.body["syn_us"].is_number_integer()) {
        start = absl::FromUnixMicros(finding.body["syn_us"].get<std::int64_t>());
      }
      WorkActivity(f.src_ip, start, /*session=*/false, publish);
    }
    if (!context->address_lists.lists().empty()) {
      ListedPeer(f.src_ip, f.dest_ip, /*entry_point=*/false, vpn_port, finding, publish);
    }
    return;
  }
  if (!IsEntryPoint(f.dest_ip)) return;
  // At an entry point the originator is the public address a remote device came in from.
  if (!context->address_lists.lists().empty()) {
    ListedPeer(f.src_ip, f.src_ip, /*entry_point=*/true, vpn_port, finding, publish);
  }
  if (context->expected_countries.empty()) return;
  const auto geo = context->LookupGeo(f.src_ip);
  if (!geo || geo->country.empty() || Expected(*context, geo->country)) return;
  if (!Admit(f.src_ip, absl::StrCat(kSidForeignPeer, "/entry/", geo->country), finding.ts)) {
    return;
  }
  Event alert = NewAlert(finding.ts, finding.flow, f.src_ip, kSidForeignPeer,
                         absl::StrCat("RELAYWATCH entry point reached from ", geo->country,
                                      ", outside the expected countries"),
                         "Geography", 3, "geo");
  alert.evidence = {{"public_ip", f.src_ip.ToString()},
                    {"entry_point", f.dest_ip.ToString()},
                    {"peer", f.src_ip.ToString()},
                    {"country", geo->country},
                    {"expected_countries", context->expected_countries}};
  PublishAlert(std::move(alert), publish);
}

void HostStage::ListedPeer(const IpAddress& host, const IpAddress& peer, bool entry_point,
                           bool vpn_port, const Event& finding, std::vector<Event>& publish) {
  const Context& context = *config_.context;
  for (const auto& match : context.address_lists.Lookup(peer)) {
    const auto& list = context.address_lists.list(match.list);
    if (list.kind == ListKind::kCorporate) continue;
    // Laptops talk to cloud services all day: a hosting address from inside counts only as
    // a tunnel's far end (a VPN to a rented server). Coming in from one is a relay.
    if (!entry_point && list.kind == ListKind::kHosting && !vpn_port) continue;
    const std::string kind(ListKindName(list.kind));
    if (!Admit(host, absl::StrCat(kSidListedPeer, "/", list.name, "/", peer.ToString()),
               finding.ts)) {
      return;
    }
    // Consumer VPNs, Tor and open proxies hide where the user is; a hosting address is more
    // often innocent (a developer's cloud box), so a notch lower.
    const int severity = list.kind == ListKind::kHosting || list.kind == ListKind::kOther ? 3 : 2;
    Event alert = NewAlert(
        finding.ts, finding.flow, host, kSidListedPeer,
        entry_point ? absl::StrCat("RELAYWATCH entry point reached from a ", kind,
                                   " address (list ", list.name, ")")
                    : absl::StrCat("RELAYWATCH internal host connects to a ", kind,
                                   " address (list ", list.name, ")"),
        "Anonymising egress", severity, "address_list");
    alert.evidence = {{"host", host.ToString()},
                      {"peer", peer.ToString()},
                      {"list", list.name},
                      {"list_kind", kind},
                      {"prefix", match.prefix.ToString()},
                      {"vantage", entry_point ? "entry_point" : "egress"},
                      {"vpn_port", vpn_port}};
    PublishAlert(std::move(alert), publish);
    return;  // one alert per connection: the most specific list decides
  }
}

void HostStage::ContextSession(const Event& finding, std::vector<Event>& publish) {
  const Context* context = config_.context.get();
  if (context == nullptr) return;
  const nlohmann::json& s = finding.body;
  const absl::StatusOr<IpAddress> controlled = IpAddress::Parse(s.value("controlled", ""));
  const absl::StatusOr<IpAddress> controller = IpAddress::Parse(s.value("controller", ""));
  if (!controlled.ok() || !IsHome(*controlled)) return;
  WorkActivity(*controlled, finding.ts, /*session=*/true, publish);
  if (!controller.ok() || IsHome(*controller)) return;
  const auto geo = context->LookupGeo(*controller);
  if (!geo || geo->country.empty()) return;
  const Asset* asset = AssetOf(*context, *controlled);
  const std::string claimed = asset != nullptr ? asset->country : "";
  // Impossible travel: one person's hosts controlled from several countries within the hour.
  std::vector<std::string> countries;
  if (asset != nullptr && !asset->person.empty()) {
    if (person_countries_.size() >= config_.max_hosts && !person_countries_.contains(asset->person)) {
      absl::erase_if(person_countries_, [&](const auto& kv) {
        return kv.second.empty() || finding.ts - kv.second.back().first >= kCountriesWindow;
      });
    }
    if (person_countries_.size() < config_.max_hosts || person_countries_.contains(asset->person)) {
      auto& seen = person_countries_[asset->person];
      seen.emplace_back(finding.ts, geo->country);
      while (!seen.empty() && (finding.ts - seen.front().first >= kCountriesWindow ||
                               seen.size() > kMaxCountriesPerPerson)) {
        seen.pop_front();
      }
      std::set<std::string> distinct;
      for (const auto& [ts, country] : seen) distinct.insert(country);
      countries.assign(distinct.begin(), distinct.end());
    }
  }
  const bool unexpected =
      (!claimed.empty() && geo->country != claimed) ||
      (!context->expected_countries.empty() && !Expected(*context, geo->country));
  const bool travelling = countries.size() >= 2;
  if (!unexpected && !travelling) return;
  const std::string key =
      absl::StrCat(kSidForeignPeer, "/", geo->country, "/", travelling ? countries.size() : 0);
  if (!Admit(*controlled, key, finding.ts)) return;
  Event alert = NewAlert(
      finding.ts, finding.flow, *controlled, kSidForeignPeer,
      travelling
          ? absl::StrCat("RELAYWATCH one person's hosts controlled from ", countries.size(),
                         " countries within an hour (", absl::StrJoin(countries, ", "), ")")
          : absl::StrCat("RELAYWATCH internal host controlled from ", geo->country,
                         claimed.empty() ? "" : absl::StrCat(", claimed ", claimed)),
      "Geography", travelling ? 1 : 2, "geo");
  alert.evidence = {{"host", controlled->ToString()},
                    {"peer", controller->ToString()},
                    {"app", s.value("app", "")},
                    {"controller_country", geo->country}};
  if (!claimed.empty()) alert.evidence["claimed_country"] = claimed;
  if (!context->expected_countries.empty()) {
    alert.evidence["expected_countries"] = context->expected_countries;
  }
  if (travelling) alert.evidence["countries_within_hour"] = countries;
  PublishAlert(std::move(alert), publish);
}

void HostStage::WorkActivity(const IpAddress& host, PacketTime ts, bool session,
                             std::vector<Event>& publish) {
  const Context& context = *config_.context;
  const Asset* asset = AssetOf(context, host);
  if (asset == nullptr || !asset->timezone) return;
  auto it = work_profiles_.find(host);
  if (it == work_profiles_.end()) {
    if (work_profiles_.size() >= config_.max_hosts) {
      // Forget the idlest profile.
      work_profiles_.erase(
          Oldest(work_profiles_, [](const WorkProfile& w) { return w.last_seen; }));
      absl::MutexLock lock(&mu_);
      ++stats_.work_profiles_evicted;
    }
    it = work_profiles_.emplace(host, WorkProfile(*asset->timezone)).first;
    absl::MutexLock lock(&mu_);
    stats_.work_profiles = work_profiles_.size();
  }
  WorkProfile& w = it->second;
  w.last_seen = std::max(w.last_seen, ts);
  const std::int64_t minute = absl::ToUnixSeconds(ts) / 60;
  if (minute != w.minute) {
    w.minute = minute;
    w.connections = 0;
  }
  ++w.connections;
  if (!session && w.connections != context.work_hours.min_connections_per_minute) return;
  w.profile.Add(ts);
  if (w.profile.active_hours() <= w.reported_hours) return;  // judged once per new hour
  w.reported_hours = w.profile.active_hours();
  const detectors::context::WorkHoursReport report = w.profile.Report(context.work_hours);
  if (!report.enough_data || !(report.mostly_outside || report.night_concentrated)) return;
  // Once a day at most: the profile changes slowly.
  if (w.alerted != absl::InfinitePast() && ts - w.alerted < absl::Hours(24)) return;
  if (!Admit(host, absl::StrCat(kSidWorkHours), ts)) return;
  w.alerted = ts;
  // Both signs at once (mostly outside the day and concentrated in the night) is the pattern
  // of a day worked in another zone; one alone also fits a night-shift worker.
  Event alert = NewAlert(
      ts, std::nullopt, host, kSidWorkHours,
      absl::StrCat("RELAYWATCH host works outside the working hours of ", asset->timezone_name,
                   " (best fit ", report.best_shift_hours >= 0 ? "+" : "",
                   report.best_shift_hours, " h)"),
      "Work hours", report.mostly_outside && report.night_concentrated ? 2 : 3, "work_hours");
  alert.evidence = {{"host", host.ToString()},
                    {"timezone", asset->timezone_name},
                    {"active_hours", report.active_hours},
                    {"active_minutes", report.active_minutes},
                    {"outside_share", report.outside_share},
                    {"night_share", report.night_share},
                    {"mostly_outside", report.mostly_outside},
                    {"night_concentrated", report.night_concentrated},
                    {"best_shift_hours", report.best_shift_hours},
                    {"best_shift_inside_share", report.best_shift_inside_share}};
  PublishAlert(std::move(alert), publish);
}

nlohmann::json HostStage::SaveWorkProfiles() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [host, w] : work_profiles_) {
    out[host.ToString()] = {{"timezone", w.profile.zone().name()},
                            {"minutes", w.profile.minutes()},
                            {"active_hours", w.profile.active_hours()},
                            {"reported_hours", w.reported_hours},
                            {"last_seen_us", absl::ToUnixMicros(w.last_seen)}};
  }
  return out;
}

absl::Status HostStage::LoadWorkProfiles(const nlohmann::json& profiles,
                                         const std::string& path) {
  if (!profiles.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": work_profiles is not an object"));
  }
  const Context* context = config_.context.get();
  for (const auto& [address, p] : profiles.items()) {
    const absl::StatusOr<IpAddress> host = IpAddress::Parse(address);
    if (!host.ok() || !p.is_object() || !p.contains("minutes") || !p["minutes"].is_array() ||
        p["minutes"].size() != detectors::context::kHoursPerWeek ||
        !p.contains("active_hours") || !p["active_hours"].is_number_unsigned() ||
        !p.contains("timezone") || !p["timezone"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": bad work profile for \"", address, "\""));
    }
    std::array<std::uint32_t, detectors::context::kHoursPerWeek> minutes{};
    for (std::size_t i = 0; i < minutes.size(); ++i) {
      if (!p["minutes"][i].is_number_unsigned()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": bad work profile for \"", address, "\""));
      }
      minutes[i] = p["minutes"][i].get<std::uint32_t>();
    }
    const Asset* asset = context != nullptr ? AssetOf(*context, *host) : nullptr;
    if (asset == nullptr || !asset->timezone ||
        asset->timezone_name != p["timezone"].get<std::string>() ||
        work_profiles_.size() >= config_.max_hosts) {
      continue;  // no longer in the inventory, moved zone, or no room: start afresh
    }
    WorkProfile& w = work_profiles_.insert_or_assign(*host, WorkProfile(*asset->timezone))
                         .first->second;
    w.profile.Restore(minutes, p["active_hours"].get<std::uint32_t>());
    w.reported_hours = p.value("reported_hours", 0u);
    if (p.contains("last_seen_us") && p["last_seen_us"].is_number_integer()) {
      w.last_seen = absl::FromUnixMicros(p["last_seen_us"].get<std::int64_t>());
    }
  }
  absl::MutexLock lock(&mu_);
  stats_.work_profiles = work_profiles_.size();
  return absl::OkStatus();
}

}  // namespace relaywatch::host
