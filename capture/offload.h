#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace relaywatch::capture {

// What the interface merges before the capture point. GRO (software, per NAPI poll) and
// LRO (the NIC's) hand libpcap one packet of up to 64 kB for a run of a flow's segments,
// stamped when the merge ends: packet counts and sizes are then the offload's, not the
// wire's. A Linux router turns LRO off on forwarding interfaces itself; GRO stays on.
struct ReceiveOffloads {
  bool gro = false;
  bool lro = false;

  bool any() const { return gro || lro; }
};

// Reads the interface's GRO and LRO settings (SIOCETHTOOL). NotFound: no such network
// device (nflog:N, any); an offload the driver cannot report counts as off.
absl::StatusOr<ReceiveOffloads> ReadReceiveOffloads(const std::string& interface);

// "gro, lro" / "gro" / "": the ones that are on, for log lines.
std::string OffloadNames(const ReceiveOffloads& offloads);

}  // namespace relaywatch::capture
