#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/config_reader.h"

namespace relaywatch::detectors::dns {

// Upper bounds of the config keys; they size DnsDetector::kMaxFlowStateBytes.
inline constexpr std::uint64_t kMaxAnswersLimit = 256;
inline constexpr std::uint64_t kMaxOutstandingQueriesLimit = 1024;
inline constexpr std::uint64_t kMaxTcpMessageBytesLimit = 65535;

struct DnsConfig {
  bool enabled = true;
  // Answers written per event; the rest are counted in the event (answers_total).
  std::uint64_t max_answers = 32;
  // Queries per flow waiting for their response; when full the oldest is forgotten.
  std::uint64_t max_outstanding_queries = 32;
  // DNS-over-TCP messages up to this size are reassembled; longer ones are skipped.
  std::uint64_t max_tcp_message_bytes = 16384;
  // A query unanswered for this long is forgotten (and counted as unanswered).
  absl::Duration query_timeout = absl::Seconds(30);
  // Also parse and log mDNS (UDP 5353).
  bool mdns = true;
};

// Reads detectors.dns; unknown keys and bad values are errors with file:line:col.
absl::StatusOr<DnsConfig> ParseDnsConfig(const config::Section& section);

}  // namespace relaywatch::detectors::dns
