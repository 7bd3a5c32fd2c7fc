#include "detectors/remote_access/remote_access.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "capture/base/status_macros.h"
#include "detectors/remote_access/protocols.h"

namespace relaywatch::detectors::remote_access {
namespace {

using flow::Direction;
using flow::FlowState;

// The start of one direction's byte stream, reassembled in sequence order up to a cap.
struct Side {
  std::string buffer;
  std::uint32_t next_seq = 0;
  bool seq_known = false;
  bool gap = false;  // a segment was missing: the buffer cannot be extended any more
  std::uint64_t payload_packets = 0;
};

struct FlowData : flow::DetectorFlowData {
  Side side[2];
  std::optional<SshBanner> ssh[2];
  std::optional<RfbVersion> rfb[2];
  int rfb_first = -1;  // direction index of the first RFB version: the VNC server
  std::optional<RdpConnectionRequest> rdp_request;
  int rdp_request_dir = -1;
  std::optional<RdpConnectionConfirm> rdp_confirm;
  std::optional<RdpUdpSyn> rdp_udp_syn;
  int rdp_udp_syn_dir = -1;
  bool rdp_udp_syn_ack = false;
  // Mid-session RDPEUDP: recent snCoded values sent per direction, and how often each
  // direction acknowledged one the other had sent.
  static constexpr int kRecent = 8;
  std::uint32_t rdp_udp_sent[2][kRecent] = {};
  int rdp_udp_sent_count[2] = {0, 0};
  int rdp_udp_acked[2] = {0, 0};
  bool rdp_udp_broken = false;  // a datagram that is not RDPEUDP
};

// Acknowledgements of the peer's sequence numbers, per direction, that prove RDPEUDP.
constexpr int kRdpUdpAcksNeeded = 2;

Bytes View(const std::string& s) {
  return Bytes(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

void Append(Side& side, const decode::DecodedPacket& p, std::size_t cap) {
  ++side.payload_packets;
  if (side.gap || side.buffer.size() >= cap) {
    return;
  }
  Bytes payload = p.payload;
  if (p.is_tcp()) {
    if (!side.seq_known) {
      side.seq_known = true;
      side.next_seq = p.seq;
    }
    // Serial-number arithmetic (RFC 1982) so wrap-around is handled.
    const auto offset = static_cast<std::int32_t>(side.next_seq - p.seq);
    if (offset < 0) {
      side.gap = true;  // data ahead of what we have: a segment was lost or reordered
      return;
    }
    if (static_cast<std::size_t>(offset) >= payload.size()) {
      return;  // a retransmission of bytes we already hold
    }
    payload = payload.subspan(static_cast<std::size_t>(offset));
    side.next_seq += static_cast<std::uint32_t>(payload.size());
  }
  const std::size_t room = cap - side.buffer.size();
  const std::size_t n = std::min(room, payload.size());
  side.buffer.append(reinterpret_cast<const char*>(payload.data()), n);
}

enum class App { kNone, kSsh, kRdp, kRdpUdp, kVnc };

struct Finding {
  App app = App::kNone;
  bool both_sides = false;
  int controlled_dir = -1;  // direction index whose *sender* is the controlled endpoint
};

// What the evidence gathered so far proves about the flow.
Finding Assess(const FlowData& d, const FlowState& flow) {
  Finding f;
  if (d.rdp_request) {
    f.app = App::kRdp;
    f.both_sides = d.rdp_confirm.has_value();
    f.controlled_dir = 1 - d.rdp_request_dir;  // the side the request was sent to
  } else if (d.rdp_udp_syn) {
    f.app = App::kRdpUdp;
    f.both_sides = d.rdp_udp_syn_ack;
    f.controlled_dir = 1 - d.rdp_udp_syn_dir;
  } else if (d.rdp_udp_acked[0] >= kRdpUdpAcksNeeded && d.rdp_udp_acked[1] >= kRdpUdpAcksNeeded) {
    f.app = App::kRdpUdp;
    f.both_sides = true;
    // No handshake seen: the side on the registered port is the server, if either is.
    if (flow.responder.port == 3389 && flow.originator.port != 3389) {
      f.controlled_dir = flow::Index(Direction::kToOriginator);
    } else if (flow.originator.port == 3389 && flow.responder.port != 3389) {
      f.controlled_dir = flow::Index(Direction::kToResponder);
    }
  } else if (d.rfb_first >= 0) {
    f.app = App::kVnc;
    f.both_sides = d.rfb[0] && d.rfb[1];
    f.controlled_dir = d.rfb_first;  // RFC 6143: the server speaks first
  } else if (d.ssh[0] || d.ssh[1]) {
    f.app = App::kSsh;
    f.both_sides = d.ssh[0] && d.ssh[1];
    // The shell runs on the server: the responder when the handshake was seen, otherwise
    // the side on the registered port.
    if (flow.originator_from_handshake) {
      f.controlled_dir = flow::Index(Direction::kToOriginator);
    } else if (flow.responder.port == 22 && flow.originator.port != 22) {
      f.controlled_dir = flow::Index(Direction::kToOriginator);
    } else if (flow.originator.port == 22 && flow.responder.port != 22) {
      f.controlled_dir = flow::Index(Direction::kToResponder);
    }
  }
  return f;
}

std::string_view AppName(App app) {
  switch (app) {
    case App::kSsh:
      return "ssh";
    case App::kRdp:
    case App::kRdpUdp:
      return "rdp";
    case App::kVnc:
      return "vnc";
    case App::kNone:
      break;
  }
  return "";
}

Event MakeEvent(const FlowData& d, const FlowState& flow, const Finding& f,
                std::uint16_t seed, PacketTime ts) {
  Event e;
  e.event_type = "remote_session";
  e.ts = ts;
  e.flow = FlowRef::FromFlow(flow, seed);
  nlohmann::json& b = e.body;
  b["app"] = AppName(f.app);
  b["transport"] = flow.protocol == decode::kProtoUdp ? "udp" : "tcp";
  if (f.controlled_dir >= 0) {
    const auto dir = static_cast<Direction>(f.controlled_dir);
    b["controlled"] = flow.sender(dir).ip.ToString();
    b["controlled_port"] = flow.sender(dir).port;
    b["controller"] = flow.receiver(dir).ip.ToString();
    b["controlled_side"] = dir == Direction::kToOriginator ? "dest" : "src";
  } else {
    b["controlled"] = "unknown";
    b["controller"] = "unknown";
    b["controlled_side"] = "unknown";
  }
  b["confirmed_by"] = f.both_sides ? "both_directions"
                     : f.controlled_dir >= 0 && flow.stats[1 - f.controlled_dir].packets > 0
                         ? "server_only"
                         : "one_direction_only";
  const int to_resp = flow::Index(Direction::kToResponder);
  const int to_orig = flow::Index(Direction::kToOriginator);
  switch (f.app) {
    case App::kSsh: {
      nlohmann::json ssh = nlohmann::json::object();
      // Client = the originator's banner, server = the responder's.
      if (d.ssh[to_resp]) {
        ssh["client"] = {{"proto_version", d.ssh[to_resp]->proto_version},
                         {"software_version", d.ssh[to_resp]->software}};
      }
      if (d.ssh[to_orig]) {
        ssh["server"] = {{"proto_version", d.ssh[to_orig]->proto_version},
                         {"software_version", d.ssh[to_orig]->software}};
      }
      b["ssh"] = ssh;
      b["evidence"] = "SSH identification strings";
      break;
    }
    case App::kRdp: {
      nlohmann::json rdp = nlohmann::json::object();
      if (!d.rdp_request->cookie.empty()) {
        rdp["cookie"] = d.rdp_request->cookie;
      }
      if (d.rdp_request->has_negotiation) {
        rdp["requested_protocols"] = RdpProtocolNames(d.rdp_request->requested_protocols);
      }
      if (d.rdp_confirm && d.rdp_confirm->has_negotiation) {
        if (d.rdp_confirm->failure) {
          rdp["negotiation_failure"] = d.rdp_confirm->selected_protocol;
        } else {
          rdp["selected_protocol"] = RdpProtocolNames(d.rdp_confirm->selected_protocol);
        }
      }
      b["rdp"] = rdp;
      b["evidence"] = d.rdp_confirm ? "X.224 connection request and confirm"
                                    : "X.224 connection request";
      break;
    }
    case App::kRdpUdp:
      if (d.rdp_udp_syn) {
        b["rdp"] = {{"upstream_mtu", d.rdp_udp_syn->upstream_mtu},
                    {"downstream_mtu", d.rdp_udp_syn->downstream_mtu}};
        b["evidence"] = d.rdp_udp_syn_ack ? "RDPEUDP SYN and SYN+ACK" : "RDPEUDP SYN";
      } else {
        b["rdp"] = nlohmann::json::object();
        b["evidence"] = "RDPEUDP sequence numbers acknowledged by both sides (mid-session)";
      }
      break;
    case App::kVnc: {
      const int server = d.rfb_first;
      const auto version = [](const RfbVersion& v) {
        return absl::StrCat(v.major, ".", v.minor);
      };
      nlohmann::json vnc = nlohmann::json::object();
      if (d.rfb[server]) {
        vnc["server_version"] = version(*d.rfb[server]);
      }
      if (d.rfb[1 - server]) {
        vnc["client_version"] = version(*d.rfb[1 - server]);
      }
      b["vnc"] = vnc;
      b["evidence"] = "RFB protocol version exchange";
      break;
    }
    case App::kNone:
      break;
  }
  return e;
}

// Parses what the newest bytes of direction `d` can prove.
void Inspect(FlowData& data, const decode::DecodedPacket& p, int d) {
  const Side& side = data.side[d];
  const Bytes buffer = View(side.buffer);
  if (p.is_udp()) {
    if (!data.rdp_udp_syn && data.side[d].payload_packets == 1 &&
        data.side[1 - d].payload_packets == 0) {
      if (auto syn = ParseRdpUdpSyn(p.payload); syn && !syn->ack) {
        data.rdp_udp_syn = syn;
        data.rdp_udp_syn_dir = d;
        return;
      }
    }
    if (!data.rdp_udp_syn) {
      const std::optional<RdpUdpDatagram> dg = ParseRdpUdpDatagram(p.payload);
      if (!dg) {
        data.rdp_udp_broken = true;
        return;
      }
      const int other = 1 - d;
      for (int i = 0; i < std::min(data.rdp_udp_sent_count[other], FlowData::kRecent); ++i) {
        if (data.rdp_udp_sent[other][i] == dg->source_ack) {
          ++data.rdp_udp_acked[d];
          break;
        }
      }
      if (dg->has_data) {
        data.rdp_udp_sent[d][data.rdp_udp_sent_count[d]++ % FlowData::kRecent] = dg->sn_coded;
      }
    } else if (d != data.rdp_udp_syn_dir && !data.rdp_udp_syn_ack) {
      if (auto syn = ParseRdpUdpSyn(p.payload);
          syn && syn->ack && syn->source_ack == data.rdp_udp_syn->initial_sequence) {
        data.rdp_udp_syn_ack = true;
      }
    }
    return;
  }
  if (!data.ssh[d]) {
    data.ssh[d] = ParseSshBanner(buffer);
  }
  if (!data.rdp_request && buffer.size() >= 11 && buffer[0] == 0x03) {
    if (auto request = ParseRdpConnectionRequest(buffer)) {
      data.rdp_request = std::move(request);
      data.rdp_request_dir = d;
    }
  } else if (data.rdp_request && d != data.rdp_request_dir && !data.rdp_confirm) {
    data.rdp_confirm = ParseRdpConnectionConfirm(buffer);
  }
  if (!data.rfb[d] && buffer.size() >= 12) {
    data.rfb[d] = ParseRfbVersion(buffer.first(12));
    if (data.rfb[d] && data.rfb_first < 0) {
      data.rfb_first = d;
    }
  }
}

}  // namespace

RemoteAccessDetector::RemoteAccessDetector(RemoteAccessConfig config, DetectorContext context)
    : config_(config), context_(context) {}

Verdict RemoteAccessDetector::OnPacket(const decode::DecodedPacket& packet, FlowState& flow,
                                       Direction direction, EventBuffer& out) {
  if (!packet.is_tcp() && !packet.is_udp()) {
    return Verdict::kDone;
  }
  if (packet.payload.empty()) {
    return Verdict::kContinue;
  }
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    slot = std::make_unique<FlowData>();
  }
  auto& data = static_cast<FlowData&>(*slot);
  const int d = flow::Index(direction);
  Append(data.side[d], packet, config_.inspect_bytes);
  Inspect(data, packet, d);

  const Finding finding = Assess(data, flow);
  if (finding.app != App::kNone && finding.both_sides) {
    out.Emit(MakeEvent(data, flow, finding, context_.community_id_seed, packet.ts));
    slot.reset();
    return Verdict::kDone;
  }
  const auto exhausted = [&](const Side& s) {
    return s.gap || s.payload_packets >= config_.inspect_packets ||
           s.buffer.size() >= config_.inspect_bytes;
  };
  // Both sides have said enough without completing an opening exchange: not ours.
  if (exhausted(data.side[0]) && exhausted(data.side[1])) {
    slot.reset();
    return Verdict::kDone;
  }
  // A UDP flow either opened with an RDPEUDP SYN or must parse as RDPEUDP throughout.
  if (packet.is_udp() && !data.rdp_udp_syn && data.rdp_udp_broken) {
    slot.reset();
    return Verdict::kDone;
  }
  return Verdict::kContinue;
}

void RemoteAccessDetector::OnFlowEnd(FlowState& flow, EventBuffer& out) {
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    return;
  }
  const auto& data = static_cast<const FlowData&>(*slot);
  const Finding finding = Assess(data, flow);
  // One side's opening is a session when the other direction was never captured (a one-way
  // tap, asymmetric routing), or when the side seen is the server: a server that announced
  // itself proves the service even if its client then failed. A client's opening answered by
  // a reset, by nothing, or by another protocol is a probe and is not reported.
  if (finding.app != App::kNone && !finding.both_sides) {
    const int seen = finding.app == App::kRdp      ? data.rdp_request_dir
                     : finding.app == App::kRdpUdp ? data.rdp_udp_syn_dir
                     : finding.app == App::kVnc    ? data.rfb_first
                     : (data.ssh[0] ? 0 : 1);
    const bool other_silent = flow.stats[1 - seen].packets == 0;
    const bool server_announced = seen == finding.controlled_dir;
    if (other_silent || server_announced) {
      out.Emit(MakeEvent(data, flow, finding, context_.community_id_seed, flow.last_seen));
    }
  }
  slot.reset();
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(RemoteAccessConfig config, ParseRemoteAccessConfig(section));
  if (!config.enabled) {
    return nullptr;
  }
  return std::make_unique<RemoteAccessDetector>(config, context);
}

}  // namespace relaywatch::detectors::remote_access
