#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "detectors/detector.h"
#include "detectors/remote_access/config.h"

namespace relaywatch::detectors::remote_access {

// Identifies remote-access sessions (RDP over TCP and UDP, VNC/RFB, SSH) from the first
// payload bytes of each direction, never from ports, and emits one `remote_session` event
// per identified flow naming the app and the controlled endpoint.
//
// Decision: the protocol's opening exchange must be seen from both sides (X.224 request and
// confirm, both RFB versions, both SSH identification lines). One side is enough only when
// the capture never saw the other direction at all (asymmetric routing), and is then
// reported as such; a probe answered by a reset or by another protocol is not a session.
class RemoteAccessDetector : public Detector {
 public:
  // Per-flow state: two capped payload buffers plus parsed findings.
  static constexpr std::size_t kMaxFlowStateBytes = 2 * kMaxInspectBytes + 512;

  RemoteAccessDetector(RemoteAccessConfig config, DetectorContext context);

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "remote_access"; }

 private:
  RemoteAccessConfig config_;
  DetectorContext context_;
};

// The registry's factory. Returns nullptr (and no error) when the section disables it.
absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::remote_access
