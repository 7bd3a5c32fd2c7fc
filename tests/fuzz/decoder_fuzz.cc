// Fuzz target for the packet decoder and the flow table behind it.
//
// Input: byte 0 picks the link type (index into kLinkTypes), the rest is one captured frame.
// What decodes is tracked in a small FlowTable, in both directions and across an idle
// timeout, so every decoded shape also passes through Track, expiry, eviction and EndAll.
//
// Besides crashes and sanitizer reports, these contracts abort the run:
// - a frame that does not decode counts exactly one reason; a decoded one counts none
//   beyond kTcpBadOption;
// - a decoded packet is IPv4 or IPv6 and its payload lies inside the frame;
// - every flow the table creates reaches the end callback exactly once.

#include "capture/decode/decoder.h"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>

#include "absl/time/time.h"

#include "capture/flow/flow_table.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using relaywatch::PacketTime;
namespace decode = relaywatch::decode;
namespace flow = relaywatch::flow;

constexpr int kLinkTypes[] = {
    decode::kDltEthernet,  decode::kDltNull,      decode::kDltLoop,        decode::kDltRaw,
    decode::kDltLinuxSll,  decode::kDltLinuxSll2, decode::kDltLinktypeRaw, decode::kDltRawOpenBsd,
    decode::kDltIpv4,      decode::kDltIpv6,      decode::kDltPpp,         decode::kDltPppSerial,
    decode::kDltPppEther,  decode::kDltCiscoHdlc, decode::kDltPpi,         decode::kDltNflog,
    decode::kDltIeee80211, decode::kDltRadiotap,
};

std::uint64_t ReasonsCounted(const decode::DecodeCounters& c) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < decode::kDecodeReasonCount; ++i) {
    const auto reason = static_cast<decode::DecodeReason>(i);
    if (reason != decode::DecodeReason::kTcpBadOption) {
      sum += c.Get(reason);
    }
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const int dlt = kLinkTypes[data[0] % std::size(kLinkTypes)];
  const std::span<const std::uint8_t> frame(data + 1, size - 1);
  const PacketTime t0 = absl::FromUnixSeconds(1700000000);

  decode::DecodedPacket packet;
  decode::DecodeCounters counters;
  const bool decoded = decode::DecodeFrame(dlt, frame, static_cast<std::uint32_t>(frame.size()), t0,
                                           packet, counters);
  if (!decoded) {
    RW_FUZZ_CHECK(ReasonsCounted(counters) == 1);
    RW_FUZZ_CHECK(counters.decoded.Read() == 0);
    return 0;
  }
  RW_FUZZ_CHECK(ReasonsCounted(counters) == 0);
  RW_FUZZ_CHECK(counters.decoded.Read() == 1);
  RW_FUZZ_CHECK(packet.ip_version == 4 || packet.ip_version == 6);
  RW_FUZZ_CHECK(packet.src.family() == packet.ip_version);
  RW_FUZZ_CHECK(packet.dst.family() == packet.ip_version);
  RW_FUZZ_CHECK((packet.tunnel_depth > 0) == (counters.tunnelled.Read() == 1));
  if (!packet.payload.empty()) {
    RW_FUZZ_CHECK(packet.payload.data() >= frame.data());
    RW_FUZZ_CHECK(packet.payload.data() + packet.payload.size() <= frame.data() + frame.size());
  }
  RW_FUZZ_CHECK(packet.tcp_options.layout_size <= decode::TcpOptions::kMaxLayout);

  flow::FlowTableConfig config;
  config.max_flows = 2;
  config.udp_idle_timeout = absl::Seconds(30);
  config.tcp_idle_timeout = absl::Seconds(60);
  config.closed_timeout = absl::Seconds(5);
  std::uint64_t ended = 0;
  flow::FlowTable table(config, [&ended](flow::FlowState&, flow::EndReason) { ++ended; });

  flow::Direction direction;
  flow::FlowState& first = table.Track(packet, direction);
  RW_FUZZ_CHECK(first.id < (std::uint64_t{1} << 53));
  RW_FUZZ_CHECK(direction == flow::Direction::kToResponder ||
                direction == flow::Direction::kToOriginator);

  // The same packet from the other side must land in the same flow, unless it is a fresh
  // SYN on a closed flow (port reuse), which ends `first`.
  const bool reuses = packet.is_tcp() && packet.has(decode::kTcpSyn) &&
                      !packet.has(decode::kTcpAck) && first.closed();
  decode::DecodedPacket reply = packet;
  std::swap(reply.src, reply.dst);
  std::swap(reply.src_port, reply.dst_port);
  reply.ts = t0 + absl::Milliseconds(1);
  flow::FlowState& second = table.Track(reply, direction);
  if (!reuses) {
    RW_FUZZ_CHECK(&first == &second);
    RW_FUZZ_CHECK(table.size() == 1);
  }

  // A third flow beyond capacity, then a long quiet period, then shutdown.
  decode::DecodedPacket other = packet;
  other.src_port = static_cast<std::uint16_t>(packet.src_port ^ 0x5555);
  other.ts = t0 + absl::Seconds(2);
  table.Track(other, direction);
  decode::DecodedPacket third = other;
  third.dst_port = static_cast<std::uint16_t>(packet.dst_port ^ 0xaaaa);
  table.Track(third, direction);
  RW_FUZZ_CHECK(table.size() <= config.max_flows);
  table.Advance(t0 + absl::Hours(1));
  RW_FUZZ_CHECK(table.size() == 0);
  table.EndAll(flow::EndReason::kShutdown);
  RW_FUZZ_CHECK(ended == table.counters().created.Read());
  return 0;
}
