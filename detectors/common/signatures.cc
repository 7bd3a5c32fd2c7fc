#include "detectors/common/signatures.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "capture/base/status_macros.h"

namespace relaywatch::detectors {
namespace {

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 32) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool ValidHostPattern(absl::string_view p) {
  if (absl::StartsWith(p, "*.")) {
    p.remove_prefix(2);
  }
  if (p.empty() || p.size() > 253) {
    return false;
  }
  return std::all_of(p.begin(), p.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
}

absl::StatusOr<AppSignature::Port> ParsePort(const config::Section& s, const std::string& text,
                                             const YAML::Node& at) {
  // "tcp/7070" or "udp/21116-21119".
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  AppSignature::Port port;
  if (parts.size() == 2 && (parts[0] == "tcp" || parts[0] == "udp")) {
    port.protocol = parts[0] == "tcp" ? 6 : 17;
    std::vector<std::string> range = absl::StrSplit(parts[1], '-');
    std::uint32_t first = 0, last = 0;
    if ((range.size() == 1 || range.size() == 2) && absl::SimpleAtoi(range[0], &first) &&
        absl::SimpleAtoi(range.back(), &last) && first >= 1 && first <= last && last <= 65535) {
      port.first = static_cast<std::uint16_t>(first);
      port.last = static_cast<std::uint16_t>(last);
      return port;
    }
  }
  return s.Error(at, "ports",
                 absl::StrCat("expected tcp/PORT, udp/PORT or tcp/FIRST-LAST, got \"", text, "\""));
}

absl::StatusOr<AppSignature::Payload> ParsePayload(const config::Section& s) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"direction", "offset", "hex"}));
  AppSignature::Payload p;
  RW_ASSIGN_OR_RETURN(std::string direction,
                      s.Enum("direction", "either", {"either", "client", "server"}));
  p.direction = direction == "client" ? 0 : (direction == "server" ? 1 : -1);
  RW_ASSIGN_OR_RETURN(p.offset, s.Uint("offset", 0, 0, 1024));
  RW_ASSIGN_OR_RETURN(std::string hex, s.String("hex", ""));
  hex.erase(std::remove(hex.begin(), hex.end(), ' '), hex.end());
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 128 ||
      !std::all_of(hex.begin(), hex.end(),
                   [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); })) {
    return s.Error(s.At("hex"), "hex", "expected 1 to 64 bytes as hex digits, e.g. \"7f7f494341\"");
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  p.bytes.assign(bytes.begin(), bytes.end());
  return p;
}

absl::StatusOr<AppSignature> ParseApp(const config::Section& s) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"name", "category", "sni", "dns", "alpn_prefix",
                                  "certificate", "ports", "payload", "controlled"}));
  AppSignature app;
  RW_ASSIGN_OR_RETURN(app.name, s.String("name", ""));
  if (!ValidName(app.name)) {
    return s.Error(s.At("name"), "name",
                   "expected a lower-case id of letters, digits and '_' (at most 32)");
  }
  RW_ASSIGN_OR_RETURN(app.category,
                      s.Enum("category", "remote_desktop", {"remote_desktop", "rmm", "ip_kvm"}));
  RW_ASSIGN_OR_RETURN(app.sni, s.StringList("sni", {}));
  RW_ASSIGN_OR_RETURN(app.dns, s.StringList("dns", {}));
  for (const auto* list : {&app.sni, &app.dns}) {
    for (const std::string& p : *list) {
      if (!ValidHostPattern(p)) {
        return s.Error(s.At(list == &app.sni ? "sni" : "dns"), list == &app.sni ? "sni" : "dns",
                       absl::StrCat("bad host pattern \"", p,
                                    "\"; use host.example or *.example"));
      }
    }
  }
  RW_ASSIGN_OR_RETURN(app.alpn_prefix, s.StringList("alpn_prefix", {}));
  RW_ASSIGN_OR_RETURN(app.certificate, s.StringList("certificate", {}));
  RW_ASSIGN_OR_RETURN(std::vector<std::string> ports, s.StringList("ports", {}));
  for (const std::string& p : ports) {
    RW_ASSIGN_OR_RETURN(AppSignature::Port port, ParsePort(s, p, s.At("ports")));
    app.ports.push_back(port);
  }
  const YAML::Node payload = s.At("payload");
  if (payload.IsDefined() && !payload.IsNull()) {
    if (!payload.IsSequence()) {
      return s.Error(payload, "payload", "expected a list of {direction, offset, hex}");
    }
    for (std::size_t i = 0; i < payload.size(); ++i) {
      RW_ASSIGN_OR_RETURN(
          AppSignature::Payload p,
          ParsePayload(config::Section(payload[i], absl::StrCat(s.path(), ".payload[", i, "]"),
                                       std::make_shared<const std::string>(s.file()))));
      app.payload.push_back(std::move(p));
    }
  }
  RW_ASSIGN_OR_RETURN(std::string controlled,
                      s.Enum("controlled", "unknown", {"responder", "initiator", "unknown"}));
  app.controlled = controlled == "responder"   ? AppSignature::Controlled::kResponder
                   : controlled == "initiator" ? AppSignature::Controlled::kInitiator
                                               : AppSignature::Controlled::kUnknown;
  if (app.sni.empty() && app.dns.empty() && app.alpn_prefix.empty() && app.certificate.empty() &&
      app.payload.empty()) {
    return s.Error("a tool needs at least one of sni, dns, alpn_prefix, certificate, payload "
                   "(ports alone are only hints)");
  }
  return app;
}

}  // namespace

bool HostMatches(absl::string_view pattern, absl::string_view host) {
  if (absl::EndsWith(host, ".")) {
    host.remove_suffix(1);
  }
  if (absl::StartsWith(pattern, "*.")) {
    const absl::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && absl::EndsWithIgnoreCase(host, suffix);
  }
  return absl::EqualsIgnoreCase(pattern, host);
}

absl::StatusOr<SignatureSet> SignatureSet::Parse(const config::Section& root) {
  RW_RETURN_IF_ERROR(root.CheckKeys({"apps"}));
  const YAML::Node apps = root.At("apps");
  SignatureSet set;
  if (!apps.IsDefined() || apps.IsNull()) {
    return set;
  }
  if (!apps.IsSequence()) {
    return root.Error(apps, "apps", "expected a list of tools");
  }
  absl::flat_hash_set<std::string> names;
  for (std::size_t i = 0; i < apps.size(); ++i) {
    config::Section s(apps[i], absl::StrCat("apps[", i, "]"),
                      std::make_shared<const std::string>(root.file()));
    RW_ASSIGN_OR_RETURN(AppSignature app, ParseApp(s));
    if (!names.insert(app.name).second) {
      return s.Error(s.At("name"), "name", absl::StrCat("duplicate tool \"", app.name, "\""));
    }
    set.apps_.push_back(std::move(app));
  }
  return set;
}

absl::StatusOr<SignatureSet> SignatureSet::Load(const std::string& path) {
  RW_ASSIGN_OR_RETURN(config::Section root, config::LoadFile(path));
  return Parse(root);
}

const AppSignature* SignatureSet::MatchSni(absl::string_view host) const {
  for (const AppSignature& app : apps_) {
    for (const std::string& p : app.sni) {
      if (HostMatches(p, host)) {
        return &app;
      }
    }
  }
  return nullptr;
}

const AppSignature* SignatureSet::MatchDns(absl::string_view name) const {
  for (const AppSignature& app : apps_) {
    for (const std::string& p : app.dns) {
      if (HostMatches(p, name)) {
        return &app;
      }
    }
  }
  return nullptr;
}

const AppSignature* SignatureSet::MatchAlpn(absl::string_view alpn) const {
  for (const AppSignature& app : apps_) {
    for (const std::string& p : app.alpn_prefix) {
      if (absl::StartsWith(alpn, p)) {
        return &app;
      }
    }
  }
  return nullptr;
}

const AppSignature* SignatureSet::MatchCertificate(absl::string_view text) const {
  for (const AppSignature& app : apps_) {
    for (const std::string& p : app.certificate) {
      if (absl::StrContains(text, p)) {
        return &app;
      }
    }
  }
  return nullptr;
}

const AppSignature* SignatureSet::MatchPayload(int direction,
                                               std::span<const std::uint8_t> start) const {
  for (const AppSignature& app : apps_) {
    for (const AppSignature::Payload& p : app.payload) {
      if ((p.direction == -1 || p.direction == direction) &&
          start.size() >= p.offset + p.bytes.size() &&
          std::equal(p.bytes.begin(), p.bytes.end(), start.begin() + p.offset)) {
        return &app;
      }
    }
  }
  return nullptr;
}

bool SignatureSet::PortHint(const AppSignature& app, std::uint8_t protocol,
                            std::uint16_t port) const {
  return std::any_of(app.ports.begin(), app.ports.end(), [&](const AppSignature::Port& p) {
    return p.protocol == protocol && port >= p.first && port <= p.last;
  });
}

}  // namespace relaywatch::detectors
