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
  flow::Direction d;
  flow::FlowState& f = table.Track(syn, d);
  detector.OnPacket(syn, f, d, out);
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
  flow::Direction d;
  detector.OnPacket(syn, table.Track(syn, d), d, out);
  EXPECT_TRUE(out.events().empty());
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
