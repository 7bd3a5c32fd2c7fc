#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "capture/base/config_reader.h"
#include "capture/base/ip_address.h"
#include "capture/flow/flow_table.h"
#include "daemon/sinks/jsonl_sink.h"
#include "daemon/sinks/syslog_sink.h"
#include "detectors/host/host_stage.h"

namespace relaywatch::daemon {

struct CaptureConfig {
  std::vector<std::string> interfaces;  // empty: the default-route interface
  std::string bpf;
  int snaplen = 262144;
  int buffer_size_mib = 64;
  bool promiscuous = true;
  int workers = 0;  // 0: one per core
};

struct PrometheusConfig {
  bool enabled = true;
  std::string listen = "127.0.0.1:9781";
};

// The whole validated configuration. Immutable once built; a reload builds a new one.
struct Config {
  std::string source = "<built-in defaults>";
  std::vector<std::string> home_networks_text;
  CaptureConfig capture;
  flow::FlowTableConfig flows;
  std::uint16_t community_id_seed = 0;
  bool jsonl_enabled = true;
  sinks::JsonlConfig jsonl;
  bool syslog_enabled = false;
  sinks::SyslogConfig syslog;
  PrometheusConfig prometheus;
  host::HostStageConfig alerting;  // includes the parsed home_networks
  // detectors.<name> sections, validated, kept for building per-worker instances.
  config::Section detectors = config::Section(YAML::Node(), "detectors", nullptr);
};

// The event types the JSON-lines sink can be asked for (outputs.jsonl.events).
const std::vector<std::string>& KnownEventTypes();

// Parses and validates a config document: unknown keys, duplicates, wrong types and bad
// values fail with "file:line:col: key: what is wrong". Every detector section is checked
// by building the detector once.
absl::StatusOr<Config> ParseConfig(const config::Section& root);
// Loads `path`, or the built-in defaults when `path` is empty.
absl::StatusOr<Config> LoadConfig(const std::string& path);

}  // namespace relaywatch::daemon
