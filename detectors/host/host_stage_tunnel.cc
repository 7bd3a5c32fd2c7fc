// Tunnel records in the host stage (docs/detectors/stack.md): a company tunnel inside
// another (decided from the device's own segments, path_mtu findings), and a device that
// leaves its usual link for a tunnel.
#include <algorithm>

#include "absl/strings/str_cat.h"

#include "detectors/host/finding_fields.h"
#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"

namespace relaywatch::host {
namespace {

std::string PathKey(const IpAddress& source, const nlohmann::json& body) {
  return absl::StrCat(source.ToString(), " ", body.value("signature", ""));
}

}  // namespace

// Nesting (docs/detectors/stack.md): a SYN's MSS says the sender's path is narrower than
// Ethernet, but a tunnel and an MSS clamp (route advmss, a Windows or VPN-client clamp,
// MSS 1380/1360 on DSL) advertise the same values. On the company's VPN service that is
// therefore a candidate; the sender's own segments decide it (path_mtu findings): a tunnel
// caps them at its MTU, a clamp does not. An IP tunnel relaywatch decoded itself (GRE, IP in
// IP) needs no such proof; an encapsulation of Ethernet frames (VXLAN, ERSPAN) is how a
// traffic mirror or a fabric delivers the packet, not a tunnel of the host's.
void HostStage::TunnelRecord(Event& finding, std::vector<Event>& publish) {
  if (!finding.flow || !finding.body.value("overlay", false))
    return;
  const FlowRef& f = *finding.flow;
  if (finding.body.value("decoded_ip_tunnel_depth", 0) > 0) {
    finding.body["nested"] = true;
    finding.body["nested_evidence"] = "decoded_encapsulation";
    NestedTunnelAlert(finding, publish);
    return;
  }
  const bool to_vpn_service = IsEntryPoint(f.dest_ip) && IsVpnService(f);
  finding.body["nested"] = false;
  if (!to_vpn_service)
    return;
  PathEvidence& path = FindPath(PathKey(f.src_ip, finding.body), finding.ts);
  if (path.above_mtu) {
    finding.body["nested_evidence"] = "segments_above_mtu";
    absl::MutexLock lock(&mu_);
    ++stats_.nesting_clamp;
  } else if (path.at_mtu) {
    finding.body["nested"] = true;
    finding.body["nested_evidence"] = "segments_at_mtu";
    NestedTunnelAlert(finding, publish);
  } else {
    // Published now as not (yet) nested; published again with the alert if the device's
    // segments later show the cap.
    finding.body["nested_evidence"] = "pending";
    path.pending = finding;
  }
}

void HostStage::PathMtuRecord(const Event& finding, std::vector<Event>& publish) {
  if (!finding.flow)
    return;
  PathEvidence& path = FindPath(PathKey(finding.flow->src_ip, finding.body), finding.ts);
  const bool above = finding.body.value("evidence", "") == "above_mtu";
  (above ? path.above_mtu : path.at_mtu) = true;
  if (!path.pending)
    return;
  Event record = std::move(*path.pending);
  path.pending.reset();
  if (path.above_mtu) {
    absl::MutexLock lock(&mu_);
    ++stats_.nesting_clamp;
    return;  // its record already went out with nested: false
  }
  record.ts = finding.ts;
  record.body["nested"] = true;
  record.body["nested_evidence"] = "segments_at_mtu";
  publish.push_back(record);
  NestedTunnelAlert(record, publish);
}

HostStage::PathEvidence& HostStage::FindPath(const std::string& key, PacketTime now) {
  auto it = paths_.find(key);
  if (it == paths_.end()) {
    if (paths_.size() >= kMaxPathDevices) {
      // Forget what the window no longer covers, else the idlest device; count both, and
      // an undecided company-VPN session among them.
      std::uint64_t evicted = 0, undecided = 0;
      auto forget = [&](const PathEvidence& p) {
        ++evicted;
        undecided += p.pending ? 1 : 0;
      };
      absl::erase_if(paths_, [&](const auto& kv) {
        const bool old = now - kv.second.last_seen > config_.shared_line_window;
        if (old)
          forget(kv.second);
        return old;
      });
      if (paths_.size() >= kMaxPathDevices) {
        const auto idlest = Oldest(paths_, [](const PathEvidence& p) { return p.last_seen; });
        forget(idlest->second);
        paths_.erase(idlest);
      }
      absl::MutexLock lock(&mu_);
      stats_.path_devices_evicted += evicted;
      stats_.nesting_undecided_evicted += undecided;
    }
    it = paths_.emplace(key, PathEvidence{}).first;
  }
  it->second.last_seen = std::max(it->second.last_seen, now);
  return it->second;
}

void HostStage::NestedTunnelAlert(const Event& record, std::vector<Event>& publish) {
  const FlowRef& f = *record.flow;
  const bool company_vpn = record.body.value("nested_evidence", "") != "decoded_encapsulation";
  {
    absl::MutexLock lock(&mu_);
    ++stats_.nesting_nested;
  }
  const IpAddress host = f.src_ip;  // the SYN's sender: a home host or a line
  if (!Admit(host, absl::StrCat(kSidNestedTunnel), record.ts))
    return;
  Event alert = NewAlert(record.ts, record.flow, host, kSidNestedTunnel,
                         company_vpn ? "RELAYWATCH company VPN session arrives through another "
                                       "tunnel"
                                     : "RELAYWATCH tunnel inside a tunnel",
                         "Tunnel", 2, "tunnel");
  alert.evidence = {{"method", "nested_tunnel"},
                    {"kind", record.body.value("kind", "")},
                    {"mtu", record.body.value("mtu", 0)},
                    {"mss", record.body.value("mss", 0)},
                    {"nested_evidence", record.body.value("nested_evidence", "")},
                    {"company_vpn_session", company_vpn}};
  PublishAlert(std::move(alert), publish);
}

void HostStage::LinkHistory(const std::string& device, const IpAddress& host, bool tunnel,
                            const Event& finding, std::vector<Event>& publish) {
  constexpr std::size_t kMaxDevices = 65536;
  constexpr std::uint64_t kUsualAfter = 3;  // plain SYNs before a link is "usual"
  if (links_.size() >= kMaxDevices && !links_.contains(device)) {
    absl::erase_if(links_, [&](const auto& kv) {
      return finding.ts - kv.second.last_seen > config_.shared_line_window;
    });
    if (links_.size() >= kMaxDevices)
      return;
  }
  LinkCounts& c = links_[device];
  c.last_seen = std::max(c.last_seen, finding.ts);
  if (!tunnel) {
    ++c.plain;
    return;
  }
  const bool first_tunnel = c.tunnel++ == 0;
  if (!first_tunnel || c.plain < kUsualAfter)
    return;
  if (!Admit(host, absl::StrCat(kSidTunnelChange, "/", device), finding.ts))
    return;
  Event alert = NewAlert(finding.ts, finding.flow, host, kSidTunnelChange,
                         "RELAYWATCH device moved from its usual link to a tunnel", "Tunnel", 3,
                         "tunnel");
  alert.evidence = {{"method", "tunnel_change"},
                    {"device", device},
                    {"plain_link_syns", c.plain},
                    {"mss", finding.body.value("mss", 0)}};
  PublishAlert(std::move(alert), publish);
}

}  // namespace relaywatch::host
