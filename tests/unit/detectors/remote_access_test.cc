#include "detectors/remote_access/remote_access.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"

namespace relaywatch::detectors::remote_access {
namespace {

using ::testing::HasSubstr;

constexpr std::uint8_t kSyn = decode::kTcpSyn;
constexpr std::uint8_t kAck = decode::kTcpAck;
constexpr std::uint8_t kPsh = decode::kTcpPsh;
constexpr std::uint8_t kRst = decode::kTcpRst;

// Drives one TCP connection through a flow table and the detector, as a worker does.
class Connection {
 public:
  Connection(std::string client, std::uint16_t client_port, std::string server,
             std::uint16_t server_port, RemoteAccessConfig config = {})
      : client_{*IpAddress::Parse(client), client_port},
        server_{*IpAddress::Parse(server), server_port},
        detector_(config, DetectorContext{}),
        table_(flow::FlowTableConfig{},
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }) {}

  void Handshake() {
    Send(true, kSyn, "");
    Send(false, kSyn | kAck, "");
    Send(true, kAck, "");
  }
  // Sends `payload` from the client (true) or server (false) with the next sequence number.
  Verdict Send(bool from_client, std::uint8_t flags, const std::string& payload,
               std::int64_t seq_offset = 0) {
    decode::DecodedPacket p;
    p.ts = now_ += absl::Milliseconds(5);
    p.ip_version = 4;
    p.protocol = decode::kProtoTcp;
    const flow::Endpoint& src = from_client ? client_ : server_;
    const flow::Endpoint& dst = from_client ? server_ : client_;
    p.src = src.ip;
    p.dst = dst.ip;
    p.src_port = src.port;
    p.dst_port = dst.port;
    p.tcp_flags = flags;
    std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
    p.seq = static_cast<std::uint32_t>(seq + seq_offset);
    payloads_.push_back(payload);
    const std::string& stored = payloads_.back();
    p.payload = {reinterpret_cast<const std::uint8_t*>(stored.data()), stored.size()};
    p.payload_length = static_cast<std::uint32_t>(stored.size());
    p.wire_length = 54 + p.payload_length;
    if (seq_offset == 0) {
      seq += static_cast<std::uint32_t>(stored.size());
    }
    flow::Direction direction;
    flow::FlowState& flow = table_.Track(p, direction);
    if (done_) {
      return Verdict::kDone;
    }
    const Verdict v = detector_.OnPacket(p, flow, direction, events_);
    done_ = v == Verdict::kDone;
    return v;
  }
  void End() { table_.EndAll(flow::EndReason::kShutdown); }
  std::vector<Event>& events() { return events_.events(); }
  bool done() const { return done_; }

 private:
  flow::Endpoint client_, server_;
  RemoteAccessDetector detector_;
  EventBuffer events_;
  flow::FlowTable table_;
  std::vector<std::string> payloads_ = std::vector<std::string>();
  PacketTime now_ = absl::FromUnixSeconds(1700000000);
  std::uint32_t client_seq_ = 1000, server_seq_ = 5000;
  bool done_ = false;
};

std::string RdpRequest() {
  std::string cookie = "Cookie: mstshash=alice\r\n";
  std::string s = std::string("\x03\x00\x00\x00\x00\xe0\x00\x00\x00\x00\x00", 11) + cookie +
                  std::string("\x01\x00\x08\x00\x03\x00\x00\x00", 8);
  s[3] = static_cast<char>(s.size());
  s[4] = static_cast<char>(s.size() - 5);
  return s;
}
const std::string kRdpConfirm(
    "\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00", 19);

TEST(RemoteAccess, RdpRequestAndConfirmNameTheServerAsControlled) {
  Connection c("203.0.113.9", 50000, "10.1.1.5", 3389);
  c.Handshake();
  EXPECT_EQ(c.Send(true, kAck | kPsh, RdpRequest()), Verdict::kContinue);
  EXPECT_EQ(c.Send(false, kAck | kPsh, kRdpConfirm), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  const Event& e = c.events()[0];
  EXPECT_EQ(e.event_type, "remote_session");
  EXPECT_EQ(e.body["app"], "rdp");
  EXPECT_EQ(e.body["controlled"], "10.1.1.5");
  EXPECT_EQ(e.body["controller"], "203.0.113.9");
  EXPECT_EQ(e.body["rdp"]["cookie"], "alice");
  EXPECT_EQ(e.body["rdp"]["requested_protocols"], "ssl,hybrid");
  EXPECT_EQ(e.body["rdp"]["selected_protocol"], "hybrid");
  EXPECT_EQ(e.flow->src_port, 50000);
  EXPECT_THAT(e.flow->community_id, HasSubstr("1:"));
}

TEST(RemoteAccess, RdpProbeAnsweredByResetIsNotASession) {
  Connection c("203.0.113.9", 50000, "10.1.1.5", 3389);
  c.Handshake();
  c.Send(true, kAck | kPsh, RdpRequest());
  c.Send(false, kRst, "");
  c.End();
  EXPECT_TRUE(c.events().empty());
}

TEST(RemoteAccess, ReverseVncNamesTheFirstBannerSenderAsControlled) {
  // A reverse connection: the VNC server dials the viewer (port 5500) and still speaks first.
  Connection c("10.1.1.5", 40000, "198.51.100.7", 5500);
  c.Handshake();
  c.Send(true, kAck | kPsh, "RFB 003.008\n");
  EXPECT_EQ(c.Send(false, kAck | kPsh, "RFB 003.008\n"), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["app"], "vnc");
  EXPECT_EQ(c.events()[0].body["controlled"], "10.1.1.5");
  EXPECT_EQ(c.events()[0].body["controlled_side"], "src");
  EXPECT_EQ(c.events()[0].body["vnc"]["server_version"], "3.8");
}

TEST(RemoteAccess, SshOnAnyPortWithBannerSplitAcrossSegments) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 443);
  c.Handshake();
  c.Send(false, kAck | kPsh, "SSH-2.0-Open");
  c.Send(false, kAck | kPsh, "SSH_9.2p1\r\n");
  // Identified, and still followed (counters only) for the ssh record at flow end.
  EXPECT_EQ(c.Send(true, kAck | kPsh, "SSH-2.0-PuTTY_Release_0.78\r\n"), Verdict::kContinue);
  ASSERT_EQ(c.events().size(), 1u);
  const nlohmann::json& b = c.events()[0].body;
  EXPECT_EQ(b["app"], "ssh");
  EXPECT_EQ(b["ssh"]["server"]["software_version"], "OpenSSH_9.2p1");
  EXPECT_EQ(b["ssh"]["client"]["software_version"], "PuTTY_Release_0.78");
  EXPECT_EQ(b["controlled"], "198.51.100.7");
}

TEST(RemoteAccess, RetransmittedAndOverlappingSegmentsDoNotCorruptTheStream) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22);
  c.Handshake();
  c.Send(false, kAck | kPsh, "SSH-2.0-");
  c.Send(false, kAck | kPsh, "SSH-2.0-", -8);  // retransmission of the same bytes
  c.Send(false, kAck | kPsh, "srv\r\n");
  c.Send(true, kAck | kPsh, "SSH-2.0-cli\r\n");
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["ssh"]["server"]["software_version"], "srv");
}

TEST(RemoteAccess, ServerBannerAloneIsReportedAtFlowEnd) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22);
  c.Handshake();
  c.Send(false, kAck | kPsh, "SSH-2.0-OpenSSH_7.4\r\n");
  c.Send(true, kAck | kPsh, "\r\n");
  EXPECT_TRUE(c.events().empty());
  c.End();
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["confirmed_by"], "server_only");
}

// A client that speaks HTTP to an SSH server (Zeek's http-to-ssh.pcap) probes it: the
// server's identification alone does not make a session then.
TEST(RemoteAccess, ServerBannerAnsweredByAnotherProtocolIsAProbe) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22);
  c.Handshake();
  c.Send(true, kAck | kPsh, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  c.Send(false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2p1\r\n");
  c.Send(false, kAck | kPsh, "Invalid SSH identification string.\r\n");
  c.End();
  EXPECT_TRUE(c.events().empty());
}

// RFC 4253 4.2: a server may send any text lines before its identification, here 40 lines
// (ASCII art, UTF-8, tabs; Zeek's server-pre-banner-data.pcap sends 1.7 KB) in segments of
// up to 1448 bytes, beyond the 1024 inspected bytes.
TEST(RemoteAccess, LongServerPreambleBeforeTheIdentification) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22);
  c.Handshake();
  c.Send(true, kAck | kPsh, "SSH-2.0-OpenSSH_9.7\r\n");
  std::string preamble;
  for (int i = 0; i < 40; ++i) {
    preamble += "\t |  \xc3\xa9t\xc3\xa9 " + std::string(i % 7 * 9, '-') + " line " +
                std::to_string(i) + "\r\n";
  }
  for (std::size_t at = 0; at < preamble.size(); at += 1448) {
    c.Send(false, kAck | kPsh, preamble.substr(at, 1448));
  }
  EXPECT_TRUE(c.events().empty());
  c.Send(false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u5\r\n");
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["confirmed_by"], "both_directions");
  EXPECT_EQ(c.events()[0].body["ssh"]["server"]["software_version"], "OpenSSH_9.2p1");
}

// A tarpit (endlessh) sends preamble lines for ever: reading stops after 16 KiB.
TEST(RemoteAccess, EndlessPreambleIsGivenUp) {
  RemoteAccessConfig config;
  config.inspect_packets = 1000;
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22, config);
  c.Handshake();
  c.Send(true, kAck | kPsh, "SSH-2.0-OpenSSH_9.7\r\n");
  for (int i = 0; i < 1000; ++i) {  // about 23 KB
    c.Send(false, kAck | kPsh, "x7Qh Vd3 ka9 " + std::to_string(i) + " zz\r\n");
  }
  c.Send(false, kAck | kPsh, "SSH-2.0-late\r\n");
  c.End();
  EXPECT_TRUE(c.events().empty());
}

TEST(RemoteAccess, OtherProtocolsAreGivenUpWithoutEvents) {
  RemoteAccessConfig config;
  config.inspect_packets = 3;
  Connection c("10.1.1.5", 40000, "198.51.100.7", 3389, config);
  c.Handshake();
  Verdict v = Verdict::kContinue;
  for (int i = 0; i < 3; ++i) {
    c.Send(true, kAck | kPsh, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    v = c.Send(false, kAck | kPsh, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  }
  EXPECT_EQ(v, Verdict::kDone);
  c.End();
  EXPECT_TRUE(c.events().empty());
}

TEST(RemoteAccess, BuffersStayWithinInspectBytes) {
  RemoteAccessConfig config;
  config.inspect_bytes = 64;
  config.inspect_packets = 1000;
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22, config);
  c.Handshake();
  // A banner that only completes after the cap can never be parsed: the detector gives up.
  c.Send(false, kAck | kPsh, "SSH-2.0-" + std::string(100, 'a'));
  EXPECT_EQ(c.Send(true, kAck | kPsh, std::string(100, 'b')), Verdict::kDone);
  EXPECT_LE(config.inspect_bytes * 2, RemoteAccessDetector::kMaxFlowStateBytes);
  c.End();
  EXPECT_TRUE(c.events().empty());
}

// An identified SSH session is followed to its end and described by an `ssh` record.
std::string SshActivityOf(const std::vector<std::pair<bool, std::size_t>>& packets) {
  Connection c("10.1.1.5", 40000, "198.51.100.7", 22);
  c.Handshake();
  c.Send(false, kAck | kPsh, "SSH-2.0-OpenSSH_9.2p1\r\n");
  c.Send(true, kAck | kPsh, "SSH-2.0-OpenSSH_9.6\r\n");
  for (const auto& [from_client, size] : packets) {
    c.Send(from_client, kAck | kPsh, std::string(size, 'x'));
  }
  c.End();
  for (const Event& e : c.events()) {
    if (e.event_type == "ssh") {
      EXPECT_EQ(e.body["server"]["software_version"], "OpenSSH_9.2p1");
      return e.body["activity"];
    }
  }
  return "no ssh record";
}

TEST(RemoteAccess, SshActivityInteractiveTunnelAndFileTransfer) {
  std::vector<std::pair<bool, std::size_t>> typing, tunnel, upload;
  for (int i = 0; i < 60; ++i) {
    typing.push_back({true, 36});                  // a keystroke
    typing.push_back({false, i % 10 ? 36 : 600});  // its echo, sometimes output
    tunnel.push_back({true, 400});                 // a request through -D/-L
    tunnel.push_back({false, 1400});               // its reply
    tunnel.push_back({false, 1400});
    upload.push_back({true, 1400});
    upload.push_back({true, 1400});
    if (i % 8 == 0)
      upload.push_back({false, 36});  // window adjustments
  }
  EXPECT_EQ(SshActivityOf(typing), "interactive");
  EXPECT_EQ(SshActivityOf(tunnel), "tunnel");
  EXPECT_EQ(SshActivityOf(upload), "file_transfer");
  EXPECT_EQ(SshActivityOf({{true, 36}, {false, 36}}), "unknown");  // too little to say
}

// A remote-control protocol inside a proxy's tunnel (Arkime's socks5-rdp.pcap): the
// parsers read the stream after the SOCKS 5 setup, and the event names the target.
TEST(RemoteAccess, RdpThroughSocks5) {
  Connection c("10.0.0.3", 2276, "10.0.0.2", 1080);
  c.Handshake();
  c.Send(true, kAck | kPsh, std::string("\x05\x01\x00", 3));
  c.Send(false, kAck | kPsh, std::string("\x05\x00", 2));
  c.Send(true, kAck | kPsh, std::string("\x05\x01\x00\x01\x0a\x00\x00\x01\x0d\x3d", 10));
  c.Send(false, kAck | kPsh, std::string("\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10));
  EXPECT_EQ(c.Send(true, kAck | kPsh, RdpRequest()), Verdict::kContinue);
  EXPECT_EQ(c.Send(false, kAck | kPsh, kRdpConfirm), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  const nlohmann::json& b = c.events()[0].body;
  EXPECT_EQ(b["app"], "rdp");
  EXPECT_EQ(b["controlled"], "10.0.0.2");  // the wire's end: the proxy
  EXPECT_EQ(b["proxy"]["protocol"], "socks5");
  EXPECT_EQ(b["proxy"]["target"], "10.0.0.1");
  EXPECT_EQ(b["proxy"]["target_port"], 3389);
  EXPECT_EQ(b["rdp"]["cookie"], "alice");
}

// An HTTP proxy that wants credentials first (407), then grants; the SSH server's banner
// comes in the proxy's answer's segment.
TEST(RemoteAccess, SshThroughHttpConnectAfterA407) {
  Connection c("10.1.1.5", 40000, "10.1.0.1", 3128);
  c.Handshake();
  c.Send(true, kAck | kPsh, "CONNECT git.example:22 HTTP/1.1\r\nHost: git.example:22\r\n\r\n");
  c.Send(false, kAck | kPsh,
         "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
  c.Send(true, kAck | kPsh,
         "CONNECT git.example:22 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n");
  c.Send(false, kAck | kPsh, "HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_TRUE(c.events().empty());
  c.Send(true, kAck | kPsh, "SSH-2.0-OpenSSH_9.2\r\n");
  ASSERT_EQ(c.events().size(), 1u);
  const nlohmann::json& b = c.events()[0].body;
  EXPECT_EQ(b["app"], "ssh");
  EXPECT_EQ(b["confirmed_by"], "both_directions");
  EXPECT_EQ(b["proxy"]["protocol"], "http_connect");
  EXPECT_EQ(b["proxy"]["target"], "git.example");
  EXPECT_EQ(b["proxy"]["target_port"], 22);
}

// SOCKS 4a, the client's request and its first tunnelled bytes in one segment.
TEST(RemoteAccess, VncThroughSocks4a) {
  Connection c("10.1.1.5", 40000, "10.1.0.1", 1080);
  c.Handshake();
  c.Send(true, kAck | kPsh, std::string("\x04\x01\x17\x0c\x00\x00\x00\x01\x00vnc.corp\x00", 18));
  c.Send(false, kAck | kPsh, std::string("\x00\x5a\x00\x00\x00\x00\x00\x00", 8) + "RFB 003.008\n");
  EXPECT_EQ(c.Send(true, kAck | kPsh, "RFB 003.008\n"), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  const nlohmann::json& b = c.events()[0].body;
  EXPECT_EQ(b["app"], "vnc");
  EXPECT_EQ(b["controlled"], "10.1.0.1");
  EXPECT_EQ(b["proxy"]["protocol"], "socks4");
  EXPECT_EQ(b["proxy"]["target"], "vnc.corp");
}

// Neither a refused setup nor TLS through a granted one is a remote session; both are given
// up once the packet limits are reached, not held because setup packets were counted.
TEST(RemoteAccess, ProxiedFlowsOfOtherProtocolsAreGivenUp) {
  {
    Connection c("10.1.1.5", 40000, "10.1.0.1", 1080);
    c.Handshake();
    c.Send(true, kAck | kPsh,
           std::string("\x05\x01\x00\x05\x01\x00\x01\x0a\x00\x00\x01\x0d\x3d", 13));
    c.Send(false, kAck | kPsh, std::string("\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 12));
    c.Send(true, kAck | kPsh, RdpRequest());  // no tunnel: not read as the target's protocol
    c.End();
    EXPECT_TRUE(c.events().empty());
  }
  RemoteAccessConfig config;
  config.inspect_packets = 3;
  Connection c("10.1.1.5", 40001, "10.1.0.1", 3128, config);
  c.Handshake();
  c.Send(true, kAck | kPsh, "CONNECT www.example:443 HTTP/1.1\r\n\r\n");
  c.Send(false, kAck | kPsh, "HTTP/1.1 200 OK\r\n\r\n");
  for (int i = 0; i < 2; ++i) {
    c.Send(true, kAck | kPsh, std::string("\x16\x03\x01\x00\x05hello", 10));
    c.Send(false, kAck | kPsh, std::string("\x16\x03\x03\x00\x05hello", 10));
  }
  EXPECT_FALSE(c.done());
  c.Send(true, kAck | kPsh, std::string("\x17\x03\x03\x00\x01x", 6));
  EXPECT_EQ(c.Send(false, kAck | kPsh, std::string("\x17\x03\x03\x00\x01x", 6)), Verdict::kDone);
  EXPECT_TRUE(c.events().empty());
}

TEST(RemoteAccessConfig, RejectsUnknownKeyAndBadValues) {
  auto parse = [](const std::string& yaml) {
    auto root = config::LoadString(yaml, "test.yaml");
    return ParseRemoteAccessConfig(root->Child("remote_access"));
  };
  auto unknown = parse("remote_access:\n  inspect_bytez: 10\n");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("test.yaml:2:3"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("inspect_bytez"));
  EXPECT_FALSE(parse("remote_access:\n  inspect_bytes: 70000\n").ok());
  EXPECT_FALSE(parse("remote_access:\n  enabled: maybe\n").ok());
  auto good = parse("remote_access:\n  inspect_bytes: 2048\n");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->inspect_bytes, 2048u);
  EXPECT_EQ(parse("").value().inspect_packets, 16u);
}

TEST(RemoteAccessConfig, DisabledDetectorIsNotBuilt) {
  auto root = config::LoadString("remote_access:\n  enabled: false\n", "t.yaml");
  auto d = Create(root->Child("remote_access"), DetectorContext{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, nullptr);
}

}  // namespace
}  // namespace relaywatch::detectors::remote_access
