#pragma once

#include <array>
#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"

#include "capture/base/counter.h"
#include "detectors/common/dns.h"
#include "detectors/detector.h"
#include "detectors/dns/config.h"

namespace relaywatch::detectors::dns {

// Packet-path counters of one DnsDetector (one worker). Written by the worker only.
struct DnsCounters {
  WorkerCounter queries;            // queries parsed
  WorkerCounter responses;          // responses parsed (one event each)
  WorkerCounter matched;            // responses whose query was seen (latency known)
  WorkerCounter unanswered;         // queries timed out, evicted or left at flow end
  WorkerCounter evicted;            // of those, forgotten because the flow's table was full
  WorkerCounter not_dns;            // parsed but implausible (IsPlausibleDns)
  WorkerCounter truncated_capture;  // UDP payload cut by the snaplen
  WorkerCounter tcp_oversized;      // TCP messages longer than max_tcp_message_bytes
  WorkerCounter tcp_gaps;           // missing TCP segments (the framer resynchronised)
  // Messages that failed to parse, by common::DnsParseStatus.
  std::array<WorkerCounter, common::kDnsParseStatusCount> parse_errors;
};

// Logs DNS (and mDNS) responses: one `dns` event per response, with the query name, type,
// rcode, answers and, when the query was seen on the same flow, the response latency.
//
// What counts as DNS: UDP or TCP with port 53 on either side (5353 for mDNS, when enabled)
// AND a message that parses strictly and is plausible (common::IsPlausibleDns). Anything
// else on those ports is counted, and a flow whose first messages all fail is given up.
// Queries never answered produce no event; they are counted when they time out, are evicted
// or are still open at the flow's end.
//
// A UDP "flow" to a resolver can carry many transactions, so a DNS flow is never given up
// (Verdict::kDone) while it parses; the per-packet cost is one parse plus a scan of the
// flow's outstanding queries (at most max_outstanding_queries).
class DnsDetector : public Detector {
 public:
  // Per-flow state: outstanding queries plus, for TCP, one partial message per direction.
  static constexpr std::size_t kPendingQueryBytes = 32;
  static constexpr std::size_t kMaxFlowStateBytes =
      512 + kMaxOutstandingQueriesLimit * kPendingQueryBytes + 2 * (kMaxTcpMessageBytesLimit + 2);

  DnsDetector(DnsConfig config, DetectorContext context);

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "dns"; }
  void ReportCounters(std::vector<CounterSample>& out) const override;

  const DnsCounters& counters() const { return counters_; }
  // Bytes of per-flow state this detector holds for `flow` now (for the cap test).
  std::size_t FlowStateBytes(const flow::FlowState& flow) const;

 private:
  struct FlowData;
  void HandleMessage(common::Bytes bytes, const decode::DecodedPacket& packet,
                     const flow::FlowState& flow, FlowData& data, bool mdns, EventBuffer& out);
  void ExpireQueries(FlowData& data, PacketTime now);
  // Whether message_ names a remote-access tool in a question or an answer (what the host
  // stage's DNS clue looks for).
  bool NamesATool() const;

  DnsConfig config_;
  DetectorContext context_;
  common::DnsParseLimits limits_;
  common::DnsMessage message_;  // scratch, reused for every message
  DnsCounters counters_;
};

// The registry's factory. Returns nullptr (and no error) when the section disables it.
absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::dns
