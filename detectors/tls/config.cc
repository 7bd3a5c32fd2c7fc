#include "detectors/tls/config.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::tls {

absl::StatusOr<TlsConfig> ParseTlsConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(
      section.CheckKeys({"enabled", "max_client_hello_bytes", "inspect_packets", "quic"}));
  TlsConfig config;
  RW_ASSIGN_OR_RETURN(config.enabled, section.Bool("enabled", config.enabled));
  RW_ASSIGN_OR_RETURN(config.max_client_hello_bytes,
                      section.Uint("max_client_hello_bytes", config.max_client_hello_bytes,
                                   kMinClientHelloBytes, kMaxClientHelloBytesLimit));
  RW_ASSIGN_OR_RETURN(config.inspect_packets,
                      section.Uint("inspect_packets", config.inspect_packets, 1, 1000));
  RW_ASSIGN_OR_RETURN(config.quic, section.Bool("quic", config.quic));
  return config;
}

}  // namespace relaywatch::detectors::tls
