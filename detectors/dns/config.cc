#include "detectors/dns/config.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::dns {

absl::StatusOr<DnsConfig> ParseDnsConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(section.CheckKeys({"enabled", "max_answers", "max_outstanding_queries",
                                        "max_tcp_message_bytes", "query_timeout", "mdns"}));
  DnsConfig config;
  RW_ASSIGN_OR_RETURN(config.enabled, section.Bool("enabled", config.enabled));
  RW_ASSIGN_OR_RETURN(config.max_answers,
                      section.Uint("max_answers", config.max_answers, 1, kMaxAnswersLimit));
  RW_ASSIGN_OR_RETURN(config.max_outstanding_queries,
                      section.Uint("max_outstanding_queries", config.max_outstanding_queries, 1,
                                   kMaxOutstandingQueriesLimit));
  // 512 bytes: RFC 1035's UDP limit, the smallest message a TCP fallback must carry.
  RW_ASSIGN_OR_RETURN(config.max_tcp_message_bytes,
                      section.Uint("max_tcp_message_bytes", config.max_tcp_message_bytes, 512,
                                   kMaxTcpMessageBytesLimit));
  RW_ASSIGN_OR_RETURN(config.query_timeout, section.Duration("query_timeout", config.query_timeout,
                                                             absl::Seconds(1), absl::Minutes(10)));
  RW_ASSIGN_OR_RETURN(config.mdns, section.Bool("mdns", config.mdns));
  return config;
}

}  // namespace relaywatch::detectors::dns
