#include "detectors/remote_access/remote_access.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"

#include "capture/base/status_macros.h"
#include "detectors/common/proxy.h"
#include "detectors/remote_access/protocols.h"

namespace relaywatch::detectors::remote_access {
namespace {

using flow::Direction;
using flow::FlowState;

constexpr int kToResponder = 0;  // flow::Index(Direction::kToResponder)
constexpr int kToOriginator = 1;

// The start of one direction's byte stream, reassembled in sequence order up to a cap.
struct Side {
  std::string buffer;
  std::uint32_t next_seq = 0;
  bool seq_known = false;
  bool gap = false;  // a segment was missing: the buffer cannot be extended any more
  std::uint64_t payload_packets = 0;
  // SSH preamble lines dropped from the buffer's front: it no longer starts the stream.
  std::size_t preamble_dropped = 0;
  bool truncated = false;  // a segment did not fit under the cap: bytes after it are missing
  std::uint64_t setup_packets = 0;  // payload packets that carried a proxy setup
};

// Datagram protocols: how many datagrams of each direction matched, and whether one did not.
struct DatagramEvidence {
  int matched[2] = {0, 0};
  int last_counter[2] = {-1, -1};
  bool broken = false;
};

struct FlowData : flow::DetectorFlowData {
  Side side[2];
  // TCP openings, by direction index.
  std::optional<SshBanner> ssh[2];
  std::optional<RfbVersion> rfb[2];
  int rfb_first = -1;  // direction of the first RFB version: the VNC server
  std::optional<RdpConnectionRequest> rdp_request;
  int rdp_request_dir = -1;
  std::optional<RdpConnectionConfirm> rdp_confirm;
  NxGreeting nx[2] = {NxGreeting::kNone, NxGreeting::kNone};
  RadminMessage radmin[2] = {RadminMessage::kNone, RadminMessage::kNone};
  bool ica[2] = {false, false};
  bool cgp[2] = {false, false};
  int ica_first = -1;
  int teamviewer_frames[2] = {0, 0};
  // RDP over UDP: the handshake, or mid-session acknowledgements of each other's snCoded.
  std::optional<RdpUdpSyn> rdp_udp_syn;
  int rdp_udp_syn_dir = -1;
  bool rdp_udp_syn_ack = false;
  static constexpr int kRecent = 8;
  std::uint32_t rdp_udp_sent[2][kRecent] = {};
  int rdp_udp_sent_count[2] = {0, 0};
  int rdp_udp_acked[2] = {0, 0};
  bool rdp_udp_broken = false;
  DatagramEvidence teamviewer_udp;
  DatagramEvidence nx_udp;
  // After an SSH session is identified: what its packets look like, to tell an interactive
  // shell from a tunnel or a file transfer (our own method; see docs/detectors).
  struct SshActivity {
    bool tracking = false;
    std::uint64_t packets[2] = {0, 0};
    std::uint64_t bytes[2] = {0, 0};
    std::uint64_t small[2] = {0, 0};   // <= 100 bytes: keystrokes, echoes, acks of the channel
    std::uint64_t medium[2] = {0, 0};  // 101..1000: requests, short output
    std::uint64_t large[2] = {0, 0};   // > 1000: bulk data
    std::uint64_t turns = 0;           // payload direction changes
    int last_dir = -1;
  } ssh_activity;
  // A payload pattern from the signature file, and the direction it matched.
  const AppSignature* signature = nullptr;
  int signature_dir = -1;
  // A proxy setup (SOCKS, HTTP CONNECT) read off the streams' fronts, so that the parsers
  // above read the tunnelled protocol: the innermost request that was granted.
  std::optional<ProxyRequest> proxy;
  int proxy_setups = 0;
  bool proxy_done = false;  // no (further) setup can start the streams
};

// Acknowledgements of the peer's sequence numbers, per direction, that prove RDPEUDP.
constexpr int kRdpUdpAcksNeeded = 2;
// Chained frames per direction that prove TeamViewer's framing.
constexpr int kTeamViewerFramesNeeded = 2;
// Matching datagrams per direction for datagram protocols without a handshake.
constexpr int kDatagramsNeeded = 2;

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
  const std::size_t n = std::min(cap - side.buffer.size(), payload.size());
  side.truncated = side.truncated || n < payload.size();
  side.buffer.append(reinterpret_cast<const char*>(payload.data()), n);
}

enum class App {
  kNone,
  kSsh,
  kRdp,
  kRdpUdp,
  kVnc,
  kTeamViewer,
  kNoMachine,
  kRadmin,
  kCitrix,
  kSignature,  // named by the signature file
};

struct Finding {
  App app = App::kNone;
  std::string name;  // remote_session.app
  bool both_sides = false;
  int controlled_dir = -1;  // direction index whose *sender* is the controlled endpoint
  int seen_dir = -1;        // with one side only: the direction whose bytes matched
  std::string evidence;
};

// The side on a registered port, when only one side is: a hint for protocols whose
// handshake does not say who serves (datagrams, captures that start mid-session).
int ServerByPort(const FlowState& flow, std::uint16_t port) {
  if (flow.responder.port == port && flow.originator.port != port) {
    return kToOriginator;
  }
  if (flow.originator.port == port && flow.responder.port != port) {
    return kToResponder;
  }
  return -1;
}

// Datagram protocols: each direction must match, and enough datagrams in all.
bool BothDirections(const DatagramEvidence& e) {
  return e.matched[0] >= 1 && e.matched[1] >= 1 &&
         e.matched[0] + e.matched[1] >= 2 * kDatagramsNeeded;
}

std::string_view AppName(App app);

// What the evidence gathered so far proves about the flow.
Finding Assess(const FlowData& d, const FlowState& flow) {
  Finding f;
  if (d.rdp_request) {
    f.app = App::kRdp;
    f.both_sides = d.rdp_confirm.has_value();
    f.seen_dir = d.rdp_request_dir;
    f.controlled_dir = 1 - d.rdp_request_dir;  // the side the request was sent to
    f.evidence = f.both_sides ? "X.224 connection request and confirm" : "X.224 connection request";
  } else if (d.rdp_udp_syn) {
    f.app = App::kRdpUdp;
    f.both_sides = d.rdp_udp_syn_ack;
    f.seen_dir = d.rdp_udp_syn_dir;
    f.controlled_dir = 1 - d.rdp_udp_syn_dir;
    f.evidence = f.both_sides ? "RDPEUDP SYN and SYN+ACK" : "RDPEUDP SYN";
  } else if (d.rdp_udp_acked[0] >= kRdpUdpAcksNeeded && d.rdp_udp_acked[1] >= kRdpUdpAcksNeeded) {
    f.app = App::kRdpUdp;
    f.both_sides = true;
    f.controlled_dir = ServerByPort(flow, 3389);
    f.evidence = "RDPEUDP sequence numbers acknowledged by both sides (mid-session)";
  } else if (d.rfb_first >= 0) {
    f.app = App::kVnc;
    f.both_sides = d.rfb[0] && d.rfb[1];
    f.seen_dir = d.rfb_first;
    f.controlled_dir = d.rfb_first;  // RFC 6143: the server speaks first
    f.evidence = "RFB protocol version exchange";
  } else if (d.nx[0] != NxGreeting::kNone || d.nx[1] != NxGreeting::kNone) {
    f.app = App::kNoMachine;
    const int server =
        d.nx[0] == NxGreeting::kServer ? 0 : (d.nx[1] == NxGreeting::kServer ? 1 : -1);
    const int client =
        d.nx[0] == NxGreeting::kClient ? 0 : (d.nx[1] == NxGreeting::kClient ? 1 : -1);
    f.both_sides = server >= 0 && client >= 0 && server != client;
    f.seen_dir = server >= 0 ? server : client;
    f.controlled_dir = server >= 0 ? server : (client >= 0 ? 1 - client : -1);
    f.evidence = "NX greetings (NXSH- from the client, NXD- from the server)";
  } else if (d.nx_udp.matched[0] + d.nx_udp.matched[1] > 0 && !d.nx_udp.broken) {
    f.app = App::kNoMachine;
    f.both_sides = BothDirections(d.nx_udp);
    f.seen_dir = d.nx_udp.matched[0] ? 0 : 1;
    f.controlled_dir = ServerByPort(flow, 4000);
    f.evidence = "NX UDP media datagrams with consistent lengths and counters";
  } else if (d.radmin[0] != RadminMessage::kNone || d.radmin[1] != RadminMessage::kNone) {
    f.app = App::kRadmin;
    const auto has = [&](int dir, RadminMessage m) {
      return d.radmin[dir] == m;
    };
    if (has(0, RadminMessage::kClientHello) && has(1, RadminMessage::kServerHello)) {
      f.both_sides = true;
      f.controlled_dir = 1;
    } else if (has(1, RadminMessage::kClientHello) && has(0, RadminMessage::kServerHello)) {
      f.both_sides = true;
      f.controlled_dir = 0;
    } else if (has(0, RadminMessage::kResume) && has(1, RadminMessage::kResume)) {
      f.both_sides = true;
      f.controlled_dir = flow.originator_from_handshake ? kToOriginator : ServerByPort(flow, 4899);
    } else {
      f.seen_dir = d.radmin[0] != RadminMessage::kNone ? 0 : 1;
      f.controlled_dir = d.radmin[f.seen_dir] == RadminMessage::kServerHello ? f.seen_dir : -1;
    }
    f.evidence = "Radmin handshake messages";
  } else if (d.ica_first >= 0) {
    f.app = App::kCitrix;
    f.both_sides = (d.ica[0] && d.ica[1]) || (d.cgp[0] && d.cgp[1]);
    f.seen_dir = d.ica_first;
    f.controlled_dir = d.ica[d.ica_first] ? d.ica_first : -1;  // the VDA greets first
    f.evidence = d.ica[d.ica_first] ? "ICA greeting" : "CGP session reliability greeting";
  } else if (d.teamviewer_frames[0] > 0 || d.teamviewer_frames[1] > 0) {
    f.app = App::kTeamViewer;
    f.both_sides = d.teamviewer_frames[0] >= kTeamViewerFramesNeeded &&
                   d.teamviewer_frames[1] >= kTeamViewerFramesNeeded;
    f.seen_dir = d.teamviewer_frames[0] >= d.teamviewer_frames[1] ? 0 : 1;
    // Both ends usually dial out to a TeamViewer router: the handshake does not say which
    // screen is shared. A direct LAN session has the listener on 5938.
    f.controlled_dir = ServerByPort(flow, 5938);
    f.evidence = "TeamViewer frame chain in both directions";
  } else if (d.teamviewer_udp.matched[0] + d.teamviewer_udp.matched[1] > 0 &&
             !d.teamviewer_udp.broken) {
    f.app = App::kTeamViewer;
    f.both_sides = BothDirections(d.teamviewer_udp);
    f.seen_dir = d.teamviewer_udp.matched[0] ? 0 : 1;
    f.evidence = "TeamViewer UDP datagrams (one frame each, length consistent)";
  } else if (d.ssh[0] || d.ssh[1]) {
    f.app = App::kSsh;
    f.both_sides = d.ssh[0] && d.ssh[1];
    f.seen_dir = d.ssh[0] ? 0 : 1;
    // The shell runs on the server: the responder when the handshake was seen, otherwise
    // the side on the registered port.
    f.controlled_dir = flow.originator_from_handshake ? kToOriginator : ServerByPort(flow, 22);
    f.evidence = "SSH identification strings";
  } else if (d.signature != nullptr) {
    f.app = App::kSignature;
    f.name = d.signature->name;
    f.seen_dir = d.signature_dir;
    // The other side answering is what makes a matched opening a session.
    f.both_sides = !d.side[1 - d.signature_dir].buffer.empty();
    f.controlled_dir =
        d.signature->controlled == AppSignature::Controlled::kResponder   ? kToOriginator
        : d.signature->controlled == AppSignature::Controlled::kInitiator ? kToResponder
                                                                          : -1;
    f.evidence = "payload pattern from the signature file";
  }
  if (f.name.empty()) {
    f.name = std::string(AppName(f.app));
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
    case App::kTeamViewer:
      return "teamviewer";
    case App::kNoMachine:
      return "nomachine";
    case App::kRadmin:
      return "radmin";
    case App::kCitrix:
      return "citrix";
    case App::kSignature:
    case App::kNone:
      break;
  }
  return "";
}

void AddDetails(const FlowData& d, App app, nlohmann::json& b) {
  switch (app) {
    case App::kSsh: {
      nlohmann::json ssh = nlohmann::json::object();
      // Client = the originator's banner, server = the responder's.
      if (d.ssh[kToResponder]) {
        ssh["client"] = {{"proto_version", d.ssh[kToResponder]->proto_version},
                         {"software_version", d.ssh[kToResponder]->software}};
      }
      if (d.ssh[kToOriginator]) {
        ssh["server"] = {{"proto_version", d.ssh[kToOriginator]->proto_version},
                         {"software_version", d.ssh[kToOriginator]->software}};
      }
      b["ssh"] = ssh;
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
      break;
    }
    case App::kRdpUdp:
      b["rdp"] = nlohmann::json::object();
      if (d.rdp_udp_syn) {
        b["rdp"] = {{"upstream_mtu", d.rdp_udp_syn->upstream_mtu},
                    {"downstream_mtu", d.rdp_udp_syn->downstream_mtu}};
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
      break;
    }
    default:
      break;
  }
}

Event MakeEvent(const FlowData& d, const FlowState& flow, const Finding& f, std::uint16_t seed,
                PacketTime ts) {
  Event e;
  e.event_type = "remote_session";
  e.ts = ts;
  e.flow = FlowRef::FromFlow(flow, seed);
  nlohmann::json& b = e.body;
  b["app"] = f.name;
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
  b["confirmed_by"] = f.both_sides                             ? "both_directions"
                      : flow.stats[1 - f.seen_dir].packets > 0 ? "server_only"
                                                               : "one_direction_only";
  b["evidence"] = f.evidence;
  if (d.proxy) {
    // The wire's ends are the proxy's client and the proxy; the session goes on to the target.
    b["proxy"] = {{"protocol", ProxyProtocolName(d.proxy->protocol)},
                  {"target", d.proxy->target},
                  {"target_port", d.proxy->target_port}};
  }
  AddDetails(d, f.app, b);
  return e;
}

void MatchSignature(FlowData& data, const SignatureSet& signatures, Bytes start, int d) {
  if (data.signature == nullptr) {
    data.signature = signatures.MatchPayload(d, start);
    if (data.signature != nullptr) {
      data.signature_dir = d;
    }
  }
}

void InspectDatagram(FlowData& data, Bytes payload, int d) {
  // RDPEUDP opens with a SYN datagram as the very first of the flow.
  if (!data.rdp_udp_syn && data.side[d].payload_packets == 1 &&
      data.side[1 - d].payload_packets == 0) {
    if (auto syn = ParseRdpUdpSyn(payload); syn && !syn->ack) {
      data.rdp_udp_syn = syn;
      data.rdp_udp_syn_dir = d;
      return;
    }
  }
  if (data.rdp_udp_syn) {
    if (d != data.rdp_udp_syn_dir && !data.rdp_udp_syn_ack) {
      if (auto syn = ParseRdpUdpSyn(payload);
          syn && syn->ack && syn->source_ack == data.rdp_udp_syn->initial_sequence) {
        data.rdp_udp_syn_ack = true;
      }
    }
    return;
  }
  if (!data.rdp_udp_broken) {
    if (const std::optional<RdpUdpDatagram> dg = ParseRdpUdpDatagram(payload)) {
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
    } else {
      data.rdp_udp_broken = true;
    }
  }
  if (!data.teamviewer_udp.broken) {
    if (IsTeamViewerUdp(payload)) {
      ++data.teamviewer_udp.matched[d];
    } else {
      data.teamviewer_udp.broken = true;
    }
  }
  if (!data.nx_udp.broken) {
    const int counter = NxUdpCounter(payload);
    // Counters only move forward within a direction.
    if (counter >= 0 && counter > data.nx_udp.last_counter[d]) {
      data.nx_udp.last_counter[d] = counter;
      ++data.nx_udp.matched[d];
    } else {
      data.nx_udp.broken = true;
    }
  }
}

// RFC 4253 4.2 lets a server send any number of text lines before its identification. Once
// the peer has identified itself as SSH, complete lines are dropped as they come, so a long
// preamble (a login notice, ASCII art) does not fill the inspection buffer; a tarpit's
// endless one stops here. Room for one full segment of it beyond inspect_bytes.
constexpr std::size_t kMaxSshPreambleBytes = 16 * 1024;
constexpr std::size_t kSshPreambleSegment = 2048;

bool ReadingSshPreamble(const FlowData& data, int d) {
  return !data.ssh[d] && data.ssh[1 - d] && !data.side[d].gap;
}

// Parses what the newest bytes of direction `d` can prove.
void InspectStream(FlowData& data, int d) {
  Side& side = data.side[d];
  if (!data.ssh[d]) {
    std::size_t preamble = 0;
    data.ssh[d] = ParseSshBanner(View(side.buffer), nullptr, &preamble);
    if (preamble > 0 && ReadingSshPreamble(data, d)) {
      side.buffer.erase(0, preamble);
      side.preamble_dropped += preamble;
      side.gap = side.preamble_dropped > kMaxSshPreambleBytes;
    }
  }
  if (side.preamble_dropped > 0) {
    return;  // the other parsers read a stream from its start
  }
  const Bytes buffer = View(side.buffer);
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
  if (data.nx[d] == NxGreeting::kNone) {
    data.nx[d] = ParseNxGreeting(buffer);
  }
  if (data.radmin[d] == RadminMessage::kNone) {
    data.radmin[d] = ParseRadmin(buffer);
  }
  if (!data.ica[d] && !data.cgp[d]) {
    data.ica[d] = IsIcaGreeting(buffer);
    data.cgp[d] = IsCgpGreeting(buffer);
    if ((data.ica[d] || data.cgp[d]) && data.ica_first < 0) {
      data.ica_first = d;
    }
  }
  data.teamviewer_frames[d] = TeamViewerTcpFrames(buffer);
}

// Proxy setups followed on one connection: a chain of proxies, or an HTTP proxy asked again
// after it wanted credentials (407).
constexpr int kMaxProxySetups = 3;

// Reads a proxy setup off the fronts of both streams once the client's request and the
// proxy's answer are complete. The originator is the proxy's client. Returns whether bytes
// were removed, so both streams are parsed again from their new starts.
bool ReadProxySetup(FlowData& data) {
  bool removed = false;
  Side& client = data.side[kToResponder];
  Side& proxy = data.side[kToOriginator];
  while (!data.proxy_done) {
    if (client.preamble_dropped > 0 || proxy.preamble_dropped > 0) {
      data.proxy_done = true;
      break;
    }
    ProxySetupWait wait = ProxySetupWait::kNone;
    std::optional<ProxySetup> setup = TakeProxySetup(client.buffer, proxy.buffer, &wait);
    if (!setup) {
      // Done unless the side still to complete it can grow.
      const Side& waiting = wait == ProxySetupWait::kReply ? proxy : client;
      data.proxy_done = wait == ProxySetupWait::kNone || waiting.gap || waiting.truncated;
      break;
    }
    for (Side* side : {&client, &proxy}) {
      side->setup_packets = side->payload_packets;
      side->gap = side->gap || side->truncated;
    }
    removed = true;
    data.proxy_done = ++data.proxy_setups >= kMaxProxySetups;
    if (setup->granted) {
      data.proxy = std::move(setup->request);
    } else if (setup->request.protocol != ProxyProtocol::kHttpConnect) {
      data.proxy_done = true;  // a SOCKS server closes after a refusal
    }
  }
  return removed;
}

// Packets of the key exchange that follow the banners are skipped before sizes count.
constexpr std::uint64_t kSshSkipPackets = 6;
constexpr std::uint64_t kSshMinPackets = 20;
constexpr std::uint64_t kSshMaxTrackedPackets = 1'000'000;

void TrackSsh(FlowData::SshActivity& a, std::size_t size, int d) {
  if (++a.packets[d] <= kSshSkipPackets || a.packets[0] + a.packets[1] > kSshMaxTrackedPackets) {
    return;
  }
  a.bytes[d] += size;
  (size <= 100 ? a.small : size <= 1000 ? a.medium : a.large)[d]++;
  if (a.last_dir != d) {
    ++a.turns;
    a.last_dir = d;
  }
}

// Interactive: the client sends keystroke-sized packets and the server answers in kind, with
// occasional output. File transfer: one direction carries nearly all bytes in full-sized
// packets. Tunnel: the client sends request-sized packets and the server bulk replies, many
// times over. Direction index 0 = client -> server.
std::string_view ClassifySsh(const FlowData::SshActivity& a) {
  const std::uint64_t n[2] = {a.small[0] + a.medium[0] + a.large[0],
                              a.small[1] + a.medium[1] + a.large[1]};
  if (n[0] + n[1] < kSshMinPackets) {
    return "unknown";
  }
  const double up = static_cast<double>(a.bytes[0]) + 1;
  const double down = static_cast<double>(a.bytes[1]) + 1;
  for (int d : {0, 1}) {
    const double heavy = d == 0 ? up : down;
    const double light = d == 0 ? down : up;
    if (heavy / light >= 8 && n[d] > 0 &&
        static_cast<double>(a.large[d]) >= 0.5 * static_cast<double>(n[d]) && heavy >= 64 * 1024) {
      return "file_transfer";
    }
  }
  const double client_small =
      n[0] ? static_cast<double>(a.small[0]) / static_cast<double>(n[0]) : 0;
  const double client_bigger =
      n[0] ? static_cast<double>(a.medium[0] + a.large[0]) / static_cast<double>(n[0]) : 0;
  // Humans type and rarely paste: almost no full-sized client packets.
  const double client_large =
      n[0] ? static_cast<double>(a.large[0]) / static_cast<double>(n[0]) : 0;
  if (client_small >= 0.8 && client_large <= 0.02) {
    return "interactive";
  }
  if (client_bigger >= 0.2 && a.medium[1] + a.large[1] > 0) {
    return "tunnel";
  }
  return "unknown";
}

Event MakeSshRecord(const FlowData& d, const FlowState& flow, std::uint16_t seed) {
  Event e;
  e.event_type = "ssh";
  e.ts = flow.last_seen;
  e.flow = FlowRef::FromFlow(flow, seed);
  AddDetails(d, App::kSsh, e.body);
  e.body = e.body["ssh"];
  const FlowData::SshActivity& a = d.ssh_activity;
  e.body["activity"] = ClassifySsh(a);
  e.body["activity_features"] = {{"packets_toserver", a.small[0] + a.medium[0] + a.large[0]},
                                 {"packets_toclient", a.small[1] + a.medium[1] + a.large[1]},
                                 {"bytes_toserver", a.bytes[0]},
                                 {"bytes_toclient", a.bytes[1]},
                                 {"small_toserver", a.small[0]},
                                 {"large_toserver", a.large[0]},
                                 {"small_toclient", a.small[1]},
                                 {"large_toclient", a.large[1]},
                                 {"turns", a.turns}};
  return e;
}

// An SSH client sends its identification first (RFC 4253 4.2): complete bytes that are not
// one (an HTTP request to port 22) are another protocol's probe of the server.
bool ClientSpokeOtherThanSsh(const FlowData& data, const Finding& finding) {
  if (finding.app != App::kSsh) {
    return false;
  }
  const Side& client = data.side[1 - finding.seen_dir];
  // Blank lines are nothing said (a person pressing Enter at a silent connection).
  const std::size_t start = client.buffer.find_first_not_of("\r\n");
  if (start == std::string::npos || client.gap) {
    return false;
  }
  bool incomplete = false;
  return !ParseSshBanner(View(client.buffer).subspan(start), &incomplete) && !incomplete;
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
  if (data.ssh_activity.tracking) {
    // Orient by the SSH client (the originator when known).
    TrackSsh(data.ssh_activity, packet.payload_length, d);
    return Verdict::kContinue;
  }
  Append(data.side[d], packet,
         ReadingSshPreamble(data, d)
             ? std::max<std::size_t>(config_.inspect_bytes, kSshPreambleSegment)
             : config_.inspect_bytes);
  if (packet.is_udp()) {
    InspectDatagram(data, packet.payload, d);
    if (data.side[d].payload_packets == 1) {
      if (config_.signatures) {
        MatchSignature(data, *config_.signatures, packet.payload, d);
      }
    }
  } else {
    if (ReadProxySetup(data)) {
      InspectStream(data, 1 - d);
    }
    InspectStream(data, d);
    if (config_.signatures && data.side[d].preamble_dropped == 0) {
      MatchSignature(data, *config_.signatures, View(data.side[d].buffer), d);
    }
  }

  const Finding finding = Assess(data, flow);
  if (finding.app != App::kNone && finding.both_sides) {
    out.Emit(MakeEvent(data, flow, finding, context_.community_id_seed, packet.ts));
    if (finding.app == App::kSsh) {
      // Keep watching the session's shape (counters only) for the ssh record at flow end.
      data.ssh_activity.tracking = true;
      for (Side& side : data.side) {
        std::string().swap(side.buffer);
      }
      return Verdict::kContinue;
    }
    slot.reset();
    return Verdict::kDone;
  }
  const auto exhausted = [&](const Side& s) {
    return s.gap || s.payload_packets - s.setup_packets >= config_.inspect_packets ||
           s.buffer.size() >= config_.inspect_bytes;
  };
  // Both sides have said enough without completing an opening exchange: not ours.
  if (exhausted(data.side[0]) && exhausted(data.side[1])) {
    slot.reset();
    return Verdict::kDone;
  }
  // A datagram flow that broke every datagram protocol's structure is not ours either.
  if (packet.is_udp() && !data.rdp_udp_syn && data.rdp_udp_broken && data.teamviewer_udp.broken &&
      data.nx_udp.broken) {
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
  if (data.ssh_activity.tracking) {
    out.Emit(MakeSshRecord(data, flow, context_.community_id_seed));
    slot.reset();
    return;
  }
  const Finding finding = Assess(data, flow);
  // One side's opening is a session when the other direction was never captured (a one-way
  // tap, asymmetric routing), or when the side seen is the server: a server that announced
  // itself proves the service even if its client then failed. A client's opening answered by
  // a reset, by nothing, or by another protocol is a probe and is not reported.
  if (finding.app != App::kNone && !finding.both_sides && finding.seen_dir >= 0) {
    const bool other_silent = flow.stats[1 - finding.seen_dir].packets == 0;
    const bool server_announced =
        finding.seen_dir == finding.controlled_dir && !ClientSpokeOtherThanSsh(data, finding);
    // Datagram protocols need their minimum count even one-way.
    const bool enough =
        finding.app != App::kTeamViewer && finding.app != App::kNoMachine
            ? true
            : std::max({data.teamviewer_udp.matched[finding.seen_dir],
                        data.nx_udp.matched[finding.seen_dir],
                        data.teamviewer_frames[finding.seen_dir]}) >= 2 * kDatagramsNeeded ||
                  data.nx[finding.seen_dir] != NxGreeting::kNone;
    if ((other_silent || server_announced) && enough) {
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
