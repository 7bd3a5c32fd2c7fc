#include "capture/flow/flow_table.h"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relaywatch::flow {
namespace {

using decode::DecodedPacket;
using decode::kTcpAck;
using decode::kTcpFin;
using decode::kTcpRst;
using decode::kTcpSyn;

const PacketTime kT0 = absl::FromUnixSeconds(1700000000);

IpAddress Ip(const char* text) {
  return *IpAddress::Parse(text);
}

DecodedPacket Packet(std::uint8_t protocol, const char* src, std::uint16_t sport, const char* dst,
                     std::uint16_t dport, PacketTime ts) {
  DecodedPacket p;
  p.ts = ts;
  p.ip_version = Ip(src).is_v4() ? 4 : 6;
  p.protocol = protocol;
  p.src = Ip(src);
  p.dst = Ip(dst);
  p.src_port = sport;
  p.dst_port = dport;
  p.wire_length = 60;
  return p;
}

DecodedPacket Tcp(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
                  std::uint8_t flags, PacketTime ts, std::uint32_t payload = 0) {
  DecodedPacket p = Packet(decode::kProtoTcp, src, sport, dst, dport, ts);
  p.tcp_flags = flags;
  p.payload_length = payload;
  p.wire_length = 54 + payload;
  return p;
}

DecodedPacket Udp(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
                  PacketTime ts, std::uint32_t payload = 0) {
  DecodedPacket p = Packet(decode::kProtoUdp, src, sport, dst, dport, ts);
  p.payload_length = payload;
  p.wire_length = 42 + payload;
  return p;
}

// Records every flow end: which flow (by id and originator), why, and when.
struct Ended {
  std::uint64_t id;
  EndReason reason;
  Endpoint originator;
  PacketTime last_seen;
};

class FlowTableTest : public ::testing::Test {
 protected:
  FlowTableTest() { Reset(FlowTableConfig{}); }

  void Reset(FlowTableConfig config) {
    ended_.clear();
    table_ = std::make_unique<FlowTable>(config, [this](FlowState& f, EndReason reason) {
      ended_.push_back({f.id, reason, f.originator, f.last_seen});
    });
  }

  FlowState& Track(const DecodedPacket& p) { return table_->Track(p, direction_); }

  std::unique_ptr<FlowTable> table_;
  Direction direction_ = Direction::kToResponder;
  std::vector<Ended> ended_;
};

// ---------------------------------------------------------------------------------------
// Keys and directions.

TEST_F(FlowTableTest, BothDirectionsMapToOneFlow) {
  const DecodedPacket syn = Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0);
  const DecodedPacket syn_ack =
      Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, kT0 + absl::Milliseconds(1));
  EXPECT_EQ(FlowKey::FromPacket(syn), FlowKey::FromPacket(syn_ack));
  EXPECT_EQ(SymmetricFlowHash(syn), SymmetricFlowHash(syn_ack));

  FlowState& a = Track(syn);
  EXPECT_EQ(direction_, Direction::kToResponder);
  FlowState& b = Track(syn_ack);
  EXPECT_EQ(direction_, Direction::kToOriginator);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(table_->counters().created.Read(), 1u);
  EXPECT_EQ(a.stats[Index(Direction::kToResponder)].packets, 1u);
  EXPECT_EQ(a.stats[Index(Direction::kToOriginator)].packets, 1u);
}

TEST_F(FlowTableTest, DifferentPortsOrProtocolsAreDifferentFlows) {
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  Track(Tcp("10.0.0.1", 40001, "10.0.0.2", 22, kTcpSyn, kT0));
  Track(Udp("10.0.0.1", 40000, "10.0.0.2", 22, kT0));
  Track(Tcp("10.0.0.3", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  EXPECT_EQ(table_->size(), 4u);
  EXPECT_NE(SymmetricFlowHash(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, 0, kT0)),
            SymmetricFlowHash(Tcp("10.0.0.1", 40001, "10.0.0.2", 22, 0, kT0)));
}

TEST_F(FlowTableTest, SameAddressBothEndsSeparatedByPort) {
  FlowState& f = Track(Tcp("127.0.0.1", 50000, "127.0.0.1", 8080, kTcpSyn, kT0));
  Track(Tcp("127.0.0.1", 8080, "127.0.0.1", 50000, kTcpSyn | kTcpAck, kT0));
  EXPECT_EQ(direction_, Direction::kToOriginator);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(f.originator.port, 50000);
  EXPECT_EQ(f.responder.port, 8080);
}

// ---------------------------------------------------------------------------------------
// Originator.

TEST_F(FlowTableTest, OriginatorFromSyn) {
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 3389, kTcpSyn, kT0));
  EXPECT_EQ(f.originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(f.originator.port, 40000);
  EXPECT_EQ(f.responder.ip, Ip("10.0.0.2"));
  EXPECT_EQ(f.responder.port, 3389);
  EXPECT_TRUE(f.originator_from_handshake);
  EXPECT_EQ(f.sender(Direction::kToResponder).port, 40000);
  EXPECT_EQ(f.receiver(Direction::kToResponder).port, 3389);
  EXPECT_EQ(f.sender(Direction::kToOriginator).port, 3389);
}

TEST_F(FlowTableTest, OriginatorFromSynAckSeenFirst) {
  // The SYN was missed: the SYN/ACK's receiver opened the connection.
  FlowState& f = Track(Tcp("10.0.0.2", 3389, "10.0.0.1", 40000, kTcpSyn | kTcpAck, kT0));
  EXPECT_EQ(direction_, Direction::kToOriginator);
  EXPECT_EQ(f.originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(f.originator.port, 40000);
  EXPECT_EQ(f.responder.port, 3389);
  EXPECT_TRUE(f.originator_from_handshake);
  EXPECT_EQ(f.syn_ack_time, kT0);
  EXPECT_EQ(f.syn_time, absl::InfinitePast());

  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 3389, kTcpAck, kT0 + absl::Milliseconds(5)));
  EXPECT_EQ(direction_, Direction::kToResponder);
  EXPECT_EQ(f.ack_time, kT0 + absl::Milliseconds(5));
}

TEST_F(FlowTableTest, OriginatorGuessedFromWellKnownPortMidStream) {
  // First packet seen is the server's data: port 22 marks the server side.
  FlowState& f = Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpAck | decode::kTcpPsh, kT0));
  EXPECT_FALSE(f.originator_from_handshake);
  EXPECT_EQ(f.originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(f.originator.port, 40000);
  EXPECT_EQ(f.responder.port, 22);
  EXPECT_EQ(direction_, Direction::kToOriginator);

  // The client speaking first mid-stream keeps packet order.
  FlowState& g = Track(Tcp("10.0.0.1", 40001, "10.0.0.2", 22, kTcpAck, kT0));
  EXPECT_EQ(g.originator.port, 40001);
  EXPECT_FALSE(g.originator_from_handshake);

  // UDP: a DNS answer seen first.
  FlowState& u = Track(Udp("10.0.0.53", 53, "10.0.0.1", 51000, kT0));
  EXPECT_EQ(u.originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(u.responder.port, 53);

  // No port below 1024 on either side: the first sender is taken as originator.
  FlowState& h = Track(Udp("10.0.0.5", 6000, "10.0.0.6", 5000, kT0));
  EXPECT_EQ(h.originator.ip, Ip("10.0.0.5"));
  EXPECT_EQ(h.originator.port, 6000);
}

TEST_F(FlowTableTest, LaterPacketsDoNotChangeOriginator) {
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn, kT0 + absl::Milliseconds(1)));
  EXPECT_EQ(f.originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(direction_, Direction::kToOriginator);
}

// ---------------------------------------------------------------------------------------
// Handshake and counters.

TEST_F(FlowTableTest, RecordsHandshakeTimes) {
  const PacketTime syn_at = kT0;
  const PacketTime syn_ack_at = kT0 + absl::Milliseconds(30);
  const PacketTime ack_at = kT0 + absl::Milliseconds(31);
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, syn_at));
  // An ACK before the SYN/ACK is not the third handshake packet.
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, kT0 + absl::Milliseconds(10)));
  EXPECT_EQ(f.ack_time, absl::InfinitePast());
  // A retransmitted SYN does not move the SYN time.
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0 + absl::Milliseconds(20)));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, syn_ack_at));
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, ack_at));
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, ack_at + absl::Seconds(1)));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, ack_at + absl::Seconds(2)));
  EXPECT_EQ(f.syn_time, syn_at);
  EXPECT_EQ(f.syn_ack_time, syn_ack_at);
  EXPECT_EQ(f.ack_time, ack_at);
  EXPECT_EQ(f.first_seen, syn_at);
  EXPECT_EQ(f.last_seen, ack_at + absl::Seconds(2));
}

TEST_F(FlowTableTest, CountsPerDirection) {
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, kT0));
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, kT0));
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck | decode::kTcpPsh, kT0, 100));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpAck | decode::kTcpPsh, kT0, 1000));

  const DirectionStats& up = f.stats[Index(Direction::kToResponder)];
  const DirectionStats& down = f.stats[Index(Direction::kToOriginator)];
  EXPECT_EQ(up.packets, 3u);
  EXPECT_EQ(up.bytes, 54u * 3 + 100);
  EXPECT_EQ(up.payload_bytes, 100u);
  EXPECT_EQ(up.tcp_flags, kTcpSyn | kTcpAck | decode::kTcpPsh);
  EXPECT_EQ(down.packets, 2u);
  EXPECT_EQ(down.bytes, 54u * 2 + 1000);
  EXPECT_EQ(down.payload_bytes, 1000u);
  EXPECT_EQ(down.tcp_flags, kTcpSyn | kTcpAck | decode::kTcpPsh);
}

TEST_F(FlowTableTest, KeepsVlanAndTunnelDepthOfFirstPacket) {
  DecodedPacket p = Udp("10.0.0.1", 5000, "10.0.0.2", 6000, kT0);
  p.vlan_id = 42;
  p.tunnel_depth = 1;
  FlowState& f = Track(p);
  EXPECT_EQ(f.vlan_id, 42);
  EXPECT_EQ(f.tunnel_depth, 1);
  EXPECT_EQ(f.protocol, decode::kProtoUdp);
}

// ---------------------------------------------------------------------------------------
// Expiry.

TEST_F(FlowTableTest, IdleExpiryUsesPerProtocolTimeouts) {
  FlowTableConfig config;
  config.tcp_idle_timeout = absl::Minutes(10);
  config.udp_idle_timeout = absl::Minutes(2);
  Reset(config);
  const std::uint64_t tcp_id = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0)).id;
  const std::uint64_t udp_id = Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0)).id;
  // ICMP and other protocols share the non-TCP timeout.
  Track(Packet(decode::kProtoIcmp, "10.0.0.1", 0, "10.0.0.2", 0, kT0));

  table_->Advance(kT0 + absl::Minutes(2));  // exactly the timeout: not yet idle past it
  EXPECT_TRUE(ended_.empty());
  table_->Advance(kT0 + absl::Minutes(2) + absl::Nanoseconds(1));
  ASSERT_EQ(ended_.size(), 2u);
  EXPECT_EQ(ended_[0].id, udp_id);
  EXPECT_EQ(ended_[0].reason, EndReason::kIdle);
  EXPECT_EQ(ended_[1].reason, EndReason::kIdle);
  EXPECT_EQ(table_->size(), 1u);

  table_->Advance(kT0 + absl::Minutes(10));
  EXPECT_EQ(ended_.size(), 2u);
  table_->Advance(kT0 + absl::Minutes(10) + absl::Seconds(1));
  ASSERT_EQ(ended_.size(), 3u);
  EXPECT_EQ(ended_[2].id, tcp_id);
  EXPECT_EQ(ended_[2].reason, EndReason::kIdle);
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_EQ(table_->counters().expired.Read(), 3u);
  EXPECT_EQ(table_->counters().active.Read(), 0u);
}

TEST_F(FlowTableTest, ActivityPostponesExpiry) {
  FlowState& f = Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0));
  const std::uint64_t id = f.id;
  Track(Udp("10.0.0.2", 53, "10.0.0.1", 5000, kT0 + absl::Minutes(1)));
  table_->Advance(kT0 + absl::Minutes(2) + absl::Seconds(30));
  EXPECT_TRUE(ended_.empty());
  table_->Advance(kT0 + absl::Minutes(3) + absl::Seconds(1));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].id, id);
  EXPECT_EQ(ended_[0].last_seen, kT0 + absl::Minutes(1));
}

TEST_F(FlowTableTest, OnlyPacketTimeDrivesExpiry) {
  // Packets years in the past never expire until packet time moves; a packet from another
  // flow moves it just like Advance does.
  Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0));
  EXPECT_EQ(table_->now(), kT0);
  EXPECT_EQ(table_->size(), 1u);
  Track(Udp("10.0.0.3", 5000, "10.0.0.4", 53, kT0 + absl::Hours(1)));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].originator.ip, Ip("10.0.0.1"));
  EXPECT_EQ(table_->size(), 1u);
}

TEST_F(FlowTableTest, ClockNeverMovesBack) {
  Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0 + absl::Minutes(1)));
  table_->Advance(kT0);
  EXPECT_EQ(table_->now(), kT0 + absl::Minutes(1));
  // An older packet (merged pcap) counts but does not rewind last_seen.
  FlowState& f = Track(Udp("10.0.0.2", 53, "10.0.0.1", 5000, kT0));
  EXPECT_EQ(f.last_seen, kT0 + absl::Minutes(1));
  EXPECT_EQ(f.stats[Index(Direction::kToOriginator)].packets, 1u);
  EXPECT_EQ(table_->now(), kT0 + absl::Minutes(1));
}

// A merged capture can jump back by more than any timeout (Arkime's arkime_synthetic.pcap
// goes from 2025 to 2023): the connections after the jump stay whole, one flow each, and
// idle on the table's clock.
TEST_F(FlowTableTest, FlowsAfterTheClockStepsBackStayWhole) {
  Track(Udp("10.0.0.9", 5000, "10.0.0.8", 53, kT0 + absl::Hours(24 * 400)));
  const PacketTime past = kT0;
  const std::uint64_t id = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, past)).id;
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, past + absl::Milliseconds(50)));
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, past + absl::Seconds(1)));
  EXPECT_EQ(f.id, id);
  EXPECT_EQ(f.stats[0].packets, 2u);
  EXPECT_EQ(f.stats[1].packets, 1u);
  EXPECT_EQ(f.last_seen, past + absl::Seconds(1));  // events keep the packets' own time
  EXPECT_TRUE(ended_.empty());
  // Idle on the clock: ended once the clock is a TCP timeout past its last packet.
  table_->Advance(kT0 + absl::Hours(24 * 400) + absl::Hours(2));
  EXPECT_EQ(table_->size(), 0u);
}

TEST_F(FlowTableTest, PacketAfterIdleTimeoutStartsNewFlow) {
  const std::uint64_t first = Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0)).id;
  FlowState& again = Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0 + absl::Minutes(5)));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].id, first);
  EXPECT_EQ(ended_[0].reason, EndReason::kIdle);
  EXPECT_NE(again.id, first);
  EXPECT_EQ(again.first_seen, kT0 + absl::Minutes(5));
  EXPECT_EQ(again.stats[0].packets + again.stats[1].packets, 1u);
}

void Handshake(FlowTable& table, PacketTime at) {
  Direction d;
  table.Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, at), d);
  table.Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, at), d);
  table.Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpAck, at), d);
}

TEST_F(FlowTableTest, ClosedFlowEndsAfterShortTimeout) {
  FlowTableConfig config;
  config.closed_timeout = absl::Seconds(10);
  Reset(config);
  Handshake(*table_, kT0);
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpFin | kTcpAck, kT0));
  EXPECT_FALSE(f.closed());  // one FIN: half closed, still on the TCP idle timeout
  table_->Advance(kT0 + absl::Seconds(11));
  EXPECT_TRUE(ended_.empty());

  const PacketTime fin2 = kT0 + absl::Seconds(12);
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpFin | kTcpAck, fin2));
  EXPECT_TRUE(f.closed());
  EXPECT_TRUE(f.fin_seen[0]);
  EXPECT_TRUE(f.fin_seen[1]);
  table_->Advance(fin2 + absl::Seconds(10));
  EXPECT_TRUE(ended_.empty());
  table_->Advance(fin2 + absl::Seconds(10) + absl::Nanoseconds(1));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].reason, EndReason::kClosed);
  EXPECT_EQ(table_->counters().closed.Read(), 1u);
  EXPECT_EQ(table_->counters().expired.Read(), 0u);
  EXPECT_EQ(table_->size(), 0u);
}

TEST_F(FlowTableTest, ResetClosesFlow) {
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 3389, kTcpSyn, kT0));
  FlowState& f = Track(Tcp("10.0.0.2", 3389, "10.0.0.1", 40000, kTcpRst | kTcpAck, kT0));
  EXPECT_TRUE(f.rst_seen);
  EXPECT_TRUE(f.closed());
  table_->Advance(kT0 + absl::Seconds(11));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].reason, EndReason::kClosed);
}

TEST_F(FlowTableTest, NewSynAfterCloseReusesPortsAsNewFlow) {
  Handshake(*table_, kT0);
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpFin | kTcpAck, kT0 + absl::Seconds(1)));
  FlowState& old =
      Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpFin | kTcpAck, kT0 + absl::Seconds(1)));
  const std::uint64_t old_id = old.id;

  FlowState& fresh = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0 + absl::Seconds(2)));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].id, old_id);
  EXPECT_EQ(ended_[0].reason, EndReason::kReused);
  EXPECT_NE(fresh.id, old_id);
  EXPECT_FALSE(fresh.closed());
  EXPECT_EQ(fresh.syn_time, kT0 + absl::Seconds(2));
  EXPECT_EQ(fresh.stats[Index(Direction::kToResponder)].packets, 1u);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(table_->counters().created.Read(), 2u);
}

TEST_F(FlowTableTest, RetransmittedSynOnOpenFlowIsSameFlow) {
  FlowState& f = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  FlowState& g = Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0 + absl::Seconds(1)));
  EXPECT_EQ(&f, &g);
  EXPECT_TRUE(ended_.empty());
  EXPECT_EQ(table_->counters().created.Read(), 1u);
}

// ---------------------------------------------------------------------------------------
// Capacity.

TEST_F(FlowTableTest, EvictsIdlestFlowWhenFull) {
  FlowTableConfig config;
  config.max_flows = 3;
  Reset(config);
  Track(Tcp("10.0.0.1", 40001, "10.0.0.9", 22, kTcpSyn, kT0));
  const std::uint64_t second =
      Track(Udp("10.0.0.2", 40002, "10.0.0.9", 53, kT0 + absl::Seconds(1))).id;
  Track(Tcp("10.0.0.3", 40003, "10.0.0.9", 22, kTcpSyn, kT0 + absl::Seconds(2)));
  // The first flow becomes the most recently active.
  Track(Tcp("10.0.0.9", 22, "10.0.0.1", 40001, kTcpSyn | kTcpAck, kT0 + absl::Seconds(3)));
  EXPECT_TRUE(ended_.empty());

  Track(Tcp("10.0.0.4", 40004, "10.0.0.9", 22, kTcpSyn, kT0 + absl::Seconds(4)));
  ASSERT_EQ(ended_.size(), 1u);
  EXPECT_EQ(ended_[0].id, second);  // idlest across the TCP and UDP lists
  EXPECT_EQ(ended_[0].reason, EndReason::kEvicted);
  EXPECT_EQ(table_->size(), 3u);
  EXPECT_EQ(table_->counters().evicted.Read(), 1u);
  EXPECT_EQ(table_->counters().created.Read(), 4u);
  EXPECT_EQ(table_->counters().active.Read(), 3u);

  Track(Tcp("10.0.0.5", 40005, "10.0.0.9", 22, kTcpSyn, kT0 + absl::Seconds(5)));
  ASSERT_EQ(ended_.size(), 2u);
  EXPECT_EQ(ended_[1].originator.ip, Ip("10.0.0.3"));
  EXPECT_EQ(table_->counters().evicted.Read(), 2u);
}

TEST_F(FlowTableTest, EndAllEndsEveryFlowWithReason) {
  Handshake(*table_, kT0);
  Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0));
  Track(Tcp("10.0.0.3", 1, "10.0.0.4", 2, kTcpRst, kT0));  // on the closed list
  table_->EndAll(EndReason::kShutdown);
  ASSERT_EQ(ended_.size(), 3u);
  for (const Ended& e : ended_) {
    EXPECT_EQ(e.reason, EndReason::kShutdown);
  }
  EXPECT_EQ(table_->size(), 0u);
  EXPECT_EQ(table_->counters().active.Read(), 0u);
  table_->EndAll(EndReason::kShutdown);
  EXPECT_EQ(ended_.size(), 3u);
}

TEST_F(FlowTableTest, EndAllInPartsEndsAtMostThePartAndSaysWhatIsLeft) {
  Handshake(*table_, kT0);
  Track(Udp("10.0.0.1", 5000, "10.0.0.2", 53, kT0));
  Track(Tcp("10.0.0.3", 1, "10.0.0.4", 2, kTcpRst, kT0));  // on the closed list
  EXPECT_TRUE(table_->EndAll(EndReason::kShutdown, 2));
  EXPECT_EQ(ended_.size(), 2u);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_TRUE(table_->EndAll(EndReason::kShutdown, 0));  // a part of none ends none
  EXPECT_EQ(ended_.size(), 2u);
  // The last one: nothing is left after it.
  EXPECT_FALSE(table_->EndAll(EndReason::kShutdown, 1));
  EXPECT_EQ(ended_.size(), 3u);
  EXPECT_FALSE(table_->EndAll(EndReason::kShutdown, 0));
  EXPECT_EQ(ended_.size(), 3u);
}

TEST(FlowTable, EveryEndedFlowPassesThroughCallbackExactlyOnce) {
  FlowTableConfig config;
  config.max_flows = 256;
  config.udp_idle_timeout = absl::Seconds(30);
  config.tcp_idle_timeout = absl::Seconds(90);
  config.closed_timeout = absl::Seconds(5);
  std::map<std::uint64_t, int> ends;
  std::set<std::uint64_t> seen;
  std::uint64_t callbacks = 0;
  std::uint64_t reused = 0;
  FlowTable table(config, [&](FlowState& f, EndReason reason) {
    ++ends[f.id];
    ++callbacks;
    reused += reason == EndReason::kReused ? 1 : 0;
  });

  // A fixed pseudo-random mix of TCP and UDP packets over a few hundred endpoints, so the
  // table expires, closes, evicts and reuses flows.
  std::uint32_t rng = 12345;
  const auto next = [&rng] {
    rng = rng * 1103515245U + 12345U;
    return rng >> 8;
  };
  PacketTime now = kT0;
  for (int i = 0; i < 20000; ++i) {
    now += absl::Milliseconds(next() % 200);
    const std::string client =
        "10.0." + std::to_string(next() % 4) + "." + std::to_string(1 + next() % 50);
    const auto port = static_cast<std::uint16_t>(40000 + next() % 4);
    const bool to_server = next() % 2 == 0;
    DecodedPacket p;
    if (next() % 3 == 0) {
      p = to_server ? Udp(client.c_str(), port, "192.0.2.1", 53, now)
                    : Udp("192.0.2.1", 53, client.c_str(), port, now);
    } else {
      static constexpr std::uint8_t kFlags[] = {kTcpSyn, kTcpSyn | kTcpAck, kTcpAck,
                                                kTcpAck, kTcpFin | kTcpAck, kTcpRst};
      const std::uint8_t flags = kFlags[next() % 6];
      p = to_server ? Tcp(client.c_str(), port, "192.0.2.1", 22, flags, now)
                    : Tcp("192.0.2.1", 22, client.c_str(), port, flags, now);
    }
    Direction d;
    seen.insert(table.Track(p, d).id);
    ASSERT_LE(table.size(), config.max_flows);
  }
  table.EndAll(EndReason::kShutdown);

  EXPECT_EQ(callbacks, table.counters().created.Read());
  EXPECT_GT(table.counters().evicted.Read(), 0u);
  EXPECT_GT(table.counters().expired.Read(), 0u);
  EXPECT_GT(table.counters().closed.Read(), 0u);
  EXPECT_GT(reused, 0u);
  EXPECT_EQ(ends.size(), seen.size());
  for (const auto& [id, count] : ends) {
    EXPECT_EQ(count, 1) << "flow " << id;
    EXPECT_TRUE(seen.count(id)) << "ended a flow never returned by Track: " << id;
  }
}

// ---------------------------------------------------------------------------------------
// Flow ids.

std::vector<std::uint64_t> IdsFor(const std::vector<DecodedPacket>& packets) {
  FlowTable table(FlowTableConfig{}, nullptr);
  std::vector<std::uint64_t> ids;
  for (const DecodedPacket& p : packets) {
    Direction d;
    ids.push_back(table.Track(p, d).id);
  }
  return ids;
}

TEST(FlowTable, FlowIdsAreStableAndJsonSafe) {
  std::vector<DecodedPacket> packets;
  for (int i = 0; i < 200; ++i) {
    const PacketTime ts = kT0 + absl::Milliseconds(i);
    packets.push_back(
        Tcp("10.0.0.1", static_cast<std::uint16_t>(40000 + i), "10.0.0.2", 22, kTcpSyn, ts));
    packets.push_back(
        Udp("2001:db8::1", static_cast<std::uint16_t>(5000 + i), "2001:db8::2", 53, ts));
  }
  const std::vector<std::uint64_t> first = IdsFor(packets);
  EXPECT_EQ(first, IdsFor(packets));
  std::set<std::uint64_t> distinct(first.begin(), first.end());
  EXPECT_EQ(distinct.size(), packets.size());
  for (std::uint64_t id : first) {
    EXPECT_LT(id, std::uint64_t{1} << 53);
  }
  // Both directions and later packets of a flow carry the flow's id.
  const std::vector<std::uint64_t> pair =
      IdsFor({Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0),
              Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpSyn | kTcpAck, kT0 + absl::Seconds(1))});
  EXPECT_EQ(pair[0], pair[1]);
}

TEST(FlowTable, FlowIdIsTheSameInEveryProcess) {
  // FNV-1a over the canonical key and the first packet's time, masked to 53 bits. A
  // per-process seeded hash (absl::Hash) would change this value from run to run, and with
  // it every flow id already stored in alerts.
  const std::vector<std::uint64_t> ids =
      IdsFor({Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0)});
  EXPECT_EQ(ids[0], 2469459178071620ULL);
}

}  // namespace
}  // namespace relaywatch::flow

namespace relaywatch::flow {
namespace {

// A packet of 10.0.0.1:40000 -> 10.0.0.2:443 as a Linux sender numbers it (IPv4 ID `id`).
DecodedPacket Segment(std::uint16_t id, std::uint32_t seq, PacketTime ts, std::uint8_t ttl = 64) {
  DecodedPacket p = Tcp("10.0.0.1", 40000, "10.0.0.2", 443, kTcpAck, ts, 100);
  p.ip_id = id;
  p.seq = seq;
  p.ttl = ttl;
  return p;
}

// A sensor on both sides of a router (or a SPAN of a port's both directions) sees each
// packet twice, microseconds apart and one hop lower: the copy must change nothing, or every
// segment reads as a retransmission (tests/interop/mirror_twin.py --kind double).
TEST_F(FlowTableTest, SecondCopyOfAPacketIsSkippedAndCounted) {
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 443, kTcpSyn, kT0));
  bool duplicate = true;
  Direction d;
  table_->Track(Segment(7, 1000, kT0 + absl::Milliseconds(1)), d, duplicate);
  EXPECT_FALSE(duplicate);
  FlowState& f = table_->Track(
      Segment(7, 1000, kT0 + absl::Milliseconds(1) + absl::Microseconds(20), 63), d, duplicate);
  EXPECT_TRUE(duplicate);
  EXPECT_EQ(d, Direction::kToResponder);
  EXPECT_EQ(f.stats[0].packets, 2u);  // the SYN and the segment, not its copy
  EXPECT_EQ(table_->counters().duplicates.Read(), 1u);
}

TEST_F(FlowTableTest, RetransmissionIsNotACopy) {
  Direction d;
  bool duplicate = true;
  table_->Track(Segment(7, 1000, kT0), d, duplicate);
  // The same bytes sent again: Linux gives the new packet the next ID.
  table_->Track(Segment(8, 1000, kT0 + absl::Microseconds(300)), d, duplicate);
  EXPECT_FALSE(duplicate);
  // A packet equal in every field, but later than the window (2 ms).
  table_->Track(Segment(7, 1000, kT0 + absl::Milliseconds(3)), d, duplicate);
  EXPECT_FALSE(duplicate);
  EXPECT_EQ(table_->counters().duplicates.Read(), 0u);
}

TEST_F(FlowTableTest, CopyOfASynDoesNotReuseTheConnection) {
  Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0));
  Track(Tcp("10.0.0.2", 22, "10.0.0.1", 40000, kTcpRst | kTcpAck, kT0 + absl::Microseconds(5)));
  // The SYN's copy from the router's other side, after the RST that closed the connection.
  FlowState& f =
      Track(Tcp("10.0.0.1", 40000, "10.0.0.2", 22, kTcpSyn, kT0 + absl::Microseconds(20)));
  EXPECT_TRUE(ended_.empty());
  EXPECT_EQ(table_->counters().created.Read(), 1u);
  EXPECT_EQ(f.stats[0].packets, 1u);
}

TEST_F(FlowTableTest, ZeroWindowKeepsEveryCopy) {
  FlowTableConfig config;
  config.duplicate_window = absl::ZeroDuration();
  Reset(config);
  Direction d;
  bool duplicate = true;
  table_->Track(Segment(7, 1000, kT0), d, duplicate);
  FlowState& f = table_->Track(Segment(7, 1000, kT0 + absl::Microseconds(20), 63), d, duplicate);
  EXPECT_FALSE(duplicate);
  EXPECT_EQ(f.stats[0].packets, 2u);
}

}  // namespace
}  // namespace relaywatch::flow
