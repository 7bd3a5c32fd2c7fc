// Fuzz target for the TLS/DTLS/QUIC handshake parsers, the reassemblers, JA4, and the tls
// detector that drives them.
//
// 1. Every parser in detectors/common/{tls,quic,ja4}.h sees the whole input (after the first
//    byte) and each packet payload below: ClientHello (TLS and DTLS), ServerHello, first
//    certificate, JA4 of every ClientHello that parses, the TLS record stream (fed whole and
//    in 7-byte pieces), the DTLS reader, the QUIC long header, Initial decryption with fixed
//    keys, CRYPTO frames and the CRYPTO stream.
// 2. The input is replayed as one conversation through a FlowTable and a TlsDetector, the
//    way daemon/worker.cc drives detectors, and every event is serialised as the sinks do.
//
// Layout: byte 0 = setup (bit 0 UDP, bits 1-2 max_client_hello_bytes, bit 3 QUIC off).
// Then records: a control byte (bit 0 direction, bit 1 skip ahead in sequence space, bit 2
// retransmit), a 2-byte big-endian length, and up to that many payload bytes.

#include "detectors/common/tls.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include "capture/flow/flow_table.h"
#include "daemon/sinks/event_json.h"
#include "detectors/common/ja4.h"
#include "detectors/common/quic.h"
#include "detectors/tls/tls.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace decode = relaywatch::decode;
namespace flow = relaywatch::flow;
namespace fuzz = relaywatch::fuzz;
namespace common = relaywatch::detectors::common;
namespace tls = relaywatch::detectors::tls;
namespace detectors = relaywatch::detectors;

bool Printable(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

bool LowerHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

void CheckJa4(const common::ClientHello& hello, common::Ja4Transport transport) {
  const common::Ja4 ja4 = common::ComputeJa4(hello, transport);
  // a (10) _ b (12) _ c (12)
  RW_FUZZ_CHECK(ja4.ja4.size() == 36 && ja4.ja4_o.size() == 36);
  RW_FUZZ_CHECK(ja4.ja4[0] == static_cast<char>(transport));
  RW_FUZZ_CHECK(ja4.ja4[10] == '_' && ja4.ja4[23] == '_');
  RW_FUZZ_CHECK(LowerHex(ja4.ja4.substr(11, 12)) && LowerHex(ja4.ja4.substr(24, 12)));
  RW_FUZZ_CHECK(ja4.ja4.substr(0, 10) == ja4.ja4_o.substr(0, 10));
  RW_FUZZ_CHECK(Printable(ja4.ja4.substr(0, 10)));
  if (!ja4.ja4_r.empty()) {
    RW_FUZZ_CHECK(ja4.ja4_r.substr(0, 11) == ja4.ja4.substr(0, 11));
  }
  RW_FUZZ_CHECK(Printable(hello.sni) && hello.sni.size() <= common::kMaxTlsNameBytes);
  RW_FUZZ_CHECK(hello.alpn.size() <= common::kMaxAlpnValues);
  for (const std::string& a : hello.alpn) {
    RW_FUZZ_CHECK(Printable(a) && a.size() <= common::kMaxAlpnValueBytes);
  }
}

void ParseMessage(std::uint8_t type, common::Bytes body, bool dtls) {
  if (type == common::kHandshakeClientHello) {
    common::ClientHello hello;
    if (common::ParseClientHello(body, dtls, hello) == common::TlsParseStatus::kOk) {
      CheckJa4(hello, dtls ? common::Ja4Transport::kDtls : common::Ja4Transport::kTcp);
    }
  } else if (type == common::kHandshakeServerHello) {
    common::ServerHello hello;
    common::ParseServerHello(body, dtls, hello);
    RW_FUZZ_CHECK(Printable(hello.alpn));
  } else if (type == common::kHandshakeCertificate) {
    common::CertificateInfo cert;
    if (common::ParseFirstCertificate(body, cert) == common::TlsParseStatus::kOk) {
      RW_FUZZ_CHECK(Printable(cert.subject) && Printable(cert.issuer));
      RW_FUZZ_CHECK(cert.subject.size() <= common::kMaxDistinguishedNameBytes);
      RW_FUZZ_CHECK(cert.sha256.size() == 64);
    }
  }
}

void RunParsers(common::Bytes bytes) {
  for (bool dtls : {false, true}) {
    for (std::uint8_t type : {common::kHandshakeClientHello, common::kHandshakeServerHello,
                              common::kHandshakeCertificate}) {
      ParseMessage(type, bytes, dtls);
    }
  }
  const auto on_event = [](const common::TlsStreamEvent& e) {
    if (e.kind == common::TlsStreamEvent::Kind::kHandshake) {
      RW_FUZZ_CHECK(e.message != nullptr);
      RW_FUZZ_CHECK(e.message->body.size() <= 1024);
      RW_FUZZ_CHECK(e.message->truncated == (e.message->length > e.message->body.size()));
      ParseMessage(e.message->type, e.message->body, false);
    }
  };
  common::HandshakeStream whole(1024);
  whole.Feed(bytes, true, on_event);
  common::HandshakeStream pieces(1024);
  for (std::size_t i = 0; i < bytes.size(); i += 7) {
    pieces.Feed(bytes.subspan(i, std::min<std::size_t>(7, bytes.size() - i)), i % 14 == 0,
                on_event);
  }
  common::DtlsHandshakeReader dtls(1024);
  dtls.Feed(bytes, on_event);
  dtls.Feed(bytes, on_event);

  common::QuicLongHeader header;
  if (common::ParseQuicLongHeader(bytes, header)) {
    RW_FUZZ_CHECK(header.packet_bytes <= bytes.size());
    RW_FUZZ_CHECK(header.dcid.size() <= common::kMaxQuicConnectionIdBytes);
    common::QuicInitialKeys keys;
    std::vector<std::uint8_t> plaintext;
    if (common::DeriveQuicInitialKeys(header.version, header.dcid, false, keys)) {
      common::DecryptQuicInitial(bytes, header, keys, plaintext);
    }
  }
  common::QuicCryptoStream stream(2048);
  common::HandshakeMessageAssembler messages(1024);
  std::uint64_t delivered = 0;
  // An ACK frame's Largest Acknowledged, as the relay detector reads a QUIC answer's.
  (void)common::QuicLargestAcknowledged(bytes);
  common::ForEachQuicCryptoFrame(bytes, [&](std::uint64_t offset, common::Bytes data) {
    stream.Add(offset, data, [&](common::Bytes contiguous) {
      delivered += contiguous.size();
      messages.Add(contiguous,
                   [](const common::HandshakeMessage& m) { ParseMessage(m.type, m.body, false); });
    });
  });
  RW_FUZZ_CHECK(delivered == stream.delivered() && delivered <= 2048);
}

constexpr std::uint64_t kCaps[] = {1024, 4096, 16384, 65536};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t setup = data[0];
  const common::Bytes rest(data + 1, size - 1);
  RunParsers(rest);

  const bool udp = (setup & 0x01) != 0;
  tls::TlsConfig config;
  config.max_client_hello_bytes = kCaps[(setup >> 1) & 0x03];
  config.inspect_packets = 8;
  config.quic = (setup & 0x08) == 0;
  detectors::DetectorContext context;
  tls::TlsDetector detector(config, context);
  detectors::EventBuffer events;

  fuzz::Conversation::Options options{
      .server_port = 443,
      .udp = udp,
      .step_after_send = absl::Milliseconds(10),
      .after_packet =
          [&detector](const flow::FlowState& f) {
            RW_FUZZ_CHECK(detector.FlowStateBytes(f) <= tls::TlsDetector::kMaxFlowStateBytes);
          },
  };
  options.table.max_flows = 4;
  fuzz::Conversation conversation(std::move(options), detector, events);

  fuzz::ForEachRecord(rest, 2, [&](std::uint8_t control, common::Bytes payload) {
    conversation.Send(control & 0x01, {.tcp_flags = decode::kTcpAck | decode::kTcpPsh,
                                       .payload = payload,
                                       .lost_before = (control & 0x02) != 0 ? 1000U : 0U,
                                       .retransmit = (control & 0x04) != 0});
  });
  conversation.EndAll();

  std::map<std::uint64_t, int> next_index;
  for (const relaywatch::Event& e : events.events()) {
    RW_FUZZ_CHECK(e.event_type == "tls");
    RW_FUZZ_CHECK(e.flow.has_value());
    // Events of a flow come in ClientHello order, at most kMaxHellosPerFlow of them.
    const int index = e.body.value("client_hello_index", -1);
    RW_FUZZ_CHECK(index >= next_index[e.flow->flow_id]);
    next_index[e.flow->flow_id] = index + 1;
    RW_FUZZ_CHECK(e.body.value("ja4", "").size() == 36);
    const std::string line = relaywatch::sinks::EventToJson(e).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    RW_FUZZ_CHECK(!line.empty() && line.front() == '{');
  }
  return 0;
}
