// Shared lines: how many devices send through one public address at the company's entry
// points (detection-research.md 7; p0f's "ip sharing", Bellovin's IP-ID sequences). The
// count is a sum over stack signatures of the devices each signature's connections need.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"

#include "detectors/host/finding_fields.h"
#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"
#include "detectors/stack/fingerprint.h"

namespace relaywatch::host {
namespace {

constexpr std::size_t kMaxConnectionsPerLine = 512;

// Known TCP timestamp rates (Hz): Linux 1000, older BSD/Windows 100 or 10, some 250.
int TsClass(double hz) {
  for (int known : {10, 100, 250, 1000}) {
    if (std::abs(hz - known) <= known * 0.05)
      return known;
  }
  return static_cast<int>(std::lround(hz));
}

struct Estimate {
  std::uint64_t devices = 0;
  double confidence = 0;
  nlohmann::json signatures = nlohmann::json::array();
  std::uint64_t connections = 0;
  std::set<std::string> methods;  // the kinds of evidence that separated devices
};

// The most sessions open at once among `conns` (a sweep over start/end times).
template <typename Connection>
std::uint64_t MaxConcurrent(const std::vector<const Connection*>& conns) {
  std::vector<std::pair<PacketTime, int>> edges;
  for (const Connection* c : conns) {
    edges.emplace_back(c->syn, +1);
    edges.emplace_back(c->end, -1);
  }
  std::sort(edges.begin(), edges.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second < b.second;  // ends first
  });
  int open = 0;
  int most = 0;
  for (const auto& [t, d] : edges)
    most = std::max(most, open += d);
  return static_cast<std::uint64_t>(most);
}

// A shared IP-ID counter (Bellovin; older Windows: one per host, newer: one per hashed
// address pair, so one toward the entry point) has one value at a time: a connection that opens
// while `a` runs takes an IP-ID inside a's range. One clearly outside it came from another
// counter, another device. Linux's per-connection counters never qualify (every step is +1,
// so no run is "shared"), nor do random IDs (steps beyond kMaxIpIdStep).
template <typename Connection>
bool OtherCounter(const Connection& a, const Connection& b) {
  constexpr std::uint64_t kMargin = 64;  // packets in flight between the sensor's samples
  const auto& ra = *a.ip_id_run;
  const auto& rb = *b.ip_id_run;
  if (ra.advance + 2 * kMargin >= 65536 || rb.first_time - ra.first_time < absl::Seconds(1) ||
      ra.last_time - rb.first_time < absl::Seconds(1)) {
    return false;
  }
  const std::uint16_t ahead = static_cast<std::uint16_t>(rb.first - ra.first);
  return ahead > ra.advance + kMargin && ahead < 65536 - kMargin;
}

// The largest set of connections found whose IP-IDs pairwise came from different shared
// counters (greedy, over the most recent kMaxRuns runs): a lower bound on the devices.
template <typename Connection>
std::uint64_t IpIdCounters(const std::vector<const Connection*>& conns) {
  constexpr std::size_t kMaxRuns = 64;
  std::vector<const Connection*> runs;
  for (auto it = conns.rbegin(); it != conns.rend() && runs.size() < kMaxRuns; ++it) {
    if ((*it)->ip_id_run)
      runs.push_back(*it);
  }
  std::vector<const Connection*> distinct;
  for (const Connection* c : runs) {
    if (std::all_of(distinct.begin(), distinct.end(), [&](const Connection* d) {
          return OtherCounter(*c, *d) || OtherCounter(*d, *c);
        })) {
      distinct.push_back(c);
    }
  }
  return std::max<std::uint64_t>(1, distinct.size());
}

// Devices one signature's connections need. Lower bounds, the largest wins:
//  - VPN sessions open at the same time: a device keeps one tunnel to the concentrator;
//  - TCP timestamp clock rates (Hz) that differ;
//  - shared IP-ID counters that contradict each other (OtherCounter).
// Source-port runs and per-connection IP-ID sequences are reported, not counted: on current
// Linux both restart per connection (ports jump every few connections, IP-IDs start at
// random), so they would count one laptop many times (farm lab, docs/detectors/stack.md).
template <typename Connection>
std::uint64_t DevicesOfSignature(const std::vector<const Connection*>& conns, nlohmann::json& why,
                                 std::set<std::string>& methods) {
  std::vector<const Connection*> vpn;
  for (const Connection* c : conns) {
    if (c->vpn)
      vpn.push_back(c);
  }
  const std::uint64_t vpn_devices = std::max<std::uint64_t>(1, MaxConcurrent(vpn));
  std::set<int> ts_classes;
  for (const Connection* c : conns) {
    if (c->ts_hz)
      ts_classes.insert(TsClass(*c->ts_hz));
  }
  const std::uint64_t ts_devices = std::max<std::size_t>(1, ts_classes.size());
  const std::uint64_t ip_id_devices = IpIdCounters(conns);
  const std::uint64_t devices = std::max({vpn_devices, ts_devices, ip_id_devices});
  if (vpn_devices > 1)
    methods.insert("concurrent_vpn_sessions");
  if (ts_devices > 1)
    methods.insert("timestamp_clocks");
  if (ip_id_devices > 1)
    methods.insert("ip_id_counters");
  why = {{"signature", conns.front()->signature},
         {"connections", conns.size()},
         {"devices", devices},
         {"vpn_sessions", vpn.size()},
         {"concurrent_vpn_sessions", MaxConcurrent(vpn)},
         {"timestamp_rates_hz", ts_classes},
         {"ip_id_counters", ip_id_devices}};
  return devices;
}

}  // namespace

bool HostStage::IsVpnService(const FlowRef& flow) const {
  return std::find(config_.vpn_ports.begin(), config_.vpn_ports.end(),
                   std::make_pair(flow.protocol, flow.dest_port)) != config_.vpn_ports.end();
}

bool HostStage::IsEntryPoint(const IpAddress& address) const {
  return AnyContains(config_.entry_points, address);
}

void HostStage::StackRecord(const Event& finding, std::vector<Event>& publish) {
  if (!finding.flow)
    return;
  const FlowRef& f = *finding.flow;
  if (const std::optional<double> mss = Number(finding.body, "mss"); mss && *mss > 0) {
    const std::uint32_t mtu =
        detectors::stack::MtuFromMss(static_cast<std::uint16_t>(*mss), f.src_ip.is_v6() ? 6 : 4);
    const std::optional<detectors::stack::LinkKind> link = detectors::stack::ClassifyMtu(mtu);
    const bool tunnel = link && link->tunnel;
    if (IsHome(f.src_ip)) {
      LinkHistory(f.src_ip.ToString(), f.src_ip, tunnel, finding, publish);
    } else if (IsEntryPoint(f.dest_ip)) {
      LinkHistory(
          absl::StrCat(f.src_ip.ToString(), " ", finding.body.value("signature_any_mss", "")),
          f.src_ip, tunnel, finding, publish);
    }
  }
  if (config_.entry_points.empty())
    return;
  // A connection into an entry point from outside: its source is a line's public address.
  if (!IsEntryPoint(f.dest_ip) || IsHome(f.src_ip) || IsEntryPoint(f.src_ip))
    return;
  const nlohmann::json& b = finding.body;
  Line::Connection c;
  c.syn = absl::FromUnixMicros(b.value("syn_us", std::int64_t{0}));
  c.end = absl::FromUnixMicros(b.value("end_us", std::int64_t{0}));
  c.signature = b.value("signature", "");
  c.dst = f.dest_ip;
  c.dport = f.dest_port;
  c.sport = f.src_port;
  c.ts_hz = Number(b, "ts_hz");
  c.udp = f.protocol == 17;
  if (const auto run = b.find("ip_id_run"); run != b.end() && run->is_object()) {
    // Worth comparing: enough forward steps that the IDs are not random, and a quarter or
    // more of them by 2 or more, so the counter is not the connection's own (packets lost
    // before the sensor skip a value too, but not one in four on a working connection).
    constexpr std::uint64_t kMinSamples = 8;
    const std::uint64_t samples = run->value("samples", std::uint64_t{0});
    if (samples >= kMinSamples && run->value("forward", std::uint64_t{0}) + 1 == samples &&
        run->value("shared", std::uint64_t{0}) * 4 >= samples - 1) {
      c.ip_id_run = Line::Connection::IpIdRun{
          absl::FromUnixMicros(run->value("first_us", std::int64_t{0})),
          absl::FromUnixMicros(run->value("last_us", std::int64_t{0})),
          run->value("first", std::uint16_t{0}), run->value("advance", std::uint64_t{0})};
    }
  }
  c.vpn = IsVpnService(f);
  if (c.udp && !c.vpn)
    return;  // DNS, QUIC: nothing per device

  auto it = lines_.find(f.src_ip);
  if (it == lines_.end()) {
    if (lines_.size() >= config_.max_public_addresses) {
      lines_.erase(Oldest(lines_, [](const Line& l) { return l.last_seen; }));
      absl::MutexLock lock(&mu_);
      ++stats_.public_addresses_evicted;
    }
    it = lines_.emplace(f.src_ip, Line{}).first;
  }
  Line& line = it->second;
  line.last_seen = std::max(line.last_seen, finding.ts);
  while (!line.connections.empty() &&
         (line.connections.size() >= kMaxConnectionsPerLine ||
          finding.ts - line.connections.front().end > config_.shared_line_window)) {
    line.connections.pop_front();
  }
  line.connections.push_back(std::move(c));
  {
    absl::MutexLock lock(&mu_);
    stats_.public_addresses = lines_.size();
  }

  Estimate est;
  std::map<std::string, std::vector<const Line::Connection*>> by_signature;
  std::vector<const Line::Connection*> udp_vpn;
  for (const Line::Connection& conn : line.connections) {
    if (conn.udp) {
      udp_vpn.push_back(&conn);
    } else {
      by_signature[conn.signature].push_back(&conn);
    }
  }
  for (const auto& [signature, conns] : by_signature) {
    nlohmann::json why;
    est.devices += DevicesOfSignature(conns, why, est.methods);
    est.signatures.push_back(std::move(why));
  }
  // UDP tunnels carry no SYN to tell stacks apart, but each device holds its own.
  const std::uint64_t udp_devices = MaxConcurrent(udp_vpn);
  if (udp_devices > est.devices) {
    est.devices = udp_devices;
    est.methods.insert("concurrent_vpn_sessions");
  }
  est.connections = line.connections.size();
  if (by_signature.size() > 1)
    est.methods.insert("stack_signatures");
  // Confidence: independent kinds of evidence for more than one device raise it; for one
  // device, the number of connections that all fit one device does.
  if (est.devices > 1) {
    est.confidence = std::min(0.95, 0.5 + 0.2 * static_cast<double>(est.methods.size()));
  } else {
    est.confidence = std::min(0.9, 0.3 + 0.1 * static_cast<double>(est.connections));
  }
  if (est.devices <= line.reported_devices)
    return;
  line.reported_devices = est.devices;

  Event e;
  e.event_type = "shared_line";
  e.ts = finding.ts;
  e.body = {{"public_ip", f.src_ip.ToString()},
            {"devices", est.devices},
            {"confidence", std::round(est.confidence * 100) / 100},
            {"connections", est.connections},
            {"udp_vpn_sessions", udp_vpn.size()},
            {"methods", est.methods},
            {"signatures", est.signatures}};
  if (est.devices >= config_.shared_line_min_devices &&
      Admit(f.src_ip, absl::StrCat(kSidSharedLine), finding.ts)) {
    Event alert = NewAlert(finding.ts, std::nullopt, f.src_ip, kSidSharedLine,
                           absl::StrCat("RELAYWATCH ", est.devices,
                                        " devices behind one public address at an entry point"),
                           "Shared line", 2, "shared_line");
    alert.evidence = e.body;
    publish.push_back(std::move(e));
    PublishAlert(std::move(alert), publish);
    return;
  }
  publish.push_back(std::move(e));
}

}  // namespace relaywatch::host
