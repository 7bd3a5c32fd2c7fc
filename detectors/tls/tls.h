#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

#include "capture/base/counter.h"
#include "detectors/common/tls.h"
#include "detectors/detector.h"
#include "detectors/tls/config.h"

namespace relaywatch::detectors::tls {

// Packet-path counters of one TlsDetector (one worker). Written by the worker only.
struct TlsCounters {
  WorkerCounter client_hellos;       // ClientHellos parsed (TLS, DTLS and QUIC)
  WorkerCounter events;              // `tls` events emitted
  WorkerCounter oversized_messages;  // handshake messages longer than max_client_hello_bytes
  WorkerCounter hellos_dropped;      // ClientHellos past kMaxHellosPerFlow on one flow (the
                                     // flow is then given up)
  WorkerCounter tcp_gaps;            // a missing TCP segment ended a direction's parsing
  WorkerCounter quic_undecryptable;  // QUIC Initial packets that failed authentication
  WorkerCounter not_tls;             // flows given up without a ClientHello
  // Messages that failed to parse, by common::TlsParseStatus.
  std::array<WorkerCounter, common::kTlsParseStatusCount> parse_errors;
};

// Logs TLS handshakes: one `tls` event per ClientHello over TCP, DTLS or QUIC, with its SNI,
// ALPN list and JA4 fingerprints (ja4, ja4_r, ja4_o, ja4_ro), plus what the server answered
// when it was seen: negotiated version and cipher and, for TLS <= 1.2, the subject, issuer,
// validity and self-signedness of its first certificate. Identification is by content
// (a handshake record holding a ClientHello), never by port.
//
// When an event is written: once the server's answer can add nothing more: after its
// Certificate (TLS <= 1.2), after a TLS 1.3 ServerHello (the certificate is encrypted),
// after a HelloRetryRequest or HelloVerifyRequest (a second ClientHello follows and gets its
// own event, client_hello_index 1), at the first encrypted or alert record, after
// inspect_packets payload packets without an answer, or at the flow's end. The event's
// timestamp is the ClientHello's. The flow is then done (Verdict::kDone).
class TlsDetector : public Detector {
 public:
  // Per-flow state: per direction one handshake message (two for QUIC: CRYPTO stream and
  // message) up to the cap, plus the pending events' strings.
  static constexpr std::size_t kMaxHellosPerFlow = 4;
  static constexpr std::size_t kMaxPendingHelloBytes = 24 * 1024;
  static constexpr std::size_t kMaxFlowStateBytes =
      2048 + 2 * (2 * kMaxClientHelloBytesLimit + 1024) + kMaxHellosPerFlow * kMaxPendingHelloBytes;

  TlsDetector(TlsConfig config, DetectorContext context);

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "tls"; }
  void ReportCounters(std::vector<CounterSample>& out) const override;

  const TlsCounters& counters() const { return counters_; }
  // Bytes of per-flow state this detector holds for `flow` now (for the cap test).
  std::size_t FlowStateBytes(const flow::FlowState& flow) const;

 private:
  struct FlowData;
  struct Handler;
  void EmitReady(const flow::FlowState& flow, FlowData& data, bool all, EventBuffer& out);
  void HandleQuic(FlowData& data, int d, common::Bytes datagram, const Handler& handler);

  TlsConfig config_;
  DetectorContext context_;
  TlsCounters counters_;
  std::vector<std::uint8_t> scratch_;  // decrypted QUIC payload, reused for every packet
};

// The registry's factory. Returns nullptr (and no error) when the section disables it.
absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::tls
