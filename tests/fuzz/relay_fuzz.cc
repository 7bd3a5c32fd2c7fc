// Fuzz target for the relay detector's TCP timing (sequence and acknowledgement arithmetic,
// handshake split, turnarounds, keystrokes, ON times) and the host stage's relay rules.
//
// The input is one TCP conversation. Byte 0: setup (bit 0 start with a handshake, bit 1
// inbound: the client is outside, bits 2-3 turnaround_samples). Then 6-byte records:
// control (bit 0 direction, bits 1-5 SYN ACK PSH FIN RST, bit 6 resend the previous
// sequence number, bit 7 jump the clock by seconds), time step (ms), payload length, the
// first payload byte (0x16 TLS, 'S' SSH, ...), and two bytes that perturb the ACK number.
// Every event goes through the host stage and is serialised as the sinks do.

#include "detectors/relay/relay.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/time.h"

#include "capture/flow/flow_table.h"
#include "daemon/sinks/event_json.h"
#include "detectors/host/host_stage.h"

namespace {

using relaywatch::IpAddress;
using relaywatch::PacketTime;
namespace decode = relaywatch::decode;
namespace flow = relaywatch::flow;
namespace relay = relaywatch::detectors::relay;
namespace detectors = relaywatch::detectors;

#define RW_FUZZ_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (false)

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
  flow::FlowTable table(flow::FlowTableConfig{}, [&](flow::FlowState& f, flow::EndReason) {
    detector.OnFlowEnd(f, events);
  });
  relaywatch::host::HostStageConfig host_config;
  host_config.home_networks = {*relaywatch::Cidr::Parse("10.0.0.0/8")};
  host_config.relay.min_samples = 1;
  host_config.relay.stepping_stone_min_ons = 2;
  relaywatch::host::HostStage stage(host_config);

  const bool inbound = (setup & 2) != 0;
  const IpAddress client = *IpAddress::Parse(inbound ? "203.0.113.9" : "10.0.0.5");
  const IpAddress server = *IpAddress::Parse(inbound ? "10.0.0.5" : "198.51.100.7");
  std::uint32_t seq[2] = {0xFFFFFF00u, 0x7FFFFFF0u};  // both wrap during long inputs
  std::uint32_t last_seq[2] = {seq[0], seq[1]};
  PacketTime now = absl::FromUnixSeconds(1700000000);
  std::string payload;
  std::vector<relaywatch::Event> published;

  auto send = [&](int dir, std::uint8_t flags, std::uint32_t len, std::uint8_t first,
                  std::uint32_t ack_perturb, bool resend) {
    decode::DecodedPacket p;
    p.ts = now;
    p.ip_version = 4;
    p.protocol = decode::kProtoTcp;
    p.src = dir == 0 ? client : server;
    p.dst = dir == 0 ? server : client;
    p.src_port = dir == 0 ? 40000 : 22;
    p.dst_port = dir == 0 ? 22 : 40000;
    p.tcp_flags = flags;
    p.seq = resend ? last_seq[dir] : seq[dir];
    p.ack = seq[1 - dir] - ack_perturb;
    payload.assign(len, static_cast<char>(first));
    if (len >= 4 && first == 'S')
      payload.replace(0, 4, "SSH-");
    if (len >= 3 && first == 0x16)
      payload[1] = 0x03;
    p.payload = {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()};
    p.payload_length = len;
    last_seq[dir] = p.seq;
    if (!resend)
      seq[dir] += len + ((flags & decode::kTcpSyn) ? 1 : 0);
    flow::Direction direction;
    flow::FlowState& f = table.Track(p, direction);
    detector.OnPacket(p, f, direction, events);
  };
  if (setup & 1) {
    send(0, decode::kTcpSyn, 0, 0, 0, false);
    now += absl::Milliseconds(10);
    send(1, decode::kTcpSyn | decode::kTcpAck, 0, 0, 0, false);
    now += absl::Microseconds(300);
    send(0, decode::kTcpAck, 0, 0, 0, false);
  }
  for (std::size_t i = 1; i + 6 <= size; i += 6) {
    const std::uint8_t control = data[i];
    now += (control & 0x80) ? absl::Seconds(data[i + 1]) : absl::Milliseconds(data[i + 1]);
    const std::uint8_t flags = static_cast<std::uint8_t>(
        ((control >> 1) & 1 ? decode::kTcpSyn : 0) | ((control >> 2) & 1 ? decode::kTcpAck : 0) |
        ((control >> 3) & 1 ? decode::kTcpPsh : 0) | ((control >> 4) & 1 ? decode::kTcpFin : 0) |
        ((control >> 5) & 1 ? decode::kTcpRst : 0));
    const std::uint32_t ack_perturb = static_cast<std::uint32_t>(data[i + 4]) << 8 | data[i + 5];
    send(control & 1, flags, data[i + 2], data[i + 3], ack_perturb, (control & 0x40) != 0);
  }
  table.EndAll(flow::EndReason::kShutdown);
  // One record per flow; a SYN after the end of a connection starts another flow.
  RW_FUZZ_CHECK(events.events().size() <= table.counters().created.Read());
  for (relaywatch::Event& e : events.events()) {
    const nlohmann::json& r = e.body;
    if (r.contains("hidden_leg_rtt_ms")) {
      RW_FUZZ_CHECK(r["hidden_leg_rtt_ms"].get<double>() >= 0);
      RW_FUZZ_CHECK(r["turnaround_samples_ms"].size() <= config.turnaround_samples);
    }
    stage.Process(std::move(e), published);
  }
  for (const relaywatch::Event& e : published) {
    const std::string line = relaywatch::sinks::EventToJson(e).dump();
    RW_FUZZ_CHECK(line.find("_on_times_us") == std::string::npos);
  }
  return 0;
}
