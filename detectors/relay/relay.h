#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "capture/base/counter.h"
#include "detectors/detector.h"
#include "detectors/relay/config.h"
#include "detectors/relay/timing.h"

namespace relaywatch::detectors::relay {

struct RelayCounters {
  WorkerCounter flows_measured;           // `relay` records emitted
  WorkerCounter handshakes_split;         // flows with both handshake legs timed
  WorkerCounter handshakes_karn;          // handshakes refused: SYN or SYN/ACK retransmitted
  WorkerCounter turnarounds;              // client turnaround samples kept
  WorkerCounter turnarounds_refused;      // refused: loss in the flight or answer, or too slow
  WorkerCounter turnarounds_unseen_loss;  // of those: the answer followed an unseen packet
  WorkerCounter turnarounds_interrupted;  // dropped: the server's flight was still going
  WorkerCounter ssh_kexinit_unasked;      // SSH client segments before its key exchange init
                                          // that came behind the server's KEXINIT: no answer
  WorkerCounter ssh_identification_unawaited;  // SSH client banners before the server's
                                               // KEXINIT: sent on connecting, no answer
  WorkerCounter ack_rtt_samples;          // data -> ACK samples
  WorkerCounter stun_rtt_samples;         // UDP: ICE check request -> success response samples
  WorkerCounter quic_openings;            // QUIC connections with a leg of their opening timed
  WorkerCounter obfuscated_ssh;           // SSH sessions paced by keystroke obfuscation
  WorkerCounter packet_times_dropped;     // SSH input packets past a window's sample bound
  WorkerCounter update_windows_full;      // remote-desktop windows past the updates' bound
  WorkerCounter on_windows;               // windows of flows already reported
  WorkerCounter http_exchanges;           // plain-HTTP requests answered (possible fetches)
};

// After a flow's `relay` record, its input's ON times (`_on_times_us`, for stepping stones
// that begin late in a long session) and an SSH session's output -> next key delays
// (`_reactions_ms`, for the typing baseline) go on to the host stage in windows of
// report_after, as this internal finding (never written out).
inline constexpr std::string_view kOnWindowEvent = "relay_on_window";
// A request on plain HTTP answered (`_exchanges_us`: [[start, answered, -1]]), told to the
// host stage at once as a possible fetch (an OCSP request on a connection kept open, which
// may outlive the flows whose handshakes waited on it), as this internal finding.
inline constexpr std::string_view kExchangeEvent = "relay_exchange";

// Measures, per TCP flow (per UDP flow carrying ICE checks, for the controller's leg, and per
// QUIC connection, its opening's legs for the routed relay), where
// the two ends are in time as seen from the sensor, and whether the client answers from farther
// away than its TCP endpoint (a relay): the handshake split, data/ACK round trips per side, client
// turnarounds in the TLS or SSH setup and the hidden leg they imply, keystroke timing of
// interactive sessions, and the ON times a stepping-stone correlation needs. One `relay` record per
// flow; the host stage aggregates them per host and decides (see docs/detectors/relay.md). Methods
// switched off in `RelayConfig::methods` are neither measured nor reported.
class RelayDetector : public Detector {
 public:
  // Per-flow state: fixed rings plus keystroke vectors capped at KeystrokeTiming::kMaxKeys.
  static constexpr std::size_t kMaxOnTimes = 256;
  // SSH flows' input packets for the packet-level stepping-stone test (PacketSample): the
  // first 32 of each 10 s slot, at most 12 slots (one window of the default report_after).
  static constexpr std::size_t kPacketsPerSlot = 32;
  static constexpr std::size_t kMaxPacketTimes = 384;
  // A remote desktop's screen updates per window: a person's typing draws a few a second; a
  // screen that updates all the time fills it, and matches anything anyway.
  static constexpr std::size_t kMaxUpdateTimes = 1024;

  RelayDetector(RelayConfig config, DetectorContext context);

  Verdict OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                   flow::Direction direction, EventBuffer& out) override;
  void OnFlowEnd(flow::FlowState& flow, EventBuffer& out) override;
  std::string_view name() const override { return "relay"; }
  void ReportCounters(std::vector<CounterSample>& out) const override;

  const RelayCounters& counters() const { return counters_; }

 private:
  struct FlowData;
  // A UDP datagram: flows carrying ICE checks are timed by them (StunRtt).
  Verdict OnDatagram(const decode::DecodedPacket& packet, flow::FlowState& flow,
                     flow::Direction direction, EventBuffer& out);
  // `open`: the flow goes on after its record (report_after), so a session may still be
  // named on it (the host stage keeps such records for that).
  void Report(const flow::FlowState& flow, FlowData& data, PacketTime ts, bool open,
              EventBuffer& out);
  void EmitWindow(const flow::FlowState& flow, FlowData& data, PacketTime ts, EventBuffer& out);
  // Counts what the closing window left out (packets past its sample, a full screen) and
  // starts the next at `ts`.
  void NextWindow(FlowData& data, PacketTime ts);
  void EmitExchange(const flow::FlowState& flow, const Exchange& x, PacketTime ts,
                    EventBuffer& out);
  // An SSH session past its setup whose reactions are timed (keystrokes on, not obfuscated).
  bool TypingTimed(const FlowData& data) const;
  // An SSH flow whose input packets are sampled for the packet-level stepping-stone test.
  bool SamplesPackets(const FlowData& data) const;
  // A TCP flow to a TURN server: the stream's new bytes cut into frames, their ICE checks timed.
  void ReadTurnStream(const decode::DecodedPacket& packet, int d, FlowData& data);
  // Names the flow's app from the first bytes of direction `d` (of its tunnel, if proxied).
  void NameApp(FlowData& data, int d, std::span<const std::uint8_t> first) const;

  RelayConfig config_;
  DetectorContext context_;
  RelayCounters counters_;
};

// The registry's factory. Returns nullptr (and no error) when the section disables it.
absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context);

}  // namespace relaywatch::detectors::relay
