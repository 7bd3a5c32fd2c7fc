#pragma once

// TLS and DTLS handshake parsing shared by detectors: the record layer of one TCP direction
// (HandshakeStream), DTLS datagrams (DtlsHandshakeReader), and the ClientHello, ServerHello
// and Certificate messages (RFC 8446, RFC 5246, RFC 6347, RFC 9147).
//
// Bad input: every function reads only inside the span it is given, reports malformed or
// truncated input with a status code and never throws. Strings taken from packets (SNI,
// ALPN, certificate names) are cut to fixed lengths before they are stored.
// Memory: the reassemblers hold at most `max_message_bytes` of one handshake message plus a
// record header; longer messages are delivered as a prefix, flagged, and counted.
// Thread-safety: none needed; functions are pure, each reassembler has one owner.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"

namespace relaywatch::detectors::common {

using Bytes = std::span<const std::uint8_t>;

// Record content types (RFC 8446 5.1).
inline constexpr std::uint8_t kTlsChangeCipherSpec = 20;
inline constexpr std::uint8_t kTlsAlert = 21;
inline constexpr std::uint8_t kTlsHandshake = 22;
inline constexpr std::uint8_t kTlsApplicationData = 23;
inline constexpr std::uint8_t kTlsHeartbeat = 24;

// Handshake message types (RFC 8446 4, RFC 6347 4.2.2).
inline constexpr std::uint8_t kHandshakeClientHello = 1;
inline constexpr std::uint8_t kHandshakeServerHello = 2;
inline constexpr std::uint8_t kHandshakeHelloVerifyRequest = 3;
inline constexpr std::uint8_t kHandshakeCertificate = 11;
inline constexpr std::uint8_t kHandshakeServerHelloDone = 14;

// Extension types used here (IANA TLS ExtensionType registry).
inline constexpr std::uint16_t kExtServerName = 0x0000;
inline constexpr std::uint16_t kExtSignatureAlgorithms = 0x000d;
inline constexpr std::uint16_t kExtAlpn = 0x0010;
inline constexpr std::uint16_t kExtSupportedVersions = 0x002b;

// Protocol versions on the wire.
inline constexpr std::uint16_t kSsl30 = 0x0300;
inline constexpr std::uint16_t kTls10 = 0x0301;
inline constexpr std::uint16_t kTls11 = 0x0302;
inline constexpr std::uint16_t kTls12 = 0x0303;
inline constexpr std::uint16_t kTls13 = 0x0304;
inline constexpr std::uint16_t kDtls10 = 0xfeff;
inline constexpr std::uint16_t kDtls12 = 0xfefd;
inline constexpr std::uint16_t kDtls13 = 0xfefc;
// OpenSSL's pre-RFC DTLS (DTLS1_BAD_VER), still spoken by Cisco AnyConnect.
inline constexpr std::uint16_t kDtlsBadVersion = 0x0100;

inline constexpr std::size_t kTlsRecordHeaderBytes = 5;
inline constexpr std::size_t kDtlsRecordHeaderBytes = 13;
inline constexpr std::size_t kTlsHandshakeHeaderBytes = 4;
inline constexpr std::size_t kDtlsHandshakeHeaderBytes = 12;
// RFC 5246 6.2.3: a record carries at most 2^14 + 2048 bytes (ciphertext expansion).
inline constexpr std::size_t kMaxTlsRecordPayloadBytes = 16384 + 2048;

// Stored text is cut to these many bytes (after escaping non-printable bytes as \xNN).
inline constexpr std::size_t kMaxTlsNameBytes = 255;   // SNI (a DNS name is <= 253)
inline constexpr std::size_t kMaxAlpnValueBytes = 64;  // one ALPN protocol name, as text
inline constexpr std::size_t kMaxAlpnValues = 16;      // ALPN names kept
inline constexpr std::size_t kMaxDistinguishedNameBytes = 512;

// RFC 8701: GREASE values are 0x?a?a with both bytes equal.
constexpr bool IsGrease(std::uint16_t v) {
  return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

// Printable ASCII is kept, every other byte (and '\', unless `escape_backslash` is false)
// becomes "\xNN"; the result is cut to `max_bytes` without splitting an escape.
std::string EscapeBytes(Bytes bytes, std::size_t max_bytes, bool escape_backslash = true);

// "TLS 1.2", "DTLS 1.0", "SSL 3.0", ... or "0x7f1c" for anything else.
std::string TlsVersionName(std::uint16_t version);

// Why a message did not parse. Stable values: they index counters.
enum class TlsParseStatus : std::uint8_t {
  kOk = 0,
  kTruncated,       // a field runs past the end of the message
  kBadLength,       // a length field contradicts the others (odd cipher list, ...)
  kBadCertificate,  // the first certificate is not DER that OpenSSL accepts
};
inline constexpr int kTlsParseStatusCount = 4;
std::string_view TlsParseStatusName(TlsParseStatus status);

// The fields of a ClientHello that fingerprints and logs need. Lists keep wire order and
// GREASE values; consumers filter them (IsGrease).
struct ClientHello {
  bool dtls = false;
  std::uint16_t legacy_version = 0;
  std::vector<std::uint16_t> cipher_suites;
  std::vector<std::uint16_t> extensions;
  bool has_sni = false;
  std::string sni;  // first host_name, escaped and cut to kMaxTlsNameBytes
  bool has_alpn = false;
  // Raw bytes of the first ALPN protocol name (JA4 reads its first and last byte), and the
  // first kMaxAlpnValues names as escaped text.
  std::string alpn_first_raw;
  std::vector<std::string> alpn;
  std::vector<std::uint16_t> supported_versions;    // extension 0x002b, wire order
  std::vector<std::uint16_t> signature_algorithms;  // extension 0x000d, wire order

  // The highest non-GREASE version of supported_versions, else legacy_version. For DTLS a
  // smaller number is a newer version (0xfefc = DTLS 1.3).
  std::uint16_t MaxOfferedVersion() const;
};

// Parses a ClientHello body (after the handshake header). `dtls` adds the cookie field of
// RFC 6347 4.2.1. Extensions that are present but malformed inside keep their type in
// `extensions` and contribute no values; a malformed outer structure is an error.
TlsParseStatus ParseClientHello(Bytes body, bool dtls, ClientHello& out);

struct ServerHello {
  bool dtls = false;
  std::uint16_t legacy_version = 0;
  std::uint16_t selected_version = 0;  // supported_versions (TLS 1.3), 0 when absent
  std::uint16_t cipher_suite = 0;
  bool hello_retry_request = false;  // RFC 8446 4.1.3: the special random value
  std::vector<std::uint16_t> extensions;
  std::string alpn;  // the selected protocol (TLS <= 1.2 only; 1.3 encrypts it), escaped

  std::uint16_t version() const {
    return selected_version != 0 ? selected_version : legacy_version;
  }
};

TlsParseStatus ParseServerHello(Bytes body, bool dtls, ServerHello& out);

// The first (end-entity) certificate of a TLS <= 1.2 Certificate message.
struct CertificateInfo {
  std::string subject;  // RFC 2253 one-line form ("CN=a\,b,O=c"), ASCII, cut to 512 bytes
  std::string issuer;
  std::string not_before;  // RFC 3339 UTC, "2024-05-01T12:00:00Z"; empty if unreadable
  std::string not_after;
  bool self_signed = false;  // issuer == subject and the signature verifies with its own key
  std::string sha256;        // lowercase hex SHA-256 of the DER
};

// Parses the Certificate body (RFC 5246 7.4.2). `body` may be only the first bytes of a
// long chain: the first certificate must be complete, the rest is not read. Cost: one
// OpenSSL DER decode and one signature check.
TlsParseStatus ParseFirstCertificate(Bytes body, CertificateInfo& out);

// One complete handshake message, or the first bytes of one longer than the cap.
struct HandshakeMessage {
  std::uint8_t type = 0;
  std::uint32_t length = 0;  // declared body length
  Bytes body;                // valid only during the callback
  bool truncated = false;    // body holds only the first max_message_bytes
};

// Collects handshake messages in the TLS framing (type, 24-bit length, body) from a byte
// stream: the payload of consecutive handshake records, or QUIC CRYPTO stream data. A
// message may span any number of Add() calls.
class HandshakeMessageAssembler {
 public:
  explicit HandshakeMessageAssembler(std::size_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}
  void Add(Bytes data, absl::FunctionRef<void(const HandshakeMessage&)> on_message);
  void Reset();
  // True while a message has begun but is not complete (or its oversized tail is skipped).
  bool partial() const { return !buffer_.empty() || skip_ > 0; }
  // Messages whose body exceeded the cap (delivered truncated).
  std::uint64_t oversized() const { return oversized_; }
  std::size_t buffered_bytes() const { return buffer_.capacity(); }

 private:
  std::size_t max_message_bytes_;
  std::vector<std::uint8_t> buffer_;  // header + body of the current message, <= cap + 4
  std::uint64_t skip_ = 0;            // bytes of an oversized message still to drop
  std::uint64_t oversized_ = 0;
};

// What HandshakeStream saw in one direction of a TLS-over-TCP stream.
struct TlsStreamEvent {
  enum class Kind : std::uint8_t {
    kHandshake,           // `message` is set
    kChangeCipherSpec,    // a CCS record began
    kAlert,               // an alert record began (plaintext or not)
    kApplicationData,     // an application_data record began (TLS 1.3: all encrypted records)
    kEncryptedHandshake,  // a handshake record after ChangeCipherSpec began
    kHeartbeat,
  };
  Kind kind = Kind::kHandshake;
  std::uint16_t record_version = 0;
  const HandshakeMessage* message = nullptr;
};

// Whether `bytes` begin with a TLS record header (RFC 8446 5.1): a content type of 20-24, a
// version of 3.0-3.4 on the wire and a length of at most kMaxTlsRecordPayloadBytes.
bool IsTlsRecordHeader(Bytes bytes);

// The bytes an encrypted record adds to its plaintext under an AEAD cipher suite whose
// expansion is fixed (RFC 5246 6.2.3.3, RFC 5288 3, RFC 7905 2, RFC 8446 5.2): 24 for TLS 1.2's
// AES-GCM (an 8-byte explicit nonce and the 16-byte tag), 16 for its ChaCha20-Poly1305, 17 for
// TLS 1.3's AES-GCM, ChaCha20-Poly1305 and AES-CCM (the tag and the inner content type, when
// the sender adds no padding, as no common library does by default). Nullopt for the rest:
// block ciphers pad, so a record's length then tells its plaintext's only to a block.
std::optional<std::size_t> AeadRecordOverhead(std::uint16_t version, std::uint16_t cipher_suite);

// Splits one direction of a TCP stream (fed in sequence order) into TLS records and
// delivers handshake messages and record boundaries.
//
// Synchronisation: the stream is TLS from the first segment that starts with a handshake
// record holding a ClientHello or ServerHello (its first 6 bytes may come in several
// segments), so a proxy preamble (SOCKS, HTTP CONNECT) before it is skipped. Only segment
// starts are tried; the caller bounds how many. After sync, a record header that is not TLS
// breaks the stream for good.
// After ChangeCipherSpec the handshake is encrypted (TLS <= 1.2 Finished), except that TLS 1.3
// middlebox-compatibility mode (RFC 8446 D.4) sends a CCS right before a second ClientHello
// after a HelloRetryRequest, and after the HelloRetryRequest itself. So a handshake record
// after CCS is read in clear when its first bytes are a ClientHello or ServerHello header
// that fits the record with a TLS version (about 1 in 2^40 for random ciphertext).
class HandshakeStream {
 public:
  enum class State : std::uint8_t { kSearching, kRecords, kBroken };

  explicit HandshakeStream(std::size_t max_message_bytes) : messages_(max_message_bytes) {}
  // `segment_start`: `data` begins a new TCP segment (a place where sync may be found).
  void Feed(Bytes data, bool segment_start,
            absl::FunctionRef<void(const TlsStreamEvent&)> on_event);
  State state() const { return state_; }
  // True while a handshake message is being assembled.
  bool partial() const { return messages_.partial() || probing_; }
  std::uint64_t oversized() const { return messages_.oversized(); }
  std::size_t buffered_bytes() const { return messages_.buffered_bytes() + sizeof(*this); }

 private:
  static bool LooksLikeHelloRecord(Bytes data);
  void StartRecord(absl::FunctionRef<void(const TlsStreamEvent&)> on_event);
  void AddHandshake(Bytes bytes, absl::FunctionRef<void(const TlsStreamEvent&)> on_event);
  bool ProbeIsHello() const;

  State state_ = State::kSearching;
  std::uint8_t sync_[kTlsRecordHeaderBytes + 1] = {};  // a possible first record's start
  std::size_t sync_size_ = 0;
  std::uint8_t header_[kTlsRecordHeaderBytes] = {};
  std::size_t header_size_ = 0;
  std::uint8_t record_type_ = 0;
  std::uint16_t record_version_ = 0;
  std::size_t record_remaining_ = 0;
  std::size_t record_length_ = 0;
  bool encrypted_ = false;
  // The first bytes of a handshake record after CCS, read to tell a hello from ciphertext.
  bool probing_ = false;
  std::uint8_t probe_[6] = {};
  std::size_t probe_size_ = 0;
  HandshakeMessageAssembler messages_;
};

// Reads the handshake messages of DTLS datagrams (RFC 6347 4.1, 4.2.2). Messages that come
// in one fragment are delivered directly; fragments of one message are joined when they
// arrive in order. Records of a non-zero epoch are encrypted and reported as such.
class DtlsHandshakeReader {
 public:
  explicit DtlsHandshakeReader(std::size_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}
  // Returns false when the datagram does not start with a DTLS record.
  bool Feed(Bytes datagram, absl::FunctionRef<void(const TlsStreamEvent&)> on_event);
  std::uint64_t oversized() const { return oversized_; }
  std::size_t buffered_bytes() const { return fragment_.capacity() + sizeof(*this); }

 private:
  void Fragment(std::uint16_t record_version, Bytes record,
                absl::FunctionRef<void(const TlsStreamEvent&)> on_event);

  std::size_t max_message_bytes_;
  std::vector<std::uint8_t> fragment_;  // body of a message being joined
  std::uint8_t fragment_type_ = 0;
  std::uint16_t fragment_seq_ = 0;
  std::uint32_t fragment_length_ = 0;
  std::uint32_t received_ = 0;  // bytes of the message joined so far (kept up to the cap)
  bool joining_ = false;
  bool delivered_any_ = false;
  std::uint16_t last_seq_ = 0;  // message_seq of the last message delivered
  std::uint64_t oversized_ = 0;
};

// True when `datagram` starts with a plaintext DTLS handshake record holding a hello (RFC 7983
// first byte 20..63 demultiplexing, content type 22, version 0xfeff/0xfefd/0x0100, epoch 0).
bool LooksLikeDtlsHandshake(Bytes datagram);

}  // namespace relaywatch::detectors::common
