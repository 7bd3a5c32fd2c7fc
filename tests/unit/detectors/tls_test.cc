#include "detectors/tls/tls.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "capture/flow/flow_table.h"
#include "detectors/common/ja4.h"
#include "detectors/common/quic.h"
#include "detectors/common/tls.h"
#include "tests/common/tls_wire.h"

namespace relaywatch::detectors::tls {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using tls_wire::Append;
using tls_wire::ByteVec;
using tls_wire::ClientHelloBody;
using tls_wire::DtlsSpec;
using tls_wire::Handshake;
using tls_wire::HelloSpec;
using tls_wire::Put16;
using tls_wire::Put24;
using tls_wire::Put8;
using tls_wire::Record;
using tls_wire::ServerHelloBody;
using tls_wire::Str;
using tls_wire::U16s;
using tls_wire::Vec16;
using tls_wire::Vec8;
using tls_wire::View;
namespace common = ::relaywatch::detectors::common;

// A certificate made in the test: self-signed, or signed by a separate CA key.
ByteVec MakeCertificateDer(bool self_signed) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> ca_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), X509_free);
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 42);
  ASN1_TIME_set_string(X509_getm_notBefore(x.get()), "20240101000000Z");
  ASN1_TIME_set_string(X509_getm_notAfter(x.get()), "20340102030405Z");
  X509_set_pubkey(x.get(), key.get());
  X509_NAME* subject = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Relay, Inc."), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("AnyDesk Client"), -1, -1, 0);
  if (self_signed) {
    X509_set_issuer_name(x.get(), subject);
    X509_sign(x.get(), key.get(), EVP_sha256());
  } else {
    std::unique_ptr<X509_NAME, decltype(&X509_NAME_free)> issuer(X509_NAME_new(), X509_NAME_free);
    X509_NAME_add_entry_by_txt(issuer.get(), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("Test CA"), -1, -1, 0);
    X509_set_issuer_name(x.get(), issuer.get());
    X509_sign(x.get(), ca_key.get(), EVP_sha256());
  }
  unsigned char* der = nullptr;
  const int size = i2d_X509(x.get(), &der);
  ByteVec out(der, der + size);
  OPENSSL_free(der);
  return out;
}

ByteVec CertificateBody(const ByteVec& der, std::size_t extra_chain_bytes = 0) {
  ByteVec list;
  Put24(list, static_cast<std::uint32_t>(der.size()));
  Append(list, der);
  if (extra_chain_bytes > 0) {
    Put24(list, static_cast<std::uint32_t>(extra_chain_bytes));
    Append(list, ByteVec(extra_chain_bytes, 0x30));
  }
  ByteVec b;
  Put24(b, static_cast<std::uint32_t>(list.size()));
  Append(b, list);
  return b;
}

// ------------------------------------------------------------------------------------------
// JA4.

constexpr char kSpecJa4[] = "t13d1516h2_8daaf6152771_e5627efa2ab1";
constexpr char kSpecJa4R[] =
    "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
    "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
    "0403,0804,0401,0503,0805,0501,0806,0601";
constexpr char kSpecJa4O[] = "t13d1516h2_acb858a92679_18f69afefd3d";
constexpr char kSpecJa4Ro[] =
    "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_"
    "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_"
    "0403,0804,0401,0503,0805,0501,0806,0601";

TEST(Ja4, ReproducesTheSpecificationExampleIgnoringGrease) {
  const ByteVec body = ClientHelloBody();
  common::ClientHello hello;
  ASSERT_EQ(common::ParseClientHello(View(body), false, hello), common::TlsParseStatus::kOk);
  EXPECT_EQ(hello.cipher_suites.size(), 16u);  // GREASE kept by the parser
  EXPECT_EQ(hello.extensions.size(), 18u);
  EXPECT_TRUE(hello.has_sni);
  EXPECT_EQ(hello.sni, "www.example.com");
  EXPECT_EQ(hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(hello.MaxOfferedVersion(), common::kTls13);
  const common::Ja4 ja4 = common::ComputeJa4(hello, common::Ja4Transport::kTcp);
  EXPECT_EQ(ja4.ja4, kSpecJa4);
  EXPECT_EQ(ja4.ja4_r, kSpecJa4R);
  EXPECT_EQ(ja4.ja4_o, kSpecJa4O);
  EXPECT_EQ(ja4.ja4_ro, kSpecJa4Ro);
}

TEST(Ja4, WithoutSignatureAlgorithmsTheHashHasNoUnderscore) {
  HelloSpec spec;
  std::erase(spec.extension_order, 0x000d);
  common::ClientHello hello;
  const ByteVec body = ClientHelloBody(spec);
  ASSERT_EQ(common::ParseClientHello(View(body), false, hello), common::TlsParseStatus::kOk);
  const common::Ja4 ja4 = common::ComputeJa4(hello, common::Ja4Transport::kQuic);
  // JA4.md: "0005,000a,000b,0012,...,ff01" without sigalgs; 15 extensions now.
  EXPECT_THAT(ja4.ja4, StartsWith("q13d1515h2_8daaf6152771_"));
  EXPECT_THAT(ja4.ja4_r, testing::EndsWith("_0005,000a,000b,0012,0015,0017,001b,0023,002b,"
                                           "002d,0033,4469,ff01"));
}

TEST(Ja4, OnlySniAndNoAlpnGiveAnEmptyExtensionHashInEveryForm) {
  HelloSpec spec;
  spec.legacy_version = 0x0301;
  spec.ciphers = {0x0039, 0x0035};
  spec.alpn.clear();
  spec.extension_order = {0x0000};
  common::ClientHello hello;
  const ByteVec body = ClientHelloBody(spec);
  ASSERT_EQ(common::ParseClientHello(View(body), false, hello), common::TlsParseStatus::kOk);
  const common::Ja4 ja4 = common::ComputeJa4(hello, common::Ja4Transport::kTcp);
  EXPECT_THAT(ja4.ja4, StartsWith("t10d020100_"));
  EXPECT_THAT(ja4.ja4, testing::EndsWith("_000000000000"));
  EXPECT_THAT(ja4.ja4_o, testing::EndsWith("_000000000000"));
  EXPECT_EQ(ja4.ja4_r, "t10d020100_0035,0039_");
  EXPECT_EQ(ja4.ja4_ro, "t10d020100_0039,0035_0000");
}

TEST(Ja4, NoCiphersAndNoExtensionsAreZeroHashes) {
  HelloSpec spec;
  spec.ciphers = {0x0a0a};
  spec.with_extensions = false;
  common::ClientHello hello;
  const ByteVec body = ClientHelloBody(spec);
  ASSERT_EQ(common::ParseClientHello(View(body), false, hello), common::TlsParseStatus::kOk);
  EXPECT_EQ(common::ComputeJa4(hello, common::Ja4Transport::kTcp).ja4,
            "t12i000000_000000000000_000000000000");
}

TEST(Ja4, AlpnCodeFollowsTheSpecification) {
  EXPECT_EQ(common::Ja4AlpnCode("h2"), "h2");
  EXPECT_EQ(common::Ja4AlpnCode("http/1.1"), "h1");
  EXPECT_EQ(common::Ja4AlpnCode("h"), "hh");
  EXPECT_EQ(common::Ja4AlpnCode(""), "00");
  // JA4.md: non-alphanumeric first or last byte -> first and last hex digit.
  EXPECT_EQ(common::Ja4AlpnCode("\xab"), "ab");
  EXPECT_EQ(common::Ja4AlpnCode("\xab\xcd"), "ad");
  EXPECT_EQ(common::Ja4AlpnCode("\x30\xab"), "3b");
  EXPECT_EQ(common::Ja4AlpnCode("\x30\x31\xab\xcd"), "3d");
  EXPECT_EQ(common::Ja4AlpnCode("\x30\xab\xcd\x31"), "01");
  EXPECT_EQ(common::Ja4AlpnCode("\xba\xad"), "bd");
}

TEST(Ja4, VersionCodes) {
  EXPECT_EQ(common::Ja4VersionCode(0x0304), "13");
  EXPECT_EQ(common::Ja4VersionCode(0x0300), "s3");
  EXPECT_EQ(common::Ja4VersionCode(0x0002), "s2");
  EXPECT_EQ(common::Ja4VersionCode(0xfefd), "d2");
  EXPECT_EQ(common::Ja4VersionCode(0xfefc), "d3");
  EXPECT_EQ(common::Ja4VersionCode(0x7f1c), "00");
}

TEST(Ja4, DtlsHighestVersionIsTheSmallestNumber) {
  common::ClientHello hello;
  hello.dtls = true;
  hello.legacy_version = common::kDtls12;
  hello.supported_versions = {0x0a0a, common::kDtls12, common::kDtls13};
  EXPECT_EQ(hello.MaxOfferedVersion(), common::kDtls13);
}

// ------------------------------------------------------------------------------------------
// Parsers.

TEST(TlsParse, EveryTruncationOfAClientHelloFailsCleanly) {
  const ByteVec body = ClientHelloBody();
  for (std::size_t n = 0; n < body.size(); ++n) {
    const ByteVec cut(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
    common::ClientHello hello;
    const common::TlsParseStatus status = common::ParseClientHello(View(cut), false, hello);
    // Only the cut right after the compression methods is a complete (extension-less) hello.
    if (status == common::TlsParseStatus::kOk) {
      EXPECT_TRUE(hello.extensions.empty()) << n;
    }
    common::ServerHello server;
    common::ParseServerHello(View(cut), false, server);
    common::CertificateInfo cert;
    common::ParseFirstCertificate(View(cut), cert);
  }
}

TEST(TlsParse, BadCipherListLengthIsRejected) {
  ByteVec body;
  Put16(body, 0x0303);
  Append(body, ByteVec(32, 0));
  Append(body, Vec8({}));
  Append(body, Vec16({0x13, 0x01, 0x13}));  // odd length
  Append(body, Vec8({0}));
  common::ClientHello hello;
  EXPECT_EQ(common::ParseClientHello(View(body), false, hello), common::TlsParseStatus::kBadLength);
}

TEST(TlsParse, ServerHelloVersionCipherAndRetry) {
  common::ServerHello sh;
  const ByteVec tls13 = ServerHelloBody(0x1302, 0x0304);
  ASSERT_EQ(common::ParseServerHello(View(tls13), false, sh), common::TlsParseStatus::kOk);
  EXPECT_EQ(sh.version(), common::kTls13);
  EXPECT_EQ(sh.cipher_suite, 0x1302);
  EXPECT_FALSE(sh.hello_retry_request);
  const ByteVec retry = ServerHelloBody(0x1301, 0x0304, true);
  ASSERT_EQ(common::ParseServerHello(View(retry), false, sh), common::TlsParseStatus::kOk);
  EXPECT_TRUE(sh.hello_retry_request);
  const ByteVec tls12 = ServerHelloBody(0xc02f, 0, false, "h2");
  ASSERT_EQ(common::ParseServerHello(View(tls12), false, sh), common::TlsParseStatus::kOk);
  EXPECT_EQ(sh.version(), common::kTls12);
  EXPECT_EQ(sh.alpn, "h2");
}

TEST(TlsParse, FirstCertificateSubjectIssuerValidityAndSelfSigned) {
  const ByteVec self = CertificateBody(MakeCertificateDer(true));
  common::CertificateInfo cert;
  ASSERT_EQ(common::ParseFirstCertificate(View(self), cert), common::TlsParseStatus::kOk);
  EXPECT_EQ(cert.subject, "CN=AnyDesk Client,O=Relay\\, Inc.");
  EXPECT_EQ(cert.issuer, cert.subject);
  EXPECT_TRUE(cert.self_signed);
  EXPECT_EQ(cert.not_before, "2024-01-01T00:00:00Z");
  EXPECT_EQ(cert.not_after, "2034-01-02T03:04:05Z");
  EXPECT_EQ(cert.sha256.size(), 64u);

  const ByteVec chain = CertificateBody(MakeCertificateDer(false), 3000);
  ASSERT_EQ(common::ParseFirstCertificate(View(chain), cert), common::TlsParseStatus::kOk);
  EXPECT_EQ(cert.issuer, "CN=Test CA");
  EXPECT_FALSE(cert.self_signed);
  // Only the first certificate needs to be there.
  const ByteVec prefix(chain.begin(), chain.end() - 2000);
  EXPECT_EQ(common::ParseFirstCertificate(View(prefix), cert), common::TlsParseStatus::kOk);
}

TEST(TlsParse, GarbageCertificateIsReportedNotThrown) {
  const ByteVec body = CertificateBody(ByteVec(100, 0x41));
  common::CertificateInfo cert;
  EXPECT_EQ(common::ParseFirstCertificate(View(body), cert),
            common::TlsParseStatus::kBadCertificate);
}

TEST(TlsParse, EscapesNonPrintableBytes) {
  const ByteVec raw = {'a', 0x00, '\\', 0xff};
  EXPECT_EQ(common::EscapeBytes(View(raw), 100), "a\\x00\\x5c\\xff");
  EXPECT_EQ(common::EscapeBytes(View(raw), 4), "a");  // never half an escape
}

// ------------------------------------------------------------------------------------------
// Reassembly.

struct Collected {
  std::vector<ByteVec> bodies;
  std::vector<std::uint8_t> types;
  std::vector<bool> truncated;
  std::vector<common::TlsStreamEvent::Kind> records;

  auto Callback() {
    return [this](const common::TlsStreamEvent& e) {
      if (e.kind == common::TlsStreamEvent::Kind::kHandshake) {
        types.push_back(e.message->type);
        bodies.emplace_back(e.message->body.begin(), e.message->body.end());
        truncated.push_back(e.message->truncated);
      } else {
        records.push_back(e.kind);
      }
    };
  }
};

TEST(HandshakeStream, HelloSplitOverRecordsAndOneByteSegments) {
  const ByteVec message = Handshake(1, ClientHelloBody());
  // Three records of one message, delivered one byte per TCP segment.
  ByteVec stream;
  const std::size_t third = message.size() / 3;
  Append(stream, Record(22, ByteVec(message.begin(), message.begin() + third), 0x0301));
  Append(stream, Record(22, ByteVec(message.begin() + third, message.begin() + 2 * third)));
  Append(stream, Record(22, ByteVec(message.begin() + 2 * third, message.end())));
  common::HandshakeStream hs(16384);
  Collected c;
  for (std::size_t i = 0; i < stream.size(); ++i) {
    hs.Feed(View(stream).subspan(i, 1), true, c.Callback());
  }
  ASSERT_EQ(c.bodies.size(), 1u);
  EXPECT_EQ(c.types[0], 1);
  EXPECT_EQ(c.bodies[0], ClientHelloBody());
  EXPECT_EQ(hs.state(), common::HandshakeStream::State::kRecords);
}

TEST(HandshakeStream, SeveralMessagesInOneRecordThenEncryption) {
  ByteVec flight;
  Append(flight, Handshake(2, ServerHelloBody(0xc02f)));
  Append(flight, Handshake(11, CertificateBody(MakeCertificateDer(true))));
  Append(flight, Handshake(14, {}));
  ByteVec stream = Record(22, flight);
  Append(stream, Record(20, {1}));
  Append(stream, Record(22, ByteVec(40, 0x5a)));  // encrypted Finished
  Append(stream, Record(23, ByteVec(100, 0x5a)));
  common::HandshakeStream hs(16384);
  Collected c;
  hs.Feed(View(stream), true, c.Callback());
  EXPECT_EQ(c.types, (std::vector<std::uint8_t>{2, 11, 14}));
  using Kind = common::TlsStreamEvent::Kind;
  EXPECT_EQ(c.records, (std::vector<Kind>{Kind::kChangeCipherSpec, Kind::kEncryptedHandshake,
                                          Kind::kApplicationData}));
}

TEST(HandshakeStream, SecondClientHelloAfterCompatibilityChangeCipherSpec) {
  ByteVec stream = Record(22, Handshake(1, ClientHelloBody()));
  Append(stream, Record(20, {1}));
  Append(stream, Record(22, Handshake(1, ClientHelloBody())));
  common::HandshakeStream hs(16384);
  Collected c;
  // Split inside the probed header of the second hello.
  const std::size_t cut = stream.size() - ClientHelloBody().size() - 2;
  hs.Feed(View(stream).first(cut), true, c.Callback());
  hs.Feed(View(stream).subspan(cut), false, c.Callback());
  EXPECT_EQ(c.types, (std::vector<std::uint8_t>{1, 1}));
}

TEST(HandshakeStream, SkipsAProxyPreambleButOnlyAtSegmentStarts) {
  const ByteVec hello = Record(22, Handshake(1, ClientHelloBody()));
  common::HandshakeStream hs(16384);
  Collected c;
  hs.Feed(View(ByteVec{5, 1, 0}), true, c.Callback());  // SOCKS5 greeting
  ByteVec glued = {5, 1, 0, 3};
  Append(glued, hello);
  hs.Feed(View(glued), true, c.Callback());  // not at a segment start: no sync
  EXPECT_TRUE(c.bodies.empty());
  hs.Feed(View(hello), true, c.Callback());
  EXPECT_EQ(c.bodies.size(), 1u);
}

TEST(HandshakeStream, NonTlsAfterSyncBreaksTheStream) {
  ByteVec stream = Record(22, Handshake(1, ClientHelloBody()));
  Append(stream, Str("GET / HTTP/1.1\r\n\r\n"));
  common::HandshakeStream hs(16384);
  Collected c;
  hs.Feed(View(stream), true, c.Callback());
  EXPECT_EQ(hs.state(), common::HandshakeStream::State::kBroken);
  EXPECT_EQ(c.bodies.size(), 1u);
}

TEST(HandshakeStream, OversizedMessageIsCutCountedAndSkipped) {
  ByteVec flight = Handshake(11, ByteVec(3000, 0x30));
  Append(flight, Handshake(14, {}));
  common::HandshakeStream hs(1024);
  Collected c;
  hs.Feed(View(Record(22, flight)), true, c.Callback());
  EXPECT_TRUE(c.types.empty());  // the stream did not sync: a Certificate is not a hello
  common::HandshakeStream synced(1024);
  ByteVec stream = Record(22, Handshake(2, ServerHelloBody(0xc02f)));
  Append(stream, Record(22, flight));
  Collected d;
  synced.Feed(View(stream), true, d.Callback());
  EXPECT_EQ(d.types, (std::vector<std::uint8_t>{2, 11, 14}));
  EXPECT_EQ(d.truncated, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(d.bodies[1].size(), 1024u);
  EXPECT_EQ(synced.oversized(), 1u);
}

TEST(HandshakeStream, RandomBytesNeverCrash) {
  std::uint32_t state = 12345;
  for (int round = 0; round < 200; ++round) {
    ByteVec junk(1 + round * 7);
    for (auto& b : junk) {
      state = state * 1103515245 + 12345;
      b = static_cast<std::uint8_t>(state >> 16);
    }
    if (round % 2 == 0 && junk.size() >= 6) {
      junk[0] = 22;  // pass the sync check so the record layer sees the junk
      junk[1] = 3;
      junk[2] = 1;
      junk[5] = 1;
    }
    common::HandshakeStream hs(1024);
    common::DtlsHandshakeReader dtls(1024);
    Collected c;
    hs.Feed(View(junk), true, c.Callback());
    dtls.Feed(View(junk), c.Callback());
    for (const ByteVec& body : c.bodies) {
      common::ClientHello hello;
      common::ParseClientHello(View(body), false, hello);
    }
  }
}

ByteVec DtlsRecord(const ByteVec& handshake_fragment, std::uint64_t record_seq) {
  ByteVec b;
  Put8(b, 22);
  Put16(b, 0xfeff);
  Put16(b, 0);  // epoch
  for (int i = 5; i >= 0; --i) {
    Put8(b, static_cast<std::uint8_t>(record_seq >> (8 * i)));
  }
  Put16(b, static_cast<std::uint16_t>(handshake_fragment.size()));
  Append(b, handshake_fragment);
  return b;
}

ByteVec DtlsFragment(std::uint8_t type, std::uint16_t seq, const ByteVec& body, std::size_t offset,
                     std::size_t length) {
  ByteVec b;
  Put8(b, type);
  Put24(b, static_cast<std::uint32_t>(body.size()));
  Put16(b, seq);
  Put24(b, static_cast<std::uint32_t>(offset));
  Put24(b, static_cast<std::uint32_t>(length));
  b.insert(b.end(), body.begin() + static_cast<std::ptrdiff_t>(offset),
           body.begin() + static_cast<std::ptrdiff_t>(offset + length));
  return b;
}

TEST(DtlsHandshakeReader, JoinsFragmentsAndIgnoresRetransmissions) {
  const ByteVec body = ClientHelloBody(DtlsSpec(), true);
  const std::size_t half = body.size() / 2;
  const ByteVec first = DtlsRecord(DtlsFragment(1, 0, body, 0, half), 0);
  const ByteVec second = DtlsRecord(DtlsFragment(1, 0, body, half, body.size() - half), 1);
  ASSERT_TRUE(common::LooksLikeDtlsHandshake(View(first)));
  common::DtlsHandshakeReader reader(16384);
  Collected c;
  EXPECT_TRUE(reader.Feed(View(first), c.Callback()));
  EXPECT_TRUE(c.bodies.empty());
  EXPECT_TRUE(reader.Feed(View(second), c.Callback()));
  reader.Feed(View(first), c.Callback());  // retransmitted flight
  reader.Feed(View(second), c.Callback());
  ASSERT_EQ(c.bodies.size(), 1u);
  EXPECT_EQ(c.bodies[0], body);
  common::ClientHello hello;
  ASSERT_EQ(common::ParseClientHello(View(c.bodies[0]), true, hello), common::TlsParseStatus::kOk);
  EXPECT_THAT(common::ComputeJa4(hello, common::Ja4Transport::kDtls).ja4,
              StartsWith("dd3d1516h2_"));
}

// ------------------------------------------------------------------------------------------
// QUIC.

ByteVec Hex(const std::string& hex) {
  ByteVec out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

template <std::size_t N>
ByteVec FromArray(const std::array<std::uint8_t, N>& a) {
  return ByteVec(a.begin(), a.end());
}

TEST(Quic, InitialKeysMatchRfc9001AppendixA) {
  const ByteVec dcid = Hex("8394c8f03e515708");
  common::QuicInitialKeys client;
  common::QuicInitialKeys server;
  ASSERT_TRUE(common::DeriveQuicInitialKeys(1, View(dcid), false, client));
  ASSERT_TRUE(common::DeriveQuicInitialKeys(1, View(dcid), true, server));
  EXPECT_EQ(FromArray(client.key), Hex("1f369613dd76d5467730efcbe3b1a22d"));
  EXPECT_EQ(FromArray(client.iv), Hex("fa044b2f42a3fd3b46fb255c"));
  EXPECT_EQ(FromArray(client.hp), Hex("9f50449e04a0e810283a1e9933adedd2"));
  EXPECT_EQ(FromArray(server.key), Hex("cf3a5331653c364c88f0f379b6067e37"));
  EXPECT_EQ(FromArray(server.iv), Hex("0ac1493ca1905853b0bba03e"));
  EXPECT_EQ(FromArray(server.hp), Hex("c206b8d9b9f0f37644430b490eeaa314"));
}

TEST(Quic, InitialKeysMatchRfc9369AppendixA) {
  const ByteVec dcid = Hex("8394c8f03e515708");
  common::QuicInitialKeys client;
  ASSERT_TRUE(common::DeriveQuicInitialKeys(0x6b3343cf, View(dcid), false, client));
  EXPECT_EQ(FromArray(client.key), Hex("8b1a0bc121284290a29e0971b5cd045d"));
  EXPECT_EQ(FromArray(client.iv), Hex("91f73e2351d8fa91660e909f"));
  EXPECT_EQ(FromArray(client.hp), Hex("45b95e15235d6f45a6b19cbcb0294ba9"));
}

TEST(Quic, DecryptsTheServerInitialOfRfc9001AppendixA3) {
  const ByteVec packet =
      Hex("cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
          "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
          "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
          "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
          "2158407dd074ee");
  common::QuicLongHeader header;
  ASSERT_TRUE(common::ParseQuicLongHeader(View(packet), header));
  EXPECT_TRUE(header.initial);
  EXPECT_EQ(header.packet_bytes, packet.size());
  common::QuicInitialKeys keys;
  ASSERT_TRUE(common::DeriveQuicInitialKeys(1, View(Hex("8394c8f03e515708")), true, keys));
  std::vector<std::uint8_t> plaintext;
  ASSERT_TRUE(common::DecryptQuicInitial(View(packet), header, keys, plaintext));
  std::vector<ByteVec> crypto;
  EXPECT_TRUE(common::ForEachQuicCryptoFrame(View(plaintext), [&](std::uint64_t, common::Bytes d) {
    crypto.emplace_back(d.begin(), d.end());
  }));
  ASSERT_EQ(crypto.size(), 1u);
  ASSERT_GE(crypto[0].size(), 4u);
  EXPECT_EQ(crypto[0][0], common::kHandshakeServerHello);
  common::ServerHello sh;
  ASSERT_EQ(common::ParseServerHello(View(crypto[0]).subspan(4), false, sh),
            common::TlsParseStatus::kOk);
  EXPECT_EQ(sh.cipher_suite, 0x1301);
  EXPECT_EQ(sh.version(), common::kTls13);
  // A flipped bit fails authentication.
  ByteVec damaged = packet;
  damaged[40] ^= 1;
  EXPECT_FALSE(common::DecryptQuicInitial(View(damaged), header, keys, plaintext));
}

// Builds a protected client Initial (RFC 9001 5) around `frames`, padded to 1200 bytes.
ByteVec BuildClientInitial(const ByteVec& dcid, const ByteVec& frames_in, std::uint16_t pn) {
  common::QuicInitialKeys keys;
  EXPECT_TRUE(common::DeriveQuicInitialKeys(1, View(dcid), false, keys));
  ByteVec frames = frames_in;
  constexpr std::size_t kPnBytes = 2;
  ByteVec header = {0xc0 | (kPnBytes - 1), 0, 0, 0, 1};
  Append(header, Vec8(dcid));
  Append(header, Vec8(Hex("c0ffee")));
  Put8(header, 0);  // token length
  const std::size_t fixed = header.size() + 2 + kPnBytes + 16;
  if (fixed + frames.size() < 1200) {
    frames.resize(1200 - fixed, 0);  // PADDING frames
  }
  Put16(header, static_cast<std::uint16_t>(0x4000 | (kPnBytes + frames.size() + 16)));
  const std::size_t pn_offset = header.size();
  Put16(header, pn);
  std::array<std::uint8_t, 12> nonce = keys.iv;
  nonce[10] ^= static_cast<std::uint8_t>(pn >> 8);
  nonce[11] ^= static_cast<std::uint8_t>(pn);
  ByteVec ciphertext(frames.size());
  std::uint8_t tag[16];
  int n = 0;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, keys.key.data(), nonce.data());
  EVP_EncryptUpdate(ctx, nullptr, &n, header.data(), static_cast<int>(header.size()));
  EVP_EncryptUpdate(ctx, ciphertext.data(), &n, frames.data(), static_cast<int>(frames.size()));
  EVP_EncryptFinal_ex(ctx, ciphertext.data() + n, &n);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag);
  EVP_CIPHER_CTX_free(ctx);
  ByteVec packet = header;
  Append(packet, ciphertext);
  packet.insert(packet.end(), tag, tag + 16);
  std::uint8_t mask[32];
  ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, keys.hp.data(), nullptr);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EVP_EncryptUpdate(ctx, mask, &n, &packet[pn_offset + 4], 16);
  EVP_CIPHER_CTX_free(ctx);
  packet[0] ^= mask[0] & 0x0f;
  packet[pn_offset] ^= mask[1];
  packet[pn_offset + 1] ^= mask[2];
  return packet;
}

ByteVec CryptoFrame(std::uint64_t offset, const ByteVec& data) {
  ByteVec b = {0x06};
  Put8(b, 0x80);  // 4-byte varint offset
  Put24(b, static_cast<std::uint32_t>(offset));
  Put16(b, static_cast<std::uint16_t>(0x4000 | data.size()));
  Append(b, data);
  return b;
}

TEST(Quic, CryptoStreamPutsOutOfOrderFramesBackInOrder) {
  common::QuicCryptoStream stream(4096);
  ByteVec out;
  const auto collect = [&](common::Bytes b) {
    out.insert(out.end(), b.begin(), b.end());
  };
  const ByteVec data = Str("0123456789abcdef");
  stream.Add(10, View(data).subspan(10), collect);
  stream.Add(4, View(data).subspan(4, 6), collect);
  EXPECT_TRUE(out.empty());
  stream.Add(0, View(data).first(6), collect);  // overlaps what is buffered
  EXPECT_EQ(out, data);
  stream.Add(0, View(data), collect);  // a retransmission changes nothing
  EXPECT_EQ(out, data);
}

// ------------------------------------------------------------------------------------------
// The detector.

// Drives one connection through a flow table and the detector, as a worker does.
class Conversation {
 public:
  explicit Conversation(TlsConfig config = {}, bool udp = false)
      : client_{*IpAddress::Parse("10.1.1.5"), 50000},
        server_{*IpAddress::Parse("198.51.100.7"), 443},
        udp_(udp),
        detector_(config, DetectorContext{}),
        table_(flow::FlowTableConfig{},
               [this](flow::FlowState& f, flow::EndReason) { detector_.OnFlowEnd(f, events_); }) {}

  Verdict Send(bool from_client, const ByteVec& payload, std::int64_t seq_offset = 0) {
    decode::DecodedPacket p;
    p.ts = now_ += absl::Milliseconds(5);
    p.ip_version = 4;
    p.protocol = udp_ ? decode::kProtoUdp : decode::kProtoTcp;
    const flow::Endpoint& src = from_client ? client_ : server_;
    const flow::Endpoint& dst = from_client ? server_ : client_;
    p.src = src.ip;
    p.dst = dst.ip;
    p.src_port = src.port;
    p.dst_port = dst.port;
    p.tcp_flags = decode::kTcpAck | decode::kTcpPsh;
    std::uint32_t& seq = from_client ? client_seq_ : server_seq_;
    p.seq = static_cast<std::uint32_t>(seq + seq_offset);
    payloads_.push_back(payload);
    const ByteVec& stored = payloads_.back();
    p.payload = View(stored);
    p.payload_length = static_cast<std::uint32_t>(stored.size());
    p.wire_length = 54 + p.payload_length;
    if (seq_offset == 0) {
      seq += static_cast<std::uint32_t>(stored.size());
    }
    flow::Direction direction;
    flow::FlowState& flow = table_.Track(p, direction);
    flow_ = &flow;
    if (done_) {
      return Verdict::kDone;
    }
    const Verdict v = detector_.OnPacket(p, flow, direction, events_);
    max_state_ = std::max(max_state_, detector_.FlowStateBytes(flow));
    done_ = v == Verdict::kDone;
    return v;
  }
  // Sends `stream` from one side in segments of at most `mss` bytes.
  Verdict SendSegments(bool from_client, const ByteVec& stream, std::size_t mss) {
    Verdict v = Verdict::kContinue;
    for (std::size_t i = 0; i < stream.size(); i += mss) {
      v = Send(
          from_client,
          ByteVec(stream.begin() + static_cast<std::ptrdiff_t>(i),
                  stream.begin() + static_cast<std::ptrdiff_t>(std::min(stream.size(), i + mss))));
    }
    return v;
  }
  void End() { table_.EndAll(flow::EndReason::kShutdown); }
  std::vector<Event>& events() { return events_.events(); }
  const TlsDetector& detector() const { return detector_; }
  std::size_t max_state() const { return max_state_; }

 private:
  flow::Endpoint client_, server_;
  bool udp_;
  TlsDetector detector_;
  EventBuffer events_;
  flow::FlowTable table_;
  flow::FlowState* flow_ = nullptr;
  std::vector<ByteVec> payloads_;
  PacketTime now_ = absl::FromUnixSeconds(1700000000);
  std::uint32_t client_seq_ = 1000, server_seq_ = 5000;
  bool done_ = false;
  std::size_t max_state_ = 0;
};

TEST(TlsDetector, Tls12HelloOverSegmentsWithCertificate) {
  Conversation c;
  const ByteVec hello = Record(22, Handshake(1, ClientHelloBody()), 0x0301);
  // Three segments, the second one retransmitted.
  const std::size_t third = hello.size() / 3;
  EXPECT_EQ(c.Send(true, ByteVec(hello.begin(), hello.begin() + third)), Verdict::kContinue);
  const ByteVec middle(hello.begin() + third, hello.begin() + 2 * third);
  c.Send(true, middle);
  c.Send(true, middle, -static_cast<std::int64_t>(middle.size()));
  c.Send(true, ByteVec(hello.begin() + 2 * third, hello.end()));
  EXPECT_TRUE(c.events().empty());
  ByteVec flight;
  Append(flight, Handshake(2, ServerHelloBody(0xc02f, 0, false, "h2")));
  Append(flight, Handshake(11, CertificateBody(MakeCertificateDer(true), 2500)));
  Append(flight, Handshake(14, {}));
  EXPECT_EQ(c.SendSegments(false, Record(22, flight), 1400), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  const Event& e = c.events()[0];
  EXPECT_EQ(e.event_type, "tls");
  const nlohmann::json& b = e.body;
  EXPECT_EQ(b["client_hello_index"], 0);
  EXPECT_EQ(b["transport"], "tcp");
  EXPECT_EQ(b["sni"], "www.example.com");
  EXPECT_EQ(b["alpn"], nlohmann::json::array({"h2", "http/1.1"}));
  EXPECT_EQ(b["ja4"], kSpecJa4);
  EXPECT_EQ(b["ja4_r"], kSpecJa4R);
  EXPECT_EQ(b["ja4_o"], kSpecJa4O);
  EXPECT_EQ(b["ja4_ro"], kSpecJa4Ro);
  EXPECT_EQ(b["version"], "TLS 1.2");
  EXPECT_EQ(b["version_negotiated"], true);
  EXPECT_EQ(b["client_version"], "TLS 1.3");
  EXPECT_EQ(b["cipher"], "c02f");
  EXPECT_EQ(b["server_alpn"], "h2");
  EXPECT_EQ(b["subject"], "CN=AnyDesk Client,O=Relay\\, Inc.");
  EXPECT_EQ(b["self_signed"], true);
  EXPECT_EQ(b["not_after"], "2034-01-02T03:04:05Z");
  EXPECT_EQ(e.flow->src_port, 50000);
  EXPECT_EQ(c.detector().counters().client_hellos.Read(), 1u);
}

TEST(TlsDetector, Tls13IsWrittenAfterTheServerHello) {
  Conversation c;
  c.Send(true, Record(22, Handshake(1, ClientHelloBody())));
  ByteVec server = Record(22, Handshake(2, ServerHelloBody(0x1301, 0x0304)));
  Append(server, Record(20, {1}));
  EXPECT_EQ(c.Send(false, server), Verdict::kDone);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["version"], "TLS 1.3");
  EXPECT_EQ(c.events()[0].body["cipher"], "1301");
  EXPECT_FALSE(c.events()[0].body.contains("subject"));
}

TEST(TlsDetector, HelloRetryRequestGivesTwoEvents) {
  Conversation c;
  c.Send(true, Record(22, Handshake(1, ClientHelloBody())));
  ByteVec retry = Record(22, Handshake(2, ServerHelloBody(0x1301, 0x0304, true)));
  Append(retry, Record(20, {1}));
  EXPECT_EQ(c.Send(false, retry), Verdict::kContinue);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["hello_retry_request"], true);
  HelloSpec second;
  std::erase(second.extension_order, 0x0023);
  ByteVec again = Record(20, {1});
  Append(again, Record(22, Handshake(1, ClientHelloBody(second))));
  c.Send(true, again);
  EXPECT_EQ(c.Send(false, Record(22, Handshake(2, ServerHelloBody(0x1301, 0x0304)))),
            Verdict::kDone);
  ASSERT_EQ(c.events().size(), 2u);
  EXPECT_EQ(c.events()[1].body["client_hello_index"], 1);
  EXPECT_THAT(c.events()[1].body["ja4"].get<std::string>(), StartsWith("t13d1515h2_"));
}

TEST(TlsDetector, AStreamOfHellosIsCapped) {
  Conversation c;
  Verdict v = Verdict::kContinue;
  for (int i = 0; i < 10 && v == Verdict::kContinue; ++i) {
    ByteVec hello = i == 0 ? ByteVec() : Record(20, {1});
    Append(hello, Record(22, Handshake(1, ClientHelloBody())));
    v = c.Send(true, hello);
  }
  EXPECT_EQ(v, Verdict::kDone);
  EXPECT_EQ(c.events().size(), TlsDetector::kMaxHellosPerFlow);
  EXPECT_EQ(c.detector().counters().hellos_dropped.Read(), 1u);
}

TEST(TlsDetector, UnansweredHelloIsWrittenAtFlowEnd) {
  Conversation c;
  c.Send(true, Record(22, Handshake(1, ClientHelloBody())));
  EXPECT_TRUE(c.events().empty());
  c.End();
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["version_negotiated"], false);
  EXPECT_FALSE(c.events()[0].body.contains("cipher"));
}

TEST(TlsDetector, NonTlsFlowIsGivenUpWithoutEvent) {
  TlsConfig config;
  config.inspect_packets = 3;
  Conversation c(config);
  Verdict v = Verdict::kContinue;
  for (int i = 0; i < 4 && v == Verdict::kContinue; ++i) {
    v = c.Send(true, Str("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  EXPECT_EQ(v, Verdict::kDone);
  c.End();
  EXPECT_TRUE(c.events().empty());
  EXPECT_EQ(c.detector().counters().not_tls.Read(), 1u);
}

TEST(TlsDetector, MissingSegmentAfterSyncEndsParsing) {
  Conversation c;
  const ByteVec hello = Record(22, Handshake(1, ClientHelloBody()));
  c.Send(true, ByteVec(hello.begin(), hello.begin() + 100));
  // Skip 50 bytes: the rest arrives ahead of what is expected.
  c.Send(true, ByteVec(hello.begin() + 150, hello.end()), 50);
  c.End();
  EXPECT_TRUE(c.events().empty());
  EXPECT_EQ(c.detector().counters().tcp_gaps.Read(), 1u);
}

TEST(TlsDetector, OversizedHelloIsCountedNotFingerprinted) {
  TlsConfig config;
  config.max_client_hello_bytes = 1024;
  Conversation c(config);
  HelloSpec big;
  big.padding = 3000;
  c.SendSegments(true, Record(22, Handshake(1, ClientHelloBody(big))), 1400);
  c.End();
  EXPECT_TRUE(c.events().empty());
  EXPECT_EQ(c.detector().counters().oversized_messages.Read(), 1u);
}

TEST(TlsDetector, StateStaysUnderTheDeclaredCap) {
  TlsConfig config;
  config.max_client_hello_bytes = kMaxClientHelloBytesLimit;
  Conversation c(config);
  HelloSpec big;
  big.padding = 60000;
  ByteVec message = Handshake(1, ClientHelloBody(big));
  ByteVec stream;
  for (std::size_t i = 0; i < message.size(); i += 16000) {
    Append(stream, Record(22, ByteVec(message.begin() + static_cast<std::ptrdiff_t>(i),
                                      message.begin() + static_cast<std::ptrdiff_t>(
                                                            std::min(message.size(), i + 16000)))));
  }
  c.SendSegments(true, stream, 1400);
  ByteVec flight = Handshake(2, ServerHelloBody(0xc02f));
  Append(flight, Handshake(11, CertificateBody(MakeCertificateDer(false), 70000)));
  ByteVec server;
  for (std::size_t i = 0; i < flight.size(); i += 16000) {
    Append(server, Record(22, ByteVec(flight.begin() + static_cast<std::ptrdiff_t>(i),
                                      flight.begin() + static_cast<std::ptrdiff_t>(
                                                           std::min(flight.size(), i + 16000)))));
  }
  c.SendSegments(false, server, 1400);
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["issuer"], "CN=Test CA");
  EXPECT_GT(c.max_state(), kMaxClientHelloBytesLimit);
  EXPECT_LE(c.max_state(), TlsDetector::kMaxFlowStateBytes);
}

TEST(TlsDetector, DtlsClientHelloOverUdp) {
  Conversation c({}, /*udp=*/true);
  c.Send(true, Str("\x00\x01\x00\x00stun-ish"));  // something else first, as with WebRTC
  const ByteVec body = ClientHelloBody(DtlsSpec(), true);
  c.Send(true, DtlsRecord(DtlsFragment(1, 0, body, 0, body.size()), 0));
  c.End();
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["transport"], "dtls");
  EXPECT_THAT(c.events()[0].body["ja4"].get<std::string>(), StartsWith("dd3d1516h2_"));
}

TEST(TlsDetector, QuicInitialSplitOverTwoPacketsOutOfOrder) {
  Conversation c({}, /*udp=*/true);
  const ByteVec dcid = Hex("0011223344556677");
  const ByteVec message = Handshake(1, ClientHelloBody());
  const std::size_t half = message.size() / 2;
  // The second half first (Chrome scatters CRYPTO frames), then the first half.
  c.Send(true, BuildClientInitial(
                   dcid, CryptoFrame(half, ByteVec(message.begin() + half, message.end())), 0));
  EXPECT_TRUE(c.events().empty());
  c.Send(true, BuildClientInitial(
                   dcid, CryptoFrame(0, ByteVec(message.begin(), message.begin() + half)), 1));
  c.End();
  ASSERT_EQ(c.events().size(), 1u);
  EXPECT_EQ(c.events()[0].body["transport"], "quic");
  EXPECT_EQ(c.events()[0].body["ja4"], "q13d1516h2_8daaf6152771_e5627efa2ab1");
  EXPECT_EQ(c.detector().counters().quic_undecryptable.Read(), 0u);
}

// ------------------------------------------------------------------------------------------
// Config.

TEST(TlsConfig, DefaultsGoodBadAndUnknownKeys) {
  const auto parse = [](const std::string& yaml) {
    auto root = config::LoadString(yaml, "test.yaml");
    return ParseTlsConfig(root->Child("tls"));
  };
  auto defaults = parse("{}");
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->enabled);
  EXPECT_EQ(defaults->max_client_hello_bytes, 16384u);
  EXPECT_EQ(defaults->inspect_packets, 16u);
  EXPECT_TRUE(defaults->quic);
  auto good = parse("tls:\n  max_client_hello_bytes: 4096\n  quic: false\n");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->max_client_hello_bytes, 4096u);
  EXPECT_FALSE(good->quic);
  auto bad = parse("tls:\n  max_client_hello_bytes: 100\n");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  auto unknown = parse("tls:\n  max_client_helo_bytes: 4096\n");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("max_client_helo_bytes"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("test.yaml:2:3"));
}

TEST(TlsConfig, DisabledMeansNoInstance) {
  auto root = config::LoadString("tls:\n  enabled: false\n", "t.yaml");
  auto d = Create(root->Child("tls"), DetectorContext{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, nullptr);
}

// The record expansion of AEAD suites: what a record adds to its plaintext.
TEST(TlsRecords, AeadOverheadBySuiteAndVersion) {
  using common::AeadRecordOverhead;
  EXPECT_EQ(AeadRecordOverhead(common::kTls12, 0x00a7), 24u);  // DH_anon AES-256-GCM
  EXPECT_EQ(AeadRecordOverhead(common::kTls12, 0xc02f), 24u);  // ECDHE-RSA AES-128-GCM
  EXPECT_EQ(AeadRecordOverhead(common::kTls12, 0xcca9), 16u);  // ECDHE-ECDSA ChaCha20
  EXPECT_EQ(AeadRecordOverhead(common::kTls13, 0x1301), 17u);
  EXPECT_EQ(AeadRecordOverhead(common::kTls13, 0x1304), 17u);  // AES-128-CCM
  // Padded or unknown: a record's length tells its plaintext's only to a block.
  EXPECT_EQ(AeadRecordOverhead(common::kTls12, 0xc014), std::nullopt);  // AES-256-CBC
  EXPECT_EQ(AeadRecordOverhead(common::kTls13, 0x1305), std::nullopt);  // CCM_8: 8-byte tag
  EXPECT_EQ(AeadRecordOverhead(common::kTls11, 0x009c), std::nullopt);  // GCM needs TLS 1.2
  EXPECT_EQ(AeadRecordOverhead(common::kTls12, 0x1301), std::nullopt);  // a 1.3 suite in 1.2
}

}  // namespace
}  // namespace relaywatch::detectors::tls
