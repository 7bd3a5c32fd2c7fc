#include "detectors/stack/stack.h"

#include <cmath>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "capture/base/status_macros.h"
#include "detectors/stack/fingerprint.h"

namespace relaywatch::detectors::stack {

absl::StatusOr<StackConfig> ParseStackConfig(const config::Section& section) {
  RW_RETURN_IF_ERROR(
      section.CheckKeys({"enabled", "tunnel_events", "shared_line_window",
                         "shared_line_min_devices", "max_public_addresses", "vpn_ports"}));
  StackConfig c;
  RW_ASSIGN_OR_RETURN(c.enabled, section.Bool("enabled", c.enabled));
  RW_ASSIGN_OR_RETURN(c.tunnel_events, section.Bool("tunnel_events", c.tunnel_events));
  RW_ASSIGN_OR_RETURN(c.shared_line_window,
                      section.Duration("shared_line_window", c.shared_line_window, absl::Minutes(1),
                                       absl::Hours(24 * 30)));
  RW_ASSIGN_OR_RETURN(c.shared_line_min_devices,
                      section.Uint("shared_line_min_devices", c.shared_line_min_devices, 2, 10000));
  RW_ASSIGN_OR_RETURN(c.max_public_addresses,
                      section.Uint("max_public_addresses", c.max_public_addresses, 16, 1 << 24));
  if (section.Has("vpn_ports")) {
    RW_ASSIGN_OR_RETURN(std::vector<std::string> ports, section.StringList("vpn_ports", {}));
    c.vpn_ports.clear();
    for (const std::string& text : ports) {
      const std::size_t slash = text.find('/');
      std::uint32_t port = 0;
      const std::string proto = text.substr(0, slash);
      if (slash == std::string::npos || (proto != "tcp" && proto != "udp") ||
          !absl::SimpleAtoi(absl::string_view(text).substr(slash + 1), &port) || port == 0 ||
          port > 65535) {
        return section.Error(section.At("vpn_ports"), "vpn_ports",
                             absl::StrCat("expected tcp/PORT or udp/PORT, got \"", text, "\""));
      }
      c.vpn_ports.emplace_back(proto == "tcp" ? 6 : 17, static_cast<std::uint16_t>(port));
    }
  }
  return c;
}

struct StackDetector::FlowData : flow::DetectorFlowData {
  bool udp = false;
  std::optional<SynSignature> syn;
  PacketTime syn_time;
  // The originator's TCP timestamp clock: first and last (time, TSval) after the SYN.
  bool ts_seen = false;
  PacketTime ts_first_time, ts_last_time;
  std::uint32_t ts_first = 0, ts_last = 0;
  // The originator's IP-IDs.
  std::uint32_t ip_ids = 0;
  std::uint16_t ip_id_first = 0, ip_id_last = 0;
  std::uint32_t ip_id_increasing = 0;  // steps of +1..+64 (mod 2^16) from the previous
  std::uint32_t ip_id_zero = 0;
  // The originator's non-zero IP-IDs as one counter's run (Linux writes 0 on some ACKs, so
  // zeros are skipped): steps forward by 1..4096, steps of 2 or more (the counter also
  // served other packets) and their sum, i.e. how far the counter moved during the flow.
  std::uint32_t run_samples = 0;
  std::uint16_t run_first = 0, run_last = 0;
  PacketTime run_first_time, run_last_time;
  std::uint32_t run_forward = 0;
  std::uint32_t run_shared = 0;
  std::uint64_t run_advance = 0;
  // SYN MSS below Ethernet: what the originator's own segments say about that MTU.
  bool tunnel_mss = false;
  std::uint16_t responder_mss = 0;  // from the SYN/ACK; 0 until seen
  bool reported_at_mtu = false;
  bool reported_above_mtu = false;
};

namespace {

// Largest IP-ID step still read as the same counter moving forward. Random IDs (macOS)
// pass it with probability 1/16 per step, so a run of 8 forward steps is not random.
constexpr std::uint16_t kMaxIpIdStep = 4096;

// Bytes of a data segment that count against the MSS: payload plus the options the sender
// subtracts (RFC 6691), here the 12-byte timestamp block. SACK blocks make us undercount,
// which can hide evidence but never invent a segment above the MSS.
std::uint32_t SegmentBytes(const decode::DecodedPacket& packet) {
  return packet.payload_length + (packet.tcp_options.has_timestamps ? 12 : 0);
}

}  // namespace

void StackDetector::CheckPathMtu(const decode::DecodedPacket& packet, flow::FlowState& flow,
                                 FlowData& data, EventBuffer& out) {
  const SynSignature& s = *data.syn;
  const std::uint32_t bytes = SegmentBytes(packet);
  if (bytes < s.mss)
    return;
  // An MSS option caps what the sender will *receive*; its own segments are capped by its
  // outgoing link. A tunnel caps both, a clamp (route advmss, a host's VPN-friendly MSS)
  // only the first. Larger than one Ethernet frame: receive offload (GRO/LRO) merged
  // segments on the sensor, which says nothing about the sender's link.
  const bool above =
      bytes > s.mss && MtuFromMss(static_cast<std::uint16_t>(bytes), s.ip_version) <= kEthernetMtu;
  // Filled to exactly the MSS although the responder allowed more: the sender's own link
  // stopped it there.
  const bool at = bytes == s.mss && data.responder_mss > s.mss;
  if ((above && data.reported_above_mtu) || (at && data.reported_at_mtu) || (!above && !at))
    return;
  (above ? data.reported_above_mtu : data.reported_at_mtu) = true;
  Event e;
  e.event_type = "path_mtu";
  e.ts = packet.ts;
  e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
  e.body = {{"signature", s.Key(true)},
            {"mss", s.mss},
            {"segment_bytes", bytes},
            {"evidence", above ? "above_mtu" : "at_mtu"}};
  out.Emit(std::move(e));
  counters_.path_mtu.Increment();
}

Verdict StackDetector::OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                                flow::Direction direction, EventBuffer& out) {
  auto& slot = flow.detector_data[context_.index];
  if (!slot)
    slot = std::make_unique<FlowData>();
  auto& data = static_cast<FlowData&>(*slot);
  if (!packet.is_tcp()) {
    // UDP: only the flow's span matters (a tunnel session); the record comes at its end.
    data.udp = packet.is_udp();
    return Verdict::kDone;
  }
  if (direction != flow::Direction::kToResponder) {
    if (packet.has(decode::kTcpSyn) && packet.has(decode::kTcpAck) && packet.tcp_options.has_mss) {
      data.responder_mss = packet.tcp_options.mss;
    }
    return Verdict::kContinue;
  }
  if (packet.has(decode::kTcpSyn) && !packet.has(decode::kTcpAck)) {
    if (data.syn)
      return Verdict::kContinue;  // a retransmitted SYN says nothing new
    data.syn = SignatureOf(packet);
    data.syn_time = packet.ts;
    counters_.syns.Increment();
    const SynSignature& s = *data.syn;
    if (config_.tunnel_events && s.mss != 0) {
      const std::uint32_t mtu = MtuFromMss(s.mss, s.ip_version);
      if (std::optional<LinkKind> link = ClassifyMtu(mtu)) {
        Event e;
        e.event_type = "tunnel";
        e.ts = packet.ts;
        e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
        e.body = {{"kind", link->kind},
                  {"mtu", mtu},
                  {"mss", s.mss},
                  {"overlay", link->tunnel},
                  {"ttl", packet.ttl},
                  {"initial_ttl", s.initial_ttl},
                  {"hops", s.hops},
                  {"decoded_tunnel_depth", packet.tunnel_depth},
                  {"decoded_ip_tunnel_depth", packet.ip_tunnel_depth},
                  {"signature", s.Key(true)}};
        out.Emit(std::move(e));
        counters_.tunnels.Increment();
        data.tunnel_mss = link->tunnel;
      }
    }
  }
  if (data.tunnel_mss && packet.payload_length > 0)
    CheckPathMtu(packet, flow, data, out);
  if (packet.tcp_options.has_timestamps && !packet.has(decode::kTcpSyn)) {
    if (!data.ts_seen) {
      data.ts_seen = true;
      data.ts_first_time = packet.ts;
      data.ts_first = packet.tcp_options.ts_value;
    }
    data.ts_last_time = packet.ts;
    data.ts_last = packet.tcp_options.ts_value;
  }
  if (packet.ip_version == 4) {
    if (data.ip_ids > 0) {
      const std::uint16_t step = static_cast<std::uint16_t>(packet.ip_id - data.ip_id_last);
      if (step >= 1 && step <= 64)
        ++data.ip_id_increasing;
    } else {
      data.ip_id_first = packet.ip_id;
    }
    if (packet.ip_id == 0)
      ++data.ip_id_zero;
    data.ip_id_last = packet.ip_id;
    ++data.ip_ids;
    if (packet.ip_id != 0) {
      if (data.run_samples == 0) {
        data.run_first = packet.ip_id;
        data.run_first_time = packet.ts;
      } else {
        const std::uint16_t step = static_cast<std::uint16_t>(packet.ip_id - data.run_last);
        if (step >= 1 && step <= kMaxIpIdStep) {
          ++data.run_forward;
          data.run_advance += step;
          data.run_shared += step >= 2 ? 1 : 0;
        }
      }
      data.run_last = packet.ip_id;
      data.run_last_time = packet.ts;
      ++data.run_samples;
    }
  }
  return Verdict::kContinue;
}

void StackDetector::OnFlowEnd(flow::FlowState& flow, EventBuffer& out) {
  auto* data = static_cast<FlowData*>(flow.detector_data[context_.index].get());
  if (data == nullptr)
    return;
  if (data->udp) {
    Event e;
    e.event_type = "stack";
    e.ts = flow.last_seen;
    e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
    e.body = {{"syn_us", absl::ToUnixMicros(flow.first_seen)},
              {"end_us", absl::ToUnixMicros(flow.last_seen)}};
    out.Emit(std::move(e));
    counters_.records.Increment();
    return;
  }
  if (!data->syn)
    return;
  const SynSignature& s = *data->syn;
  nlohmann::json b = {{"signature", s.Key(true)},
                      {"signature_any_mss", s.Key(false)},
                      {"initial_ttl", s.initial_ttl},
                      {"hops", s.hops},
                      {"window", s.window},
                      {"window_scale", s.window_scale},
                      {"mss", s.mss},
                      {"layout", s.layout},
                      {"timestamps", s.timestamps},
                      {"syn_us", absl::ToUnixMicros(data->syn_time)},
                      {"end_us", absl::ToUnixMicros(flow.last_seen)}};
  if (data->ts_seen) {
    const double seconds = absl::ToDoubleSeconds(data->ts_last_time - data->ts_first_time);
    b["ts_first"] = data->ts_first;
    b["ts_last"] = data->ts_last;
    b["ts_span_s"] = seconds;
    // The clock's rate needs a long enough span for 1 ms ticks to mean something.
    if (seconds >= 10.0) {
      b["ts_hz"] = static_cast<double>(data->ts_last - data->ts_first) / seconds;
    }
  }
  if (data->ip_ids > 0) {
    b["ip_id_first"] = data->ip_id_first;
    b["ip_id_last"] = data->ip_id_last;
    b["ip_ids"] = data->ip_ids;
    b["ip_id_increasing"] = data->ip_id_increasing;
    b["ip_id_zero"] = data->ip_id_zero;
  }
  if (data->run_samples >= 2) {
    b["ip_id_run"] = {{"first", data->run_first},
                      {"first_us", absl::ToUnixMicros(data->run_first_time)},
                      {"last_us", absl::ToUnixMicros(data->run_last_time)},
                      {"samples", data->run_samples},
                      {"forward", data->run_forward},
                      {"shared", data->run_shared},
                      {"advance", data->run_advance}};
  }
  Event e;
  e.event_type = "stack";
  e.ts = flow.last_seen;
  e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
  e.body = std::move(b);
  out.Emit(std::move(e));
  counters_.records.Increment();
}

void StackDetector::ReportCounters(std::vector<CounterSample>& out) const {
  out.push_back({"syns", "Originator SYNs fingerprinted.", counters_.syns.Read()});
  out.push_back(
      {"tunnels", "tunnel records emitted (SYN MSS below Ethernet).", counters_.tunnels.Read()});
  out.push_back(
      {"records", "Per-flow stack records handed to the host stage.", counters_.records.Read()});
  out.push_back({"path_mtu", "Segments of tunnel-MSS flows that filled or exceeded the SYN's MSS.",
                 counters_.path_mtu.Read()});
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(StackConfig config, ParseStackConfig(section));
  if (!config.enabled)
    return nullptr;
  return std::make_unique<StackDetector>(config, context);
}

}  // namespace relaywatch::detectors::stack
