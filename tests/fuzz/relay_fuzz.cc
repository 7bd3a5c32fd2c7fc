// Fuzz target for the relay detector's TCP timing (sequence and acknowledgement arithmetic,
// handshake split, turnarounds, keystrokes, ON times) and the host stage's relay rules.
//
// The input is one TCP conversation. Byte 0: setup (bit 0 start with a handshake, bit 1
// inbound: the client is outside, bits 2-3 turnaround_samples, bit 4 plain HTTP, bit 5 TLS
// 1.3: a payload beginning 0x16 is a real ClientHello from the client and a real TLS 1.3
// ServerHello from the server, and one beginning 0x14-0x17 a TLS record, so that the
// record layer of Tls13FirstData is reached, and TlsInput's after RFB versions or RDP's X.224
// exchange (a 19-byte payload beginning 3, see below); bit 6 SSH: a
// payload beginning 'S' is a whole identification line and one beginning 0 an SSH packet header
// whose length reaches the fourth byte of the record past the segment, so that SshKexInitOrder's
// packet layer is reached; bit 7 proxy: a payload beginning 'C' is an HTTP CONNECT request from the
// client and the proxy's 200 from the server, cut to the payload length, so that the proxy setup
// reader is reached; RFB versions and viewer requests are always made, and a payload
// beginning 1 is an ICE check (from the client) or its answer, so that TURN over TCP is
// reached, see below). Then
// 6-byte records:
// control (bit 0 direction, bits 1-5 SYN ACK PSH FIN RST, bit 6 resend the previous
// sequence number, bit 7 jump the clock by seconds; bits 6 and 7 together: reordering,
// see below), time step (ms), payload length, the first payload byte (0x16 TLS, 'S' SSH,
// ...), and two bytes that perturb the ACK number. Reordering: with the last byte odd, as
// many bytes as the payload went by unseen before it (a hole); even, the payload goes 1-4
// payload lengths behind the side's next sequence number (into a hole, or over bytes seen).
// Every event goes through the host stage and is serialised as the sinks do.

#include "detectors/relay/relay.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include "capture/flow/flow_table.h"
#include "daemon/sinks/event_json.h"
#include "detectors/host/host_stage.h"
#include "detectors/relay/stun_rtt.h"
#include "tests/common/ssh_wire.h"
#include "tests/common/stun_wire.h"
#include "tests/common/tls_wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using relaywatch::IpAddress;
namespace decode = relaywatch::decode;
namespace flow = relaywatch::flow;
namespace fuzz = relaywatch::fuzz;
namespace relay = relaywatch::detectors::relay;
namespace detectors = relaywatch::detectors;
namespace ssh_wire = relaywatch::detectors::ssh_wire;
namespace stun_wire = relaywatch::detectors::stun_wire;
namespace tls_wire = relaywatch::detectors::tls_wire;

// A ClientHello offering TLS 1.3 and a ServerHello selecting it, whole records.
const std::string kClientHello = tls_wire::AsString(
    tls_wire::Record(22, tls_wire::Handshake(1, tls_wire::ClientHelloBody()), 0x0301));
const std::string kServerHello = tls_wire::AsString(
    tls_wire::Record(22, tls_wire::Handshake(2, tls_wire::ServerHelloBody(0x1301, 0x0304))));

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  const std::uint8_t setup = data[0];
  relay::RelayConfig config;
  config.turnaround_samples = 1 + ((setup >> 2) & 3) * 3;
  config.report_after = absl::Seconds(30);
  detectors::EventBuffer events;
  relay::RelayDetector detector(config, detectors::DetectorContext{});
  relaywatch::host::HostStageConfig host_config;
  host_config.home_networks = {*relaywatch::Cidr::Parse("10.0.0.0/8")};
  host_config.relay.min_samples = 1;
  host_config.relay.stepping_stone_min_ons = 2;
  // The smallest typing baseline and window, so that the fuzzer reaches its decisions.
  host_config.relay.typing_baseline_samples = 20;
  host_config.relay.typing_window_samples = 10;
  relaywatch::host::HostStage stage(host_config);

  const bool inbound = (setup & 2) != 0;
  fuzz::Conversation conversation(
      {
          .client_ip = *IpAddress::Parse(inbound ? "203.0.113.9" : "10.0.0.5"),
          .server_ip = *IpAddress::Parse(inbound ? "10.0.0.5" : "198.51.100.7"),
          .client_port = 40000,
          // Plain HTTP (bit 4): answered requests go out at once as possible fetches.
          .server_port = static_cast<std::uint16_t>((setup & 0x10) ? 80 : 22),
          .client_seq = 0xFFFFFF00u,  // both wrap during long inputs
          .server_seq = 0x7FFFFFF0u,
          // The relay detector reads timing and sequence numbers only; its seeds' packets
          // never had a wire length.
          .set_wire_length = false,
          // One tuple: a few flows at most, and a small table keeps the fuzzer fast.
          .table = {.max_flows = 4},
      },
      detector, events);
  std::string payload;
  std::vector<relaywatch::Event> published;

  if (setup & 1) {
    conversation.Handshake(absl::Milliseconds(10), absl::Microseconds(300));
  }
  for (std::size_t i = 1; i + 6 <= size; i += 6) {
    const std::uint8_t control = data[i];
    conversation.Advance((control & 0x80) ? absl::Seconds(data[i + 1])
                                          : absl::Milliseconds(data[i + 1]));
    const std::uint8_t flags = static_cast<std::uint8_t>(
        ((control >> 1) & 1 ? decode::kTcpSyn : 0) | ((control >> 2) & 1 ? decode::kTcpAck : 0) |
        ((control >> 3) & 1 ? decode::kTcpPsh : 0) | ((control >> 4) & 1 ? decode::kTcpFin : 0) |
        ((control >> 5) & 1 ? decode::kTcpRst : 0));
    const std::uint32_t len = data[i + 2];
    const std::uint8_t first = data[i + 3];
    payload.assign(len, static_cast<char>(first));
    if (len >= 4 && first == 'S')
      payload.replace(0, 4, "SSH-");
    if (len >= 3 && first == 0x16)
      payload[1] = 0x03;
    if (setup & 0x20) {
      if (first == 0x16) {
        payload = (control & 1) ? kServerHello : kClientHello;
      } else if (first >= 0x14 && first <= 0x17 && len >= 5) {
        payload[1] = payload[2] = 0x03;  // a record header whose length is the rest
        payload[3] = 0;
        payload[4] = static_cast<char>(len - 5);
      }
    }
    if ((setup & 0x80) && first == 'C') {
      static const std::string kConnect = "CONNECT www.example:443 HTTP/1.1\r\n\r\n";
      static const std::string kGranted = "HTTP/1.1 200 Connection established\r\n\r\n";
      payload = ((control & 1) ? kGranted : kConnect).substr(0, len);
    }
    // RFB: a 12-byte payload beginning 'R' is a version (whoever sends it first is the
    // server), and one beginning 3 a run of incremental update requests when its length
    // is a multiple of 10, so that the viewer's answers are reached.
    if (len == 12 && first == 'R') {
      payload = "RFB 003.008\n";
    } else if (first == 3 && len == 19) {
      // RDP: the client's X.224 Connection Request asking for TLS, the server's Confirm
      // choosing it, so that TlsInput's RDP answers are reached after the hellos.
      payload = (control & 1) ? std::string(
                                    "\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00"
                                    "\x02\x1f\x08\x00\x01\x00\x00\x00",
                                    19)
                              : std::string(
                                    "\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00"
                                    "\x01\x00\x08\x00\x03\x00\x00\x00",
                                    19);
    } else if (first == 3 && len >= 10) {
      for (std::size_t at = 1; at < payload.size(); at += 10)
        payload[at] = 1;
    }
    // TURN over TCP: a payload beginning 1 (and at least a STUN header long) is an ICE check
    // from the client or an answer, transaction id from the fourth byte, in padded
    // ChannelData when the fifth is odd; cut to the payload length when shorter. A client
    // whose first payload is a bare one is read as a TURN client.
    if (first == 1 && len >= 20) {
      const auto id = data[i + 4];
      std::string frame = (control & 1) ? stun_wire::IceAnswer(id) : stun_wire::IceCheck(id);
      if (data[i + 5] & 1) {
        frame = stun_wire::InChannel(frame);
        frame.append((4 - frame.size() % 4) % 4, '\0');
      }
      payload = frame.substr(0, len);
    }
    if ((setup & 0x40) && first == 'S') {
      payload = ssh_wire::kBanner;
    } else if ((setup & 0x40) && first == 0 && len >= 6) {
      // KEXINIT or a key exchange init, its length reaching past the segment.
      payload.replace(
          0, 6, ssh_wire::PacketHeader(len - 4 + data[i + 4], 4, (data[i + 5] & 1) ? 30 : 20));
    }
    const bool reordered = (control & 0xC0) == 0xC0;
    conversation.Send(
        control & 1,
        {.tcp_flags = flags,
         .payload = {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
         .lost_before = reordered && (data[i + 5] & 1) ? len : 0u,
         .resend = (control & 0x40) != 0 && !reordered,
         .behind = reordered && !(data[i + 5] & 1) ? len * (1u + data[i + 4] % 4) : 0u,
         .ack_lag = static_cast<std::uint32_t>(data[i + 4]) << 8 | data[i + 5]});
  }
  conversation.EndAll();
  // One record per flow (a SYN after the end of a connection starts another flow); after
  // it, only internal windows: ON times (at least stepping_stone_min_ons, of the input or of
  // an SSH flow's output), an SSH flow's packet sample (PacketSample::kMinPackets to
  // kMaxPacketTimes), a chaffing client's burst starts and/or reactions.
  std::size_t records = 0;
  for (const relaywatch::Event& e : events.events()) {
    if (e.body.contains("_reactions_ms")) {
      RW_FUZZ_CHECK(!e.body["_reactions_ms"].empty());
      for (const nlohmann::json& d : e.body["_reactions_ms"])
        RW_FUZZ_CHECK(d.get<double>() >= 100);  // a person, not the client's own answer
    }
    if (e.body.contains("_output_on_times_us")) {  // SSH only, and only when some
      RW_FUZZ_CHECK(!e.body["_output_on_times_us"].empty());
      RW_FUZZ_CHECK(e.event_type == relay::kOnWindowEvent ||
                    e.body.value("app", std::string()) == "ssh");
    }
    if (e.body.contains("_coalesced")) {  // an SSH server's side, said only when true
      RW_FUZZ_CHECK(e.body["_coalesced"] == true);
      RW_FUZZ_CHECK(e.event_type == relay::kOnWindowEvent ||
                    e.body.value("app", std::string()) == "ssh");
    }
    if (e.body.contains("_burst_starts_us")) {  // a chaffing SSH client's, only when some
      RW_FUZZ_CHECK(!e.body["_burst_starts_us"].empty());
      RW_FUZZ_CHECK(e.body["_burst_starts_us"].size() <= relay::RelayDetector::kMaxOnTimes);
      RW_FUZZ_CHECK(e.event_type == relay::kOnWindowEvent || e.body.value("ssh_obfuscated", false));
    }
    if (e.body.contains("_update_times_us")) {  // a remote desktop's screen, only when whole
      const nlohmann::json& u = e.body["_update_times_us"];
      RW_FUZZ_CHECK(!u.empty() && u.size() <= relay::RelayDetector::kMaxUpdateTimes);
      for (std::size_t i = 1; i < u.size(); ++i)  // each at least kUpdateGap after the last
        RW_FUZZ_CHECK(u[i].get<std::int64_t>() - u[i - 1].get<std::int64_t>() >=
                      absl::ToInt64Microseconds(relay::kUpdateGap));
      RW_FUZZ_CHECK(e.event_type == relay::kOnWindowEvent ||
                    e.body.value("app", std::string()) != "ssh");
    }
    if (e.body.contains("_packet_times_us")) {
      const std::size_t n = e.body["_packet_times_us"].size();
      RW_FUZZ_CHECK(n >= relay::PacketSample::kMinPackets);
      RW_FUZZ_CHECK(n <= relay::RelayDetector::kMaxPacketTimes);
    }
    if (e.event_type == relay::kOnWindowEvent) {
      RW_FUZZ_CHECK(e.body.contains("_on_times_us") || e.body.contains("_reactions_ms"));
      if (e.body.contains("_on_times_us")) {
        RW_FUZZ_CHECK(e.body["_on_times_us"].size() >= config.stepping_stone_min_ons ||
                      e.body.contains("_packet_times_us") ||
                      (e.body.contains("_output_on_times_us") &&
                       e.body["_output_on_times_us"].size() >=
                           relay::MinBurstStarts(config.stepping_stone_min_ons)) ||
                      (e.body.contains("_update_times_us") &&
                       e.body["_update_times_us"].size() >=
                           relay::MinBurstStarts(config.stepping_stone_min_ons)) ||
                      (e.body.contains("_burst_starts_us") &&
                       e.body["_burst_starts_us"].size() >=
                           relay::MinBurstStarts(config.stepping_stone_min_ons)));
      }
    } else if (e.event_type == relay::kExchangeEvent) {
      // One answered request: it started before (or when) it was answered.
      const nlohmann::json& x = e.body["_exchanges_us"];
      RW_FUZZ_CHECK(x.size() == 1 && x[0].size() == 3);
      RW_FUZZ_CHECK(x[0][0].get<std::int64_t>() <= x[0][1].get<std::int64_t>());
    } else {
      RW_FUZZ_CHECK(e.event_type == "relay");
      ++records;
    }
  }
  RW_FUZZ_CHECK(records <= conversation.table().counters().created.Read());
  for (relaywatch::Event& e : events.events()) {
    const nlohmann::json& r = e.body;
    if (r.contains("_rtt_p15_ms")) {
      // Each direction's 15th percentile: a round trip, only from 20 samples on (ICE checks,
      // clean samples each: from StunRtt::kQuantileAfter).
      RW_FUZZ_CHECK(r["_rtt_p15_ms"].size() == 2);
      const std::uint32_t least = r["app"] == "stun" ? relay::StunRtt::kQuantileAfter : 20;
      for (std::size_t d = 0; d < 2; ++d) {
        const nlohmann::json& q = r["_rtt_p15_ms"][d];
        RW_FUZZ_CHECK(q.is_null() ||
                      (q.get<double>() >= 0 && r["rtt_samples"][d].get<std::uint32_t>() >= least));
      }
    }
    if (r.contains("hidden_leg_rtt_ms")) {
      RW_FUZZ_CHECK(r["hidden_leg_rtt_ms"].get<double>() >= 0);
      RW_FUZZ_CHECK(r["turnaround_samples_ms"].size() <= config.turnaround_samples);
    }
    if (r.contains("connect_wait_ms"))
      RW_FUZZ_CHECK(r["connect_wait_ms"].get<double>() >= 0);
    if (r.contains("tunnel_wait_ms"))  // from the proxy's grant: only a proxied flow has one
      RW_FUZZ_CHECK(r.contains("proxy") && r["tunnel_wait_ms"].get<double>() >= 0);
    if (r.contains("hidden_leg_by_connect_wait")) {
      // The wait decided a flow of spread flights: no bound then, and no more than the wait.
      RW_FUZZ_CHECK(!r.contains("hidden_leg_lower_bound"));
      RW_FUZZ_CHECK(r["turnaround_ms"].get<double>() <= r["connect_wait_ms"].get<double>());
    }
    if (r.contains("handshake_turnaround_ms")) {
      // The TLS handshake's answer is the flow's first sample and bounds its reading.
      RW_FUZZ_CHECK(r["app"] == "tls");
      RW_FUZZ_CHECK(r["handshake_turnaround_ms"] == r["turnaround_samples_ms"][0]);
      RW_FUZZ_CHECK(r["turnaround_ms"].get<double>() <= r["handshake_turnaround_ms"].get<double>());
    }
    stage.Process(std::move(e), published);
  }
  for (const relaywatch::Event& e : published) {
    RW_FUZZ_CHECK(e.event_type != relay::kOnWindowEvent);  // consumed by the host stage
    RW_FUZZ_CHECK(e.event_type != relay::kExchangeEvent);
    const std::string line = relaywatch::sinks::EventToJson(e).dump();
    RW_FUZZ_CHECK(line.find("_on_times_us") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_update_times_us") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_coalesced") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_reactions_ms") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_waits_us") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_exchanges_us") == std::string::npos);
    RW_FUZZ_CHECK(line.find("_rtt_p15_ms") == std::string::npos);
    if (e.event_type == "typing") {
      const double p = e.body["p_value"].get<double>();
      RW_FUZZ_CHECK(p > 0 && p <= 1);
      const std::size_t n = e.body["window_samples"].get<std::size_t>();
      const std::size_t w = host_config.relay.typing_window_samples;
      RW_FUZZ_CHECK(n == w || n == 2 * w || n == 4 * w);
    }
  }
  return 0;
}
