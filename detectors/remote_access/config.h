#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include <memory>
#include <string>

#include "capture/base/config_reader.h"
#include "detectors/common/signatures.h"

namespace relaywatch::detectors::remote_access {

// Limits on how much of a flow's start is inspected. Identification needs only the first
// messages of each side; past these limits the flow is given up (Verdict::kDone).
inline constexpr std::uint64_t kMaxInspectBytes = 65536;

struct RemoteAccessConfig {
  bool enabled = true;
  std::uint64_t inspect_bytes = 1024;  // per direction, buffered from the flow's start
  std::uint64_t inspect_packets = 16;  // payload packets per direction before giving up
  // Tool signatures: a file, or "" for the set compiled in from conf/signatures.yaml.
  std::string signatures_path;
  std::shared_ptr<const SignatureSet> signatures;
};

// Reads detectors.remote_access; unknown keys and bad values are errors with file:line:col.
absl::StatusOr<RemoteAccessConfig> ParseRemoteAccessConfig(const config::Section& section);

}  // namespace relaywatch::detectors::remote_access
