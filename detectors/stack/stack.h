#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/counter.h"
#include "detectors/detector.h"

namespace relaywatch::detectors::stack {

struct StackConfig {
  bool enabled = true;
  // Emit `tunnel` records for SYNs whose MSS implies a link below Ethernet.
  bool tunnel_events = true;
  // Host stage: connections at the entry points that count toward a line's device estimate.
  absl::Duration shared_line_window = absl::Hours(24);
  // A line with this many devices is alerted.
  std::uint64_t shared_line_min_devices = 3;
  // Public addresses tracked; the idlest is forgotten (and counted).
  std::uint64_t max_public_addresses = 16384;
  // Tunnel services at the entry points ("tcp/1194"): a device holds one session at a time,
  // so sessions open together count devices.
  std::vector<std::pair<std::uint8_t, std::uint16_t>> vpn_ports = {
      {6, 1194}, {17, 1194}, {17, 500}, {17, 4500}, {17, 51820}, {6, 1723}};
};

absl::StatusOr<StackConfig> ParseStackConfig(const config::Section& section);

struct StackCounters {
  WorkerCounter syns;     // originator SYNs fingerprinted
  WorkerCounter tunnels;  // `tunnel` records emitted
  WorkerCounter records;  // per-flow stack records handed to the host stage
  WorkerCounter path_mtu;  // `path_mtu` findings: a tunnel-MSS flow's segment at/above its MSS
};

// Fingerprints the TCP/IP stack of each connection's originator from its SYN (initial TTL,
// hop distance, window, options layout, MSS, timestamps) and follows its TCP timestamp
// clock and IP-ID through the flow. Emits a `tunnel` record when the SYN's MSS implies a
// tunnel or a non-Ethernet link, and one internal `stack` record per flow for the host
// stage, which counts the devices behind one public address (shared_line) from them.
// For a flow whose SYN MSS implies a tunnel it also reports (at most twice per flow, as
// internal `path_mtu` findings) an originator segment that fills the MSS while the responder
// allowed more, or exceeds it: the host stage tells a tunnel from an MSS clamp with them.
class StackDetector : public Detector {
 public:
  StackDetector(StackConfig config, DetectorContext context) : config_(config), context_(context) {}

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "stack"; }
  void ReportCounters(std::vector<CounterSample>& out) const override;
  const StackCounters& counters() const { return counters_; }

 private:
  struct FlowData;
  void CheckPathMtu(const decode::DecodedPacket& packet, flow::FlowState& flow, FlowData& data,
                    EventBuffer& out);
  StackConfig config_;
  DetectorContext context_;
  StackCounters counters_;
};

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::stack
