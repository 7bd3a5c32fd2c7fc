#include "detectors/relay/relay.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"

#include "capture/base/status_macros.h"
#include "detectors/common/proxy.h"
#include "detectors/common/turn_stream.h"
#include "detectors/relay/quic_handshake.h"
#include "detectors/relay/ssh_kexinit.h"
#include "detectors/relay/stun_rtt.h"
#include "detectors/relay/timing.h"
#include "detectors/relay/tls13.h"
#include "detectors/relay/tls_input.h"
#include "detectors/remote_access/protocols.h"

namespace relaywatch::detectors::relay {
namespace {

using flow::Direction;
using flow::FlowState;

// kStun: a flow timed by its ICE checks (StunRtt): UDP, or TURN over TCP. kQuic: a QUIC
// connection timed by its opening (QuicHandshake).
enum class App { kUnknown, kTls, kSsh, kRfb, kRdp, kStun, kQuic, kOther };

// TLS record header of a handshake (RFC 8446 section 5.1): content type 22, version 3.x.
bool LooksLikeTlsHandshake(std::span<const std::uint8_t> p) {
  return p.size() >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04;
}

// RDP with standard RDP security: after the X.224 connection (MS-RDPBCGR 1.3.1.1) the
// client's MCS Connect Initial, in the clear: a TPKT (version 3), an X.224 Data TPDU (length
// indicator 2, code 0xF0, EOT) and T.125's Connect-Initial (BER application tag 101).
// Enhanced security starts TLS there instead.
bool LooksLikeMcsConnectInitial(std::span<const std::uint8_t> p) {
  return p.size() >= 9 && p[0] == 0x03 && p[1] == 0x00 && p[4] == 0x02 && p[5] == 0xf0 &&
         p[6] == 0x80 && p[7] == 0x7f && p[8] == 0x65;
}

// A TCP flow whose client opens with whole STUN messages (a TURN client's Allocate, RFC 8656
// 7.1, or a Binding request over TCP, RFC 8489 6.2.2): TURN over TCP. Only STUN, not
// ChannelData: no channel is bound before the allocation.
bool LooksLikeTurnOverTcp(std::span<const std::uint8_t> p) {
  return p.size() >= common::kStunHeaderBytes && p[0] < 0x40 && common::WholeTurnFrames(p);
}

// RFC 4253 section 4.2: the identification string starts "SSH-".
bool LooksLikeSshBanner(std::span<const std::uint8_t> p) {
  return p.size() >= 4 && p[0] == 'S' && p[1] == 'S' && p[2] == 'H' && p[3] == '-';
}

// A plain HTTP request to a forward proxy (RFC 9112 3.2.2 absolute-form: "GET http://..."),
// where a client behind an explicit proxy sends its OCSP, AIA and CRL fetches.
bool LooksLikeProxiedHttpRequest(std::span<const std::uint8_t> p) {
  const std::string_view text(reinterpret_cast<const char*>(p.data()),
                              std::min<std::size_t>(p.size(), 16));
  const std::size_t sp = text.find(' ');
  if (sp == std::string_view::npos || sp == 0 ||
      !std::all_of(text.begin(), text.begin() + sp, [](char c) { return c >= 'A' && c <= 'Z'; }))
    return false;
  const std::string_view rest = text.substr(sp + 1);
  return absl::StartsWithIgnoreCase(absl::string_view(rest.data(), rest.size()), "http://");
}

std::optional<double> Ms(const std::optional<absl::Duration>& d) {
  if (!d)
    return std::nullopt;
  return ToMs(*d);
}

// The smaller of two optional round trips.
std::optional<double> Least(std::optional<double> a, std::optional<double> b) {
  if (!a)
    return b;
  if (!b)
    return a;
  return std::min(*a, *b);
}

double Round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

void PutMs(nlohmann::json& j, const char* key, const std::optional<double>& v) {
  if (v)
    j[key] = Round3(*v);
}

// Packet times for the host stage, in Unix microseconds.
nlohmann::json TimesJson(const std::vector<PacketTime>& times) {
  nlohmann::json out = nlohmann::json::array();
  for (PacketTime t : times)
    out.push_back(absl::ToUnixMicros(t));
  return out;
}

// The ON-period starts of the input and of an SSH flow's output (`_output_on_times_us`), an
// SSH flow's sampled input packets (`_packet_times_us`, when enough), a chaffing SSH client's
// burst starts (`_burst_starts_us`), a remote desktop's screen updates (`_update_times_us`)
// and the smoothed round trip from the sensor to each end
// (`_on_legs_ms`: [originator, responder], null when unmeasured), and whether an SSH server's
// side coalesces what it sends (`_coalesced`, FlowData::Coalesces), for the host stage's
// stepping-stone correlation: a relayed key reaches the outbound flow one round trip of the
// relaying host's own link after the sensor saw it come in, more where that link is queued.
void PutOnTimes(const OnTimes& ons, const PacketSample& packets, const OnTimes& output_ons,
                const OnTimes* burst_starts, const OnTimes& updates, const AckRtt (&ack_rtt)[2],
                bool coalesced, nlohmann::json& body) {
  body["_on_times_us"] = TimesJson(ons.times());
  // A window whose updates filled the bound is left out: past its last kept update the screen
  // would read idle, and output there unmatched by chance alone.
  if (!updates.times().empty() && updates.dropped() == 0)
    body["_update_times_us"] = TimesJson(updates.times());
  if (packets.times().size() >= PacketSample::kMinPackets)
    body["_packet_times_us"] = TimesJson(packets.times());
  if (!output_ons.times().empty())
    body["_output_on_times_us"] = TimesJson(output_ons.times());
  if (burst_starts != nullptr && !burst_starts->times().empty())
    body["_burst_starts_us"] = TimesJson(burst_starts->times());
  nlohmann::json legs = nlohmann::json::array();
  for (int dir : {1, 0}) {
    const std::optional<double> srtt = Ms(ack_rtt[dir].smoothed());
    legs.push_back(srtt ? nlohmann::json(Round3(*srtt)) : nlohmann::json());
  }
  body["_on_legs_ms"] = std::move(legs);
  if (coalesced)
    body["_coalesced"] = true;
}

// The output -> next key delays taken since the last call, for the host stage's typing
// baseline (the internal `_reactions_ms`, written only when there are some).
void PutReactions(KeystrokeTiming& keys, nlohmann::json& body) {
  nlohmann::json delays = nlohmann::json::array();
  for (double ms : keys.TakeOutputToInput())
    delays.push_back(Round3(ms));
  if (!delays.empty())
    body["_reactions_ms"] = std::move(delays);
}

// Plain HTTP, where certificate revocation and issuer fetches go.
constexpr std::uint16_t kHttpPort = 80;
constexpr std::size_t kMaxHttpExchanges = 8;
// An answer's later segments are told at most this often: well inside the host stage's 20 ms
// slack between a fetch's answer and the handshake that waited on it.
constexpr absl::Duration kTellEvery = absl::Milliseconds(5);
// A UDP flow is looked at this long for its first STUN message. ICE sends its checks first
// and then at least every 5 s (RFC 7675 5.1), so a flow picked up mid-session shows one
// well inside this; media and other UDP are then left alone.
constexpr absl::Duration kStunLookFor = absl::Seconds(30);
// Server segments of an SSH flow before its coalescing is judged (FlowData::Coalesces).
constexpr std::uint32_t kMinCoalesceSegments = 16;
// The lead of the client's most frequent segment length over the others that names it the
// keys' (FlowData::KeyBytes): a person's first keys, or a fifth of a second of chaff.
constexpr std::uint32_t kMinKeyVotes = 8;

// An exchange as the host stage reads it: [start, answered, next request (-1: none yet)].
nlohmann::json ExchangeJson(const Exchange& x) {
  return {absl::ToUnixMicros(x.start), absl::ToUnixMicros(x.answered),
          x.next_request == absl::InfiniteFuture() ? std::int64_t{-1}
                                                   : absl::ToUnixMicros(x.next_request)};
}

}  // namespace

struct RelayDetector::FlowData : flow::DetectorFlowData {
  FlowData(const RelayConfig& c)
      : turnarounds(c.turnaround_samples, c.max_turnaround),
        ons(c.idle, kMaxOnTimes),
        packets(kPacketsPerSlot, kMaxPacketTimes),
        output_ons(c.idle, kMaxOnTimes),
        burst_starts(kBurstGap, kMaxOnTimes),
        updates(kUpdateGap, kMaxUpdateTimes) {}
  HandshakeSplit handshake;
  // By the direction of the data: [0] is acknowledged by the responder, so it times the
  // sensor <-> responder leg; [1] the sensor <-> originator leg.
  AckRtt ack_rtt[2];
  Turnarounds turnarounds;
  // Flows carrying STUN: their ICE checks, which time both ends instead of ACKs. A UDP
  // flow's datagrams; a TCP flow to a TURN server (RFC 8656 12.5) is cut into frames.
  std::unique_ptr<StunRtt> stun;
  // By direction; ICE checks (about 100-200 bytes in ChannelData or a Send indication)
  // come whole.
  using TurnStream = std::array<common::TurnStreamReader<512>, 2>;
  std::unique_ptr<TurnStream> turn_tcp;
  // A QUIC connection whose client's first Initial the sensor saw: its opening's two legs.
  std::unique_ptr<QuicHandshake> quic;
  // TLS flows during their setup: which client data a TLS 1.3 client sent unasked.
  std::unique_ptr<Tls13FirstData> tls13;
  // RFB under VeNCrypt's TLS, RDP under TLS: which client segments only answer screen
  // updates (update requests, frame acknowledgements).
  std::unique_ptr<TlsInput> tls_input;
  // SSH flows during their setup: which client data came before its key exchange init.
  std::unique_ptr<SshKexInitOrder> ssh_kex;
  IpIdGaps ip_ids[2];  // by direction, IPv4 only
  KeystrokeTiming keys;
  OnTimes ons;  // originator -> responder data: a person's input in an interactive flow
  PacketSample packets;  // the same data's packets, SSH flows only (the packet-level test)
  // SSH: ON periods of the server's output (segments larger than the client's key packets
  // and not a whole number of them: not a key's echo or the answer to a chaff ping, which
  // fill every pause, nor a few of them in one segment). A relay forwards output at once,
  // whatever re-times the keys.
  OnTimes output_ons;
  // SSH: the client's data after a silence of kBurstGap. A client that obfuscates keystroke
  // timing (OpenSSH >= 9.5) holds each key to its clock and fills every tick with chaff
  // while a person types, but sends the first key after its chaff has stopped at once
  // (clientloop.c, obfuscate_keystroke_timing): that key's time is the person's, or a
  // relay's that delivered it. Sent on only for flows whose keys are obfuscated.
  OnTimes burst_starts;
  // A remote desktop whose viewer is the originator: the starts of its server's data, the
  // screen updates, which follow what the host drew (output shown on the screen).
  OnTimes updates;
  std::uint32_t least_client_bytes = std::numeric_limits<std::uint32_t>::max();
  // SSH: the client's most frequent segment length past the setup, its key's packet (a
  // majority vote; KeyBytes), the unit output is counted in. Not the least: an SSH session relayed
  // through a host's sshd (`ssh -J`) rides in outer packets of another length (76 bytes
  // for a 36-byte key), while the outer connection's own window adjusts are 36.
  std::uint32_t key_bytes = 0;
  std::uint32_t key_votes = 0;
  // SSH: the server's segments past the setup, and those that are three keys' packets or
  // more, a whole number of them. A forwarder that waits for its client's acknowledgement
  // before sending more (Nagle's algorithm: sshd on a channel without a terminal) sends the
  // echoes that came in during one round trip of that client in one segment.
  std::uint32_t server_segments = 0;
  std::uint32_t coalesced_segments = 0;
  bool client_identified = false;  // its first segment, the identification string, passed
  App app = App::kUnknown;
  int client_dir = 0;       // the direction the TLS/SSH client (RFB viewer) sends in
  bool setup_over = false;  // SSH, RFB: the setup's turnarounds are taken; SSH keys count now
  // RDP: the client's X.224 Connection Request came first; its TLS (if the server's
  // confirm chose it) or its MCS setup (standard RDP security) begins with the client's
  // next segment, which names the flow.
  bool rdp_x224 = false;
  bool obfuscated = false;  // SSH keys paced by OpenSSH's obfuscation (known at the record)
  bool seen_payload[2] = {false, false};
  // A proxy setup (SOCKS, HTTP CONNECT) being read: the app is named by what its tunnel
  // carries, whose exchanges are then timed as any other flow's.
  std::unique_ptr<ProxySetupReader> proxy;
  std::optional<ProxyProtocol> proxied;
  // The tunnel's opening, the proxy's grant (when the client had sent nothing past its
  // request), answered by the client's first tunnelled data: its connection's wait, the
  // TCP one having been the proxy request's.
  PacketTime tunnel_open = absl::InfinitePast();
  std::optional<absl::Duration> tunnel_wait;
  PacketTime first = absl::InfinitePast();
  // Up to the record, this flow's requests and answers as another's possible fetch (a
  // revocation check during that flow's wait): the first only, in the record; or on plain
  // HTTP (where OCSP, AIA and CRL fetches go, RFC 5280 4.2.2.1) the first kMaxHttpExchanges,
  // each told at once (kExchangeEvent), as a connection kept open to the responder carries
  // one fetch after another and may outlive the flows that waited on them.
  Exchanges exchanges{1};
  bool http = false;
  // Plain HTTP: the exchanges told so far, and when the last was told.
  std::size_t exchanges_told = 0;
  PacketTime told_at = absl::InfinitePast();
  bool reported = false;
  // After the record: the current stepping-stone window's start (see OnPacket).
  PacketTime window_start = absl::InfinitePast();

  // The SSH client's identification (its first segment): software older than keystroke
  // obfuscation rules it out. A banner split over segments is not read (nothing ruled out).
  void ReadSshClientBanner(std::span<const std::uint8_t> first) {
    const std::optional<remote_access::SshBanner> banner = remote_access::ParseSshBanner(first);
    if (banner && PredatesKeystrokeObfuscation(banner->software))
      keys.RuleOutObfuscation();
  }

  // A data segment (not resent) of an SSH session past its setup: a key, or what the
  // server answers.
  void OnTypingData(int direction, PacketTime ts, std::uint32_t length, bool late) {
    if (direction == client_dir) {
      keys.OnClientData(ts, length, late);
    } else {
      keys.OnServerData(ts, length);
    }
  }

  void NextWindow(PacketTime start, const RelayConfig& c) {
    ons = OnTimes(c.idle, kMaxOnTimes);
    // A sample too small to send waits for the next window's: two keys at a slot's start
    // whose window closed on them are still that slot's first.
    if (packets.times().size() >= PacketSample::kMinPackets)
      packets.NextWindow();
    output_ons = OnTimes(c.idle, kMaxOnTimes);
    burst_starts = OnTimes(kBurstGap, kMaxOnTimes);
    updates = OnTimes(kUpdateGap, kMaxUpdateTimes);
    window_start = start;
  }

  // RFB or RDP (under TLS or not) with the viewer as the originator: the responder's data are
  // its screen updates. A laptop that dialled its viewer is left out: that flow is the host's
  // outbound one, whose screen the host stage never pairs with another outbound flow.
  bool ShowsScreen() const {
    return client_dir == 0 && (app == App::kRfb || app == App::kRdp || tls_input != nullptr);
  }

  // A data segment of either direction, for the stepping stones: the originator's input for
  // its ON periods, or a remote desktop's screen updates.
  void SampleSession(int d, const decode::DecodedPacket& packet) {
    if (d == 0) {
      if (IsInput(d, packet))
        ons.OnData(packet.ts);
    } else if (ShowsScreen()) {
      updates.OnData(packet.ts);
    }
  }

  // The burst starts the host stage gets: a chaffing client's only (null otherwise).
  const OnTimes* SentBurstStarts() const { return obfuscated ? &burst_starts : nullptr; }

  // Whether the originator's data segment is input for its ON periods: all of it, but a
  // remote-desktop client's segments of nothing but answers to screen updates, which it sends
  // after each update whatever the person does (a blinking cursor or a clock keeps them coming
  // every few hundred ms, which merged the person's pauses into one ON period): an RFB
  // viewer's update requests, read in the clear; under TLS, records of an RFB update request's
  // or an RDP frame acknowledgement's length (TlsInput). Cut, or encrypted otherwise, a
  // segment counts.
  bool IsInput(int d, const decode::DecodedPacket& packet) {
    if (d != client_dir)
      return true;
    if (tls_input)
      return !tls_input->OnClientSegment(packet);
    if (app != App::kRfb)
      return true;
    const std::optional<remote_access::RfbClientMessages> messages =
        remote_access::ParseRfbClientMessages(packet.payload);
    return !messages || messages->input || !messages->update_request;
  }

  // A remote-desktop client that starts TLS and is the originator, whose ON periods count:
  // its records are read from its ClientHello on (TlsInput), the server's for the ServerHello.
  // An RFB viewer starts it inside RFB (VeNCrypt); an RDP client after its X.224 negotiation
  // (OnPacket makes the reader there).
  void WatchTlsInput(int d, const decode::DecodedPacket& packet) {
    if (tls_input) {
      if (d != client_dir)
        tls_input->OnServerSegment(packet);
    } else if (app == App::kRfb && d == client_dir && d == 0 &&
               LooksLikeTlsHandshake(packet.payload)) {
      tls_input = std::make_unique<TlsInput>(TlsInput::Protocol::kRfb);
    }
  }

  // Either direction's data segment (not resent) of an SSH flow, for the stepping stones:
  // input packets (`by_packets`: the packet test is on) and output ON periods.
  void SampleSsh(int d, PacketTime ts, std::uint32_t length, bool by_packets) {
    if (d == 0) {
      if (by_packets)
        packets.OnData(ts);
      if (setup_over)  // keys, not the key exchange's answers
        burst_starts.OnData(ts);
      // Not the client's identification string (its first segment, RFC 4253 4.2), shorter
      // than any SSH packet: from its next segment on, the least is a key or a ping.
      if (client_identified && length > 0)  // never 0: output is counted modulo it
        least_client_bytes = std::min(least_client_bytes, length);
      client_identified = true;
      if (setup_over && length > 0) {
        if (key_votes == 0)
          key_bytes = length;
        key_votes = length == key_bytes ? key_votes + 1 : key_votes - 1;
      }
    } else {
      // Not a whole number of the keys' packets either: echoes and answers to pings that
      // went out in one segment (2 x 36 bytes behind chacha20-poly1305, whose single
      // packets are 4 more than a multiple of 8) are no output. Until the keys are known,
      // the client's least.
      const std::uint32_t unit = Unit();
      if (length > unit && length % unit != 0)
        output_ons.OnData(ts);
      if (setup_over && KeyBytes() > 0) {
        ++server_segments;
        coalesced_segments += length >= 3 * unit && length % unit == 0 ? 1 : 0;
      }
    }
  }

  // The keys' packet length once the vote leads by kMinKeyVotes, else 0: the first segments
  // past the setup (authentication, the channel's opening) are no keys.
  std::uint32_t KeyBytes() const { return key_votes >= kMinKeyVotes ? key_bytes : 0; }

  // What one key's packet is on this flow: the keys' length, unless a whole number of the
  // least (a client behind Nagle, a proxy command's pipe, sends a round trip's keys at
  // once), then the least, as it is before the keys are known.
  std::uint32_t Unit() const {
    const std::uint32_t keys = KeyBytes();
    return keys == 0 || keys % least_client_bytes == 0 ? least_client_bytes : keys;
  }

  // Whether the server's side coalesces: a third of its segments (of at least a window's
  // worth) are three or more echoes held together, a whole number of keys' packets.
  bool Coalesces() const {
    return server_segments >= kMinCoalesceSegments && 3 * coalesced_segments >= server_segments;
  }
};

RelayDetector::RelayDetector(RelayConfig config, DetectorContext context)
    : config_(config), context_(context) {}

Verdict RelayDetector::OnPacket(const decode::DecodedPacket& packet, FlowState& flow,
                                Direction direction, EventBuffer& out) {
  if (packet.is_udp())
    return OnDatagram(packet, flow, direction, out);
  if (!packet.is_tcp())
    return Verdict::kDone;
  auto& slot = flow.detector_data[context_.index];
  if (!slot)
    slot = std::make_unique<FlowData>(config_);
  auto& data = static_cast<FlowData&>(*slot);
  // A packet of this side lost before the sensor: an answer or key sent again after it is
  // late by the retransmission timeout, not by distance or a person.
  IpIdGaps& ids = data.ip_ids[flow::Index(direction)];
  const bool after_unseen =
      packet.ip_version == 4 && ids.OnPacket(packet.ip_id, packet.payload_length);
  if (data.reported) {
    if (data.stun)
      return Verdict::kDone;  // a TURN flow is timed up to its record, as a UDP one
    // After the record the flow stays timed, one window of report_after at a time: its input
    // for stepping stones that begin late in a long session (an operator opens ssh from the
    // RDP desktop at 14:00), and an SSH session's reactions for the typing baseline, which
    // judges a person over a working day, not over the first minutes.
    const bool keys = TypingTimed(data);
    if (!config_.methods.stepping_stone && !keys)
      return Verdict::kDone;
    const int d = flow::Index(direction);
    const bool ssh_stones = config_.methods.stepping_stone && data.app == App::kSsh;
    if (keys || ssh_stones) {
      // The same retransmission filter as before the record: a resent segment is no key, and
      // no packet a relay forwarded.
      if (packet.has(decode::kTcpAck))
        data.ack_rtt[1 - d].OnAck(packet.ts, packet.ack);
      if (packet.payload_length > 0 &&
          data.ack_rtt[d].OnData(packet.ts, packet.seq, packet.payload_length) ==
              SegmentArrival::kNew) {
        if (keys)
          data.OnTypingData(d, packet.ts, packet.payload_length, after_unseen);
        if (ssh_stones)
          data.SampleSsh(d, packet.ts, packet.payload_length, SamplesPackets(data));
      }
      if (keys && d == data.client_dir && packet.has(decode::kTcpFin))
        data.keys.OnClientFin(packet.ts);
    }
    if (config_.methods.stepping_stone && packet.payload_length > 0)
      data.SampleSession(d, packet);
    if (packet.ts - data.window_start >= config_.report_after)
      EmitWindow(flow, data, packet.ts, out);
    return Verdict::kContinue;
  }
  const int d = flow::Index(direction);
  if (data.first == absl::InfinitePast()) {
    data.first = packet.ts;
    if ((d == 0 ? packet.dst_port : packet.src_port) == kHttpPort) {
      data.http = true;
      data.exchanges = Exchanges(kMaxHttpExchanges);
    }
  }
  if (d == 0 && packet.has(decode::kTcpSyn) && !packet.has(decode::kTcpAck))
    data.exchanges.OnOpen(packet.ts);

  data.handshake.OnPacket(packet.ts, d, packet.tcp_flags, packet.seq, packet.ack,
                          packet.payload_length, packet.ttl);
  if (packet.has(decode::kTcpAck)) {
    const std::uint32_t before = data.ack_rtt[1 - d].samples();
    data.ack_rtt[1 - d].OnAck(packet.ts, packet.ack);
    counters_.ack_rtt_samples.Increment(data.ack_rtt[1 - d].samples() - before);
  }
  if (packet.payload_length > 0 && !packet.has(decode::kTcpSyn)) {
    const SegmentArrival arrival =
        data.ack_rtt[d].OnData(packet.ts, packet.seq, packet.payload_length);
    const bool retransmission = arrival != SegmentArrival::kNew;
    if (!data.seen_payload[d] && !data.proxy) {
      data.seen_payload[d] = true;
      const bool opening = d == 0 && data.app == App::kUnknown && !data.seen_payload[1];
      if (opening && ProxySetupReader::MayStart(packet.payload)) {
        data.proxy = std::make_unique<ProxySetupReader>();
      } else if (opening && remote_access::ParseRdpConnectionRequest(packet.payload)) {
        data.rdp_x224 = true;  // the server's confirm is no app of its own either
      } else if (!data.rdp_x224) {
        NameApp(data, d, packet.payload);
      }
    } else if (data.rdp_x224 && d == 0 && data.seen_payload[1]) {
      data.rdp_x224 = false;
      if (LooksLikeMcsConnectInitial(packet.payload)) {
        // Its first answer, to the server's connection confirm, is timed below: the client
        // sends it at once, as part of the negotiation.
        data.app = App::kRdp;
        data.client_dir = 0;
      } else {
        // TLS is timed from its own first flight, as any other.
        data.turnarounds = Turnarounds(config_.turnaround_samples, config_.max_turnaround);
        NameApp(data, 0, packet.payload);
        if (data.app == App::kTls && config_.methods.stepping_stone)
          data.tls_input = std::make_unique<TlsInput>(TlsInput::Protocol::kRdp);
      }
    }
    if (data.turn_tcp)
      ReadTurnStream(packet, d, data);
    if (data.tunnel_open != absl::InfinitePast()) {
      // The first data past the grant: the client's answers it. The server's (it spoke first
      // in the tunnel) or the grant sent again (which the client may have had only then,
      // Karn) leave no wait, as for the connection's (HandshakeSplit::connect_wait).
      if (d == 0)
        data.tunnel_wait = packet.ts - data.tunnel_open;
      data.tunnel_open = absl::InfinitePast();
    }
    if (data.proxy) {
      const ProxySetupReader::State state = data.proxy->Feed(packet, d == 0);
      if (state == ProxySetupReader::State::kTunnel) {
        data.proxied = data.proxy->request().protocol;
        if (d == 1 && data.proxy->tunnel_start(true).empty() &&
            data.proxy->tunnel_start(false).empty())
          data.tunnel_open = packet.ts;
        for (int x : {0, 1}) {
          // A direction whose tunnel has not begun yet is named by its next segment.
          const std::span<const std::uint8_t> start = data.proxy->tunnel_start(x == 0);
          data.seen_payload[x] = !start.empty();
          if (!start.empty())
            NameApp(data, x, start);
        }
        data.proxy.reset();
      } else if (state == ProxySetupReader::State::kNone) {
        data.app = App::kOther;
        data.proxy.reset();
      }
    }
    bool unawaited = false;  // client data sent without waiting for the server
    if (data.tls13) {
      unawaited = data.tls13->OnSegment(packet, d == data.client_dir);
      if (data.tls13->done() || data.setup_over)
        data.tls13.reset();
    }
    bool unasked = false;  // SSH: the client's banner or KEXINIT behind the server's KEXINIT
    bool identification = false;  // SSH: the client's banner, sent on connecting
    if (data.ssh_kex) {
      const SshKexInitOrder::Segment order = data.ssh_kex->OnSegment(packet, d == data.client_dir);
      unasked = order == SshKexInitOrder::Segment::kUnasked;
      identification = order == SshKexInitOrder::Segment::kUnawaited;
      unawaited = unawaited || identification;
      if (data.ssh_kex->done() || data.setup_over)
        data.ssh_kex.reset();
    }
    const RelayMethods& methods = config_.methods;
    // Turnarounds serve the hidden leg; in SSH they also find the end of the setup, after
    // which keystrokes are counted.
    const bool turnarounds = ((data.app == App::kTls || data.app == App::kRfb ||
                               data.app == App::kRdp || data.rdp_x224) &&
                              methods.hidden_leg) ||
                             (data.app == App::kSsh && (methods.hidden_leg || methods.keystrokes));
    // RFB: the setup is lock-step (version, security, ServerInit), each viewer segment the
    // software's answer, up to the viewer's first request for an update. Its later requests
    // answer no one update: TigerVNC asks for the next as the last begins to arrive, so a
    // request lands inside a large update or after a later small one (a lab's viewer 80 ms
    // away read 16 ms), and a viewer that asks at the end waits on decoding the update.
    const bool rfb_set_up =
        data.app == App::kRfb && d == data.client_dir && !data.setup_over && [&] {
          const std::optional<remote_access::RfbClientMessages> messages =
              remote_access::ParseRfbClientMessages(packet.payload);
          return messages && messages->update_request;
        }();
    std::optional<std::uint32_t> ack;  // whether the server had the client's answer
    if (packet.has(decode::kTcpAck))
      ack = packet.ack;
    if (!retransmission) {
      if (config_.methods.hidden_leg && data.exchanges.OnData(packet.ts, d == 0) && data.http &&
          data.handshake.originator_ttl() != 0) {
        // Told at its first answer, and again as more of the answer comes (a handshake that
        // waited on it goes on after its last segment), at most every kTellEvery and only
        // while it could still have fed a turnaround.
        const Exchange& x = data.exchanges.exchanges().back();
        const std::size_t n = data.exchanges.exchanges().size();
        if (n != data.exchanges_told || (packet.ts - data.told_at >= kTellEvery &&
                                         packet.ts - x.start <= config_.max_turnaround)) {
          EmitExchange(flow, x, packet.ts, out);
          data.exchanges_told = n;
          data.told_at = packet.ts;
        }
      }
      if (methods.stepping_stone) {
        if (data.app == App::kRfb || data.tls_input)
          data.WatchTlsInput(d, packet);
        data.SampleSession(d, packet);
        if (data.app == App::kSsh)
          data.SampleSsh(d, packet.ts, packet.payload_length, SamplesPackets(data));
      }
      if (turnarounds) {
        const bool from_client = d == data.client_dir;
        if (!data.setup_over) {
          const std::uint32_t slow = data.turnarounds.slow();
          const std::uint32_t refused = data.turnarounds.refused();
          if (from_client && unawaited) {
            if (identification)
              counters_.ssh_identification_unawaited.Increment();
            data.turnarounds.OnUnawaitedClientData();
          } else if (from_client && unasked) {
            // No answer, and the server's KEXINIT waits on for the key exchange init.
            counters_.ssh_kexinit_unasked.Increment();
          } else {
            data.turnarounds.OnData(packet.ts, from_client, from_client && after_unseen, packet.seq,
                                    ack);
          }
          if (from_client && after_unseen && data.turnarounds.refused() > refused)
            counters_.turnarounds_unseen_loss.Increment();
          // A slow answer: from here on a person is answering, not software. An answer
          // refused for loss says nothing of who answers; the setup goes on. Nor does a
          // slow one among an SSH client's first two answers (its banner or KEXINIT, and
          // its key-exchange init): no person can be asked anything before the server's
          // host key arrives, so that wait is the network's. A far client behind a jump
          // host sends its banner two round trips after the server's (1 s at 250 ms one
          // way); it is refused as a sample, and the exchanges after it still count.
          // An RFB viewer's setup answers are always software's.
          const bool software_only =
              data.app == App::kRfb || (data.app == App::kSsh && data.turnarounds.answers() <= 2);
          data.setup_over = data.turnarounds.full() || rfb_set_up ||
                            (data.turnarounds.slow() > slow && !software_only);
          if (data.setup_over && data.app == App::kSsh) {
            std::vector<double> answers = data.turnarounds.samples_ms();
            data.keys.SetSoftwareAnswer(Median(answers).value_or(0.0));
          }
        } else {
          if (!from_client)
            data.turnarounds.OnServerData(ack);  // settles the setup's last sample
          if (data.app == App::kSsh && methods.keystrokes)
            data.OnTypingData(d, packet.ts, packet.payload_length, after_unseen);
        }
      }
    } else if (!data.setup_over && turnarounds) {
      // A piece of the server's flight that came behind later ones (reordered on the way, or
      // sent again after a loss before the sensor) ends the flight when it comes, untainted:
      // the client answers once it has it. Bytes seen before taint the flight; a client
      // segment that is not new answers nothing.
      const bool from_client = d == data.client_dir;
      data.turnarounds.OnData(packet.ts, from_client,
                              from_client || arrival == SegmentArrival::kRepeat, packet.seq, ack);
    }
  }
  if (data.app == App::kSsh && data.setup_over && d == data.client_dir &&
      packet.has(decode::kTcpFin)) {
    data.keys.OnClientFin(packet.ts);
  }
  if (packet.ts - data.first >= config_.report_after) {
    Report(flow, data, packet.ts, /*open=*/true, out);
    return !data.stun && (config_.methods.stepping_stone || TypingTimed(data)) ? Verdict::kContinue
                                                                               : Verdict::kDone;
  }
  return Verdict::kContinue;
}

Verdict RelayDetector::OnDatagram(const decode::DecodedPacket& packet, FlowState& flow,
                                  Direction direction, EventBuffer& out) {
  // A UDP flow's round trips serve the controller's (a remote-control session over WebRTC or
  // RDP's UDP transport names its flow elsewhere; the host stage pairs them) and, for QUIC,
  // the routed relay's legs (a laptop that routes a far device's QUIC, as its TCP).
  const bool stun = config_.methods.controller_rtt;
  const bool quic = config_.methods.routed_relay;
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    App app = App::kUnknown;
    if (stun && StunRtt::Carries(packet.payload)) {
      app = App::kStun;
    } else if (quic && direction == Direction::kToResponder &&
               QuicHandshake::OpensConnection(packet.payload)) {
      app = App::kQuic;
    } else {
      return stun && packet.ts - flow.first_seen < kStunLookFor ? Verdict::kContinue
                                                                : Verdict::kDone;
    }
    slot = std::make_unique<FlowData>(config_);
    auto& fresh = static_cast<FlowData&>(*slot);
    fresh.app = app;
    if (app == App::kStun) {
      fresh.stun = std::make_unique<StunRtt>();
    } else {
      fresh.quic = std::make_unique<QuicHandshake>();
    }
    fresh.first = packet.ts;
  }
  auto& data = static_cast<FlowData&>(*slot);
  if (data.quic) {
    data.quic->OnDatagram(packet.ts, flow::Index(direction), packet.payload, packet.ttl);
    // Its record as soon as the opening is timed: nothing later in the flow is read, so its
    // state goes (a browser opens QUIC connections by the dozen).
    if (data.quic->settled() || packet.ts - data.first >= config_.report_after) {
      Report(flow, data, packet.ts, /*open=*/false, out);
      slot.reset();
      return Verdict::kDone;
    }
    return Verdict::kContinue;
  }
  const std::uint32_t before = data.stun->answered();
  data.stun->OnDatagram(packet.ts, flow::Index(direction), packet.payload);
  counters_.stun_rtt_samples.Increment(data.stun->answered() - before);
  if (packet.ts - data.first >= config_.report_after) {
    Report(flow, data, packet.ts, /*open=*/true, out);
    return Verdict::kDone;
  }
  return Verdict::kContinue;
}

void RelayDetector::OnFlowEnd(FlowState& flow, EventBuffer& out) {
  auto* data = static_cast<FlowData*>(flow.detector_data[context_.index].get());
  if (data == nullptr)
    return;
  if (data->reported) {
    if (!data->stun && (config_.methods.stepping_stone || TypingTimed(*data)))
      EmitWindow(flow, *data, flow.last_seen, out);
    return;
  }
  Report(flow, *data, flow.last_seen, /*open=*/false, out);
}

void RelayDetector::ReadTurnStream(const decode::DecodedPacket& packet, int d, FlowData& data) {
  const std::uint32_t before = data.stun->answered();
  (*data.turn_tcp)[d].OnSegment(packet, [&](const common::TurnFrame& frame) {
    if (!frame.whole.empty())
      data.stun->OnDatagram(packet.ts, d, frame.whole);
  });
  counters_.stun_rtt_samples.Increment(data.stun->answered() - before);
}

void RelayDetector::NameApp(FlowData& data, int d, std::span<const std::uint8_t> first) const {
  if (data.app == App::kSsh && d == data.client_dir) {
    data.ReadSshClientBanner(first);
    return;
  }
  if (data.app != App::kUnknown && data.app != App::kOther)
    return;
  if (LooksLikeTlsHandshake(first)) {
    // Whoever sends the first handshake record is the client.
    if (data.app == App::kUnknown) {
      data.app = App::kTls;
      data.client_dir = d;
      if (config_.methods.hidden_leg)
        data.tls13 = std::make_unique<Tls13FirstData>();
    }
  } else if (data.app == App::kUnknown && remote_access::ParseRfbVersion(first)) {
    // The RFB server speaks first (also when it dialled the viewer); its setup messages are
    // the flights, the viewer's replies the answers.
    data.app = App::kRfb;
    data.client_dir = 1 - d;
  } else if (LooksLikeSshBanner(first)) {
    data.app = App::kSsh;
    data.client_dir = 0;  // both ends send a banner: the originator is the client
    if (config_.methods.hidden_leg || config_.methods.keystrokes)
      data.ssh_kex = std::make_unique<SshKexInitOrder>();
    if (d == data.client_dir)
      data.ReadSshClientBanner(first);
  } else if (data.app == App::kUnknown && d == 0 && config_.methods.controller_rtt &&
             LooksLikeTurnOverTcp(first)) {
    // A TURN client's first request to its server (Allocate) over TCP: the ICE checks it
    // relays time the far agent, as over UDP.
    data.app = App::kStun;
    data.stun = std::make_unique<StunRtt>();
    data.turn_tcp = std::make_unique<FlowData::TurnStream>();
  } else if (data.app == App::kUnknown) {
    data.app = App::kOther;
    if (d == 0 && LooksLikeProxiedHttpRequest(first)) {
      // Fetches through the proxy, like those on port 80: each exchange may explain a wait.
      data.http = true;
      data.exchanges.KeepUpTo(kMaxHttpExchanges);
    }
  }
}

bool RelayDetector::SamplesPackets(const FlowData& data) const {
  return config_.methods.stepping_stone &&
         config_.stepping_stone_packet_delta > absl::ZeroDuration() && data.app == App::kSsh;
}

bool RelayDetector::TypingTimed(const FlowData& data) const {
  return config_.methods.keystrokes && data.app == App::kSsh && data.setup_over &&
         !data.obfuscated;
}

void RelayDetector::EmitWindow(const FlowState& flow, FlowData& data, PacketTime ts,
                               EventBuffer& out) {
  nlohmann::json body = nlohmann::json::object();
  // Fewer ON periods or packets than the correlation needs say nothing.
  if (config_.methods.stepping_stone &&
      (data.ons.times().size() >= config_.stepping_stone_min_ons ||
       data.packets.times().size() >= PacketSample::kMinPackets ||
       data.output_ons.times().size() >= MinBurstStarts(config_.stepping_stone_min_ons) ||
       data.updates.times().size() >= MinBurstStarts(config_.stepping_stone_min_ons) ||
       (data.SentBurstStarts() != nullptr &&
        data.burst_starts.times().size() >= MinBurstStarts(config_.stepping_stone_min_ons)))) {
    PutOnTimes(data.ons, data.packets, data.output_ons, data.SentBurstStarts(), data.updates,
               data.ack_rtt, data.Coalesces(), body);
    if (data.app == App::kSsh)
      body["_ssh"] = true;  // stepping stones across hosts keep SSH flows only
  }
  if (TypingTimed(data))
    PutReactions(data.keys, body);
  if (!body.empty()) {
    Event e;
    e.event_type = std::string(kOnWindowEvent);
    e.ts = ts;
    e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
    e.body = std::move(body);
    out.Emit(std::move(e));
    counters_.on_windows.Increment();
  }
  NextWindow(data, ts);
}

void RelayDetector::EmitExchange(const FlowState& flow, const Exchange& x, PacketTime ts,
                                 EventBuffer& out) {
  Event e;
  e.event_type = std::string(kExchangeEvent);
  e.ts = ts;
  e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
  // The next request is not known yet: none, for now (an HTTP client reads an answer
  // before it asks again).
  e.body = {{"_exchanges_us", nlohmann::json::array({ExchangeJson(x)})}};
  out.Emit(std::move(e));
  counters_.http_exchanges.Increment();
}

void RelayDetector::Report(const FlowState& flow, FlowData& data, PacketTime ts, bool open,
                           EventBuffer& out) {
  data.reported = true;
  data.tls13.reset();  // no more turnarounds are taken
  // A QUIC connection's opening stands for TCP's handshake: the same legs and TTLs.
  const QuicHandshake* quic = data.quic.get();
  const std::optional<double> hs_orig =
      Ms(quic ? quic->originator_leg() : data.handshake.originator_leg());
  const std::optional<double> hs_resp =
      Ms(quic ? quic->responder_leg() : data.handshake.responder_leg());
  const bool hs_resent = quic ? quic->resent() : data.handshake.retransmitted();
  const std::uint8_t ttl_orig = quic ? quic->originator_ttl() : data.handshake.originator_ttl();
  const std::uint8_t ttl_resp = quic ? quic->responder_ttl() : data.handshake.responder_ttl();
  // Refused by Karn's rule: sent again, and a leg went untimed (a QUIC answer's
  // acknowledgement may still time it).
  if (hs_resent && (!hs_orig || !hs_resp))
    counters_.handshakes_karn.Increment();
  if (hs_orig && hs_resp)
    counters_.handshakes_split.Increment();
  if (quic && (hs_orig || hs_resp))
    counters_.quic_openings.Increment();
  // By the direction of what is answered: [0] times the responder's leg, [1] the originator's.
  const RttSamples* legs[2] = {&data.ack_rtt[0].rtt(), &data.ack_rtt[1].rtt()};
  if (data.stun) {
    legs[0] = &data.stun->rtt(0);
    legs[1] = &data.stun->rtt(1);
  }
  // A TURN flow over TCP: its handshake times the TURN server, its checks the far agent.
  const std::optional<double> rtt_orig =
      data.stun ? Ms(legs[1]->floor()) : Least(hs_orig, Ms(legs[1]->floor()));
  const std::optional<double> rtt_resp =
      data.stun ? Ms(legs[0]->floor()) : Least(hs_resp, Ms(legs[0]->floor()));
  const RelayMethods& methods = config_.methods;
  counters_.turnarounds.Increment(data.turnarounds.samples_ms().size());
  counters_.turnarounds_refused.Increment(data.turnarounds.refused());
  counters_.turnarounds_interrupted.Increment(data.turnarounds.interrupted());
  // With the hidden leg off, SSH turnarounds only marked the end of the setup: not reported.
  const std::vector<double> turns =
      methods.hidden_leg ? data.turnarounds.samples_ms() : std::vector<double>();
  if (!rtt_orig && !rtt_resp && turns.empty())
    return;  // nothing was timed

  nlohmann::json r = nlohmann::json::object();
  r["app"] = data.app == App::kTls    ? "tls"
             : data.app == App::kSsh  ? "ssh"
             : data.app == App::kRfb  ? "vnc"
             : data.app == App::kRdp  ? "rdp"
             : data.app == App::kStun ? "stun"
             : data.app == App::kQuic ? "quic"
                                      : "other";
  if (data.proxied)
    r["proxy"] = ProxyProtocolName(*data.proxied);
  nlohmann::json hs = nlohmann::json::object();
  PutMs(hs, "originator_ms", hs_orig);
  PutMs(hs, "responder_ms", hs_resp);
  if (hs_resent)
    hs["retransmitted"] = true;
  if (ttl_orig != 0)
    hs["originator_ttl"] = ttl_orig;
  if (ttl_resp != 0)
    hs["responder_ttl"] = ttl_resp;
  if (!hs.empty())
    r["handshake"] = hs;
  PutMs(r, "rtt_originator_ms", rtt_orig);
  PutMs(r, "rtt_responder_ms", rtt_resp);
  // The connection's opening answered by the client's first data: it decides where every
  // flight came spread (ReadTurnaround). Read as written, as the spreads are.
  std::optional<double> connect_wait;
  if (data.client_dir == 0) {
    if (const std::optional<double> w = Ms(data.handshake.connect_wait())) {
      connect_wait = Round3(*w);
      r["connect_wait_ms"] = *connect_wait;
    }
    if (data.tunnel_wait)
      r["tunnel_wait_ms"] = Round3(*Ms(data.tunnel_wait));
  }
  PutMs(r, "srtt_originator_ms", Ms(legs[1]->smoothed()));
  PutMs(r, "srtt_responder_ms", Ms(legs[0]->smoothed()));
  r["rtt_samples"] = {legs[1]->count(), legs[0]->count()};
  if (methods.controller_rtt && !quic) {
    // For the host stage's controller round trip only; it removes this before output.
    nlohmann::json low = nlohmann::json::array();
    for (int dir : {1, 0}) {
      const std::optional<double> q = Ms(legs[dir]->low_quantile());
      low.push_back(q ? nlohmann::json(Round3(*q)) : nlohmann::json());
    }
    r["_rtt_p15_ms"] = std::move(low);
    if (open)
      r["_open"] = true;  // and this: a session may be named on the flow after its record
  }
  if (data.stun) {
    r["stun"] = {{"checks", data.stun->checks()},
                 {"answered", data.stun->answered()},
                 {"resent", data.stun->resent()},
                 {"via_turn", data.stun->via_turn()}};
    if (const auto& peer = data.stun->turn_peer()) {
      r["stun"]["turn_peer"] = peer->ip.ToString();
      r["stun"]["turn_peer_port"] = peer->port;
    }
  } else if (!quic) {
    r["retransmissions"] = data.ack_rtt[0].retransmissions() + data.ack_rtt[1].retransmissions();
    r["out_of_order"] = data.ack_rtt[0].out_of_order() + data.ack_rtt[1].out_of_order();
  }

  if (!turns.empty()) {
    nlohmann::json samples = nlohmann::json::array();
    for (double t : turns)
      samples.push_back(Round3(t));
    r["turnaround_samples_ms"] = samples;
    // How each answered flight arrived: spread out, a relay may have held its tail. Read as
    // written, so that the host stage, which reads the record, judges them alike.
    std::vector<double> spreads;
    for (double s : data.turnarounds.spreads_ms())
      spreads.push_back(Round3(s));
    r["turnaround_flight_spread_ms"] = spreads;
    // The lower quartile: a minority of turnarounds is slowed by the client's own work (an
    // SSH key exchange's post-quantum key generation takes tens of ms) and one may come
    // early (a client that sends before the server's flight arrives); both stay outside it.
    // A TLS client's first answer is its handshake's, which bounds it (TurnaroundMs); so is
    // a standard-security RDP client's MCS Connect Initial. FreeRDP sends its later MCS
    // answers on a 100 ms tick (its channel joins 100 ms apart at a 20 ms round trip).
    std::optional<double> handshake;
    if (data.app == App::kTls || data.app == App::kRdp)
      handshake = data.turnarounds.first_answer_ms();
    if (handshake)
      r["handshake_turnaround_ms"] = Round3(*handshake);
    // The client's own visible round trip is inside every turnaround; what remains is the
    // leg the sensor cannot see (plus the client's processing, about a millisecond).
    const std::optional<double> client_leg = data.client_dir == 0 ? rtt_orig : rtt_resp;
    // For the host stage, which strips it: whose leg this is (an RFB server may dial its
    // viewer), so that a controller's hidden leg is told from its controlled end's.
    if (data.client_dir == 1)
      r["_client_responder"] = true;
    const FlowTurnaround turnaround =
        ReadTurnaround(turns, spreads, handshake, client_leg.value_or(0.0), connect_wait,
                       /*early_answers=*/data.app == App::kSsh);
    r["turnaround_ms"] = Round3(turnaround.ms);
    if (client_leg) {
      const double hidden = HiddenLegMs(turnaround.ms, *client_leg);
      r["hidden_leg_rtt_ms"] = Round3(hidden);
      r["min_distance_km"] = std::round(FibreKm(hidden));
      if (turnaround.lower_bound)
        r["hidden_leg_lower_bound"] = true;
      if (turnaround.by_connect_wait)
        r["hidden_leg_by_connect_wait"] = true;
    }
  }
  if (methods.hidden_leg) {
    // Internal fields for the host stage, which strips them: when each turnaround's wait
    // began, and this flow's exchanges as another's possible fetches.
    if (!turns.empty()) {
      nlohmann::json waits = nlohmann::json::array();
      for (PacketTime t : data.turnarounds.waits_from())
        waits.push_back(absl::ToUnixMicros(t));
      r["_waits_us"] = std::move(waits);
    }
    // Only exchanges answered on a connection whose opening the sensor saw (plain HTTP's
    // went out as they came).
    if (data.handshake.originator_ttl() != 0 && !data.http) {
      nlohmann::json exchanges = nlohmann::json::array();
      for (const Exchange& x : data.exchanges.exchanges()) {
        if (x.answered == absl::InfinitePast())
          continue;
        exchanges.push_back(ExchangeJson(x));
      }
      if (!exchanges.empty())
        r["_exchanges_us"] = std::move(exchanges);
    }
  }
  if (methods.hidden_leg && data.turnarounds.refused() > 0) {
    r["turnarounds_refused"] = data.turnarounds.refused();
  }
  if (methods.hidden_leg && data.turnarounds.interrupted() > 0) {
    r["turnarounds_interrupted"] = data.turnarounds.interrupted();
  }

  if (data.app == App::kSsh && methods.keystrokes) {
    const KeystrokeSummary k = data.keys.Summarise();
    data.obfuscated = k.obfuscated;
    if (k.obfuscated)
      counters_.obfuscated_ssh.Increment();
    r["ssh_obfuscated"] = k.obfuscated;
    if (k.keys > 0) {
      nlohmann::json ks = {{"count", k.keys}};
      PutMs(ks, "echo_ms", k.echo_ms);
      PutMs(ks, "gap_median_ms", k.gap_median_ms);
      if (k.clumped_fraction)
        ks["clumped_fraction"] = Round3(*k.clumped_fraction);
      if (k.gap_cv)
        ks["gap_cv"] = Round3(*k.gap_cv);
      PutMs(ks, "output_to_input_p10_ms", k.output_to_input_p10_ms);
      r["keystrokes"] = ks;
    }
    // For the host stage's typing baseline only; it removes this before output.
    if (TypingTimed(data))
      PutReactions(data.keys, r);
  }
  // For the host stage's stepping-stone correlation only; it removes this before output.
  if (methods.stepping_stone && !data.stun && !quic)
    PutOnTimes(data.ons, data.packets, data.output_ons, data.SentBurstStarts(), data.updates,
               data.ack_rtt, data.Coalesces(), r);

  Event e;
  e.event_type = "relay";
  e.ts = ts;
  e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
  e.body = std::move(r);
  out.Emit(std::move(e));
  counters_.flows_measured.Increment();
  // The next ON times belong to the first window after the record.
  NextWindow(data, ts);
}

void RelayDetector::NextWindow(FlowData& data, PacketTime ts) {
  counters_.packet_times_dropped.Increment(data.packets.dropped());
  counters_.update_windows_full.Increment(data.updates.dropped() > 0 ? 1 : 0);
  data.NextWindow(ts, config_);
}

void RelayDetector::ReportCounters(std::vector<CounterSample>& out) const {
  const RelayCounters& c = counters_;
  out.push_back({"flows_measured",
                 "relay records emitted (one per timed TCP flow, or UDP flow with ICE checks).",
                 c.flows_measured.Read()});
  out.push_back({"on_windows",
                 "Windows of flows already reported (internal, one per report_after): input "
                 "ON times for stepping stones, SSH reactions for the typing baseline.",
                 c.on_windows.Read()});
  out.push_back({"http_exchanges",
                 "Plain-HTTP requests answered, told to the host stage as possible fetches "
                 "(internal; OCSP, AIA and CRL go over HTTP).",
                 c.http_exchanges.Read()});
  out.push_back({"handshakes_split", "Flows with both legs of the TCP handshake timed.",
                 c.handshakes_split.Read()});
  out.push_back({"handshakes_karn",
                 "Handshakes not timed because the SYN or SYN/ACK was retransmitted (Karn).",
                 c.handshakes_karn.Read()});
  out.push_back({"turnarounds", "Client turnaround samples kept.", c.turnarounds.Read()});
  out.push_back({"turnarounds_refused",
                 "Client turnarounds refused: loss in the flight or answer, or too slow.",
                 c.turnarounds_refused.Read()});
  out.push_back({"turnarounds_unseen_loss",
                 "Client turnarounds refused (of turnarounds_refused) because the answer "
                 "followed a packet of the client's that never reached the sensor (an IPv4 ID "
                 "skipped): it is late by a retransmission timeout.",
                 c.turnarounds_unseen_loss.Read()});
  out.push_back({"turnarounds_interrupted",
                 "Client turnarounds dropped: the server was still sending when the client "
                 "answered (its next data did not acknowledge the answer).",
                 c.turnarounds_interrupted.Read()});
  out.push_back({"ssh_kexinit_unasked",
                 "SSH client segments before its key exchange init that came behind the "
                 "server's KEXINIT: sent without waiting for it, so no answer to it.",
                 c.ssh_kexinit_unasked.Read()});
  out.push_back({"ssh_identification_unawaited",
                 "SSH client segments of its identification string before the server's "
                 "KEXINIT: sent on connecting, they answer nothing, and the server's banner "
                 "is left unanswered.",
                 c.ssh_identification_unawaited.Read()});
  out.push_back({"ack_rtt_samples", "Data to ACK round-trip samples taken.",
                 c.ack_rtt_samples.Read()});
  out.push_back({"stun_rtt_samples",
                 "ICE check round-trip samples taken in UDP flows (STUN Binding request -> "
                 "success response).",
                 c.stun_rtt_samples.Read()});
  out.push_back({"quic_openings",
                 "QUIC connections whose opening was timed (the client's first Initial, the "
                 "server's first packet and the client's answer to it).",
                 c.quic_openings.Read()});
  out.push_back({"obfuscated_ssh", "SSH sessions paced by keystroke timing obfuscation.",
                 c.obfuscated_ssh.Read()});
  out.push_back({"packet_times_dropped",
                 "SSH input packets not sampled for the packet-level stepping-stone test "
                 "because a window's sample was full (more than 12 slots of 10 s in one "
                 "report_after).",
                 c.packet_times_dropped.Read()});
  out.push_back({"update_windows_full",
                 "Windows of a remote desktop whose screen updates filled their bound (1024 in "
                 "one report_after), not used to match output shown on its screen.",
                 c.update_windows_full.Read()});
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(RelayConfig config, ParseRelayConfig(section));
  if (!config.enabled)
    return nullptr;
  return std::make_unique<RelayDetector>(config, context);
}

}  // namespace relaywatch::detectors::relay
