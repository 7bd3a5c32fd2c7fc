#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "detectors/remote_access/protocols.h"

namespace relaywatch::detectors::remote_access {
namespace {

Bytes B(const std::string& s) {
  return Bytes(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
Bytes B(const std::vector<std::uint8_t>& v) {
  return Bytes(v.data(), v.size());
}

TEST(SshBanner, ParsesVersionSoftwareAndComments) {
  auto b = ParseSshBanner(B("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->proto_version, "2.0");
  EXPECT_EQ(b->software, "OpenSSH_9.2p1");
  EXPECT_EQ(b->comments, "Debian-2+deb12u3");
}

TEST(SshBanner, AcceptsLfOnlyAndOldVersions) {
  EXPECT_TRUE(ParseSshBanner(B("SSH-1.99-Cisco-1.25\n")).has_value());
  auto v1 = ParseSshBanner(B("SSH-1.5-1.2.27\n"));
  ASSERT_TRUE(v1.has_value());
  EXPECT_EQ(v1->proto_version, "1.5");
}

TEST(SshBanner, SkipsServerPreambleLines) {
  auto b = ParseSshBanner(B("Welcome to host\r\nUnauthorised access prohibited\r\nSSH-2.0-x\r\n"));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->software, "x");
}

TEST(SshBanner, PreambleLinesAreAnyTextAndCounted) {
  std::string preamble;
  for (int i = 0; i < 12; ++i) {
    preamble += "\t\xe2\x94\x80 notice " + std::to_string(i) + "\n";
  }
  std::size_t skipped = 0;
  auto b = ParseSshBanner(B(preamble + "SSH-2.0-x\r\n"), nullptr, &skipped);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->software, "x");
  // Without the identification yet: the complete lines, not the partial one after them.
  EXPECT_FALSE(ParseSshBanner(B(preamble + "more te"), nullptr, &skipped).has_value());
  EXPECT_EQ(skipped, preamble.size());
  // A control character is no text: nothing is skipped past it.
  EXPECT_FALSE(ParseSshBanner(B("ok\n\x01bin\nSSH-2.0-x\n"), nullptr, &skipped).has_value());
  EXPECT_EQ(skipped, 3u);
}

TEST(SshBanner, IncompleteLineAsksForMore) {
  bool incomplete = false;
  EXPECT_FALSE(ParseSshBanner(B("SSH-2.0-Open"), &incomplete).has_value());
  EXPECT_TRUE(incomplete);
  EXPECT_FALSE(ParseSshBanner(B("GET / HTTP/1.1"), &incomplete).has_value());
  EXPECT_FALSE(incomplete);
}

TEST(SshBanner, RejectsLookalikes) {
  EXPECT_FALSE(ParseSshBanner(B("SSH-2.0-\r\n")).has_value());         // no software
  EXPECT_FALSE(ParseSshBanner(B("SSH-x.0-foo\r\n")).has_value());      // bad version
  EXPECT_FALSE(ParseSshBanner(B("SSH-2.0-fo\x01o\r\n")).has_value());  // control char
  EXPECT_FALSE(ParseSshBanner(B("HTTP/1.1 200 OK\r\n\r\n")).has_value());
  EXPECT_FALSE(ParseSshBanner(B(std::string(300, 'a') + "\nSSH-2.0-x\n")).has_value());
}

// mstsc's first packet: TPKT, X.224 CR, cookie, RDP_NEG_REQ (TLS|HYBRID|HYBRID_EX).
std::vector<std::uint8_t> RdpRequest(const std::string& cookie, bool neg) {
  std::vector<std::uint8_t> v = {0x03, 0x00, 0x00, 0x00, 0x00, 0xe0, 0, 0, 0, 0, 0};
  for (char c : cookie)
    v.push_back(static_cast<std::uint8_t>(c));
  if (neg) {
    for (int b : {0x01, 0x00, 0x08, 0x00, 0x0b, 0x00, 0x00, 0x00})
      v.push_back(b);
  }
  v[3] = static_cast<std::uint8_t>(v.size());
  v[4] = static_cast<std::uint8_t>(v.size() - 5);
  return v;
}

TEST(RdpConnectionRequest, ParsesCookieAndRequestedProtocols) {
  auto r = ParseRdpConnectionRequest(B(RdpRequest("Cookie: mstshash=alice\r\n", true)));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->cookie, "alice");
  EXPECT_TRUE(r->has_negotiation);
  EXPECT_EQ(r->requested_protocols, 0x0bu);
  EXPECT_EQ(RdpProtocolNames(r->requested_protocols), "ssl,hybrid,hybrid_ex");
}

TEST(RdpConnectionRequest, AcceptsBareRequestAndRoutingToken) {
  EXPECT_TRUE(ParseRdpConnectionRequest(B(RdpRequest("", false))).has_value());
  auto r = ParseRdpConnectionRequest(B(RdpRequest("Cookie: msts=3640205228.15629.0000\r\n", true)));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->has_routing_token);
}

TEST(RdpConnectionRequest, RejectsOtherIsoTransportUsers) {
  // S7comm's COTP connection request carries TSAP parameters (0xc1, 0xc2, 0xc0).
  std::vector<std::uint8_t> s7 = {0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00,
                                  0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x02, 0xc0, 0x01, 0x0a};
  EXPECT_FALSE(ParseRdpConnectionRequest(B(s7)).has_value());
  auto bad_li = RdpRequest("", true);
  bad_li[4] += 1;
  EXPECT_FALSE(ParseRdpConnectionRequest(B(bad_li)).has_value());
  auto truncated = RdpRequest("Cookie: mstshash=bob\r\n", true);
  truncated.pop_back();
  EXPECT_FALSE(ParseRdpConnectionRequest(B(truncated)).has_value());
  EXPECT_FALSE(ParseRdpConnectionRequest(B(RdpRequest("Cookie: x", false))).has_value());
}

TEST(RdpConnectionConfirm, ParsesSelectedProtocolAndFailure) {
  std::vector<std::uint8_t> cc = {0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34,
                                  0x00, 0x02, 0x1f, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00};
  auto c = ParseRdpConnectionConfirm(B(cc));
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->failure);
  EXPECT_EQ(c->selected_protocol, 2u);
  cc[11] = 0x03;
  cc[15] = 0x05;
  c = ParseRdpConnectionConfirm(B(cc));
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->failure);
  EXPECT_EQ(c->selected_protocol, 5u);
  cc[5] = 0xe0;  // a request is not a confirm
  EXPECT_FALSE(ParseRdpConnectionConfirm(B(cc)).has_value());
}

TEST(RfbVersion, ParsesExactlyTwelveBytes) {
  auto v = ParseRfbVersion(B("RFB 003.008\n"));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->major, 3);
  EXPECT_EQ(v->minor, 8);
  EXPECT_TRUE(ParseRfbVersion(B("RFB 003.889\n")).has_value());
  EXPECT_FALSE(ParseRfbVersion(B("RFB 003.008")).has_value());
  EXPECT_FALSE(ParseRfbVersion(B("RFB 003.008\r\n")).has_value());
  EXPECT_FALSE(ParseRfbVersion(B("RFB 00a.008\n")).has_value());
  EXPECT_FALSE(ParseRfbVersion(B("RFB 000.000\n")).has_value());
}

// A FramebufferUpdateRequest for the whole 800x600 screen.
std::vector<std::uint8_t> UpdateRequest(std::uint8_t incremental) {
  return {3, incremental, 0, 0, 0, 0, 0x03, 0x20, 0x02, 0x58};
}

TEST(RfbClientMessages, ARequestAloneOrAmongOtherMessages) {
  auto alone = ParseRfbClientMessages(B(UpdateRequest(1)));
  ASSERT_TRUE(alone.has_value());
  EXPECT_TRUE(alone->update_request);
  EXPECT_FALSE(alone->input);  // a viewer asks after every update, person or not
  // A key press and a pointer move that went out in the same segment.
  std::vector<std::uint8_t> v = {4, 1, 0, 0, 0, 0, 0, 0x61, 5, 0, 0, 10, 0, 20};
  auto input = ParseRfbClientMessages(B(v));
  ASSERT_TRUE(input.has_value());
  EXPECT_FALSE(input->update_request);
  EXPECT_TRUE(input->input);
  // A key press behind a request in one segment is input all the same.
  std::vector<std::uint8_t> both = UpdateRequest(1);
  both.insert(both.end(), {4, 0, 0, 0, 0, 0, 0, 0x61});
  EXPECT_TRUE(ParseRfbClientMessages(B(both))->input);
  // Pasted text is the person's too.
  EXPECT_TRUE(
      ParseRfbClientMessages(B(std::vector<std::uint8_t>{6, 0, 0, 0, 0, 0, 0, 1, 'a'}))->input);
  // A viewer's first messages: SetEncodings with two encodings, then the request for the
  // whole screen.
  std::vector<std::uint8_t> e = {2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::vector<std::uint8_t> full = UpdateRequest(0);
  e.insert(e.end(), full.begin(), full.end());
  auto first = ParseRfbClientMessages(B(e));
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->update_request);
  // SetPixelFormat (20 bytes) alone: no request yet.
  std::vector<std::uint8_t> pf(20, 0);
  EXPECT_FALSE(ParseRfbClientMessages(B(pf))->update_request);
  EXPECT_FALSE(ParseRfbClientMessages(B(pf))->input);
}

TEST(RfbClientMessages, NothingThatDoesNotParseWhole) {
  std::vector<std::uint8_t> cut = UpdateRequest(1);
  cut.pop_back();
  EXPECT_FALSE(ParseRfbClientMessages(B(cut)).has_value());
  std::vector<std::uint8_t> more = UpdateRequest(1);
  more.push_back(5);  // the start of a message that does not follow
  EXPECT_FALSE(ParseRfbClientMessages(B(more)).has_value());
  EXPECT_FALSE(ParseRfbClientMessages(B("RFB 003.008\n")).has_value());
  EXPECT_FALSE(ParseRfbClientMessages(B(std::vector<std::uint8_t>{1})).has_value());  // ClientInit
  // ClientCutText whose length runs past the segment.
  EXPECT_FALSE(ParseRfbClientMessages(B(std::vector<std::uint8_t>{6, 0, 0, 0, 0, 0, 1, 0, 'a'}))
                   .has_value());
  EXPECT_FALSE(ParseRfbClientMessages(Bytes()).has_value());
}

std::vector<std::uint8_t> RdpUdp(std::uint32_t ack, std::uint16_t flags, std::uint32_t seq,
                                 std::uint16_t mtu) {
  std::vector<std::uint8_t> v = {static_cast<std::uint8_t>(ack >> 24),
                                 static_cast<std::uint8_t>(ack >> 16),
                                 static_cast<std::uint8_t>(ack >> 8),
                                 static_cast<std::uint8_t>(ack),
                                 0x00,
                                 0x40,
                                 static_cast<std::uint8_t>(flags >> 8),
                                 static_cast<std::uint8_t>(flags),
                                 static_cast<std::uint8_t>(seq >> 24),
                                 static_cast<std::uint8_t>(seq >> 16),
                                 static_cast<std::uint8_t>(seq >> 8),
                                 static_cast<std::uint8_t>(seq),
                                 static_cast<std::uint8_t>(mtu >> 8),
                                 static_cast<std::uint8_t>(mtu),
                                 static_cast<std::uint8_t>(mtu >> 8),
                                 static_cast<std::uint8_t>(mtu)};
  v.resize(1232);
  return v;
}

TEST(RdpUdp, SynAndSynAck) {
  auto syn = ParseRdpUdpSyn(B(RdpUdp(0xffffffff, 0x0001, 0x1234, 1232)));
  ASSERT_TRUE(syn.has_value());
  EXPECT_FALSE(syn->ack);
  EXPECT_EQ(syn->initial_sequence, 0x1234u);
  auto ack = ParseRdpUdpSyn(B(RdpUdp(0x1234, 0x0005, 0x9999, 1232)));
  ASSERT_TRUE(ack.has_value());
  EXPECT_TRUE(ack->ack);
  EXPECT_EQ(ack->source_ack, 0x1234u);
  EXPECT_FALSE(ParseRdpUdpSyn(B(RdpUdp(0x1234, 0x0001, 1, 1232))).has_value());      // SYN acks
  EXPECT_FALSE(ParseRdpUdpSyn(B(RdpUdp(0xffffffff, 0x0001, 1, 1500))).has_value());  // MTU
}

TEST(RdpUdp, DataDatagramCarriesSnCoded) {
  // Client data from a real session (rdp2.pcap): ACK|DATA, one ACK vector element.
  std::vector<std::uint8_t> d = {0x10, 0x97, 0x60, 0x34, 0x04, 0x00, 0x00, 0x0c, 0x00,
                                 0x01, 0x01, 0x00, 0xe6, 0x5f, 0x84, 0x6e, 0xe6, 0x5f,
                                 0x84, 0x6e, 0x17, 0x03, 0x03, 0x00, 0x34};
  auto dg = ParseRdpUdpDatagram(B(d));
  ASSERT_TRUE(dg.has_value());
  EXPECT_EQ(dg->source_ack, 0x10976034u);
  EXPECT_TRUE(dg->has_data);
  EXPECT_EQ(dg->sn_coded, 0xe65f846eu);
  d[7] = 0x09;  // SYN set: not a data datagram
  EXPECT_FALSE(ParseRdpUdpDatagram(B(d)).has_value());
}

std::vector<std::uint8_t> Hex(const std::string& hex) {
  std::vector<std::uint8_t> v;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    v.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return v;
}

TEST(TeamViewer, ChainsOldAndNewFrames) {
  // `17 24 cmd len16` frames (5-byte header) and `11 30 cmd flags len32` (24-byte header).
  std::vector<std::uint8_t> s =
      Hex("17240a0400"
          "01020304"
          "17243c0200"
          "aabb");
  EXPECT_EQ(TeamViewerTcpFrames(B(s)), 2);
  std::vector<std::uint8_t> v2 =
      Hex("11303600"
          "02000000");
  v2.resize(24 + 2, 0);
  v2.push_back(0x11);  // the next frame's magic starts right after
  v2.push_back(0x30);
  EXPECT_EQ(TeamViewerTcpFrames(B(v2)), 1);
  s.push_back(0x42);  // a byte where a frame must start
  s.push_back(0x42);
  EXPECT_EQ(TeamViewerTcpFrames(B(s)), 0);
  EXPECT_EQ(TeamViewerTcpFrames(B(Hex("1724ff0100"))), 0);  // incomplete frame: none yet
}

TEST(TeamViewer, UdpDatagramHoldsOneFrame) {
  std::vector<std::uint8_t> d =
      Hex("0000000000000000442603"
          "17247304"
          "00"
          "00000000");
  EXPECT_TRUE(IsTeamViewerUdp(B(d)));
  d.push_back(0);
  EXPECT_FALSE(IsTeamViewerUdp(B(d)));
}

TEST(NoMachine, GreetingsAndMediaDatagrams) {
  EXPECT_EQ(ParseNxGreeting(B("NXSH-8.10.1\n")), NxGreeting::kClient);
  EXPECT_EQ(ParseNxGreeting(B("NXD-8.10.1\n")), NxGreeting::kServer);
  EXPECT_EQ(ParseNxGreeting(B("NXD-eight\n")), NxGreeting::kNone);
  EXPECT_EQ(ParseNxGreeting(B("NXSH-8.10.1")), NxGreeting::kNone);
  EXPECT_EQ(NxUdpCounter(B(Hex("010001000a0003000000"))), 3);
  EXPECT_EQ(NxUdpCounter(B(Hex("010001000b0003000000"))), -1);  // length field disagrees
}

TEST(Radmin, HandshakeForms) {
  EXPECT_EQ(ParseRadmin(B(Hex("01000000010000000808"))), RadminMessage::kClientHello);
  std::vector<std::uint8_t> server = Hex("010000002500000212080200000a");
  server.resize(46, 0);
  EXPECT_EQ(ParseRadmin(B(server)), RadminMessage::kServerHello);
  EXPECT_EQ(ParseRadmin(B(Hex("0100000005000002272702000000"))), RadminMessage::kResume);
  EXPECT_EQ(ParseRadmin(B(Hex("00000001010000000808"))), RadminMessage::kNone);
}

TEST(Citrix, IcaAndCgpGreetings) {
  EXPECT_TRUE(IsIcaGreeting(B(Hex("7f7f49434100"))));
  EXPECT_FALSE(IsIcaGreeting(B(Hex("7f7f494341"))));
  EXPECT_TRUE(
      IsCgpGreeting(B(std::string("\x1a"
                                  "CGP/01"))));
  EXPECT_FALSE(IsCgpGreeting(B(std::string("CGP/01"))));
}

}  // namespace
}  // namespace relaywatch::detectors::remote_access
