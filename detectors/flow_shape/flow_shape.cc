#include "detectors/flow_shape/flow_shape.h"

#include <cmath>

#include "capture/base/status_macros.h"
#include "detectors/common/stun.h"
#include "detectors/common/turn_stream.h"

namespace relaywatch::detectors::flow_shape {
namespace {

using flow::Direction;
using flow::FlowState;

// Rounded so that the JSON stays short and identical across platforms' last-digit noise.
double Round3(double x) {
  return std::round(x * 1000) / 1000;
}

// RTT between the sensor and the sender of each direction, from the TCP handshake: the
// responder's leg is SYN -> SYN/ACK, the originator's SYN/ACK -> ACK (research brief 6.1).
std::array<absl::Duration, 2> LegRtts(const FlowState& flow) {
  std::array<absl::Duration, 2> rtt = {absl::ZeroDuration(), absl::ZeroDuration()};
  const PacketTime never = absl::InfinitePast();
  if (flow.syn_time != never && flow.syn_ack_time != never && flow.syn_ack_time > flow.syn_time) {
    rtt[flow::Index(Direction::kToOriginator)] = flow.syn_ack_time - flow.syn_time;
    if (flow.ack_time != never && flow.ack_time > flow.syn_ack_time) {
      rtt[flow::Index(Direction::kToResponder)] = flow.ack_time - flow.syn_ack_time;
    }
  }
  return rtt;
}

nlohmann::json SideJson(const FlowShape& shape, int d, PacketTime now) {
  const DirectionShape& s = shape.direction(d);
  const double seconds = std::max(1e-3, absl::ToDoubleSeconds(now - shape.start()));
  nlohmann::json side = {{"packets", s.payload_packets},
                         {"bytes", s.payload_bytes},
                         {"pps", Round3(s.payload_packets / seconds)},
                         {"bursts", s.bursts},
                         {"mean_burst_bytes", s.bursts ? s.payload_bytes / s.bursts : 0},
                         {"max_burst_bytes", std::max(s.max_burst_bytes, s.burst_bytes)},
                         {"idle_fraction", Round3(shape.IdleFraction(d, now))},
                         {"size_classes", s.size_classes}};
  if (s.rtcp_packets > 0)
    side["rtcp_packets"] = s.rtcp_packets;
  if (s.rtp_media > 0)
    side["rtp_media"] = s.rtp_media;
  return side;
}

// The features that decided, for the event (docs/events.md, `flow_shape`).
nlohmann::json FeaturesJson(const FlowShape& shape, const Orientation& o, PacketTime now) {
  const DirectionShape& in = shape.direction(1 - o.screen);
  const double seconds = std::max(1e-3, absl::ToDoubleSeconds(o.duration));
  return {{"duration", Round3(absl::ToDoubleSeconds(o.duration))},
          {"byte_ratio", Round3(o.byte_ratio)},
          {"coupling", Round3(o.coupling)},
          {"response_share", Round3(o.response_share)},
          {"size_ratio", Round3(o.size_ratio)},
          {"median_input_bytes", o.median_input_bytes},
          {"median_response_bytes", o.median_response_bytes},
          {"input_share", Round3(o.input_share)},
          {"input_events", o.input_events},
          {"spontaneous_inputs", o.spontaneous_inputs},
          {"active_input_seconds", o.active_input_seconds},
          {"small_packet_rate", Round3(in.small_packets / seconds)},
          {"input_gap_cv", Round3(o.input_gap_cv)},
          {"windows", shape.windows()},
          {"call_windows", shape.call_windows()},
          {"screen", SideJson(shape, o.screen, now)},
          {"input", SideJson(shape, 1 - o.screen, now)}};
}

// Fills controlled/controller from the screen-serving direction `screen`.
void SetDirection(const FlowState& flow, int screen, nlohmann::json& b) {
  const auto dir = static_cast<Direction>(screen);
  b["controlled"] = flow.sender(dir).ip.ToString();
  b["controlled_port"] = flow.sender(dir).port;
  b["controller"] = flow.receiver(dir).ip.ToString();
  b["controlled_side"] = dir == Direction::kToOriginator ? "dest" : "src";
}

// One packet of direction `d` carrying `length` bytes, of which `first` are at hand (a
// snaplen or a frame's kept head may hold fewer): its first two bytes go to the RTP test.
void AddPacket(FlowShape& shape, const FlowShapeConfig& config, PacketTime ts, int d,
               std::uint32_t length, common::Bytes first, bool udp) {
  const bool header = first.size() >= 2 && length >= 2;
  shape.Add(config, ts, d, length, header ? first[0] : 0, header ? first[1] : 0, header, udp);
}

}  // namespace

// TURN over TCP (RFC 8656 12.5) is found by its segments: kTurnWholeSegments of the flow's
// first kTurnProbeSegments (after the warm-up) must each hold whole STUN or ChannelData
// frames and nothing else. A sender of real-time data writes each frame at once, so nearly
// all do; in other TCP a segment rarely begins with a frame's header whose length ends
// exactly at its end.
constexpr int kTurnWholeSegments = 3;
constexpr int kTurnProbeSegments = 32;

struct FlowShapeDetector::FlowData : flow::DetectorFlowData {
  FlowData(PacketTime start, std::array<absl::Duration, 2> rtt) : shape(start, rtt) {}
  FlowShape shape;
  bool direction_reported = false;
  // TCP: whether the flow carries TURN, then its frames are judged as the datagrams they
  // would be over UDP (the session through the server, not the stream's segments).
  enum class Turn : std::uint8_t { kUnknown, kYes, kNo };
  Turn turn = Turn::kUnknown;
  std::uint8_t probed = 0;
  std::uint8_t whole = 0;
  common::TurnStreamReader<common::kTurnFrameHeadBytes> reader[2];
};

FlowShapeDetector::FlowShapeDetector(FlowShapeConfig config, DetectorContext context)
    : config_(config), context_(context) {
  static_assert(sizeof(FlowData) <= kMaxFlowStateBytes);
}

std::size_t FlowShapeDetector::FlowStateBytes(const FlowState& flow) const {
  return flow.detector_data[context_.index] ? sizeof(FlowData) : 0;
}

Verdict FlowShapeDetector::Evaluate(const FlowState& flow, FlowData& data, PacketTime now,
                                    EventBuffer& out) {
  const Decision decision = Decide(data.shape, config_, now, now - flow.first_seen);
  if (decision.verdict == ShapeVerdict::kCall) {
    counters_.calls.Increment();
    return Verdict::kDone;
  }
  if (decision.verdict == ShapeVerdict::kRemoteControl) {
    Event e;
    e.event_type = "remote_session";
    e.ts = now;
    e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
    nlohmann::json& b = e.body;
    b["app"] = kUnknownRemoteControl;
    b["transport"] = flow.protocol == decode::kProtoUdp ? "udp" : "tcp";
    SetDirection(flow, decision.features.screen, b);
    b["confirmed_by"] = "flow_shape";
    b["evidence"] =
        "one side answers small, irregular input events from the other with larger bursts";
    b["flow_shape"] = FeaturesJson(data.shape, decision.features, now);
    out.Emit(std::move(e));
    counters_.sessions.Increment();
    return Verdict::kDone;
  }
  if (config_.direction_for_named_tools && !data.direction_reported) {
    const int screen = DecideScreenSide(data.shape, config_, now);
    if (screen >= 0) {
      Event e;
      e.event_type = kDirectionFinding;
      e.ts = now;
      e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
      SetDirection(flow, screen, e.body);
      e.body["flow_shape"] = FeaturesJson(data.shape, data.shape.View(screen, now), now);
      out.Emit(std::move(e));
      counters_.directions.Increment();
      data.direction_reported = true;
    }
  }
  return Verdict::kContinue;
}

Verdict FlowShapeDetector::OnPacket(const decode::DecodedPacket& packet, FlowState& flow,
                                    Direction direction, EventBuffer& out) {
  if (!packet.is_tcp() && !packet.is_udp()) {
    return Verdict::kDone;
  }
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    if (packet.payload_length == 0 || packet.ts - flow.first_seen < kWarmup) {
      return Verdict::kContinue;
    }
    slot = std::make_unique<FlowData>(packet.ts, LegRtts(flow));
    counters_.flows_measured.Increment();
  }
  auto& data = static_cast<FlowData&>(*slot);
  // Judged at window boundaries, on what came before this packet.
  if (data.shape.Advance(config_, packet.ts) &&
      packet.ts - flow.first_seen >= config_.min_duration) {
    if (Evaluate(flow, data, packet.ts, out) == Verdict::kDone) {
      slot.reset();
      return Verdict::kDone;
    }
  }
  if (packet.payload_length > 0 && packet.is_tcp() && TurnFrames(packet, direction, data)) {
    return Verdict::kContinue;
  }
  if (packet.payload_length > 0) {
    std::span<const std::uint8_t> bytes = packet.payload;
    std::uint32_t length = packet.payload_length;
    // Through a TURN server the session's datagrams come wrapped (ChannelData, or Send and
    // Data indications): judged by what they carry, as the same session without the relay.
    common::TurnRelayed relayed;
    if (packet.is_udp() && bytes.size() == length && common::ParseTurnRelayed(bytes, relayed) &&
        !relayed.data.empty()) {
      bytes = relayed.data;
      length = static_cast<std::uint32_t>(bytes.size());
    }
    AddPacket(data.shape, config_, packet.ts, flow::Index(direction), length, bytes,
              packet.is_udp());
  }
  return Verdict::kContinue;
}

bool FlowShapeDetector::TurnFrames(const decode::DecodedPacket& packet, Direction direction,
                                   FlowData& data) {
  using Turn = FlowData::Turn;
  if (data.turn == Turn::kNo) {
    return false;
  }
  if (data.turn == Turn::kUnknown) {
    const bool whole =
        packet.payload.size() == packet.payload_length && common::WholeTurnFrames(packet.payload);
    data.whole += whole ? 1 : 0;
    ++data.probed;
    if (data.whole >= kTurnWholeSegments) {
      data.turn = Turn::kYes;
      data.shape.ForgetLegRtts();
      counters_.turn_over_tcp.Increment();
    } else if (data.probed >= kTurnProbeSegments) {
      data.turn = Turn::kNo;
      return false;
    }
  }
  // While undecided too: a segment of whole frames is judged by them (so that the first
  // segments of a TURN flow count as the datagrams they carry); the reader falls out of step
  // again at the next segment of anything else.
  const int d = flow::Index(direction);
  bool framed = false;
  data.reader[d].OnSegment(packet, [&](const common::TurnFrame& frame) {
    framed = true;
    // ChannelData: judged by its data, as the datagram it carries. STUN as it is: only its
    // head is kept, so a Send or Data indication counts as itself here (over UDP, as its data).
    std::uint32_t length = static_cast<std::uint32_t>(frame.length);
    common::Bytes head = frame.head;
    if (head.size() >= 4 && head[0] >= 0x40) {
      length = static_cast<std::uint32_t>(head[2]) << 8 | head[3];
      head = head.subspan(4);
    }
    AddPacket(data.shape, config_, packet.ts, d, length, head, /*udp=*/true);
  });
  // In step with the frames, the segment's bytes were judged as theirs (a frame cut across
  // segments counts once, a resent segment not again); out of step, it counts as it is.
  return framed || data.reader[d].synced();
}

void FlowShapeDetector::OnFlowEnd(FlowState& flow, EventBuffer& out) {
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    return;
  }
  auto& data = static_cast<FlowData&>(*slot);
  data.shape.Advance(config_, flow.last_seen);
  data.shape.Finish(config_);
  if (flow.last_seen - flow.first_seen >= config_.min_duration) {
    Evaluate(flow, data, flow.last_seen, out);
  }
  slot.reset();
}

void FlowShapeDetector::ReportCounters(std::vector<CounterSample>& out) const {
  out.push_back({"flows_measured", "Flows that outlived the warm-up and were measured.",
                 counters_.flows_measured.Read()});
  out.push_back({"sessions",
                 "Flows found to have the remote-control shape (unknown_remote_control).",
                 counters_.sessions.Read()});
  out.push_back({"calls", "Flows given up as calls (media both ways).", counters_.calls.Read()});
  out.push_back({"directions",
                 "Screen sides reported to the host stage for named tools of unknown direction.",
                 counters_.directions.Read()});
  out.push_back(
      {"turn_over_tcp",
       "TCP flows found to carry TURN (RFC 8656 12.5), judged by the datagrams they relay.",
       counters_.turn_over_tcp.Read()});
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(FlowShapeConfig config, ParseFlowShapeConfig(section));
  if (!config.enabled) {
    return nullptr;
  }
  return std::make_unique<FlowShapeDetector>(config, context);
}

}  // namespace relaywatch::detectors::flow_shape
