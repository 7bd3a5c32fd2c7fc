// Fuzz target for the YAML config loader and validator:
// relaywatch::daemon::ParseConfig(config::LoadString(input)).
//
// Contracts checked besides crashes and sanitizer reports:
// - nothing throws (yaml-cpp exceptions must be turned into Status where yaml-cpp is called);
// - every error is InvalidArgument and starts with the file name ("fuzz.yaml:line:col: ...");
// - an accepted config rebuilds every detector again without error, as each worker does at
//   start-up and on reload (daemon/worker.cc aborts if that fails).

#include "daemon/config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

#include "capture/base/config_reader.h"
#include "detectors/detector.h"
#include "tests/fuzz/fuzz_util.h"

// capture.bpf is compiled with pcap_compile(), which resolves host names (getaddrinfo, and
// gethostbyname for "gateway"). Fuzzed filters such as "tcp and xyzzy" would send DNS queries
// from CI and make runs slow and network-dependent, so inside this target only numeric hosts
// resolve and names fail as an unknown host would. Definitions here take precedence over
// libc's (and over the sanitizer runtime's weak interceptors).
extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node == nullptr) {
    return real(node, service, hints, res);  // a service name: /etc/services, no network
  }
  struct addrinfo numeric = {};
  if (hints != nullptr) {
    numeric = *hints;
  }
  numeric.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &numeric, res);
}

extern "C" struct hostent* gethostbyname(const char* name) {
  using Fn = struct hostent* (*)(const char*);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "gethostbyname"));
  struct in_addr ignored;
  if (name == nullptr || inet_aton(name, &ignored) == 0) {
    h_errno = HOST_NOT_FOUND;
    return nullptr;
  }
  return real(name);
}

namespace {

namespace fuzz = relaywatch::fuzz;
namespace config = relaywatch::config;
namespace daemon = relaywatch::daemon;

constexpr char kFileName[] = "fuzz.yaml";

constexpr char kTarget[] = "config_fuzz";

void Fail(const char* what, const std::string& detail) {
  fuzz::Fail(kTarget, what, detail);
}

void CheckError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    Fail("unexpected status code", status.ToString());
  }
  if (!absl::StartsWith(status.message(), kFileName)) {
    Fail("error does not name the file", status.ToString());
  }
}

void Run(absl::string_view text) {
  absl::StatusOr<config::Section> root = config::LoadString(text, kFileName);
  if (!root.ok()) {
    CheckError(root.status());
    return;
  }
  absl::StatusOr<daemon::Config> parsed = daemon::ParseConfig(*root);
  if (!parsed.ok()) {
    CheckError(parsed.status());
    return;
  }
  const daemon::Config& c = *parsed;
  if (c.alerting.home_networks.size() != c.home_networks_text.size()) {
    Fail("home networks", "parsed and text lists differ in size");
  }
  for (const relaywatch::detectors::DetectorEntry& entry : relaywatch::detectors::Registry()) {
    relaywatch::detectors::DetectorContext context;
    context.community_id_seed = c.community_id_seed;
    auto detector = entry.create(c.detectors.Child(entry.name), context);
    if (!detector.ok()) {
      Fail("detector rebuilt from an accepted config failed", detector.status().ToString());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FailOnException(kTarget, [&] { Run(fuzz::AsText(data, size)); });
  return 0;
}
