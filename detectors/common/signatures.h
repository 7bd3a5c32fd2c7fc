#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capture/base/config_reader.h"

namespace relaywatch::detectors {

// One remote-control tool as operators describe it in a signature file (conf/signatures.yaml),
// so a new tool needs no recompiling. Every list is optional; a tool matches on any entry.
struct AppSignature {
  std::string name;      // the remote_session.app id: lower case, digits, underscore
  std::string category;  // remote_desktop, rmm, ip_kvm
  std::vector<std::string> sni;           // TLS server names: "host.example" or "*.example"
  std::vector<std::string> dns;           // DNS names, same pattern syntax
  std::vector<std::string> alpn_prefix;   // ALPN values starting with these ("anydesk/")
  std::vector<std::string> certificate;   // substrings of a certificate subject or issuer
  struct Port {
    std::uint8_t protocol = 6;  // 6 TCP, 17 UDP
    std::uint16_t first = 0;
    std::uint16_t last = 0;
  };
  std::vector<Port> ports;  // hints only: never enough on their own
  struct Payload {
    int direction = -1;  // -1 either, 0 client (originator) -> server, 1 server -> client
    std::size_t offset = 0;
    std::vector<std::uint8_t> bytes;
  };
  std::vector<Payload> payload;  // bytes at an offset of a direction's first payload
  // Which side of a matching flow is operated: the flow's responder (a listener that is
  // dialled, e.g. a KVM's web UI), its initiator, or unknown (tools that dial out to a relay).
  enum class Controlled { kResponder, kInitiator, kUnknown } controlled = Controlled::kUnknown;
};

// True when `host` matches `pattern`: exact ("a.example.com") or a suffix wildcard
// ("*.example.com" matches any name below example.com, not example.com itself). ASCII
// case-insensitive; a trailing dot on `host` is ignored.
bool HostMatches(absl::string_view pattern, absl::string_view host);

// The loaded signature file. Immutable after loading; shared read-only by workers.
class SignatureSet {
 public:
  // Parses and validates a signature document (unknown keys, bad hex, bad ports and
  // duplicate names are errors with file:line:col).
  static absl::StatusOr<SignatureSet> Parse(const config::Section& root);
  static absl::StatusOr<SignatureSet> Load(const std::string& path);

  const std::vector<AppSignature>& apps() const { return apps_; }
  // The first tool whose entries match; nullptr when none does.
  const AppSignature* MatchSni(absl::string_view host) const;
  const AppSignature* MatchDns(absl::string_view name) const;
  const AppSignature* MatchAlpn(absl::string_view alpn) const;
  const AppSignature* MatchCertificate(absl::string_view subject_or_issuer) const;
  const AppSignature* MatchPayload(int direction, std::span<const std::uint8_t> start) const;
  bool PortHint(const AppSignature& app, std::uint8_t protocol, std::uint16_t port) const;

 private:
  std::vector<AppSignature> apps_;
};

}  // namespace relaywatch::detectors
