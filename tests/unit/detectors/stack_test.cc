#include "detectors/stack/stack.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"
#include "detectors/host/host_stage.h"
#include "detectors/stack/fingerprint.h"

namespace relaywatch::detectors::stack {
namespace {

const PacketTime kT0 = absl::FromUnixSeconds(1700000000);

TEST(StackFingerprint, InitialTtlAndHops) {
  EXPECT_EQ(InitialTtl(64), 64);
  EXPECT_EQ(InitialTtl(57), 64);
  EXPECT_EQ(InitialTtl(113), 128);
  EXPECT_EQ(InitialTtl(250), 255);
  EXPECT_EQ(InitialTtl(30), 32);
}

TEST(StackFingerprint, MtuFromMssAndLinkKinds) {
  EXPECT_EQ(MtuFromMss(1460, 4), 1500u);
  EXPECT_EQ(MtuFromMss(1440, 6), 1500u);
  EXPECT_FALSE(ClassifyMtu(1500).has_value());
  EXPECT_FALSE(ClassifyMtu(9000).has_value());
  EXPECT_EQ(ClassifyMtu(1492)->kind, "pppoe");
  EXPECT_FALSE(ClassifyMtu(1492)->tunnel);
  EXPECT_EQ(ClassifyMtu(1420)->kind, "wireguard");
  EXPECT_EQ(ClassifyMtu(1476)->kind, "gre_ipsec");
  EXPECT_EQ(ClassifyMtu(1480)->kind, "ipip");
  EXPECT_EQ(ClassifyMtu(1400)->kind, "vpn");
  EXPECT_TRUE(ClassifyMtu(1400)->tunnel);
}

decode::DecodedPacket Syn(std::uint8_t ttl, std::uint16_t window, std::uint16_t mss,
                          std::vector<std::uint8_t> layout) {
  decode::DecodedPacket p;
  p.ts = kT0;
  p.ip_version = 4;
  p.protocol = decode::kProtoTcp;
  p.src = *IpAddress::Parse("203.0.113.10");
  p.dst = *IpAddress::Parse("198.51.100.10");
  p.src_port = 40000;
  p.dst_port = 443;
  p.ttl = ttl;
  p.window = window;
  p.dont_fragment = true;
  p.tcp_flags = decode::kTcpSyn;
  p.tcp_options.has_mss = true;
  p.tcp_options.mss = mss;
  for (std::uint8_t k : layout)
    p.tcp_options.layout[p.tcp_options.layout_size++] = k;
  p.tcp_options.has_timestamps = std::find(layout.begin(), layout.end(), 8) != layout.end();
  p.tcp_options.has_window_scale = true;
  p.tcp_options.window_scale = 7;
  return p;
}

// Tracks the packet, then hands it to the detector with its direction. (Not in one call:
// the order in which arguments are evaluated is unspecified, so `OnPacket(p,
// table.Track(p, d), d, out)` may pass `d` before Track has set it.)
void Feed(StackDetector& detector, flow::FlowTable& table, const decode::DecodedPacket& p,
          EventBuffer& out) {
  flow::Direction d = flow::Direction::kToResponder;
  flow::FlowState& f = table.Track(p, d);
  detector.OnPacket(p, f, d, out);
}

TEST(StackFingerprint, SignatureSeparatesStacks) {
  const SynSignature linux_syn = SignatureOf(Syn(61, 64240, 1460, {2, 4, 8, 1, 3}));
  const SynSignature windows_syn = SignatureOf(Syn(125, 64240, 1460, {2, 1, 3, 1, 1, 4}));
  EXPECT_EQ(linux_syn.layout, "mss,sok,ts,nop,ws");
  EXPECT_EQ(linux_syn.initial_ttl, 64);
  EXPECT_EQ(linux_syn.hops, 3);
  EXPECT_TRUE(linux_syn.timestamps);
  EXPECT_FALSE(windows_syn.timestamps);
  EXPECT_NE(linux_syn.Key(true), windows_syn.Key(true));
  const SynSignature tunnelled = SignatureOf(Syn(61, 64240, 1380, {2, 4, 8, 1, 3}));
  EXPECT_NE(linux_syn.Key(true), tunnelled.Key(true));
  EXPECT_EQ(linux_syn.Key(false), tunnelled.Key(false));
}

TEST(StackDetector, TunnelRecordFromTheSynsMss) {
  StackDetector detector({}, DetectorContext{});
  EventBuffer out;
  flow::FlowTable table(flow::FlowTableConfig{},
                        [&](flow::FlowState& f, flow::EndReason) { detector.OnFlowEnd(f, out); });
  decode::DecodedPacket syn = Syn(61, 64240, 1380, {2, 4, 8, 1, 3});
  Feed(detector, table, syn, out);
  ASSERT_EQ(out.events().size(), 1u);
  EXPECT_EQ(out.events()[0].event_type, "tunnel");
  EXPECT_EQ(out.events()[0].body["kind"], "wireguard");
  EXPECT_EQ(out.events()[0].body["mtu"], 1420);
  table.EndAll(flow::EndReason::kShutdown);
  ASSERT_EQ(out.events().size(), 2u);
  EXPECT_EQ(out.events()[1].event_type, "stack");
  EXPECT_EQ(out.events()[1].body["layout"], "mss,sok,ts,nop,ws");
}

TEST(StackDetector, NoTunnelRecordOnEthernet) {
  StackDetector detector({}, DetectorContext{});
  EventBuffer out;
  flow::FlowTable table(flow::FlowTableConfig{}, [](flow::FlowState&, flow::EndReason) {});
  decode::DecodedPacket syn = Syn(61, 64240, 1460, {2, 4, 8, 1, 3});
  Feed(detector, table, syn, out);
  EXPECT_TRUE(out.events().empty());
}

decode::DecodedPacket Segment(const decode::DecodedPacket& syn, std::uint32_t payload,
                              double second) {
  decode::DecodedPacket p = syn;
  p.ts = kT0 + absl::Seconds(second);
  p.tcp_flags = decode::kTcpAck;
  p.tcp_options = {};
  p.tcp_options.has_timestamps = true;
  p.payload_length = payload;
  return p;
}

// A tunnel-MSS flow (1380, timestamps on) whose responder allows `responder_mss`, then the
// originator's data segments of `payloads` bytes; returns the path_mtu findings' evidence.
std::vector<std::string> PathEvidenceOf(std::uint16_t responder_mss,
                                        std::vector<std::uint32_t> payloads) {
  StackDetector detector({}, DetectorContext{});
  EventBuffer out;
  flow::FlowTable table(flow::FlowTableConfig{}, [](flow::FlowState&, flow::EndReason) {});
  const decode::DecodedPacket syn = Syn(61, 64860, 1380, {2, 4, 8, 1, 3});
  Feed(detector, table, syn, out);
  decode::DecodedPacket syn_ack = syn;
  std::swap(syn_ack.src, syn_ack.dst);
  std::swap(syn_ack.src_port, syn_ack.dst_port);
  syn_ack.tcp_flags = decode::kTcpSyn | decode::kTcpAck;
  syn_ack.tcp_options.mss = responder_mss;
  Feed(detector, table, syn_ack, out);
  double t = 0.1;
  for (std::uint32_t payload : payloads) {
    const decode::DecodedPacket seg = Segment(syn, payload, t += 0.1);
    Feed(detector, table, seg, out);
  }
  std::vector<std::string> evidence;
  for (const Event& e : out.events()) {
    if (e.event_type == "path_mtu") {
      evidence.push_back(e.body["evidence"]);
      EXPECT_EQ(e.body["signature"], SignatureOf(syn).Key(true));
    }
  }
  return evidence;
}

TEST(StackDetector, SegmentsAboveTheMssShowAClamp) {
  // 1448 + 12 bytes of timestamps = 1460 > 1380: the sender's link carries 1500-byte packets.
  EXPECT_EQ(PathEvidenceOf(1460, {200, 1448, 1448}), std::vector<std::string>{"above_mtu"});
}

TEST(StackDetector, SegmentsStoppingAtTheMssShowTheCap) {
  // 1368 + 12 = 1380: full at the SYN's MSS while the responder allowed 1460.
  EXPECT_EQ(PathEvidenceOf(1460, {1368, 1368, 300}), std::vector<std::string>{"at_mtu"});
  // The responder allowed no more than 1380: a full segment says nothing about the sender.
  EXPECT_TRUE(PathEvidenceOf(1380, {1368, 1368}).empty());
}

TEST(StackDetector, CoalescedSegmentsSayNothing) {
  // Larger than one Ethernet frame: GRO/LRO on the sensor merged segments.
  EXPECT_TRUE(PathEvidenceOf(1460, {2896, 4344}).empty());
}

TEST(StackDetector, IpIdRunSkipsZerosAndSumsForwardSteps) {
  StackDetector detector({}, DetectorContext{});
  EventBuffer out;
  flow::FlowTable table(flow::FlowTableConfig{},
                        [&](flow::FlowState& f, flow::EndReason) { detector.OnFlowEnd(f, out); });
  decode::DecodedPacket syn = Syn(61, 64240, 1460, {2, 4, 8, 1, 3});
  syn.ip_id = 65530;
  Feed(detector, table, syn, out);
  // +1, +3 (the counter served other packets), 0 (a Linux ACK: skipped), +3 across the wrap.
  double t = 0;
  for (std::uint16_t id : {65531, 65534, 0, 1}) {
    decode::DecodedPacket p = Segment(syn, 0, t += 1);
    p.ip_id = id;
    Feed(detector, table, p, out);
  }
  table.EndAll(flow::EndReason::kShutdown);
  ASSERT_FALSE(out.events().empty());
  const nlohmann::json& run = out.events().back().body["ip_id_run"];
  EXPECT_EQ(run["first"], 65530);
  EXPECT_EQ(run["samples"], 4);
  EXPECT_EQ(run["forward"], 3);
  EXPECT_EQ(run["shared"], 2);
  EXPECT_EQ(run["advance"], 7);
}

// ---- Nested tunnels (host stage) ----------------------------------------------------------

host::HostStageConfig EntryConfig() {
  host::HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  c.entry_points = {*Cidr::Parse("198.51.100.10/32")};
  return c;
}

FlowRef EntryFlow(std::uint16_t sport, std::uint16_t dport) {
  static std::uint64_t id = 1000;
  FlowRef f;
  f.flow_id = ++id;
  f.src_ip = *IpAddress::Parse("203.0.113.10");
  f.dest_ip = *IpAddress::Parse("198.51.100.10");
  f.src_port = sport;
  f.dest_port = dport;
  f.protocol = 6;
  return f;
}

// The stack detector's tunnel record of a SYN with MSS 1380 (MTU 1420) to the company's
// OpenVPN service (tcp/1194) at an entry point.
// `decoded_depth` encapsulations decoded around it, `ip_depth` of them IP tunnels.
Event VpnTunnelRecord(double second, int decoded_depth = 0, int ip_depth = 0) {
  Event e;
  e.event_type = "tunnel";
  e.ts = kT0 + absl::Seconds(second);
  e.flow = EntryFlow(41470, 1194);
  e.body = {{"kind", "wireguard"},
            {"mtu", 1420},
            {"mss", 1380},
            {"overlay", true},
            {"initial_ttl", 64},
            {"hops", 2},
            {"signature", "sig"},
            {"decoded_tunnel_depth", decoded_depth},
            {"decoded_ip_tunnel_depth", ip_depth}};
  return e;
}

// The same device's segment on another connection (ssh) at or above that MTU.
Event PathMtu(double second, const std::string& evidence) {
  Event e;
  e.event_type = "path_mtu";
  e.ts = kT0 + absl::Seconds(second);
  e.flow = EntryFlow(37010, 22);
  e.body = {{"signature", "sig"}, {"mss", 1380}, {"evidence", evidence}};
  return e;
}

struct Nesting {
  bool record_nested = false;  // the last tunnel record's `nested`
  int alerts = 0;
};

Nesting NestingOf(const std::vector<Event>& out) {
  Nesting n;
  for (const Event& e : out) {
    EXPECT_NE(e.event_type, "path_mtu");  // consumed
    if (e.event_type == "tunnel")
      n.record_nested = e.body["nested"].get<bool>();
    if (e.alert && e.alert->signature_id == host::kSidNestedTunnel)
      ++n.alerts;
  }
  return n;
}

TEST(NestedTunnel, MssAloneIsNotNesting) {
  // MSS 1380 is a WireGuard path or a clamp (route advmss, Windows, DSL): undecided.
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(VpnTunnelRecord(1), out);
  const Nesting n = NestingOf(out);
  EXPECT_FALSE(n.record_nested);
  EXPECT_EQ(n.alerts, 0);
  EXPECT_EQ(out[0].body["nested_evidence"], "pending");
}

TEST(NestedTunnel, SegmentsAboveTheMtuMeanAClampNotATunnel) {
  // mixed_stacks: a laptop with advmss 1380 sends 1500-byte packets on its ssh session.
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(VpnTunnelRecord(1), out);
  stage.Process(PathMtu(5, "above_mtu"), out);
  EXPECT_EQ(NestingOf(out).alerts, 0);
  EXPECT_FALSE(NestingOf(out).record_nested);
  EXPECT_EQ(stage.stats().nesting_clamp, 1u);
  // Evidence first, then another session: decided at once.
  stage.Process(VpnTunnelRecord(9), out);
  EXPECT_EQ(NestingOf(out).alerts, 0);
  EXPECT_EQ(out.back().body["nested_evidence"], "segments_above_mtu");
}

TEST(NestedTunnel, SegmentsCappedAtTheMtuMeanATunnelBeneath) {
  // nested_tunnel: the consumer VPN (tun MTU 1400) caps every packet the laptop sends.
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(VpnTunnelRecord(1), out);
  EXPECT_EQ(NestingOf(out).alerts, 0);
  stage.Process(PathMtu(5, "at_mtu"), out);
  const Nesting n = NestingOf(out);
  EXPECT_TRUE(n.record_nested);  // the record is published again, decided
  EXPECT_EQ(n.alerts, 1);
  EXPECT_EQ(stage.stats().nesting_nested, 1u);
}

TEST(NestedTunnel, EvidenceBeforeTheSessionDecidesAtItsSyn) {
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(PathMtu(1, "at_mtu"), out);
  stage.Process(VpnTunnelRecord(5), out);
  EXPECT_TRUE(NestingOf(out).record_nested);
  EXPECT_EQ(NestingOf(out).alerts, 1);
}

TEST(NestedTunnel, OneSegmentAboveTheMtuOutweighsTheCap) {
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(PathMtu(1, "at_mtu"), out);
  stage.Process(PathMtu(2, "above_mtu"), out);
  stage.Process(VpnTunnelRecord(5), out);
  EXPECT_FALSE(NestingOf(out).record_nested);
  EXPECT_EQ(NestingOf(out).alerts, 0);
}

TEST(NestedTunnel, DecodedIpTunnelIsNestedAtOnce) {
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(VpnTunnelRecord(1, /*decoded_depth=*/1, /*ip_depth=*/1), out);
  EXPECT_TRUE(NestingOf(out).record_nested);
  EXPECT_EQ(NestingOf(out).alerts, 1);
}

// A sensor fed by a traffic mirror (ERSPAN from a switch, VXLAN from a cloud's mirroring)
// decodes one encapsulation around every packet: that is the copy's transport, not a
// tunnel the device built (tests/interop/mirror_twin.py found the alert on every VPN session).
TEST(NestedTunnel, MirrorEncapsulationIsNotNesting) {
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  stage.Process(VpnTunnelRecord(1, /*decoded_depth=*/1, /*ip_depth=*/0), out);
  EXPECT_FALSE(NestingOf(out).record_nested);
  EXPECT_EQ(NestingOf(out).alerts, 0);
  EXPECT_EQ(out[0].body["nested_evidence"], "pending");
}

TEST(NestedTunnel, OtherServicesAreNotCandidates) {
  host::HostStage stage(EntryConfig());
  std::vector<Event> out;
  Event portal = VpnTunnelRecord(1);
  portal.flow->dest_port = 443;
  stage.Process(portal, out);
  stage.Process(PathMtu(5, "at_mtu"), out);
  EXPECT_EQ(NestingOf(out).alerts, 0);
}

// ---- Shared lines (host stage) ----------------------------------------------------------

host::HostStageConfig LineConfig() {
  host::HostStageConfig c;
  c.home_networks = {*Cidr::Parse("10.0.0.0/8")};
  c.entry_points = {*Cidr::Parse("198.51.100.10/32")};
  return c;
}

Event StackRecord(const std::string& src, std::uint16_t sport, double minute,
                  const std::string& signature, nlohmann::json extra = nlohmann::json::object()) {
  static std::uint64_t id = 0;
  Event e;
  e.event_type = "stack";
  e.ts = kT0 + absl::Minutes(minute) + absl::Seconds(30);
  FlowRef f;
  f.flow_id = ++id;
  f.src_ip = *IpAddress::Parse(src);
  f.dest_ip = *IpAddress::Parse("198.51.100.10");
  f.src_port = sport;
  f.dest_port = 443;
  f.protocol = 6;
  e.flow = f;
  e.body = {{"signature", signature},
            {"syn_us", absl::ToUnixMicros(kT0 + absl::Minutes(minute))},
            {"end_us", absl::ToUnixMicros(e.ts)}};
  e.body.update(extra);
  return e;
}

std::uint64_t LastDevices(const std::vector<Event>& out) {
  std::uint64_t devices = 0;
  for (const Event& e : out) {
    if (e.event_type == "shared_line")
      devices = e.body["devices"].get<std::uint64_t>();
  }
  return devices;
}

TEST(SharedLine, OneDeviceWithManyConnectionsIsOne) {
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  for (int i = 0; i < 12; ++i) {
    stage.Process(StackRecord("203.0.113.10", 40000 + 2 * i, i, "linux"), out);
  }
  EXPECT_EQ(LastDevices(out), 1u);
  for (const Event& e : out)
    EXPECT_NE(e.event_type, "stack");  // consumed
}

TEST(SharedLine, DistinctStacksAreDistinctDevices) {
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  for (int i = 0; i < 4; ++i) {
    stage.Process(StackRecord("203.0.113.10", 40000 + 2 * i, i, "linux"), out);
    stage.Process(StackRecord("203.0.113.10", 50000 + i, i, "windows"), out);
    stage.Process(StackRecord("203.0.113.10", 33000 + 2 * i, i, "linux-mss1380"), out);
  }
  EXPECT_EQ(LastDevices(out), 3u);
  bool alerted = false;
  for (const Event& e : out)
    alerted |= e.alert && e.alert->detector == "shared_line";
  EXPECT_TRUE(alerted);
}

Event VpnSession(const std::string& src, std::uint16_t sport, double from_minute, double to_minute,
                 const std::string& signature) {
  Event e = StackRecord(src, sport, from_minute, signature);
  e.flow->dest_port = 1194;
  e.ts = kT0 + absl::Minutes(to_minute);
  e.body["end_us"] = absl::ToUnixMicros(e.ts);
  return e;
}

TEST(SharedLine, IdenticalStacksSeparatedByConcurrentVpnSessions) {
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  // Three identical laptops, each with its own tunnel open for an hour, plus web traffic.
  for (int i = 0; i < 3; ++i) {
    stage.Process(StackRecord("203.0.113.10", 40000 + i, i, "linux"), out);
  }
  EXPECT_EQ(LastDevices(out), 1u);
  stage.Process(VpnSession("203.0.113.10", 50001, 0, 60, "linux"), out);
  stage.Process(VpnSession("203.0.113.10", 50002, 1, 61, "linux"), out);
  stage.Process(VpnSession("203.0.113.10", 50003, 2, 62, "linux"), out);
  EXPECT_EQ(LastDevices(out), 3u);
}

TEST(SharedLine, SuccessiveVpnSessionsOfOneDeviceAreOne) {
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  for (int i = 0; i < 4; ++i) {  // reconnects: each session ends before the next begins
    stage.Process(VpnSession("203.0.113.10", 50001 + i, i * 20, i * 20 + 19, "linux"), out);
  }
  EXPECT_EQ(LastDevices(out), 1u);
}

TEST(SharedLine, SourcePortsAndIpIdsDoNotCount) {
  // Current Linux jumps source ports every few connections and starts IP-IDs at random per
  // connection: one laptop must stay one device.
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  const std::uint16_t ports[] = {51234, 1200, 60000, 33333, 45000, 2048, 9999, 21000};
  for (int i = 0; i < 8; ++i) {
    stage.Process(StackRecord("203.0.113.10", ports[i], i, "linux",
                              {{"ip_ids", 20},
                               {"ip_id_increasing", 19},
                               {"ip_id_first", i * 7919},
                               {"ip_id_last", i * 7919 + 20}}),
                  out);
  }
  EXPECT_EQ(LastDevices(out), 1u);
}

// A flow's IP-ID run as the stack record carries it: from `from_minute` to `to_minute`, the
// counter at `first` moving by `advance` over `samples` packets, `shared` steps of 2 or more.
nlohmann::json IpIdRun(double from_minute, double to_minute, int first, int advance,
                       int samples = 40, int shared = 10) {
  return {{"ip_id_run",
           {{"first", first},
            {"first_us", absl::ToUnixMicros(kT0 + absl::Minutes(from_minute))},
            {"last_us", absl::ToUnixMicros(kT0 + absl::Minutes(to_minute))},
            {"samples", samples},
            {"forward", samples - 1},
            {"shared", shared},
            {"advance", advance}}}};
}

TEST(SharedLine, SharedIpIdCountersThatDisagreeAreDevices) {
  // Two Windows-like laptops with one stack signature: while A's counter runs 1000..4000, B
  // opens with IP-ID 40000, which one counter cannot have given then.
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  stage.Process(StackRecord("203.0.113.10", 50000, 0, "win", IpIdRun(0, 10, 1000, 3000)), out);
  stage.Process(StackRecord("203.0.113.10", 50001, 5, "win", IpIdRun(5, 6, 40000, 200)), out);
  EXPECT_EQ(LastDevices(out), 2u);
}

TEST(SharedLine, OneSharedIpIdCounterIsOneDevice) {
  // One laptop: its second connection's IP-ID falls inside the first one's run.
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  stage.Process(StackRecord("203.0.113.10", 50000, 0, "win", IpIdRun(0, 10, 1000, 3000)), out);
  stage.Process(StackRecord("203.0.113.10", 50001, 5, "win", IpIdRun(5, 6, 2500, 200)), out);
  // A wrapped run (65536 or more) says nothing about which values it passed.
  stage.Process(StackRecord("203.0.113.10", 50002, 5, "win", IpIdRun(0, 10, 9000, 70000)), out);
  EXPECT_EQ(LastDevices(out), 1u);
}

TEST(SharedLine, PerConnectionIpIdCountersDoNotCount) {
  // Linux: every connection starts its own counter at random and steps +1 (no shared step),
  // so disagreeing values are one laptop's connections, not devices.
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  stage.Process(StackRecord("203.0.113.10", 50000, 0, "linux", IpIdRun(0, 10, 1000, 39, 40, 0)),
                out);
  stage.Process(StackRecord("203.0.113.10", 50002, 5, "linux", IpIdRun(5, 6, 40000, 39, 40, 0)),
                out);
  // Two values skipped in 40 (packets lost before the sensor): still the connection's own.
  stage.Process(StackRecord("203.0.113.10", 50006, 5, "linux", IpIdRun(5, 6, 30000, 41, 40, 2)),
                out);
  // Too few samples to tell a counter from random IDs.
  stage.Process(StackRecord("203.0.113.10", 50004, 5, "linux", IpIdRun(5, 6, 20000, 5, 4, 2)), out);
  EXPECT_EQ(LastDevices(out), 1u);
}

TEST(SharedLine, TimestampClockRatesSeparateDevices) {
  host::HostStage stage(LineConfig());
  std::vector<Event> out;
  stage.Process(StackRecord("203.0.113.10", 40000, 0, "x", {{"ts_hz", 1000.3}}), out);
  stage.Process(StackRecord("203.0.113.10", 40002, 1, "x", {{"ts_hz", 999.8}}), out);
  EXPECT_EQ(LastDevices(out), 1u);
  stage.Process(StackRecord("203.0.113.10", 40004, 2, "x", {{"ts_hz", 250.1}}), out);
  EXPECT_EQ(LastDevices(out), 2u);
}

TEST(SharedLine, OnlyAtEntryPoints) {
  host::HostStageConfig config = LineConfig();
  config.entry_points.clear();
  host::HostStage stage(config);
  std::vector<Event> out;
  for (int i = 0; i < 4; ++i) {
    stage.Process(StackRecord("203.0.113.10", 40000, i, std::to_string(i)), out);
  }
  EXPECT_EQ(LastDevices(out), 0u);
}

}  // namespace
}  // namespace relaywatch::detectors::stack
