// Fuzz target for the relay detector's UDP timing (ICE checks paired with their answers,
// StunRtt; a QUIC connection's opening, QuicHandshake) and the host stage's controller
// round trip and routed relay built on them.
//
// The input is one UDP conversation between a laptop (10.0.0.5) and an outside peer, named a
// remote-control session at its start. Records (fuzz::ForEachRecord, 1-byte length): the
// control byte's bit 0 is the direction, bits 1-2 what the payload becomes (0 the bytes as
// given, or, when its first byte has the top bit set, a QUIC packet: see Quic below; 1 an ICE
// check, 2 a Binding success response, 3 an ICE check inside TURN ChannelData, each with the
// payload's first byte as its transaction id and the rest as attribute bytes after USERNAME and
// MESSAGE-INTEGRITY, so that both valid and broken messages are reached), bit 3 resend the previous
// message, bits 4-7 the time step before it (x 8 ms; 15 = 40 s, past the STUN look-out and
// report_after). Every event goes through the host stage and is serialised as the sinks do.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

#include "daemon/sinks/event_json.h"
#include "detectors/host/host_stage.h"
#include "detectors/relay/relay.h"
#include "tests/common/quic_wire.h"
#include "tests/common/stun_wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using relaywatch::IpAddress;
namespace fuzz = relaywatch::fuzz;
namespace relay = relaywatch::detectors::relay;
namespace detectors = relaywatch::detectors;
namespace quic_wire = relaywatch::detectors::quic_wire;
namespace stun_wire = relaywatch::detectors::stun_wire;

// The payload's first byte is the transaction id, the rest further attribute bytes.
std::string Stun(std::uint16_t type, fuzz::Bytes payload, bool ice) {
  const std::string_view extra =
      payload.size() > 1
          ? std::string_view(reinterpret_cast<const char*>(payload.data()) + 1, payload.size() - 1)
          : std::string_view();
  return stun_wire::Message(type, payload.empty() ? 0 : payload[0], ice, extra);
}

// A QUIC v1 packet from the payload: byte 0 is the first byte (long header if its top bit is
// set, its type in bits 4-5), byte 1 picks the connection IDs (bits 0-1 the destination's,
// 2-3 the source's, of three IDs and an empty one) and bit 4 pads the datagram to 1200 bytes
// (a client's Initial); the rest follows the Length field.
std::string Quic(fuzz::Bytes payload) {
  static const char* const kIds[] = {"client-1", "srv-id-9", "retry-id", ""};
  const std::uint8_t first = payload[0];
  const std::uint8_t ids = payload.size() > 1 ? payload[1] : 0;
  const std::string rest(
      reinterpret_cast<const char*>(payload.data()) + std::min<std::size_t>(2, payload.size()),
      payload.size() - std::min<std::size_t>(2, payload.size()));
  const std::string dcid = kIds[ids & 3];
  const std::string scid = kIds[(ids >> 2) & 3];
  if ((first & 0x80) == 0)
    return std::string(1, static_cast<char>(first | 0x40)) + dcid + rest;
  return quic_wire::LongPacket(first | 0x40, dcid, scid, rest, (ids & 0x10) ? 1200 : 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relay::RelayConfig config;
  config.report_after = absl::Seconds(60);
  detectors::EventBuffer events;
  relay::RelayDetector detector(config, detectors::DetectorContext{});
  relaywatch::host::HostStageConfig host_config;
  host_config.home_networks = {*relaywatch::Cidr::Parse("10.0.0.0/8")};
  host_config.relay.min_samples = 1;
  relaywatch::host::HostStage stage(host_config);
  fuzz::Conversation conversation(
      {
          .client_ip = *IpAddress::Parse("10.0.0.5"),
          .server_ip = *IpAddress::Parse("203.0.113.9"),
          .client_port = 50000,
          .server_port = 3478,
          .udp = true,
          .table = {.max_flows = 4},
      },
      detector, events);

  std::vector<std::string> sent(2);
  std::vector<relaywatch::Event> published;
  fuzz::ForEachRecord(fuzz::Bytes(data, size), 1, [&](std::uint8_t control, fuzz::Bytes payload) {
    const int from = control & 1;
    const int kind = (control >> 1) & 3;
    const int step = control >> 4;
    conversation.Advance(step == 15 ? absl::Seconds(40) : absl::Milliseconds(step * 8));
    std::string message;
    if (control & 8) {
      message = sent[from];
    } else if (kind == 0 && !payload.empty() && (payload[0] & 0x80)) {
      message = Quic(payload);
    } else if (kind == 0) {
      message.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
    } else {
      message = Stun(kind == 2 ? stun_wire::kBindingSuccess : stun_wire::kBindingRequest, payload,
                     kind != 2);
      if (kind == 3)
        message = stun_wire::InChannel(message, 0x4001);
    }
    sent[from] = message;
    conversation.Send(
        from, {.payload = fuzz::Bytes(reinterpret_cast<const std::uint8_t*>(sent[from].data()),
                                      sent[from].size())});
  });
  conversation.EndAll();
  for (relaywatch::Event& e : events.events()) {
    RW_FUZZ_CHECK(e.event_type == "relay");
    const nlohmann::json& r = e.body;
    const std::string app = r.value("app", "");
    RW_FUZZ_CHECK(app == "stun" || app == "quic");
    for (const char* key : {"rtt_originator_ms", "rtt_responder_ms"})
      RW_FUZZ_CHECK(!r.contains(key) || r[key].get<double>() >= 0);
    if (app == "quic") {
      // Its legs are its opening's, in the handshake object as a TCP flow's.
      RW_FUZZ_CHECK(r.contains("handshake") && !r.contains("stun"));
      RW_FUZZ_CHECK(r["handshake"].contains("originator_ms") ||
                    r["handshake"].contains("responder_ms"));
      stage.Process(e, published);
      continue;
    }
    RW_FUZZ_CHECK(r["stun"]["answered"].get<std::uint64_t>() <=
                  r["stun"]["checks"].get<std::uint64_t>());
    RW_FUZZ_CHECK(r["rtt_samples"][0].get<std::uint64_t>() +
                      r["rtt_samples"][1].get<std::uint64_t>() ==
                  r["stun"]["answered"].get<std::uint64_t>());
    // The flow named a remote-control session (as flow_shape would), so that the host
    // stage's controller round trip is reached: before its record, or after it (a session
    // named late, judged by the record kept for it).
    relaywatch::Event session;
    session.event_type = "remote_session";
    session.ts = e.ts;
    session.flow = e.flow;
    session.body = {{"app", "unknown_remote_control"},
                    {"controlled", "10.0.0.5"},
                    {"controller", "203.0.113.9"}};
    if (e.body.value("_open", false)) {
      stage.Process(e, published);
      stage.Process(session, published);
    } else {
      stage.Process(session, published);
      stage.Process(e, published);
    }
  }
  for (const relaywatch::Event& e : published)
    (void)relaywatch::sinks::EventToJson(e);
  return 0;
}
