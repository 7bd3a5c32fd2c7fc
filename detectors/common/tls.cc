#include "detectors/common/tls.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>

#include "capture/base/bytes.h"

namespace relaywatch::detectors::common {
namespace {

// A bounds-checked cursor over a span. Every read fails (returns false) rather than read
// past the end, and a failed read leaves the cursor where it was.
class Reader {
 public:
  explicit Reader(Bytes bytes) : bytes_(bytes) {}
  std::size_t remaining() const { return bytes_.size() - pos_; }
  bool empty() const { return remaining() == 0; }
  bool U8(std::uint8_t& v) {
    if (remaining() < 1) {
      return false;
    }
    v = bytes_[pos_++];
    return true;
  }
  bool U16(std::uint16_t& v) {
    if (remaining() < 2) {
      return false;
    }
    v = static_cast<std::uint16_t>((bytes_[pos_] << 8) | bytes_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool U24(std::uint32_t& v) {
    if (remaining() < 3) {
      return false;
    }
    v = (std::uint32_t{bytes_[pos_]} << 16) | (std::uint32_t{bytes_[pos_ + 1]} << 8) |
        bytes_[pos_ + 2];
    pos_ += 3;
    return true;
  }
  bool Take(std::size_t n, Bytes& out) {
    if (remaining() < n) {
      return false;
    }
    out = bytes_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool Skip(std::size_t n) {
    Bytes unused;
    return Take(n, unused);
  }
  // A vector<8> / vector<16>: a length prefix of 1 or 2 bytes and that many bytes.
  bool Vec8(Bytes& out) {
    std::uint8_t n = 0;
    const std::size_t start = pos_;
    if (!U8(n) || !Take(n, out)) {
      pos_ = start;
      return false;
    }
    return true;
  }
  bool Vec16(Bytes& out) {
    std::uint16_t n = 0;
    const std::size_t start = pos_;
    if (!U16(n) || !Take(n, out)) {
      pos_ = start;
      return false;
    }
    return true;
  }

 private:
  Bytes bytes_;
  std::size_t pos_ = 0;
};

// capture/base/bytes.h has Be16 and Be32; TLS also has 24-bit lengths.
std::uint32_t Be24(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];
}

// Reads a list of 16-bit values that must fill `bytes` exactly.
bool ReadU16List(Bytes bytes, std::vector<std::uint16_t>& out) {
  if (bytes.size() % 2 != 0) {
    return false;
  }
  out.reserve(out.size() + bytes.size() / 2);
  for (std::size_t i = 0; i < bytes.size(); i += 2) {
    out.push_back(Be16(&bytes[i]));
  }
  return true;
}

// RFC 6066 3: ServerNameList; the first host_name (type 0) is the SNI.
void ParseServerName(Bytes data, ClientHello& out) {
  Reader r(data);
  Bytes list;
  if (!r.Vec16(list)) {
    return;
  }
  Reader entries(list);
  while (!entries.empty()) {
    std::uint8_t type = 0;
    Bytes name;
    if (!entries.U8(type) || !entries.Vec16(name)) {
      return;
    }
    if (type == 0) {
      out.sni = EscapeBytes(name, kMaxTlsNameBytes);
      return;
    }
  }
}

// RFC 7301 3.1: ProtocolNameList.
void ParseAlpnList(Bytes data, std::string* first_raw, std::vector<std::string>& names) {
  Reader r(data);
  Bytes list;
  if (!r.Vec16(list)) {
    return;
  }
  Reader entries(list);
  bool first = true;
  while (!entries.empty()) {
    Bytes name;
    if (!entries.Vec8(name)) {
      return;
    }
    if (first && first_raw != nullptr) {
      first_raw->assign(name.begin(), name.end());
    }
    first = false;
    if (names.size() < kMaxAlpnValues) {
      names.push_back(EscapeBytes(name, kMaxAlpnValueBytes));
    }
  }
}

// RFC 8446 4.2: an extensions block. Each extension's type is appended to `types` in wire
// order (JA4 and the fingerprints need every one), then `on_extension(type, data)` reads it.
template <typename OnExtension>
TlsParseStatus ForEachExtension(Bytes extensions, std::vector<std::uint16_t>& types,
                                OnExtension on_extension) {
  Reader e(extensions);
  while (!e.empty()) {
    std::uint16_t type = 0;
    Bytes data;
    if (!e.U16(type) || !e.Vec16(data)) {
      return TlsParseStatus::kTruncated;
    }
    types.push_back(type);
    on_extension(type, data);
  }
  return TlsParseStatus::kOk;
}

// RFC 8446 4.1.3: the random of a HelloRetryRequest, SHA-256("HelloRetryRequest").
constexpr std::uint8_t kHelloRetryRandom[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

std::string ToHex(const std::uint8_t* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

std::string NameToString(const X509_NAME* name) {
  if (name == nullptr) {
    return "";
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio) {
    return "";
  }
  // XN_FLAG_RFC2253 escapes bytes above 0x7f and control characters, so the text is ASCII.
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    return "";
  }
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio.get(), &mem);
  if (mem == nullptr || mem->data == nullptr) {
    return "";
  }
  const Bytes text(reinterpret_cast<const std::uint8_t*>(mem->data), mem->length);
  // The RFC 2253 escapes ("\\,") are kept as they are.
  return EscapeBytes(text, kMaxDistinguishedNameBytes, /*escape_backslash=*/false);
}

std::string TimeToString(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return "";
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

TlsStreamEvent::Kind RecordKind(std::uint8_t type) {
  switch (type) {
    case kTlsChangeCipherSpec:
      return TlsStreamEvent::Kind::kChangeCipherSpec;
    case kTlsAlert:
      return TlsStreamEvent::Kind::kAlert;
    case kTlsHeartbeat:
      return TlsStreamEvent::Kind::kHeartbeat;
    case kTlsHandshake:
      return TlsStreamEvent::Kind::kEncryptedHandshake;
    default:
      return TlsStreamEvent::Kind::kApplicationData;
  }
}

}  // namespace

std::string EscapeBytes(Bytes bytes, std::size_t max_bytes, bool escape_backslash) {
  std::string out;
  out.reserve(std::min(bytes.size(), max_bytes));
  for (std::uint8_t b : bytes) {
    const bool plain = b >= 0x20 && b <= 0x7e && (b != '\\' || !escape_backslash);
    const std::size_t need = plain ? 1 : 4;
    if (out.size() + need > max_bytes) {
      break;
    }
    if (plain) {
      out.push_back(static_cast<char>(b));
    } else {
      char esc[5];
      std::snprintf(esc, sizeof(esc), "\\x%02x", b);
      out.append(esc, 4);
    }
  }
  return out;
}

std::string TlsVersionName(std::uint16_t version) {
  switch (version) {
    case 0x0002:
      return "SSL 2.0";
    case kSsl30:
      return "SSL 3.0";
    case kTls10:
      return "TLS 1.0";
    case kTls11:
      return "TLS 1.1";
    case kTls12:
      return "TLS 1.2";
    case kTls13:
      return "TLS 1.3";
    case kDtls10:
      return "DTLS 1.0";
    case kDtls12:
      return "DTLS 1.2";
    case kDtls13:
      return "DTLS 1.3";
    default:
      break;
  }
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%04x", version);
  return buf;
}

std::string_view TlsParseStatusName(TlsParseStatus status) {
  switch (status) {
    case TlsParseStatus::kOk:
      return "ok";
    case TlsParseStatus::kTruncated:
      return "truncated";
    case TlsParseStatus::kBadLength:
      return "bad_length";
    case TlsParseStatus::kBadCertificate:
      return "bad_certificate";
  }
  return "unknown";
}

std::uint16_t ClientHello::MaxOfferedVersion() const {
  std::uint16_t best = 0;
  bool found = false;
  for (std::uint16_t v : supported_versions) {
    if (IsGrease(v)) {
      continue;
    }
    const bool newer = !found ? true
                       : dtls ? v < best  // DTLS numbers count down: 0xfefc is 1.3
                              : v > best;
    if (newer) {
      best = v;
      found = true;
    }
  }
  return found ? best : legacy_version;
}

TlsParseStatus ParseClientHello(Bytes body, bool dtls, ClientHello& out) {
  out = ClientHello{};
  out.dtls = dtls;
  Reader r(body);
  Bytes session_id;
  Bytes cookie;
  Bytes ciphers;
  Bytes compression;
  if (!r.U16(out.legacy_version) || !r.Skip(32) || !r.Vec8(session_id)) {
    return TlsParseStatus::kTruncated;
  }
  if (dtls && !r.Vec8(cookie)) {
    return TlsParseStatus::kTruncated;
  }
  if (!r.Vec16(ciphers) || !r.Vec8(compression)) {
    return TlsParseStatus::kTruncated;
  }
  if (!ReadU16List(ciphers, out.cipher_suites)) {
    return TlsParseStatus::kBadLength;
  }
  if (r.empty()) {
    return TlsParseStatus::kOk;  // RFC 5246 7.4.1.2: extensions are optional
  }
  Bytes extensions;
  if (!r.Vec16(extensions)) {
    return TlsParseStatus::kTruncated;
  }
  return ForEachExtension(extensions, out.extensions, [&out](std::uint16_t type, Bytes data) {
    switch (type) {
      case kExtServerName:
        out.has_sni = true;
        ParseServerName(data, out);
        break;
      case kExtAlpn:
        out.has_alpn = true;
        ParseAlpnList(data, &out.alpn_first_raw, out.alpn);
        break;
      case kExtSupportedVersions: {
        Reader v(data);
        Bytes list;
        if (v.Vec8(list) && !ReadU16List(list, out.supported_versions)) {
          out.supported_versions.clear();
        }
        break;
      }
      case kExtSignatureAlgorithms: {
        Reader s(data);
        Bytes list;
        if (s.Vec16(list) && !ReadU16List(list, out.signature_algorithms)) {
          out.signature_algorithms.clear();
        }
        break;
      }
      default:
        break;
    }
  });
}

TlsParseStatus ParseServerHello(Bytes body, bool dtls, ServerHello& out) {
  out = ServerHello{};
  out.dtls = dtls;
  Reader r(body);
  Bytes random;
  Bytes session_id;
  std::uint8_t compression = 0;
  if (!r.U16(out.legacy_version) || !r.Take(32, random) || !r.Vec8(session_id) ||
      !r.U16(out.cipher_suite) || !r.U8(compression)) {
    return TlsParseStatus::kTruncated;
  }
  out.hello_retry_request = std::equal(random.begin(), random.end(), kHelloRetryRandom);
  if (r.empty()) {
    return TlsParseStatus::kOk;
  }
  Bytes extensions;
  if (!r.Vec16(extensions)) {
    return TlsParseStatus::kTruncated;
  }
  return ForEachExtension(extensions, out.extensions, [&out](std::uint16_t type, Bytes data) {
    if (type == kExtSupportedVersions && data.size() == 2) {
      out.selected_version = Be16(data.data());
    } else if (type == kExtAlpn) {
      std::vector<std::string> names;
      ParseAlpnList(data, nullptr, names);
      if (!names.empty()) {
        out.alpn = names.front();
      }
    }
  });
}

TlsParseStatus ParseFirstCertificate(Bytes body, CertificateInfo& out) {
  out = CertificateInfo{};
  Reader r(body);
  std::uint32_t list_bytes = 0;
  std::uint32_t cert_bytes = 0;
  Bytes der;
  if (!r.U24(list_bytes) || !r.U24(cert_bytes)) {
    return TlsParseStatus::kTruncated;
  }
  if (list_bytes < cert_bytes + 3 || cert_bytes == 0) {
    return TlsParseStatus::kBadLength;
  }
  if (!r.Take(cert_bytes, der)) {
    return TlsParseStatus::kTruncated;
  }
  const unsigned char* p = der.data();
  // d2i_X509 takes a C `long` length.
  std::unique_ptr<X509, X509Free> cert(
      d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT(google-runtime-int)
  if (!cert) {
    return TlsParseStatus::kBadCertificate;
  }
  out.subject = NameToString(X509_get_subject_name(cert.get()));
  out.issuer = NameToString(X509_get_issuer_name(cert.get()));
  out.not_before = TimeToString(X509_get0_notBefore(cert.get()));
  out.not_after = TimeToString(X509_get0_notAfter(cert.get()));
  // Checks issuer == subject, key identifiers, and the signature against its own key.
  out.self_signed = X509_self_signed(cert.get(), 1) == 1;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_size = 0;
  if (EVP_Digest(der.data(), der.size(), md, &md_size, EVP_sha256(), nullptr) == 1) {
    out.sha256 = ToHex(md, md_size);
  }
  return TlsParseStatus::kOk;
}

void HandshakeMessageAssembler::Reset() {
  buffer_.clear();
  skip_ = 0;
}

void HandshakeMessageAssembler::Add(Bytes data,
                                    absl::FunctionRef<void(const HandshakeMessage&)> on_message) {
  while (!data.empty()) {
    if (skip_ > 0) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(skip_, data.size()));
      skip_ -= n;
      data = data.subspan(n);
      continue;
    }
    if (buffer_.size() < kTlsHandshakeHeaderBytes) {
      const std::size_t n = std::min(kTlsHandshakeHeaderBytes - buffer_.size(), data.size());
      buffer_.insert(buffer_.end(), data.begin(), data.begin() + n);
      data = data.subspan(n);
      if (buffer_.size() < kTlsHandshakeHeaderBytes) {
        return;
      }
    }
    const std::uint32_t length = Be24(&buffer_[1]);
    const std::size_t kept = std::min<std::size_t>(length, max_message_bytes_);
    const std::size_t want = kTlsHandshakeHeaderBytes + kept;
    const std::size_t n = std::min(want - buffer_.size(), data.size());
    buffer_.insert(buffer_.end(), data.begin(), data.begin() + n);
    data = data.subspan(n);
    if (buffer_.size() < want) {
      return;
    }
    HandshakeMessage message;
    message.type = buffer_[0];
    message.length = length;
    message.body = Bytes(buffer_).subspan(kTlsHandshakeHeaderBytes);
    message.truncated = kept < length;
    if (message.truncated) {
      skip_ = length - kept;
      ++oversized_;
    }
    on_message(message);
    buffer_.clear();
    if (buffer_.capacity() > 4096) {
      // A big message (a certificate chain) came and went: do not keep its memory.
      std::vector<std::uint8_t>().swap(buffer_);
    }
  }
}

bool HandshakeStream::LooksLikeHelloRecord(Bytes data) {
  if (data.size() < kTlsRecordHeaderBytes + 1) {
    return false;
  }
  const std::size_t length = Be16(&data[3]);
  return data[0] == kTlsHandshake && data[1] == 3 && data[2] <= 4 && length > 0 &&
         length <= kMaxTlsRecordPayloadBytes &&
         (data[5] == kHandshakeClientHello || data[5] == kHandshakeServerHello);
}

bool IsTlsRecordHeader(Bytes bytes) {
  return bytes.size() >= kTlsRecordHeaderBytes && bytes[0] >= kTlsChangeCipherSpec &&
         bytes[0] <= kTlsHeartbeat && bytes[1] == 3 && bytes[2] <= 4 &&
         Be16(&bytes[3]) <= kMaxTlsRecordPayloadBytes;
}

void HandshakeStream::StartRecord(absl::FunctionRef<void(const TlsStreamEvent&)> on_event) {
  const std::uint8_t type = header_[0];
  const std::size_t length = Be16(&header_[3]);
  // A record header that is not TLS: the stream was never TLS or we lost our place.
  if (!IsTlsRecordHeader(Bytes(header_, kTlsRecordHeaderBytes))) {
    state_ = State::kBroken;
    messages_.Reset();
    return;
  }
  record_type_ = type;
  record_version_ = Be16(&header_[1]);
  record_remaining_ = length;
  record_length_ = length;
  if (type == kTlsChangeCipherSpec) {
    encrypted_ = true;
    messages_.Reset();
  }
  if (type == kTlsHandshake && encrypted_ && length > 0) {
    probing_ = true;  // reported once the probe has decided
    probe_size_ = 0;
    return;
  }
  if (type != kTlsHandshake || encrypted_) {
    TlsStreamEvent event;
    event.record_version = record_version_;
    event.kind = RecordKind(type);
    on_event(event);
  }
}

std::optional<std::size_t> AeadRecordOverhead(std::uint16_t version, std::uint16_t cipher_suite) {
  constexpr std::size_t kTag = 16;
  if (version == kTls13) {
    // TLS_AES_128_GCM_SHA256 .. TLS_AES_128_CCM_SHA256; not CCM_8 (0x1305), whose tag is 8.
    if (cipher_suite >= 0x1301 && cipher_suite <= 0x1304)
      return kTag + 1;
    return std::nullopt;
  }
  if (version != kTls12)
    return std::nullopt;
  // AES-GCM: RFC 5288 (RSA, DHE, DH, DH_anon), RFC 5487 (PSK), RFC 5289 (ECDHE, ECDH).
  if ((cipher_suite >= 0x009c && cipher_suite <= 0x00ad) ||
      (cipher_suite >= 0xc02b && cipher_suite <= 0xc032))
    return 8 + kTag;
  // ChaCha20-Poly1305, RFC 7905: its nonce is implicit.
  if (cipher_suite >= 0xcca8 && cipher_suite <= 0xccae)
    return kTag;
  return std::nullopt;
}

bool HandshakeStream::ProbeIsHello() const {
  return probe_size_ == sizeof(probe_) &&
         (probe_[0] == kHandshakeClientHello || probe_[0] == kHandshakeServerHello) &&
         kTlsHandshakeHeaderBytes + Be24(&probe_[1]) <= record_length_ && probe_[4] == 3 &&
         probe_[5] <= 4;
}

void HandshakeStream::AddHandshake(Bytes bytes,
                                   absl::FunctionRef<void(const TlsStreamEvent&)> on_event) {
  messages_.Add(bytes, [&](const HandshakeMessage& message) {
    TlsStreamEvent event;
    event.kind = TlsStreamEvent::Kind::kHandshake;
    event.record_version = record_version_;
    event.message = &message;
    on_event(event);
  });
}

void HandshakeStream::Feed(Bytes data, bool segment_start,
                           absl::FunctionRef<void(const TlsStreamEvent&)> on_event) {
  if (state_ == State::kSearching) {
    if (sync_size_ == 0 && !segment_start) {
      return;
    }
    // Collect the first 6 bytes of a segment start, then decide.
    const std::size_t n = std::min(sizeof(sync_) - sync_size_, data.size());
    std::copy_n(data.begin(), n, sync_ + sync_size_);
    sync_size_ += n;
    data = data.subspan(n);
    const Bytes start(sync_, sync_size_);
    if (sync_size_ < sizeof(sync_)) {
      // Keep collecting only while what came so far can still be a hello record.
      const bool maybe = start[0] == kTlsHandshake && (sync_size_ < 2 || start[1] == 3);
      if (!maybe) {
        sync_size_ = 0;
      }
      return;
    }
    sync_size_ = 0;
    if (!LooksLikeHelloRecord(start)) {
      return;
    }
    state_ = State::kRecords;
    Feed(start, false, on_event);
  }
  while (!data.empty() && state_ == State::kRecords) {
    if (record_remaining_ == 0) {
      const std::size_t n = std::min(kTlsRecordHeaderBytes - header_size_, data.size());
      std::copy_n(data.begin(), n, header_ + header_size_);
      header_size_ += n;
      data = data.subspan(n);
      if (header_size_ < kTlsRecordHeaderBytes) {
        return;
      }
      header_size_ = 0;
      StartRecord(on_event);
      continue;
    }
    if (probing_) {
      const std::size_t n =
          std::min({sizeof(probe_) - probe_size_, record_remaining_, data.size()});
      std::copy_n(data.begin(), n, probe_ + probe_size_);
      probe_size_ += n;
      record_remaining_ -= n;
      data = data.subspan(n);
      if (probe_size_ < sizeof(probe_) && record_remaining_ > 0) {
        continue;  // wait for more of the record
      }
      probing_ = false;
      if (ProbeIsHello()) {
        encrypted_ = false;
        messages_.Reset();
        AddHandshake(Bytes(probe_, probe_size_), on_event);
      } else {
        TlsStreamEvent event;
        event.kind = TlsStreamEvent::Kind::kEncryptedHandshake;
        event.record_version = record_version_;
        on_event(event);
      }
      continue;
    }
    const std::size_t n = std::min(record_remaining_, data.size());
    if (record_type_ == kTlsHandshake && !encrypted_) {
      AddHandshake(data.first(n), on_event);
    }
    record_remaining_ -= n;
    data = data.subspan(n);
  }
}

bool LooksLikeDtlsHandshake(Bytes datagram) {
  if (datagram.size() < kDtlsRecordHeaderBytes + kDtlsHandshakeHeaderBytes) {
    return false;
  }
  const std::uint16_t version = Be16(&datagram[1]);
  const std::uint16_t epoch = Be16(&datagram[3]);
  const std::uint8_t type = datagram[kDtlsRecordHeaderBytes];
  return datagram[0] == kTlsHandshake &&
         (version == kDtls10 || version == kDtls12 || version == kDtlsBadVersion) && epoch == 0 &&
         (type == kHandshakeClientHello || type == kHandshakeServerHello ||
          type == kHandshakeHelloVerifyRequest);
}

bool DtlsHandshakeReader::Feed(Bytes datagram,
                               absl::FunctionRef<void(const TlsStreamEvent&)> on_event) {
  bool any = false;
  while (datagram.size() >= kDtlsRecordHeaderBytes) {
    const std::uint8_t type = datagram[0];
    const std::uint16_t version = Be16(&datagram[1]);
    const std::uint16_t epoch = Be16(&datagram[3]);
    const std::size_t length = Be16(&datagram[11]);
    // RFC 9147 4: DTLS 1.3 encrypted records use a unified header; stop at anything else.
    if (type < kTlsChangeCipherSpec || type > kTlsHeartbeat ||
        ((version >> 8) != 0xfe && version != kDtlsBadVersion) ||
        kDtlsRecordHeaderBytes + length > datagram.size()) {
      break;
    }
    any = true;
    const Bytes record = datagram.subspan(kDtlsRecordHeaderBytes, length);
    if (type == kTlsHandshake && epoch == 0) {
      Fragment(version, record, on_event);
    } else {
      TlsStreamEvent event;
      event.kind = epoch == 0 && type == kTlsChangeCipherSpec
                       ? TlsStreamEvent::Kind::kChangeCipherSpec
                       : RecordKind(type);
      event.record_version = version;
      on_event(event);
    }
    datagram = datagram.subspan(kDtlsRecordHeaderBytes + length);
  }
  return any;
}

void DtlsHandshakeReader::Fragment(std::uint16_t record_version, Bytes record,
                                   absl::FunctionRef<void(const TlsStreamEvent&)> on_event) {
  const auto deliver = [&](std::uint8_t type, std::uint32_t length, Bytes body, bool truncated) {
    HandshakeMessage message;
    message.type = type;
    message.length = length;
    message.body = body;
    message.truncated = truncated;
    if (truncated) {
      ++oversized_;
    }
    TlsStreamEvent event;
    event.kind = TlsStreamEvent::Kind::kHandshake;
    event.record_version = record_version;
    event.message = &message;
    on_event(event);
  };
  Reader r(record);
  while (r.remaining() >= kDtlsHandshakeHeaderBytes) {
    std::uint8_t type = 0;
    std::uint32_t length = 0;
    std::uint16_t seq = 0;
    std::uint32_t offset = 0;
    std::uint32_t fragment_length = 0;
    Bytes fragment;
    if (!r.U8(type) || !r.U24(length) || !r.U16(seq) || !r.U24(offset) || !r.U24(fragment_length) ||
        !r.Take(fragment_length, fragment) || std::uint64_t{offset} + fragment_length > length) {
      return;
    }
    // A retransmitted flight repeats message_seq: deliver each message once.
    if (delivered_any_ && seq <= last_seq_) {
      continue;
    }
    if (offset == 0 && fragment_length == length) {
      const bool truncated = length > max_message_bytes_;
      delivered_any_ = true;
      last_seq_ = seq;
      joining_ = false;
      deliver(type, length, truncated ? fragment.first(max_message_bytes_) : fragment, truncated);
      continue;
    }
    if (offset == 0) {
      joining_ = true;
      fragment_type_ = type;
      fragment_seq_ = seq;
      fragment_length_ = length;
      received_ = 0;
      fragment_.clear();
    }
    if (!joining_ || seq != fragment_seq_ || type != fragment_type_ || length != fragment_length_ ||
        offset > received_) {
      continue;  // out of order: this message is not joined (retransmission may fix it)
    }
    const std::uint32_t end = offset + fragment_length;
    if (end <= received_) {
      continue;
    }
    const Bytes fresh = fragment.subspan(received_ - offset);
    const std::size_t room = max_message_bytes_ - std::min(max_message_bytes_, fragment_.size());
    fragment_.insert(fragment_.end(), fresh.begin(),
                     fresh.begin() + static_cast<std::ptrdiff_t>(std::min(room, fresh.size())));
    received_ = end;
    if (received_ == fragment_length_) {
      joining_ = false;
      delivered_any_ = true;
      last_seq_ = seq;
      deliver(type, length, Bytes(fragment_), length > max_message_bytes_);
      std::vector<std::uint8_t>().swap(fragment_);
    }
  }
}

}  // namespace relaywatch::detectors::common
