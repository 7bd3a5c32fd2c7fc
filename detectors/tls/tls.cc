#include "detectors/tls/tls.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "capture/base/status_macros.h"
#include "detectors/common/ja4.h"
#include "detectors/common/quic.h"
#include "detectors/common/tcp_cursor.h"

namespace relaywatch::detectors::tls {
namespace {

using common::Bytes;
using common::TlsStreamEvent;
using flow::Direction;
using flow::FlowState;

enum class Transport : std::uint8_t { kUnknown, kTcp, kDtls, kQuic };

// A ClientHello waiting for the server's answer before its event is written.
struct PendingHello {
  PacketTime ts;
  int index = 0;
  Transport transport = Transport::kTcp;
  bool has_sni = false;
  std::string sni;
  bool has_alpn = false;
  std::vector<std::string> alpn;
  std::uint16_t offered_version = 0;
  common::Ja4 ja4;
  // The server's answer.
  bool server_hello = false;
  std::uint16_t version = 0;
  std::uint16_t cipher = 0;
  bool hello_retry_request = false;
  bool hello_verify_request = false;
  std::string server_alpn;
  std::optional<common::CertificateInfo> cert;
  bool ready = false;  // nothing more will be added: write the event

  std::size_t bytes() const {
    std::size_t n = sizeof(*this) + sni.capacity() + server_alpn.capacity() + ja4.ja4.capacity() +
                    ja4.ja4_r.capacity() + ja4.ja4_o.capacity() + ja4.ja4_ro.capacity() +
                    alpn.capacity() * sizeof(std::string);
    for (const std::string& a : alpn) {
      n += a.capacity();
    }
    if (cert) {
      n += cert->subject.capacity() + cert->issuer.capacity() + cert->not_before.capacity() +
           cert->not_after.capacity() + cert->sha256.capacity();
    }
    return n;
  }
};

// One direction of the flow.
struct Side {
  std::uint64_t payload_packets = 0;
  // TCP: sequence tracking and the record layer.
  common::TcpCursor cursor;
  bool broken = false;  // a gap after sync, or a record that is not TLS
  std::unique_ptr<common::HandshakeStream> tcp;
  // DTLS.
  std::unique_ptr<common::DtlsHandshakeReader> dtls;
  // QUIC: Initial keys, the CRYPTO stream and the messages in it.
  bool quic_keys_ready = false;
  common::QuicInitialKeys quic_keys;
  std::unique_ptr<common::QuicCryptoStream> crypto;
  std::unique_ptr<common::HandshakeMessageAssembler> quic_messages;

  std::size_t bytes() const {
    std::size_t n = 0;
    if (tcp) {
      n += tcp->buffered_bytes();
    }
    if (dtls) {
      n += dtls->buffered_bytes();
    }
    if (crypto) {
      n += crypto->buffered_bytes();
    }
    if (quic_messages) {
      n += quic_messages->buffered_bytes() + sizeof(*quic_messages);
    }
    return n;
  }
};

// TLS 1.3 (and DTLS 1.3) encrypt the certificate; nothing after the ServerHello is in clear.
bool CertificateEncrypted(std::uint16_t version) {
  return version == common::kTls13 || version == common::kDtls13;
}

common::Ja4Transport Ja4TransportOf(Transport t) {
  switch (t) {
    case Transport::kQuic:
      return common::Ja4Transport::kQuic;
    case Transport::kDtls:
      return common::Ja4Transport::kDtls;
    default:
      return common::Ja4Transport::kTcp;
  }
}

std::string_view TransportName(Transport t) {
  switch (t) {
    case Transport::kQuic:
      return "quic";
    case Transport::kDtls:
      return "dtls";
    default:
      return "tcp";
  }
}

std::string Hex4(std::uint16_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return {kDigits[v >> 12], kDigits[(v >> 8) & 0xf], kDigits[(v >> 4) & 0xf], kDigits[v & 0xf]};
}

Event MakeEvent(const PendingHello& h, const FlowState& flow, std::uint16_t seed) {
  Event e;
  e.event_type = "tls";
  e.ts = h.ts;
  e.flow = FlowRef::FromFlow(flow, seed);
  nlohmann::json& b = e.body;
  b["client_hello_index"] = h.index;
  b["transport"] = TransportName(h.transport);
  if (h.has_sni) {
    b["sni"] = h.sni;
  }
  if (h.has_alpn) {
    b["alpn"] = h.alpn;
  }
  const bool negotiated = h.server_hello && h.version != 0;
  b["version"] = common::TlsVersionName(negotiated ? h.version : h.offered_version);
  b["version_negotiated"] = negotiated;
  b["client_version"] = common::TlsVersionName(h.offered_version);
  b["ja4"] = h.ja4.ja4;
  if (!h.ja4.ja4_r.empty()) {
    b["ja4_r"] = h.ja4.ja4_r;
  }
  b["ja4_o"] = h.ja4.ja4_o;
  if (!h.ja4.ja4_ro.empty()) {
    b["ja4_ro"] = h.ja4.ja4_ro;
  }
  if (h.server_hello) {
    b["cipher"] = Hex4(h.cipher);
    if (!h.server_alpn.empty()) {
      b["server_alpn"] = h.server_alpn;
    }
  }
  if (h.hello_retry_request) {
    b["hello_retry_request"] = true;
  }
  if (h.hello_verify_request) {
    b["hello_verify_request"] = true;
  }
  if (h.cert) {
    b["subject"] = h.cert->subject;
    b["issuer"] = h.cert->issuer;
    b["self_signed"] = h.cert->self_signed;
    if (!h.cert->not_before.empty()) {
      b["not_before"] = h.cert->not_before;
    }
    if (!h.cert->not_after.empty()) {
      b["not_after"] = h.cert->not_after;
    }
    b["cert_sha256"] = h.cert->sha256;
  }
  return e;
}

}  // namespace

struct TlsDetector::FlowData : flow::DetectorFlowData {
  Transport transport = Transport::kUnknown;
  Side side[2];
  int client = -1;  // direction index of the ClientHello's sender
  int hellos_seen = 0;
  std::vector<PendingHello> pending;
  std::uint64_t packets_waiting = 0;  // payload packets since the last ClientHello
  bool finished = false;              // the server's clear-text answer is complete
  // QUIC: version and Destination Connection ID of the client's first Initial.
  std::uint32_t quic_version = 0;
  std::uint8_t quic_dcid[common::kMaxQuicConnectionIdBytes] = {};
  std::size_t quic_dcid_size = 0;

  std::size_t bytes() const {
    std::size_t n = sizeof(*this) + pending.capacity() * sizeof(PendingHello);
    for (const Side& s : side) {
      n += s.bytes();
    }
    for (const PendingHello& h : pending) {
      n += h.bytes() - sizeof(PendingHello);
    }
    return n;
  }
};

// Receives what the parsers found in direction `d` and updates the flow's hellos. Const so
// that absl::FunctionRef accepts it; the members it changes are behind references.
struct TlsDetector::Handler {
  TlsDetector& detector;
  FlowData& data;
  int d;
  PacketTime ts;

  void operator()(const TlsStreamEvent& event) const {
    TlsCounters& counters = detector.counters_;
    if (event.kind != TlsStreamEvent::Kind::kHandshake) {
      OnRecord();
      return;
    }
    const common::HandshakeMessage& message = *event.message;
    if (message.truncated && message.type != common::kHandshakeCertificate) {
      counters.oversized_messages.Increment();
    }
    switch (message.type) {
      case common::kHandshakeClientHello:
        OnClientHello(message);
        break;
      case common::kHandshakeServerHello:
        OnServerHello(message);
        break;
      case common::kHandshakeHelloVerifyRequest:
        if (PendingHello* h = Unanswered(); h != nullptr && d != data.client) {
          h->hello_verify_request = true;
          h->ready = true;
        }
        break;
      case common::kHandshakeCertificate:
        OnCertificate(message);
        break;
      case common::kHandshakeServerHelloDone:
        // No certificate came (anonymous or PSK suites): the answer is complete.
        if (PendingHello* h = Answered(); h != nullptr && d != data.client) {
          Finish(*h);
        }
        break;
      default:
        break;
    }
  }

  // The newest hello the server has not answered yet.
  PendingHello* Unanswered() const {
    if (!data.pending.empty() && !data.pending.back().server_hello && !data.pending.back().ready) {
      return &data.pending.back();
    }
    return nullptr;
  }
  // The newest hello whose ServerHello came but whose answer is not complete.
  PendingHello* Answered() const {
    if (!data.pending.empty() && data.pending.back().server_hello && !data.pending.back().ready) {
      return &data.pending.back();
    }
    return nullptr;
  }

  void Finish(PendingHello& h) const {
    h.ready = true;
    data.finished = true;
  }

  void OnClientHello(const common::HandshakeMessage& message) const {
    TlsCounters& counters = detector.counters_;
    if (data.client >= 0 && d != data.client) {
      return;  // the server does not send ClientHellos
    }
    data.client = d;
    const int index = data.hellos_seen++;
    data.packets_waiting = 0;
    if (static_cast<std::size_t>(index) >= kMaxHellosPerFlow) {
      // Real handshakes have at most two; a stream of hellos is not followed further.
      counters.hellos_dropped.Increment();
      data.finished = true;
      return;
    }
    if (message.truncated) {
      return;  // counted as oversized; a prefix cannot be fingerprinted
    }
    common::ClientHello hello;
    const common::TlsParseStatus status =
        common::ParseClientHello(message.body, data.transport == Transport::kDtls, hello);
    if (status != common::TlsParseStatus::kOk) {
      counters.parse_errors[static_cast<int>(status)].Increment();
      return;
    }
    counters.client_hellos.Increment();
    // An earlier hello still waiting gets no more answer: a new ClientHello supersedes it.
    for (PendingHello& h : data.pending) {
      h.ready = true;
    }
    PendingHello h;
    h.ts = ts;
    h.index = index;
    h.transport = data.transport;
    h.has_sni = hello.has_sni;
    h.sni = std::move(hello.sni);
    h.has_alpn = hello.has_alpn;
    h.alpn = std::move(hello.alpn);
    h.offered_version = hello.MaxOfferedVersion();
    h.ja4 = common::ComputeJa4(hello, Ja4TransportOf(data.transport));
    data.pending.push_back(std::move(h));
  }

  void OnServerHello(const common::HandshakeMessage& message) const {
    TlsCounters& counters = detector.counters_;
    PendingHello* h = Unanswered();
    if (h == nullptr || d == data.client || message.truncated) {
      return;
    }
    common::ServerHello hello;
    const common::TlsParseStatus status =
        common::ParseServerHello(message.body, data.transport == Transport::kDtls, hello);
    if (status != common::TlsParseStatus::kOk) {
      counters.parse_errors[static_cast<int>(status)].Increment();
      return;
    }
    h->server_hello = true;
    h->version = hello.version();
    h->cipher = hello.cipher_suite;
    h->server_alpn = std::move(hello.alpn);
    if (hello.hello_retry_request) {
      // RFC 8446 4.1.4: a second ClientHello follows and gets its own event.
      h->hello_retry_request = true;
      h->ready = true;
      return;
    }
    if (data.transport == Transport::kQuic || CertificateEncrypted(h->version)) {
      Finish(*h);
    }
  }

  void OnCertificate(const common::HandshakeMessage& message) const {
    TlsCounters& counters = detector.counters_;
    PendingHello* h = Answered();
    if (h == nullptr || d == data.client) {
      return;
    }
    common::CertificateInfo cert;
    // A truncated message still holds the first certificate unless that alone is too long.
    const common::TlsParseStatus status = common::ParseFirstCertificate(message.body, cert);
    if (status == common::TlsParseStatus::kOk) {
      h->cert = std::move(cert);
    } else {
      counters.parse_errors[static_cast<int>(status)].Increment();
    }
    Finish(*h);
  }

  void OnRecord() const {
    if (data.client < 0 || d == data.client || data.pending.empty()) {
      return;
    }
    // The server's clear-text flight is over (encryption started) or it refused (alert).
    PendingHello& h = data.pending.back();
    if (!h.ready) {
      Finish(h);
    }
  }
};

TlsDetector::TlsDetector(TlsConfig config, DetectorContext context)
    : config_(config), context_(context) {}

std::size_t TlsDetector::FlowStateBytes(const FlowState& flow) const {
  const auto& slot = flow.detector_data[context_.index];
  return slot ? static_cast<const FlowData&>(*slot).bytes() : 0;
}

void TlsDetector::EmitReady(const FlowState& flow, FlowData& data, bool all, EventBuffer& out) {
  // In order: a hello is written only after every earlier one.
  std::size_t n = 0;
  while (n < data.pending.size() && (all || data.pending[n].ready)) {
    out.Emit(MakeEvent(data.pending[n], flow, context_.community_id_seed));
    counters_.events.Increment();
    ++n;
  }
  data.pending.erase(data.pending.begin(), data.pending.begin() + static_cast<std::ptrdiff_t>(n));
}

Verdict TlsDetector::OnPacket(const decode::DecodedPacket& packet, FlowState& flow,
                              Direction direction, EventBuffer& out) {
  if (!packet.is_tcp() && !packet.is_udp()) {
    return Verdict::kDone;
  }
  if (packet.payload.empty()) {
    return Verdict::kContinue;
  }
  auto& slot = flow.detector_data[context_.index];
  const int d = flow::Index(direction);
  if (!slot) {
    // Nothing is allocated until a packet could start a handshake, so the many flows that
    // are not TLS cost a byte comparison per packet until they are given up.
    Transport transport = Transport::kUnknown;
    if (packet.is_tcp()) {
      transport = packet.payload[0] == common::kTlsHandshake ? Transport::kTcp : transport;
    } else if (common::LooksLikeDtlsHandshake(packet.payload)) {
      transport = Transport::kDtls;
    } else if (common::QuicLongHeader header; config_.quic &&
                                              common::ParseQuicLongHeader(packet.payload, header) &&
                                              header.initial) {
      transport = Transport::kQuic;
    }
    if (transport == Transport::kUnknown) {
      // flow.stats counts every packet, pure ACKs too: a slightly quicker give-up.
      if (flow.stats[d].packets > config_.inspect_packets) {
        counters_.not_tls.Increment();
        return Verdict::kDone;
      }
      return Verdict::kContinue;
    }
    slot = std::make_unique<FlowData>();
    static_cast<FlowData&>(*slot).transport = transport;
  }
  auto& data = static_cast<FlowData&>(*slot);
  Side& side = data.side[d];
  ++side.payload_packets;
  if (data.hellos_seen > 0) {
    ++data.packets_waiting;
  }
  const std::size_t cap = config_.max_client_hello_bytes;
  Handler handler{*this, data, d, packet.ts};

  if (data.transport == Transport::kTcp) {
    if (!side.tcp) {
      side.tcp = std::make_unique<common::HandshakeStream>(cap);
    }
    bool segment_start = false;
    bool gap = false;
    const Bytes bytes = side.cursor.Next(packet, segment_start, gap);
    if (gap && side.tcp->state() == common::HandshakeStream::State::kRecords && !side.broken) {
      side.broken = true;
      counters_.tcp_gaps.Increment();
    }
    if (!side.broken && !bytes.empty()) {
      side.tcp->Feed(bytes, segment_start, handler);
      side.broken = side.tcp->state() == common::HandshakeStream::State::kBroken;
    }
    if (packet.payload.size() < packet.payload_length &&
        side.tcp->state() == common::HandshakeStream::State::kRecords && !side.broken) {
      side.broken = true;  // the snaplen cut this segment: the record layer is lost
      counters_.tcp_gaps.Increment();
    }
  } else {
    if (data.transport == Transport::kDtls) {
      if (!side.dtls) {
        side.dtls = std::make_unique<common::DtlsHandshakeReader>(cap);
      }
      side.dtls->Feed(packet.payload, handler);
    } else if (data.transport == Transport::kQuic) {
      HandleQuic(data, d, packet.payload, handler);
    }
  }

  // Decide whether this flow needs more packets.
  if (data.hellos_seen == 0) {
    // A hello being assembled (tens of segments for a big one) is waited for; the size cap
    // bounds how long.
    const bool assembling = side.tcp && !side.broken && side.tcp->partial();
    const bool searching = (side.payload_packets <= config_.inspect_packets || assembling) &&
                           !(data.transport == Transport::kTcp && side.broken);
    if (!searching) {
      counters_.not_tls.Increment();
      slot.reset();
      return Verdict::kDone;
    }
    return Verdict::kContinue;
  }
  const int server = 1 - data.client;
  const bool server_gone = data.transport == Transport::kTcp && data.side[server].broken;
  const Side& server_side = data.side[server];
  const bool server_assembling =
      server_side.tcp && !server_side.broken && server_side.tcp->partial();
  const bool waited_enough =
      data.packets_waiting > 2 * config_.inspect_packets && !server_assembling;
  if (data.finished || server_gone || waited_enough) {
    EmitReady(flow, data, /*all=*/true, out);
    slot.reset();
    return Verdict::kDone;
  }
  EmitReady(flow, data, /*all=*/false, out);
  return Verdict::kContinue;
}

void TlsDetector::HandleQuic(FlowData& data, int d, Bytes datagram, const Handler& handler) {
  Side& side = data.side[d];
  const std::size_t cap = config_.max_client_hello_bytes;
  // RFC 9000 12.2: a datagram may hold several coalesced packets.
  while (!datagram.empty()) {
    common::QuicLongHeader header;
    if (!common::ParseQuicLongHeader(datagram, header)) {
      return;
    }
    const Bytes packet = datagram.first(header.packet_bytes);
    datagram = datagram.subspan(header.packet_bytes);
    if (!header.initial) {
      continue;
    }
    if (data.client < 0 && data.quic_dcid_size == 0) {
      // The client's first Initial: its DCID keys every Initial of the connection.
      data.client = d;
      data.quic_version = header.version;
      data.quic_dcid_size = header.dcid.size();
      std::copy(header.dcid.begin(), header.dcid.end(), data.quic_dcid);
    }
    if (data.quic_dcid_size == 0 && header.dcid.empty()) {
      continue;
    }
    const bool server = d != data.client;
    const Bytes dcid(data.quic_dcid, data.quic_dcid_size);
    if (!side.quic_keys_ready || header.version != data.quic_version) {
      side.quic_keys_ready =
          common::DeriveQuicInitialKeys(header.version, dcid, server, side.quic_keys);
    }
    if (!side.quic_keys_ready) {
      continue;
    }
    bool ok = common::DecryptQuicInitial(packet, header, side.quic_keys, scratch_);
    if (!ok && !server &&
        !std::equal(header.dcid.begin(), header.dcid.end(), dcid.begin(), dcid.end())) {
      // RFC 9001 5.2: after a Retry the client keys its Initials from the new DCID.
      // The server's Initials are then keyed from it too.
      common::QuicInitialKeys retry_keys;
      if (common::DeriveQuicInitialKeys(header.version, header.dcid, false, retry_keys) &&
          common::DecryptQuicInitial(packet, header, retry_keys, scratch_)) {
        ok = true;
        side.quic_keys = retry_keys;
        data.quic_dcid_size = header.dcid.size();
        std::copy(header.dcid.begin(), header.dcid.end(), data.quic_dcid);
        data.side[1 - d].quic_keys_ready = false;
      }
    }
    if (!ok) {
      counters_.quic_undecryptable.Increment();
      continue;
    }
    if (!side.crypto) {
      side.crypto = std::make_unique<common::QuicCryptoStream>(cap + 64);
      side.quic_messages = std::make_unique<common::HandshakeMessageAssembler>(cap);
    }
    common::ForEachQuicCryptoFrame(scratch_, [&](std::uint64_t offset, Bytes bytes) {
      side.crypto->Add(offset, bytes, [&](Bytes contiguous) {
        side.quic_messages->Add(contiguous, [&](const common::HandshakeMessage& message) {
          TlsStreamEvent event;
          event.kind = TlsStreamEvent::Kind::kHandshake;
          event.message = &message;
          handler(event);
        });
      });
    });
  }
}

void TlsDetector::OnFlowEnd(FlowState& flow, EventBuffer& out) {
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    return;
  }
  auto& data = static_cast<FlowData&>(*slot);
  if (data.hellos_seen == 0) {
    counters_.not_tls.Increment();
  }
  EmitReady(flow, data, /*all=*/true, out);
  slot.reset();
}

void TlsDetector::ReportCounters(std::vector<CounterSample>& out) const {
  const TlsCounters& c = counters_;
  out.push_back({"client_hellos", "ClientHellos parsed (TLS, DTLS and QUIC).",
                 c.client_hellos.Read()});
  out.push_back({"events", "tls events emitted (one per ClientHello).", c.events.Read()});
  out.push_back({"oversized_messages",
                 "Handshake messages longer than max_client_hello_bytes, not fingerprinted.",
                 c.oversized_messages.Read()});
  out.push_back({"hellos_dropped",
                 "ClientHellos past the fourth on one flow; the flow was then given up.",
                 c.hellos_dropped.Read()});
  out.push_back({"tcp_gaps", "Missing TCP segments that ended parsing of a direction.",
                 c.tcp_gaps.Read()});
  out.push_back({"quic_undecryptable", "QUIC Initial packets that failed authentication.",
                 c.quic_undecryptable.Read()});
  out.push_back({"not_tls", "Flows given up without a ClientHello.", c.not_tls.Read()});
  for (int s = 1; s < common::kTlsParseStatusCount; ++s) {  // 0 is kOk, never counted
    out.push_back({"parse_errors", "Handshake messages that failed to parse, by reason.",
                   c.parse_errors[s].Read(), "reason",
                   common::TlsParseStatusName(static_cast<common::TlsParseStatus>(s))});
  }
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(TlsConfig config, ParseTlsConfig(section));
  if (!config.enabled) {
    return nullptr;
  }
  return std::make_unique<TlsDetector>(config, context);
}

}  // namespace relaywatch::detectors::tls
