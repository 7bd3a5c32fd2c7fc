// Fuzz target for the DNS message parser, the DNS-over-TCP framer and the dns detector.
//
// 1. The input after byte 0 is parsed as one DNS message (twice, with small and large
//    storage limits, which must agree on the status), and a name is read at every offset.
// 2. The same bytes go through a DnsTcpFramer in chunks whose size byte 0 picks.
// 3. The same bytes are replayed as one conversation through a FlowTable and a DnsDetector,
//    as daemon/worker.cc drives detectors, and every event is serialised as the sinks do.
//
// Layout: byte 0 = setup (bit 0 TCP, bit 1 mDNS port 5353 instead of 53, bits 2-4 framer
// chunk size, bit 5 TCP: start with a handshake / UDP: client port 5353, bits 6-7 config). Then
// records: a control byte (bit 0 direction, bit 4 lose 1000 bytes before this segment, bit 5
// retransmit, bits 6-7 time step), a length byte, and up to that many payload bytes.
//
// Seeds: tests/fuzz/corpus/dns_fuzz/ (written by hand from the unit tests' messages).

#include "detectors/common/dns.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "absl/time/time.h"

#include "capture/flow/flow_table.h"
#include "daemon/sinks/event_json.h"
#include "detectors/dns/dns.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using relaywatch::IpAddress;
namespace common = relaywatch::detectors::common;
namespace decode = relaywatch::decode;
namespace detectors = relaywatch::detectors;
namespace dns = relaywatch::detectors::dns;
namespace flow = relaywatch::flow;
namespace fuzz = relaywatch::fuzz;

void CheckMessage(const common::DnsMessage& m, const common::DnsParseLimits& limits) {
  RW_FUZZ_CHECK(m.questions.size() <= limits.max_questions);
  RW_FUZZ_CHECK(m.answers.size() <= limits.max_answers);
  RW_FUZZ_CHECK(m.authority.size() <= limits.max_authority);
  RW_FUZZ_CHECK(m.additional.size() <= limits.max_additional);
  for (const auto& q : m.questions) {
    RW_FUZZ_CHECK(!q.name.empty() && q.name.size() <= common::kMaxDnsTextBytes);
  }
  for (const auto* section : {&m.answers, &m.authority, &m.additional}) {
    for (const common::DnsRecord& r : *section) {
      RW_FUZZ_CHECK(!r.name.empty() && r.name.size() <= common::kMaxDnsTextBytes);
      RW_FUZZ_CHECK(r.data.size() <= common::kMaxDnsTextBytes + 64);
      for (char c : r.name) {
        RW_FUZZ_CHECK(c >= 0x20 && c <= 0x7e && !(c >= 'A' && c <= 'Z'));
      }
      RW_FUZZ_CHECK(!common::DnsTypeName(r.type).empty());
    }
  }
}

void RunParser(common::Bytes bytes) {
  common::DnsMessage small;
  common::DnsMessage large;
  common::DnsParseLimits small_limits;
  small_limits.max_questions = 1;
  small_limits.max_answers = 1;
  common::DnsParseLimits large_limits;
  large_limits.max_questions = 64;
  large_limits.max_answers = 64;
  large_limits.max_authority = 64;
  large_limits.max_additional = 64;
  const common::DnsParseStatus a = common::ParseDnsMessage(bytes, small_limits, small);
  const common::DnsParseStatus b = common::ParseDnsMessage(bytes, large_limits, large);
  RW_FUZZ_CHECK(a == b);  // storage limits never change what is valid
  RW_FUZZ_CHECK(!common::DnsParseStatusName(a).empty());
  if (a == common::DnsParseStatus::kOk) {
    CheckMessage(small, small_limits);
    CheckMessage(large, large_limits);
    RW_FUZZ_CHECK(small.header.id == large.header.id);
    RW_FUZZ_CHECK(large.trailing_bytes <= bytes.size());
    (void)common::IsPlausibleDns(large, true);
    (void)common::IsPlausibleDns(large, false);
    (void)common::DnsRcodeName(large.header.rcode);
  }
  std::string text;
  for (std::size_t offset = 0; offset < std::min<std::size_t>(bytes.size(), 512); ++offset) {
    std::size_t next = 0;
    if (common::ReadDnsName(bytes, offset, &text, &next) == common::DnsParseStatus::kOk) {
      RW_FUZZ_CHECK(next > offset && next <= bytes.size());
      RW_FUZZ_CHECK(!text.empty() && text.size() <= common::kMaxDnsTextBytes);
    }
  }
}

void RunFramer(common::Bytes bytes, std::size_t chunk) {
  constexpr std::size_t kMax = 512;
  common::DnsTcpFramer framer(kMax);
  std::size_t delivered = 0;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    framer.Feed(bytes.subspan(at, std::min(chunk, bytes.size() - at)), [&](common::Bytes m) {
      RW_FUZZ_CHECK(m.size() <= kMax);
      delivered += m.size() + 2;
    });
    RW_FUZZ_CHECK(framer.buffered_bytes() <= kMax + 2);
    RW_FUZZ_CHECK(framer.buffer_capacity() <= kMax + 2);
  }
  RW_FUZZ_CHECK(delivered <= bytes.size());
}

const dns::DnsConfig& ConfigFor(int variant) {
  static const dns::DnsConfig kConfigs[4] = {
      dns::DnsConfig{},
      dns::DnsConfig{true, 1, 1, 512, absl::Seconds(1), true},
      dns::DnsConfig{true, 256, 1024, 65535, absl::Minutes(10), true},
      dns::DnsConfig{true, 4, 4, 1024, absl::Seconds(5), false},
  };
  return kConfigs[variant];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t setup = data[0];
  const common::Bytes rest(data + 1, size - 1);
  RunParser(rest);
  RunFramer(rest, std::size_t{1} << ((setup >> 2) & 0x07));

  const bool tcp = (setup & 0x01) != 0;
  detectors::DetectorContext context;
  dns::DnsDetector detector(ConfigFor((setup >> 6) & 0x03), context);
  detectors::EventBuffer events;
  // UDP with bit 5: the client also uses 5353 (multicast-style mDNS, queries not tracked).
  const bool client_5353 = !tcp && (setup & 0x20) != 0;
  fuzz::Conversation::Options options{
      .server_ip = *IpAddress::Parse("198.51.100.53"),
      .client_port = static_cast<std::uint16_t>(client_5353 ? 5353 : 40000),
      .server_port = static_cast<std::uint16_t>((setup & 0x02) != 0 ? 5353 : 53),
      .udp = !tcp,
      .set_ack = false,
      .after_packet =
          [&detector](const flow::FlowState& f) {
            RW_FUZZ_CHECK(detector.FlowStateBytes(f) <= dns::DnsDetector::kMaxFlowStateBytes);
          },
  };
  options.table.max_flows = 4;
  fuzz::Conversation conversation(std::move(options), detector, events);

  if ((setup & 0x20) != 0 && tcp) {
    conversation.Handshake();
  }
  constexpr absl::Duration kSteps[4] = {absl::Milliseconds(1), absl::Milliseconds(40),
                                        absl::Seconds(2), absl::Seconds(45)};
  fuzz::ForEachRecord(rest, 1, [&](std::uint8_t control, common::Bytes payload) {
    conversation.Advance(kSteps[(control >> 6) & 0x03]);
    conversation.Send(control & 0x01, {.tcp_flags = decode::kTcpAck | decode::kTcpPsh,
                                       .payload = payload,
                                       .lost_before = (control & 0x10) != 0 ? 1000U : 0U,
                                       .retransmit = (control & 0x20) != 0});
  });
  conversation.EndAll();

  for (const relaywatch::Event& e : events.events()) {
    RW_FUZZ_CHECK(e.event_type == "dns");
    RW_FUZZ_CHECK(e.flow.has_value());
    RW_FUZZ_CHECK(e.body.contains("rrname") && e.body.contains("answers"));
    if (e.body.contains("latency_ms")) {
      RW_FUZZ_CHECK(e.body["latency_ms"].get<double>() >= 0);
    }
    const std::string line = relaywatch::sinks::EventToJson(e).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    RW_FUZZ_CHECK(!line.empty() && line.front() == '{');
  }
  return 0;
}
