#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/counter.h"
#include "detectors/detector.h"
#include "detectors/flow_shape/config.h"
#include "detectors/flow_shape/features.h"

namespace relaywatch::detectors::flow_shape {

// A flow is measured only once it has outlived this and carries payload: most flows end
// sooner, and a remote-control session does not need its first second to be recognised.
inline constexpr absl::Duration kWarmup = absl::Seconds(1);

// The remote_session.app of a session found by shape alone.
inline constexpr char kUnknownRemoteControl[] = "unknown_remote_control";
// The worker -> host stage finding that names the screen side of a flow without claiming
// it is remote control; the host stage uses it only for named tools whose direction is
// unknown and never publishes it.
inline constexpr char kDirectionFinding[] = "flow_shape";

// Packet-path counters of one FlowShapeDetector (one worker). Written by the worker only.
struct FlowShapeCounters {
  WorkerCounter flows_measured;  // flows that outlived the warm-up and got state
  WorkerCounter sessions;        // unknown_remote_control findings
  WorkerCounter calls;           // flows given up as calls (media both ways)
  WorkerCounter directions;      // screen-side findings for the host stage
  WorkerCounter turn_over_tcp;   // TCP flows found to carry TURN, judged by their frames
};

// Finds remote control by flow shape, for tools with no signature: a screen side that
// answers small, irregular input events from the other side with larger bursts, and is
// otherwise mostly quiet; emits one `remote_session` (app unknown_remote_control,
// controlled = the screen-serving endpoint) with the features that decided it.
//
// TCP and UDP, never payload contents except the first two bytes of UDP datagrams (the RTP
// version and payload type, for call suppression). The method, parameters and false-positive
// sources: docs/detectors/flow_shape.md. Flows the remote_access detector or the TLS clues
// name are not reported again: the host stage drops unknown_remote_control for a flow it
// already holds a named session for, and uses this detector's screen side to fill in
// `controlled` of named sessions whose direction is unknown.
class FlowShapeDetector : public Detector {
 public:
  // Per-flow state: the FlowShape measurements plus the slot's own fields.
  static constexpr std::size_t kMaxFlowStateBytes = 1024;

  FlowShapeDetector(FlowShapeConfig config, DetectorContext context);

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "flow_shape"; }
  void ReportCounters(std::vector<CounterSample>& out) const override;

  const FlowShapeCounters& counters() const { return counters_; }
  // Bytes of per-flow state held for `flow` now (for the cap test).
  std::size_t FlowStateBytes(const flow::FlowState& flow) const;

 private:
  struct FlowData;
  // Judges the flow at `now`; kDone when it is decided for good.
  Verdict Evaluate(const flow::FlowState& flow, FlowData& data, PacketTime now, EventBuffer& out);
  // A TCP flow's segment: true when the flow carries TURN and the segment's frames were
  // judged (or it held no new bytes), false when it counts as a segment.
  bool TurnFrames(const decode::DecodedPacket& packet, flow::Direction direction, FlowData& data);

  FlowShapeConfig config_;
  DetectorContext context_;
  FlowShapeCounters counters_;
};

// The registry's factory. Returns nullptr (and no error) when the section disables it.
absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::flow_shape
