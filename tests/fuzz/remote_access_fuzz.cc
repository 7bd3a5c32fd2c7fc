// Fuzz target for the remote-access protocol parsers and the detector that buffers and
// reassembles their input.
//
// 1. Every parser in detectors/remote_access/protocols.h and detectors/common/proxy.h sees
//    the whole input (after the first byte) and each packet payload below.
// 2. The input is replayed as one conversation through a FlowTable and a
//    RemoteAccessDetector, the way daemon/worker.cc drives detectors, and every event is
//    serialised as the sinks do.
//
// Layout: byte 0 = setup (bit 0 UDP, bits 1-2 and 6 server port, bits 3-4 inspect_bytes,
// bit 5 start with a handshake). Then records: a control byte (bit 0 direction,
// bits 1-3 TCP flags, bit 4 skip ahead in sequence space, bit 5 retransmit), a length byte,
// and up to that many payload bytes.

#include "detectors/remote_access/remote_access.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

#include "capture/base/config_reader.h"
#include "capture/flow/flow_table.h"
#include "daemon/sinks/event_json.h"
#include "detectors/common/proxy.h"
#include "detectors/remote_access/config.h"
#include "detectors/remote_access/protocols.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace decode = relaywatch::decode;
namespace flow = relaywatch::flow;
namespace fuzz = relaywatch::fuzz;
namespace ra = relaywatch::detectors::remote_access;
namespace detectors = relaywatch::detectors;

bool Printable(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

void RunParsers(ra::Bytes bytes) {
  bool incomplete = true;
  if (std::optional<ra::SshBanner> b = ra::ParseSshBanner(bytes, &incomplete)) {
    RW_FUZZ_CHECK(!incomplete);
    RW_FUZZ_CHECK(!b->proto_version.empty() && !b->software.empty());
    RW_FUZZ_CHECK(Printable(b->proto_version) && Printable(b->software) && Printable(b->comments));
  }
  std::size_t preamble = bytes.size() + 1;
  if (!ra::ParseSshBanner(bytes, nullptr, &preamble)) {
    // What a caller may drop: whole lines, never past the bytes.
    RW_FUZZ_CHECK(preamble <= bytes.size());
    RW_FUZZ_CHECK(preamble == 0 || bytes[preamble - 1] == '\n');
  }
  if (auto request = ra::ParseRdpConnectionRequest(bytes)) {
    RW_FUZZ_CHECK(Printable(request->cookie));
    RW_FUZZ_CHECK(!ra::RdpProtocolNames(request->requested_protocols).empty());
  }
  if (auto confirm = ra::ParseRdpConnectionConfirm(bytes)) {
    RW_FUZZ_CHECK(!ra::RdpProtocolNames(confirm->selected_protocol).empty());
  }
  if (auto rfb = ra::ParseRfbVersion(bytes)) {
    RW_FUZZ_CHECK(bytes.size() == 12);
    RW_FUZZ_CHECK(rfb->major > 0 && rfb->major <= 999 && rfb->minor >= 0 && rfb->minor <= 999);
  }
  if (auto rfb = ra::ParseRfbClientMessages(bytes)) {
    // Whole messages; a request among them is 10 bytes.
    RW_FUZZ_CHECK(!bytes.empty());
    RW_FUZZ_CHECK(!rfb->update_request || bytes.size() >= 10);
  }
  if (auto syn = ra::ParseRdpUdpSyn(bytes)) {
    RW_FUZZ_CHECK(syn->upstream_mtu >= 1132 && syn->upstream_mtu <= 1232);
    RW_FUZZ_CHECK(syn->downstream_mtu >= 1132 && syn->downstream_mtu <= 1232);
  }
  if (auto datagram = ra::ParseRdpUdpDatagram(bytes)) {
    RW_FUZZ_CHECK((datagram->flags & 0x0004) != 0 && (datagram->flags & 0x0001) == 0);
  }
  RW_FUZZ_CHECK(ra::TeamViewerTcpFrames(bytes) >= 0);
  ra::IsTeamViewerUdp(bytes);
  ra::ParseNxGreeting(bytes);
  const int nx_counter = ra::NxUdpCounter(bytes);
  RW_FUZZ_CHECK(nx_counter >= -1 && nx_counter <= 0xffff);
  ra::ParseRadmin(bytes);
  RW_FUZZ_CHECK(!(ra::IsIcaGreeting(bytes) && ra::IsCgpGreeting(bytes)));
  incomplete = true;
  if (auto request = relaywatch::detectors::ParseProxyRequest(bytes, &incomplete)) {
    // A setup is never empty, never past the bytes, and names a port.
    RW_FUZZ_CHECK(!incomplete && request->length > 0 && request->length <= bytes.size());
    RW_FUZZ_CHECK(request->target_port != 0 && !request->target.empty());
    RW_FUZZ_CHECK(Printable(request->target));
  }
  for (auto protocol : {relaywatch::detectors::ProxyProtocol::kSocks4,
                        relaywatch::detectors::ProxyProtocol::kSocks5,
                        relaywatch::detectors::ProxyProtocol::kHttpConnect}) {
    if (auto reply = relaywatch::detectors::ParseProxyReply(protocol, bytes, &incomplete)) {
      RW_FUZZ_CHECK(!incomplete && reply->length > 0 && reply->length <= bytes.size());
    }
  }
}

// Registered ports matter only as hints for which side is the server.
constexpr std::uint16_t kServerPorts[] = {22, 3389, 5900, 443, 5938, 4000, 4899, 1494};
constexpr std::uint64_t kInspectBytes[] = {64, 1024, 65536, 200};

// The detector's configuration as the factory builds it (built-in signatures included),
// parsed once per inspect_bytes choice: parsing per input would dominate the run time.
const ra::RemoteAccessConfig& ConfigFor(int index) {
  static const auto* configs = [] {
    auto* out = new std::vector<ra::RemoteAccessConfig>;
    for (std::uint64_t bytes : kInspectBytes) {
      const std::string yaml = "inspect_bytes: " + std::to_string(bytes) + "\ninspect_packets: 8\n";
      absl::StatusOr<relaywatch::config::Section> section =
          relaywatch::config::LoadString(yaml, "remote_access_fuzz");
      RW_FUZZ_CHECK(section.ok());
      absl::StatusOr<ra::RemoteAccessConfig> config = ra::ParseRemoteAccessConfig(*section);
      RW_FUZZ_CHECK(config.ok());
      out->push_back(*config);
    }
    return out;
  }();
  return (*configs)[index];
}

constexpr std::uint8_t kFlags[] = {decode::kTcpAck,
                                   decode::kTcpAck | decode::kTcpPsh,
                                   decode::kTcpSyn,
                                   decode::kTcpSyn | decode::kTcpAck,
                                   decode::kTcpFin | decode::kTcpAck,
                                   decode::kTcpRst,
                                   decode::kTcpAck,
                                   0};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t setup = data[0];
  const ra::Bytes rest(data + 1, size - 1);
  RunParsers(rest);

  const bool udp = (setup & 0x01) != 0;
  const std::uint16_t server_port = kServerPorts[((setup >> 1) & 0x03) | ((setup >> 4) & 0x04)];
  const ra::RemoteAccessConfig& config = ConfigFor((setup >> 3) & 0x03);
  detectors::DetectorContext context;
  context.index = 0;
  context.community_id_seed = 0;
  ra::RemoteAccessDetector detector(config, context);
  detectors::EventBuffer events;

  fuzz::Conversation::Options options{
      .server_port = server_port,
      .udp = udp,
      // The seeds were made with SYNs that take no sequence number; keep their packets.
      .syn_takes_seq = false,
      .step_after_send = absl::Milliseconds(10),
      .before_track = [](const decode::DecodedPacket& p) { RunParsers(p.payload); },
  };
  options.table.max_flows = 4;
  fuzz::Conversation conversation(std::move(options), detector, events);

  if ((setup & 0x20) != 0 && !udp) {
    conversation.Handshake();
  }
  fuzz::ForEachRecord(rest, 1, [&](std::uint8_t control, ra::Bytes payload) {
    conversation.Send(control & 0x01, {.tcp_flags = kFlags[(control >> 1) & 0x07],
                                       .payload = payload,
                                       .lost_before = (control & 0x10) != 0 ? 1000U : 0U,
                                       .retransmit = (control & 0x20) != 0});
  });
  conversation.EndAll();

  std::map<std::uint64_t, int> per_flow;
  for (const relaywatch::Event& e : events.events()) {
    RW_FUZZ_CHECK(!e.event_type.empty());
    RW_FUZZ_CHECK(e.flow.has_value());
    if (e.event_type == "remote_session") {
      RW_FUZZ_CHECK(++per_flow[e.flow->flow_id] == 1);  // one session event per flow
      RW_FUZZ_CHECK(!e.body.value("app", "").empty());
    }
    const std::string line = relaywatch::sinks::EventToJson(e).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    RW_FUZZ_CHECK(!line.empty() && line.front() == '{');
  }
  return 0;
}
