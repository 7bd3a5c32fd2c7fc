#include "detectors/common/signatures.h"

#include <vector>

#include "detectors/common/builtin_signatures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relaywatch::detectors {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<SignatureSet> Parse(const std::string& yaml) {
  auto root = config::LoadString(yaml, "sig.yaml");
  if (!root.ok()) {
    return root.status();
  }
  return SignatureSet::Parse(*root);
}

TEST(HostMatches, ExactAndSuffixWildcards) {
  EXPECT_TRUE(HostMatches("net.anydesk.com", "NET.AnyDesk.com"));
  EXPECT_TRUE(HostMatches("*.anydesk.com", "relay-1a2b3c4d.net.anydesk.com"));
  EXPECT_TRUE(HostMatches("*.anydesk.com", "boot.anydesk.com."));
  EXPECT_FALSE(HostMatches("*.anydesk.com", "anydesk.com"));
  EXPECT_FALSE(HostMatches("*.anydesk.com", "evilanydesk.com"));
  EXPECT_FALSE(HostMatches("anydesk.com", "www.anydesk.com"));
}

TEST(SignatureSet, ShippedFileParsesAndMatches) {
  auto root = config::LoadString(BuiltinSignatures(), "signatures.yaml");
  ASSERT_TRUE(root.ok()) << root.status();
  absl::StatusOr<SignatureSet> set = SignatureSet::Parse(*root);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_GE(set->apps().size(), 15u);
  ASSERT_NE(set->MatchSni("relay-0a1b2c3d.net.anydesk.com"), nullptr);
  EXPECT_EQ(set->MatchSni("relay-0a1b2c3d.net.anydesk.com")->name, "anydesk");
  EXPECT_EQ(set->MatchAlpn("anydesk/8.0.0")->name, "anydesk");
  EXPECT_EQ(set->MatchDns("router15.teamviewer.com")->name, "teamviewer");
  EXPECT_EQ(set->MatchSni("remotedesktop-pa.googleapis.com")->name, "chrome_remote_desktop");
  EXPECT_EQ(set->MatchCertificate("CN=localhost,OU=PiKVM,O=PiKVM,C=US")->name, "pikvm");
  EXPECT_EQ(set->MatchSni("www.google.com"), nullptr);
  EXPECT_EQ(set->MatchSni("googleapis.com"), nullptr);
  const AppSignature* rustdesk = set->MatchDns("rs-ny.rustdesk.com");
  ASSERT_NE(rustdesk, nullptr);
  EXPECT_TRUE(set->PortHint(*rustdesk, 6, 21117));
  EXPECT_FALSE(set->PortHint(*rustdesk, 6, 443));
}

TEST(SignatureSet, PayloadPatternsHonourDirectionAndOffset) {
  auto set = Parse(
      "apps:\n"
      "  - name: demo\n"
      "    payload: [{direction: server, offset: 2, hex: 'ab cd'}]\n"
      "    controlled: responder\n");
  ASSERT_TRUE(set.ok()) << set.status();
  const std::vector<std::uint8_t> bytes = {0x00, 0x01, 0xab, 0xcd, 0xef};
  EXPECT_NE(set->MatchPayload(1, bytes), nullptr);
  EXPECT_EQ(set->MatchPayload(0, bytes), nullptr);  // wrong direction
  EXPECT_EQ(set->MatchPayload(1, std::span(bytes).first(3)), nullptr);  // too short
  EXPECT_EQ(set->apps()[0].controlled, AppSignature::Controlled::kResponder);
}

TEST(SignatureSet, ErrorsNameFileLineAndKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  for (const Case& c : {
           Case{"apps:\n  - name: x\n    snii: [a.com]\n", "sig.yaml:3:5: apps[0].snii"},
           Case{"apps:\n  - name: X\n    sni: [a.com]\n", "sig.yaml:2:11: apps[0].name"},
           Case{"apps:\n  - name: x\n    sni: ['a b']\n", "bad host pattern"},
           Case{"apps:\n  - name: x\n    dns: [a.com]\n    ports: [tcp/0]\n", "apps[0].ports"},
           Case{"apps:\n  - name: x\n    ports: [tcp/22]\n", "ports alone are only hints"},
           Case{"apps:\n  - {name: x, dns: [a.com]}\n  - {name: x, dns: [b.com]}\n",
                "duplicate tool"},
           Case{"apps:\n  - name: x\n    dns: [a.com]\n    controlled: both\n", "controlled"},
       }) {
    absl::StatusOr<SignatureSet> set = Parse(c.yaml);
    ASSERT_FALSE(set.ok()) << c.yaml;
    EXPECT_THAT(set.status().message(), HasSubstr(c.expected)) << c.yaml;
  }
}

}  // namespace
}  // namespace relaywatch::detectors
