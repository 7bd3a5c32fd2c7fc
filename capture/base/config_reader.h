#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

#include "capture/base/ip_address.h"

namespace relaywatch::config {

// A view of one YAML mapping in a config file, with its dotted path ("outputs.syslog") and
// the file it came from, so every error reads "file:line:col: path.key: what is wrong".
//
// yaml-cpp accepts duplicate keys and ignores unknown ones silently; CheckKeys() rejects
// both. Readers never use as<T>(fallback), which would turn "snaplen: lots" into the default.
// An absent section behaves as an empty mapping: every read returns its fallback.
class Section {
 public:
  Section(YAML::Node node, std::string path, std::shared_ptr<const std::string> file);
  Section(const Section&) = default;
  // YAML::Node's operator= writes into the referenced node; a Section rebinds instead.
  Section& operator=(const Section& other);

  // True when the mapping exists in the file (not absent, not null).
  bool present() const;
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }
  const std::string& file() const { return *file_; }

  // An InvalidArgument error located at `at` (or at this section when `at` has no mark).
  absl::Status Error(const YAML::Node& at, absl::string_view key, absl::string_view message) const;
  absl::Status Error(absl::string_view message) const;

  // Fails unless the node is a mapping (or absent) whose keys are unique and all in `known`.
  absl::Status CheckKeys(std::initializer_list<absl::string_view> known) const;
  absl::Status CheckKeys(const std::vector<std::string>& known) const;

  Section Child(absl::string_view key) const;
  bool Has(absl::string_view key) const;
  // The node at `key` (undefined when absent), for locating errors.
  YAML::Node At(absl::string_view key) const;

  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  absl::StatusOr<std::uint64_t> Uint(absl::string_view key, std::uint64_t fallback,
                                     std::uint64_t min, std::uint64_t max) const;
  absl::StatusOr<double> Double(absl::string_view key, double fallback, double min,
                                double max) const;
  absl::StatusOr<std::string> String(absl::string_view key, std::string fallback) const;
  // A string that must be one of `allowed`.
  absl::StatusOr<std::string> Enum(absl::string_view key, std::string fallback,
                                   std::initializer_list<absl::string_view> allowed) const;
  // Durations are written as "30s", "5m", "1h", "250ms" (absl::ParseDuration syntax).
  absl::StatusOr<absl::Duration> Duration(absl::string_view key, absl::Duration fallback,
                                          absl::Duration min, absl::Duration max) const;
  absl::StatusOr<std::vector<std::string>> StringList(absl::string_view key,
                                                      std::vector<std::string> fallback) const;
  // A list of address prefixes ("10.0.0.0/8", "192.0.2.7"); a bad one is located itself.
  absl::StatusOr<std::vector<Cidr>> CidrList(absl::string_view key) const;

 private:
  // The scalar at `key`, or an error when the key holds a mapping or sequence.
  absl::StatusOr<std::string> Scalar(absl::string_view key, absl::string_view expected) const;

  YAML::Node node_;
  std::string path_;
  std::shared_ptr<const std::string> file_;
};

// Parses a YAML document; syntax errors come back as "file:line:col: message".
absl::StatusOr<Section> LoadFile(const std::string& path);
absl::StatusOr<Section> LoadString(absl::string_view text, std::string name = "<config>");

}  // namespace relaywatch::config
