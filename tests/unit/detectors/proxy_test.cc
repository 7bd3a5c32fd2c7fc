#include "detectors/common/proxy.h"

#include <string>

#include "gtest/gtest.h"

namespace relaywatch::detectors {
namespace {

std::span<const std::uint8_t> B(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::optional<ProxyRequest> Request(const std::string& s, bool* incomplete) {
  return ParseProxyRequest(B(s), incomplete);
}

std::optional<ProxyReply> Reply(ProxyProtocol p, const std::string& s, bool* incomplete) {
  return ParseProxyReply(p, B(s), incomplete);
}

// RFC 1928: greeting offering "no authentication", CONNECT to 10.0.0.1:3389 (Arkime's
// socks5-rdp.pcap), and the server's answers.
const std::string kSocks5Greeting("\x05\x01\x00", 3);
const std::string kSocks5Connect("\x05\x01\x00\x01\x0a\x00\x00\x01\x0d\x3d", 10);
const std::string kSocks5Reply("\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);

TEST(ProxyRequest, Socks5ConnectToAnAddress) {
  bool incomplete = true;
  const auto r = Request(kSocks5Greeting + kSocks5Connect + "RDP", &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(incomplete);
  EXPECT_EQ(r->protocol, ProxyProtocol::kSocks5);
  EXPECT_EQ(r->target, "10.0.0.1");
  EXPECT_EQ(r->target_port, 3389);
  EXPECT_EQ(r->length, 13u);
  EXPECT_EQ(ProxyProtocolName(r->protocol), "socks5");
}

TEST(ProxyRequest, Socks5WithPasswordAndAHostNameOrIpv6) {
  bool incomplete = false;
  // RFC 1929 subnegotiation (user "u", password "pw"), then a domain name.
  const std::string auth("\x01\x01u\x02pw", 6);
  const std::string by_name = std::string("\x05\x02\x00\x02", 4) + auth +
                              std::string("\x05\x01\x00\x03\x0b", 5) + "example.org" +
                              std::string("\x00\x16", 2);
  auto r = Request(by_name, &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "example.org");
  EXPECT_EQ(r->target_port, 22);
  EXPECT_EQ(r->length, by_name.size());
  std::string v6 = kSocks5Greeting + std::string("\x05\x01\x00\x04", 4) + std::string(15, '\0') +
                   std::string("\x01\x17\x0c", 3);
  r = Request(v6, &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "::1");  // as every address in the events
  EXPECT_EQ(r->target_port, 5900);
}

TEST(ProxyRequest, EveryPrefixOfARequestIsIncompleteNeverAMatch) {
  for (const std::string& full :
       {kSocks5Greeting + kSocks5Connect, std::string("\x04\x01\x00\x16\x0a\x00\x00\x05u\x00", 10),
        std::string("CONNECT srv.example:22 HTTP/1.1\r\nHost: srv.example:22\r\n\r\n")}) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      bool incomplete = false;
      EXPECT_FALSE(Request(full.substr(0, n), &incomplete)) << n;
      EXPECT_TRUE(incomplete) << full.substr(0, n);
    }
    bool incomplete = true;
    EXPECT_TRUE(Request(full, &incomplete));
    EXPECT_FALSE(incomplete);
  }
}

TEST(ProxyRequest, Socks4And4a) {
  bool incomplete = false;
  auto r = Request(std::string("\x04\x01\x00\x16\x0a\x00\x00\x05user\x00SSH-", 17), &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->protocol, ProxyProtocol::kSocks4);
  EXPECT_EQ(r->target, "10.0.0.5");
  EXPECT_EQ(r->target_port, 22);
  EXPECT_EQ(r->length, 13u);
  // 4a: address 0.0.0.x asks the proxy to resolve the name after the user id.
  r = Request(std::string("\x04\x01\x0d\x3d\x00\x00\x00\x01\x00rdp.corp\x00", 18), &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "rdp.corp");
  EXPECT_EQ(r->target_port, 3389);
}

TEST(ProxyRequest, HttpConnectWithHeadersAndIpv6) {
  bool incomplete = false;
  const std::string head =
      "CONNECT [2001:DB8:0::7]:5900 HTTP/1.1\r\nHost: [2001:DB8:0::7]:5900\r\n"
      "Proxy-Authorization: Basic dTpw\r\n\r\n";
  const auto r = Request(head + "RFB 003.008\n", &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->protocol, ProxyProtocol::kHttpConnect);
  EXPECT_EQ(r->target, "2001:db8::7");  // as every address in the events
  EXPECT_EQ(r->target_port, 5900);
  EXPECT_EQ(r->length, head.size());
}

// A spam bot's request (Zeek's connect-with-smtp.pcap), which its proxy granted.
TEST(ProxyRequest, HttpConnectWithMoreBeforeTheVersion) {
  bool incomplete = false;
  const std::string head =
      "CONNECT mailin03.sul.t-online.de:25 / HTTP/1.0\r\n"
      "Mozilla 4.0 (compatible; MSIE 5.01; Windows NT 5.0)\r\n\r\n";
  const auto r = Request(head, &incomplete);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "mailin03.sul.t-online.de");
  EXPECT_EQ(r->target_port, 25);
  EXPECT_EQ(r->length, head.size());
}

TEST(ProxyRequest, OtherBytesAreNoRequest) {
  for (const std::string& s :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string("CONNECTX a:1 HTTP/1.1\r\n\r\n"),
        std::string("CONNECT a HTTP/1.1\r\n\r\n"), std::string("CONNECT a:0 HTTP/1.1\r\n\r\n"),
        std::string("CONNECT a:70000 HTTP/1.1\r\n\r\n"), std::string("CONNECT a:1 HTTP/2\r\n\r\n"),
        std::string("CONNECT a:1 HTTP/1.1\r\nX: \x01\r\n\r\n"),
        std::string("\x05\x00", 2),                            // no methods
        std::string("\x05\x01\xff\x05\x01\x00\x01", 7),        // "no acceptable" offered
        kSocks5Greeting + std::string("\x05\x03\x00\x01", 4),  // UDP ASSOCIATE
        kSocks5Greeting + std::string("\x05\x01\x00\x02", 4),  // bad address type
        kSocks5Greeting + std::string("\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x00", 10),  // port 0
        std::string("\x04\x02\x00\x16\x0a\x00\x00\x05\x00", 9),                         // BIND
        std::string("\x04\x01\x00\x16\x00\x00\x00\x00\x00", 9),  // address 0.0.0.0
        std::string("SSH-2.0-x\r\n"), std::string("\x16\x03\x01", 3)}) {
    bool incomplete = true;
    EXPECT_FALSE(Request(s, &incomplete)) << s;
    EXPECT_FALSE(incomplete) << s;
  }
}

TEST(ProxyReply, Socks5GrantedRefusedAndAuthentication) {
  bool incomplete = false;
  auto r =
      Reply(ProxyProtocol::kSocks5, std::string("\x05\x00", 2) + kSocks5Reply + "RFB", &incomplete);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->length, 12u);
  r = Reply(ProxyProtocol::kSocks5,
            std::string("\x05\x02\x01\x00", 4) + std::string("\x05\x05\x00\x01", 4) +
                std::string(6, '\0'),
            &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->granted);  // connection refused
  r = Reply(ProxyProtocol::kSocks5, std::string("\x05\x02\x01\x01", 4), &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->granted);  // wrong password
  r = Reply(ProxyProtocol::kSocks5, std::string("\x05\xff", 2), &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->granted);
  // GSSAPI encapsulates what follows: not followed.
  EXPECT_FALSE(Reply(ProxyProtocol::kSocks5, std::string("\x05\x01\x01\x01", 4), &incomplete));
  EXPECT_FALSE(incomplete);
  const std::string full = std::string("\x05\x00", 2) + kSocks5Reply;
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_FALSE(Reply(ProxyProtocol::kSocks5, full.substr(0, n), &incomplete)) << n;
    EXPECT_TRUE(incomplete) << n;
  }
}

TEST(ProxyReply, Socks4AndHttp) {
  bool incomplete = false;
  auto r = Reply(ProxyProtocol::kSocks4, std::string("\x00\x5a\x00\x00\x00\x00\x00\x00", 8),
                 &incomplete);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->length, 8u);
  r = Reply(ProxyProtocol::kSocks4, std::string("\x00\x5b\x00\x00\x00\x00\x00\x00", 8),
            &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->granted);
  EXPECT_FALSE(Reply(ProxyProtocol::kSocks4, std::string("\x05\x00", 2), &incomplete));
  EXPECT_FALSE(incomplete);

  const std::string ok = "HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n";
  r = Reply(ProxyProtocol::kHttpConnect, ok + "SSH-2.0-x\r\n", &incomplete);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->length, ok.size());
  r = Reply(ProxyProtocol::kHttpConnect, "HTTP/1.0 407 Proxy Authentication Required\n\n",
            &incomplete);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->granted);
  EXPECT_FALSE(Reply(ProxyProtocol::kHttpConnect, "HTTP/1.1 200 OK\r\n", &incomplete));
  EXPECT_TRUE(incomplete);
  EXPECT_FALSE(Reply(ProxyProtocol::kHttpConnect, "SSH-2.0-OpenSSH\r\n\r\n", &incomplete));
  EXPECT_FALSE(incomplete);
  EXPECT_FALSE(Reply(ProxyProtocol::kHttpConnect, "HTTP/1.1 2x0 OK\r\n\r\n", &incomplete));
  EXPECT_FALSE(incomplete);
}

}  // namespace
}  // namespace relaywatch::detectors
