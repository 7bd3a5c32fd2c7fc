#include "detectors/dns/dns.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

#include "capture/base/status_macros.h"
#include "detectors/common/signatures.h"

namespace relaywatch::detectors::dns {
namespace {

using common::Bytes;
using common::DnsParseStatus;

// A flow whose first this-many messages all fail to parse is not DNS: give it up.
constexpr int kGiveUpAfterFailures = 4;

struct PendingQuery {
  PacketTime ts;
  std::uint64_t name_hash = 0;
  std::uint16_t id = 0;
  std::uint16_t qtype = 0;
};
static_assert(sizeof(PendingQuery) <= DnsDetector::kPendingQueryBytes);

// One direction of a DNS-over-TCP connection.
struct TcpSide {
  explicit TcpSide(std::size_t max_message_bytes) : framer(max_message_bytes) {}
  common::DnsTcpFramer framer;
  std::uint32_t next_seq = 0;
  bool seq_known = false;
};

std::uint64_t NameHash(const std::string& name) {
  return absl::HashOf(name);
}

std::string Timestamp(PacketTime t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace

struct DnsDetector::FlowData : flow::DetectorFlowData {
  std::vector<PendingQuery> pending;  // at most config.max_outstanding_queries
  std::optional<TcpSide> tcp[2];
  int parsed = 0;  // messages that parsed (saturates)
  int failed = 0;  // messages that did not
};

DnsDetector::DnsDetector(DnsConfig config, DetectorContext context)
    : config_(config), context_(context) {
  static_assert(sizeof(FlowData) <= 512);  // the fixed part of kMaxFlowStateBytes
  limits_.max_questions = 1;
  limits_.max_answers = config_.max_answers;
}

void DnsDetector::ExpireQueries(FlowData& data, PacketTime now) {
  const PacketTime cutoff = now - config_.query_timeout;
  const auto old = std::remove_if(data.pending.begin(), data.pending.end(),
                                  [&](const PendingQuery& q) { return q.ts < cutoff; });
  counters_.unanswered.Increment(static_cast<std::uint64_t>(data.pending.end() - old));
  data.pending.erase(old, data.pending.end());
}

void DnsDetector::HandleMessage(Bytes bytes, const decode::DecodedPacket& packet,
                                const flow::FlowState& flow, FlowData& data, bool mdns,
                                EventBuffer& out) {
  const DnsParseStatus status = common::ParseDnsMessage(bytes, limits_, message_);
  if (status != DnsParseStatus::kOk) {
    counters_.parse_errors[static_cast<int>(status)].Increment();
    data.failed = std::min(data.failed + 1, 1 << 20);
    return;
  }
  if (!common::IsPlausibleDns(message_, mdns)) {
    counters_.not_dns.Increment();
    data.failed = std::min(data.failed + 1, 1 << 20);
    return;
  }
  data.parsed = std::min(data.parsed + 1, 1 << 20);
  const common::DnsHeader& h = message_.header;
  const common::DnsQuestion* question =
      message_.questions.empty() ? nullptr : &message_.questions.front();

  if (!h.qr) {
    counters_.queries.Increment();
    // Multicast mDNS queries are answered on another flow (to the group); only legacy
    // unicast queries (RFC 6762 6.7, from a port other than 5353) come back on this one.
    if (question == nullptr || (mdns && packet.src_port == common::kMdnsPort)) {
      return;
    }
    if (data.pending.size() >= config_.max_outstanding_queries) {
      const auto oldest = std::min_element(
          data.pending.begin(), data.pending.end(),
          [](const PendingQuery& a, const PendingQuery& b) { return a.ts < b.ts; });
      data.pending.erase(oldest);
      counters_.unanswered.Increment();
      counters_.evicted.Increment();
    }
    if (data.pending.size() == data.pending.capacity()) {
      // Grow by hand so the capacity never passes the configured cap.
      data.pending.reserve(
          std::min<std::size_t>(config_.max_outstanding_queries, 2 * data.pending.size() + 2));
    }
    data.pending.push_back(PendingQuery{packet.ts, NameHash(question->name), h.id, question->type});
    return;
  }

  counters_.responses.Increment();
  std::optional<PendingQuery> query;
  const std::uint64_t hash = question != nullptr ? NameHash(question->name) : 0;
  for (auto it = data.pending.begin(); it != data.pending.end(); ++it) {
    // A response without a question section (FORMERR, some NOTIMP) matches on the id alone.
    if (it->id == h.id &&
        (question == nullptr || (it->name_hash == hash && it->qtype == question->type))) {
      query = *it;
      data.pending.erase(it);
      counters_.matched.Increment();
      break;
    }
  }

  if (!context_.dns_records_written && !NamesATool()) {
    return;  // no output writes it and the host stage would find nothing in it
  }
  Event e;
  e.event_type = "dns";
  e.ts = packet.ts;
  e.flow = FlowRef::FromFlow(flow, context_.community_id_seed);
  nlohmann::json& b = e.body;
  b["id"] = h.id;
  b["flags"] = absl::StrFormat("%04x", h.flags);
  b["qr"] = true;
  b["aa"] = h.aa;
  b["tc"] = h.tc;
  b["rd"] = h.rd;
  b["ra"] = h.ra;
  if (h.opcode != 0) {
    b["opcode"] = h.opcode;
  }
  // mDNS responses usually carry no question: name the first answer instead.
  if (question != nullptr) {
    b["rrname"] = question->name;
    b["rrtype"] = common::DnsTypeName(question->type);
  } else if (!message_.answers.empty()) {
    b["rrname"] = message_.answers.front().name;
    b["rrtype"] = common::DnsTypeName(message_.answers.front().type);
  } else {
    b["rrname"] = "";
    b["rrtype"] = "";
  }
  b["rcode"] = common::DnsRcodeName(h.rcode);
  nlohmann::json answers = nlohmann::json::array();
  for (const common::DnsRecord& r : message_.answers) {
    nlohmann::json a = {
        {"rrname", r.name}, {"rrtype", common::DnsTypeName(r.type)}, {"ttl", r.ttl}};
    if (r.has_data) {
      a["rdata"] = r.data;
    }
    answers.push_back(std::move(a));
  }
  b["answers"] = std::move(answers);
  if (message_.answers.size() < h.ancount) {
    b["answers_total"] = h.ancount;
  }
  if (query) {
    b["query_ts"] = Timestamp(query->ts);
    // Milliseconds with microsecond resolution, the unit people read DNS latency in.
    b["latency_ms"] = absl::ToDoubleMicroseconds(packet.ts - query->ts) / 1000.0;
  }
  if (mdns) {
    b["mdns"] = true;
  }
  out.Emit(std::move(e));
}

bool DnsDetector::NamesATool() const {
  if (context_.signatures == nullptr) {
    return false;
  }
  const auto names = [this](const std::string& name) {
    return context_.signatures->MatchDns(name) != nullptr;
  };
  return absl::c_any_of(message_.questions,
                        [&](const common::DnsQuestion& q) { return names(q.name); }) ||
         absl::c_any_of(message_.answers,
                        [&](const common::DnsRecord& r) { return names(r.name); });
}

Verdict DnsDetector::OnPacket(const decode::DecodedPacket& packet, flow::FlowState& flow,
                              flow::Direction direction, EventBuffer& out) {
  if (!packet.is_udp() && !packet.is_tcp()) {
    return Verdict::kDone;
  }
  const auto on = [&](std::uint16_t port) {
    return packet.src_port == port || packet.dst_port == port;
  };
  const bool dns_port = on(common::kDnsPort);
  const bool mdns = !dns_port && config_.mdns && packet.is_udp() && on(common::kMdnsPort);
  if (!dns_port && !mdns) {
    return Verdict::kDone;
  }
  if (packet.payload.empty()) {
    // A TCP SYN fixes where the stream starts; nothing else to do without payload.
    if (packet.is_tcp() && packet.has(decode::kTcpSyn)) {
      auto& slot = flow.detector_data[context_.index];
      if (!slot) {
        slot = std::make_unique<FlowData>();
      }
      auto& data = static_cast<FlowData&>(*slot);
      std::optional<TcpSide>& side = data.tcp[flow::Index(direction)];
      side.emplace(config_.max_tcp_message_bytes);
      side->next_seq = packet.seq + 1;
      side->seq_known = true;
    }
    return Verdict::kContinue;
  }
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    slot = std::make_unique<FlowData>();
  }
  auto& data = static_cast<FlowData&>(*slot);
  if (!data.pending.empty()) {
    ExpireQueries(data, packet.ts);
  }

  if (packet.is_udp()) {
    if (packet.payload.size() < packet.payload_length) {
      counters_.truncated_capture.Increment();
      return Verdict::kContinue;
    }
    HandleMessage(packet.payload, packet, flow, data, mdns, out);
  } else {
    std::optional<TcpSide>& side = data.tcp[flow::Index(direction)];
    if (!side) {
      side.emplace(config_.max_tcp_message_bytes);
    }
    Bytes payload = packet.payload;
    std::uint32_t seq = packet.seq + (packet.has(decode::kTcpSyn) ? 1 : 0);
    if (!side->seq_known) {
      side->seq_known = true;  // capture started mid-connection: assume a message starts here
      side->next_seq = seq;
    }
    // Serial-number arithmetic (RFC 1982) so wrap-around is handled.
    const auto offset = static_cast<std::int32_t>(side->next_seq - seq);
    if (offset < 0) {
      // Bytes are missing. DNS clients and servers write each message in one go, so a new
      // segment most likely starts a message: resynchronise there.
      counters_.tcp_gaps.Increment();
      side->framer.Reset();
      side->next_seq = seq;
    } else if (static_cast<std::size_t>(offset) >= payload.size()) {
      return Verdict::kContinue;  // retransmission of bytes already framed
    } else {
      payload = payload.subspan(static_cast<std::size_t>(offset));
    }
    side->next_seq += static_cast<std::uint32_t>(payload.size());
    const std::uint64_t oversized_before = side->framer.oversized();
    side->framer.Feed(
        payload, [&](Bytes message) { HandleMessage(message, packet, flow, data, mdns, out); });
    counters_.tcp_oversized.Increment(side->framer.oversized() - oversized_before);
  }

  if (data.parsed == 0 && data.failed >= kGiveUpAfterFailures) {
    slot.reset();  // not DNS, whatever the port says
    return Verdict::kDone;
  }
  return Verdict::kContinue;
}

void DnsDetector::OnFlowEnd(flow::FlowState& flow, EventBuffer& /*out*/) {
  auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    return;
  }
  counters_.unanswered.Increment(static_cast<FlowData&>(*slot).pending.size());
  slot.reset();
}

std::size_t DnsDetector::FlowStateBytes(const flow::FlowState& flow) const {
  const auto& slot = flow.detector_data[context_.index];
  if (!slot) {
    return 0;
  }
  const auto& data = static_cast<const FlowData&>(*slot);
  std::size_t bytes = sizeof(FlowData) + data.pending.capacity() * sizeof(PendingQuery);
  for (const std::optional<TcpSide>& side : data.tcp) {
    if (side) {
      bytes += side->framer.buffer_capacity();
    }
  }
  return bytes;
}

void DnsDetector::ReportCounters(std::vector<CounterSample>& out) const {
  const DnsCounters& c = counters_;
  out.push_back({"queries", "DNS queries parsed.", c.queries.Read()});
  out.push_back({"responses", "DNS responses parsed (one dns event each).", c.responses.Read()});
  out.push_back({"matched", "Responses whose query was seen on the same flow (latency known).",
                 c.matched.Read()});
  out.push_back({"unanswered", "Queries timed out, evicted or still open at the flow's end.",
                 c.unanswered.Read()});
  out.push_back({"evicted",
                 "Unanswered queries forgotten because the flow's table was full "
                 "(max_outstanding_queries).",
                 c.evicted.Read()});
  out.push_back({"not_dns", "Messages on DNS ports that parsed but were implausible.",
                 c.not_dns.Read()});
  out.push_back({"truncated_capture", "UDP payloads cut by the capture snaplen, not parsed.",
                 c.truncated_capture.Read()});
  out.push_back({"tcp_oversized", "TCP messages longer than max_tcp_message_bytes, skipped.",
                 c.tcp_oversized.Read()});
  out.push_back({"tcp_gaps", "Missing TCP segments (the message framer resynchronised).",
                 c.tcp_gaps.Read()});
  for (int s = 1; s < common::kDnsParseStatusCount; ++s) {  // 0 is kOk, never counted
    out.push_back({"parse_errors", "DNS messages that failed to parse, by reason.",
                   c.parse_errors[s].Read(), "reason",
                   common::DnsParseStatusName(static_cast<DnsParseStatus>(s))});
  }
}

absl::StatusOr<std::unique_ptr<Detector>> Create(const config::Section& section,
                                                 const DetectorContext& context) {
  RW_ASSIGN_OR_RETURN(DnsConfig config, ParseDnsConfig(section));
  if (!config.enabled) {
    return nullptr;
  }
  return std::make_unique<DnsDetector>(config, context);
}

}  // namespace relaywatch::detectors::dns
