#include "daemon/worker.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>

#include "absl/algorithm/container.h"
#include "absl/synchronization/mutex.h"

#include "capture/decode/decoder.h"
#include "daemon/log.h"

namespace relaywatch::daemon {
namespace {

std::string_view EndReasonName(flow::EndReason reason) {
  switch (reason) {
    case flow::EndReason::kIdle:
      return "timeout";
    case flow::EndReason::kClosed:
      return "closed";
    case flow::EndReason::kEvicted:
      return "evicted";
    case flow::EndReason::kShutdown:
      return "shutdown";
    case flow::EndReason::kReused:
      return "reused";
  }
  return "unknown";
}

// Adds `sample` to its entry in `totals` (same detector, name and label), appending the entry
// the first time. A worker has a few dozen counters: a linear scan is enough.
void Accumulate(std::string_view detector, const detectors::CounterSample& sample,
                std::vector<DetectorCounterTotal>& totals) {
  auto it = std::find_if(totals.begin(), totals.end(), [&](const DetectorCounterTotal& t) {
    return t.detector == detector && t.name == sample.name && t.label == sample.label &&
           t.label_value == sample.label_value;
  });
  if (it == totals.end()) {
    totals.push_back({std::string(detector), std::string(sample.name), std::string(sample.help),
                      std::string(sample.label), std::string(sample.label_value), 0});
    it = std::prev(totals.end());
  }
  it->value += sample.value;
}

void AccumulateDetector(const detectors::Detector& detector,
                        std::vector<DetectorCounterTotal>& totals) {
  std::vector<detectors::CounterSample> samples;
  detector.ReportCounters(samples);
  for (const detectors::CounterSample& s : samples) {
    Accumulate(detector.name(), s, totals);
  }
}

}  // namespace

Worker::Worker(int index, const Config& config)
    : index_(index),
      flows_(config.flows,
             [this](flow::FlowState& flow, flow::EndReason reason) { OnFlowEnd(flow, reason); }) {
  BuildDetectors(config);
}

void Worker::BuildDetectors(const Config& config) {
  // yaml-cpp promises nothing about concurrent reads of one document, and workers rebuild
  // their detectors from the same config on reload: one at a time.
  static absl::Mutex build_mu(absl::kConstInit);
  absl::MutexLock lock(&build_mu);
  community_id_seed_ = config.community_id_seed;
  const auto written = [&config](std::string_view type) {
    return (config.jsonl_enabled && absl::c_linear_search(config.jsonl.events, type)) ||
           (config.syslog_enabled && absl::c_linear_search(config.syslog.events, type));
  };
  emit_flow_records_ = written("flow");
  const bool dns_records_written = written("dns");
  {
    // Keep what the old instances counted, and stop other threads reading them, before they
    // are destroyed: Prometheus counters must not go back after a reload.
    absl::MutexLock counters_lock(&counters_mu_);
    for (const auto& d : detectors_) {
      if (d) {
        AccumulateDetector(*d, retired_);
      }
    }
    exported_.clear();
  }
  detectors_.clear();
  const auto& registry = detectors::Registry();
  for (std::size_t i = 0; i < registry.size(); ++i) {
    detectors::DetectorContext context;
    context.index = static_cast<int>(i);
    context.community_id_seed = config.community_id_seed;
    context.dns_records_written = dns_records_written;
    context.signatures = config.alerting.signatures;
    auto detector = registry[i].create(config.detectors.Child(registry[i].name), context);
    if (!detector.ok()) {
      // ParseConfig built every detector once already; failing now is a bug.
      RW_LOG(kError, "detector %s: %s", registry[i].name, detector.status().ToString());
      std::abort();
    }
    detectors_.push_back(std::move(*detector));
  }
  absl::MutexLock counters_lock(&counters_mu_);
  for (const auto& d : detectors_) {
    exported_.push_back(d.get());  // may be null: disabled
  }
}

std::vector<DetectorCounterTotal> Worker::DetectorCounters() const {
  absl::MutexLock lock(&counters_mu_);
  std::vector<DetectorCounterTotal> totals;
  for (const detectors::Detector* d : exported_) {
    if (d) {
      AccumulateDetector(*d, totals);
    }
  }
  // Then what replaced instances counted; a detector disabled since comes last.
  for (const DetectorCounterTotal& r : retired_) {
    Accumulate(r.detector, {r.name, r.help, r.value, r.label, r.label_value}, totals);
  }
  return totals;
}

void Worker::Reconfigure(const Config& config) { BuildDetectors(config); }

void Worker::ProcessFrame(int dlt, const capture::Frame& frame) {
  if (!decode::DecodeFrame(dlt, {frame.data, frame.captured_length}, frame.wire_length,
                           frame.ts, scratch_, decode_counters_)) {
    return;
  }
  ProcessDecoded(scratch_);
}

void Worker::ProcessDecoded(const decode::DecodedPacket& packet) {
  counters_.packets.Increment();
  counters_.bytes.Increment(packet.wire_length);
  flow::Direction direction;
  bool duplicate = false;
  flow::FlowState& flow = flows_.Track(packet, direction, duplicate);
  if (duplicate) {
    return;  // a second copy of a packet, counted by the flow table
  }
  for (std::size_t i = 0; i < detectors_.size(); ++i) {
    const std::uint32_t bit = 1U << i;
    if (!detectors_[i] || (flow.detectors_done & bit) != 0) {
      continue;
    }
    if (detectors_[i]->OnPacket(packet, flow, direction, events_) ==
        detectors::Verdict::kDone) {
      flow.detectors_done |= bit;
    }
  }
  // Detector clocks tick once per second of packet time.
  if (packet.ts - last_tick_ >= absl::Seconds(1)) {
    last_tick_ = packet.ts;
    for (auto& d : detectors_) {
      if (d) {
        d->OnTick(packet.ts, events_);
      }
    }
  }
}

void Worker::Advance(PacketTime now) {
  flows_.Advance(now);
  for (auto& d : detectors_) {
    if (d) {
      d->OnTick(flows_.now(), events_);
    }
  }
}

bool Worker::Finish(std::size_t max) {
  return flows_.EndAll(flow::EndReason::kShutdown, max);
}

void Worker::OnFlowEnd(flow::FlowState& flow, flow::EndReason reason) {
  for (auto& d : detectors_) {
    if (d) {
      d->OnFlowEnd(flow, events_);
    }
  }
  if (!emit_flow_records_) {
    return;
  }
  Event e;
  e.event_type = "flow";
  e.ts = flow.last_seen;
  e.flow = FlowRef::FromFlow(flow, community_id_seed_);
  const auto& to_server = flow.stats[0];
  const auto& to_client = flow.stats[1];
  e.body = {{"pkts_toserver", to_server.packets},
            {"pkts_toclient", to_client.packets},
            {"bytes_toserver", to_server.bytes},
            {"bytes_toclient", to_client.bytes},
            {"start", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", flow.first_seen, absl::UTCTimeZone())},
            {"end", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", flow.last_seen, absl::UTCTimeZone())},
            {"age", absl::ToInt64Seconds(flow.last_seen - flow.first_seen)},
            {"reason", EndReasonName(reason)},
            {"originator_from_handshake", flow.originator_from_handshake}};
  if (flow.tunnel_depth > 0) {
    e.body["tunnel_depth"] = flow.tunnel_depth;
  }
  events_.Emit(std::move(e));
}

std::vector<Event> Worker::TakeEvents() {
  std::vector<Event> out;
  out.swap(events_.events());
  return out;
}

}  // namespace relaywatch::daemon
