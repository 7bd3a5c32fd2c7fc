#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "capture/base/config_reader.h"
#include "capture/base/packet_time.h"
#include "capture/decode/decoded_packet.h"
#include "capture/flow/flow_table.h"
#include "detectors/event.h"

namespace relaywatch::detectors {

enum class Verdict { kContinue, kDone };  // kDone: stop sending this flow's packets.

// Where a detector puts what it found. Owned by the worker, drained after each batch.
class EventBuffer {
 public:
  void Emit(Event event) { events_.push_back(std::move(event)); }
  std::vector<Event>& events() { return events_; }

 private:
  std::vector<Event> events_;
};

class SignatureSet;

// What every detector instance is told when it is created.
struct DetectorContext {
  int index = 0;  // slot in FlowState::detector_data and bit in detectors_done
  std::uint16_t community_id_seed = 0;
  // Whether an output writes `dns` records. When none does, the dns detector reports only
  // the responses the host stage reads (names of remote-access tools), not every response:
  // building a record for each is most of a replay's cost on DNS-heavy traffic.
  bool dns_records_written = true;
  // The remote-access tools' signatures (detectors.remote_access), or null.
  std::shared_ptr<const SignatureSet> signatures;
};

// One counter a detector exports. The daemon sums it over workers and publishes it as the
// Prometheus counter relaywatch_detector_<detector>_<name>_total (docs/metrics.md).
struct CounterSample {
  std::string_view name;  // snake_case ([a-z][a-z0-9_]*), no "_total"; unique per detector
  std::string_view help;  // one sentence for # HELP, the same for every sample of `name`
  std::uint64_t value = 0;
  // An optional label, such as "reason", whose values are the names of an enum in code:
  // never anything taken from traffic.
  std::string_view label = {};
  std::string_view label_value = {};
};

// A Detector sees the packets of flows it has not finished with, on one worker thread, in
// packet-timestamp order. It never blocks, never allocates without a cap, and never reads
// the wall clock. Each worker owns its own instances, so no state is shared.
class Detector {
 public:
  virtual ~Detector() = default;
  // Called for every decoded packet of a flow not yet marked done for this detector.
  virtual Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                           flow::Direction direction, EventBuffer& out) = 0;
  // Called when the flow table expires, closes or evicts a flow, and at shutdown. Per-flow
  // state dies right after.
  virtual void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) = 0;
  // Time moves forward only as packets arrive; use it for windows and expiry.
  virtual void OnTick(PacketTime now, EventBuffer& out) {}
  virtual std::string_view name() const = 0;
  // Appends every counter of this instance, zeros included, as counted since it was built.
  // The views need only live until the call returns. Called from the metrics thread while
  // the worker runs, so it may read only WorkerCounters (relaxed atomics) and members fixed
  // at construction; the worker never destroys an instance during the call, and calls it
  // once more itself before a reload does, to keep the totals (Worker::DetectorCounters).
  // Detectors without counters keep this default.
  virtual void ReportCounters(std::vector<CounterSample>& out) const {}
};

// Reads and validates the detector's own YAML section (detectors.<name>), then builds an
// instance. Called once per worker, and once by `relaywatch -T`.
using DetectorFactory = absl::StatusOr<std::unique_ptr<Detector>> (*)(
    const config::Section& section, const DetectorContext& context);

struct DetectorEntry {
  const char* name;  // the detectors.<name> config section and the alert.detector value
  DetectorFactory create;
};

// The explicit list of detectors, in alert-priority order (registry.cc).
const std::vector<DetectorEntry>& Registry();

}  // namespace relaywatch::detectors
