#include "detectors/remote_access/config.h"

#include "absl/strings/str_cat.h"
#include "capture/base/status_macros.h"
#include "detectors/common/builtin_signatures.h"

namespace relaywatch::detectors::remote_access {

absl::StatusOr<RemoteAccessConfig> ParseRemoteAccessConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(
      section.CheckKeys({"enabled", "inspect_bytes", "inspect_packets", "signatures"}));
  RemoteAccessConfig config;
  RW_ASSIGN_OR_RETURN(config.enabled, section.Bool("enabled", config.enabled));
  // 64 bytes hold an SSH banner's start, an X.224 request or an RFB version.
  RW_ASSIGN_OR_RETURN(config.inspect_bytes,
                      section.Uint("inspect_bytes", config.inspect_bytes, 64, kMaxInspectBytes));
  RW_ASSIGN_OR_RETURN(config.inspect_packets,
                      section.Uint("inspect_packets", config.inspect_packets, 1, 1000));
  RW_ASSIGN_OR_RETURN(config.signatures_path, section.String("signatures", ""));
  absl::StatusOr<SignatureSet> set =
      config.signatures_path.empty()
          ? [] {
              absl::StatusOr<config::Section> root =
                  config::LoadString(BuiltinSignatures(), "<built-in signatures>");
              return root.ok() ? SignatureSet::Parse(*root) : root.status();
            }()
          : SignatureSet::Load(config.signatures_path);
  if (!set.ok()) {
    // The signature file's own file:line:col says what is wrong; name the key that led there.
    return absl::InvalidArgumentError(absl::StrCat(set.status().message(), " (loaded from ",
                                                   section.path(), ".signatures)"));
  }
  config.signatures = std::make_shared<const SignatureSet>(std::move(*set));
  return config;
}

}  // namespace relaywatch::detectors::remote_access
