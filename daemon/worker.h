#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "capture/decode/decode_counters.h"
#include "capture/decode/decoded_packet.h"
#include "capture/flow/flow_table.h"
#include "capture/pcap_source.h"
#include "daemon/config.h"
#include "detectors/detector.h"

namespace relaywatch::daemon {

struct WorkerCounters {
  WorkerCounter packets;  // decoded packets processed
  WorkerCounter bytes;
};

// One detector counter of one worker (detectors::CounterSample with owned strings), summed
// over every instance of the detector the worker has had.
struct DetectorCounterTotal {
  std::string detector;  // Detector::name()
  std::string name;
  std::string help;
  std::string label;  // empty: no label
  std::string label_value;
  std::uint64_t value = 0;
};

// One packet-path worker: its own flow table and detector instances, sharing nothing with
// other workers. Events it produces are collected with TakeEvents() between batches.
// Thread-safety: all calls from the owning thread, except the counters (relaxed atomics) and
// DetectorCounters().
class Worker {
 public:
  Worker(int index, const Config& config);

  // Decodes a frame with this worker's decode counters, then processes it.
  void ProcessFrame(int dlt, const capture::Frame& frame);
  void ProcessDecoded(const decode::DecodedPacket& packet);
  // Packet time moves on without packets (idle live capture): expire flows, tick detectors.
  void Advance(PacketTime now);
  // Ends every flow so detectors conclude (shutdown, end of replay), or at most `max`:
  // returns true while flows remain (TakeEvents() between parts bounds the events held).
  bool Finish(std::size_t max = SIZE_MAX);
  // Rebuilds detector instances from a new config (SIGHUP), between batches.
  void Reconfigure(const Config& config);

  std::vector<Event> TakeEvents();
  int index() const { return index_; }
  const WorkerCounters& counters() const { return counters_; }
  const decode::DecodeCounters& decode_counters() const { return decode_counters_; }
  const flow::FlowTableCounters& flow_counters() const { return flows_.counters(); }
  // Every detector counter of this worker since it was created, in registry order: the live
  // instances' counts plus the final counts of the instances Reconfigure replaced, so no
  // total ever goes down. A detector a reload disabled keeps its last totals. Any thread;
  // takes a mutex the packet path never takes.
  std::vector<DetectorCounterTotal> DetectorCounters() const;

 private:
  void BuildDetectors(const Config& config);
  void OnFlowEnd(flow::FlowState& flow, flow::EndReason reason);

  int index_;
  bool emit_flow_records_ = false;
  std::uint16_t community_id_seed_ = 0;
  std::vector<std::unique_ptr<detectors::Detector>> detectors_;  // by registry index; may be null
  flow::FlowTable flows_;
  detectors::EventBuffer events_;
  decode::DecodeCounters decode_counters_;
  WorkerCounters counters_;
  decode::DecodedPacket scratch_;
  PacketTime last_tick_ = absl::InfinitePast();

  // Detector counters for other threads. They reach the live instances through exported_,
  // never detectors_, and BuildDetectors folds an instance's counts into retired_ and drops
  // it from exported_, under the mutex, before destroying it.
  mutable absl::Mutex counters_mu_;
  std::vector<const detectors::Detector*> exported_ ABSL_GUARDED_BY(counters_mu_);
  std::vector<DetectorCounterTotal> retired_ ABSL_GUARDED_BY(counters_mu_);
};

}  // namespace relaywatch::daemon
