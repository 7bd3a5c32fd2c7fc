#include "detectors/remote_access/config.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::remote_access {

absl::StatusOr<RemoteAccessConfig> ParseRemoteAccessConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(section.CheckKeys({"enabled", "inspect_bytes", "inspect_packets"}));
  RemoteAccessConfig config;
  RW_ASSIGN_OR_RETURN(config.enabled, section.Bool("enabled", config.enabled));
  // 64 bytes hold an SSH banner's start, an X.224 request or an RFB version.
  RW_ASSIGN_OR_RETURN(config.inspect_bytes,
                      section.Uint("inspect_bytes", config.inspect_bytes, 64, kMaxInspectBytes));
  RW_ASSIGN_OR_RETURN(config.inspect_packets,
                      section.Uint("inspect_packets", config.inspect_packets, 1, 1000));
  return config;
}

}  // namespace relaywatch::detectors::remote_access
