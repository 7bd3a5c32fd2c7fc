#include "detectors/common/ja4.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace relaywatch::detectors::common {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kEmptyHash[] = "000000000000";

bool IsAlnum(std::uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// "1301,1302,..." : lowercase 4-digit hex, comma separated.
std::string JoinHex(const std::vector<std::uint16_t>& values) {
  std::string out;
  out.reserve(values.size() * 5);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    const std::uint16_t v = values[i];
    out.push_back(kHexDigits[(v >> 12) & 0xf]);
    out.push_back(kHexDigits[(v >> 8) & 0xf]);
    out.push_back(kHexDigits[(v >> 4) & 0xf]);
    out.push_back(kHexDigits[v & 0xf]);
  }
  return out;
}

// The first 12 lowercase hex digits of SHA-256(text).
std::string Hash12(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), md, &size, EVP_sha256(), nullptr) != 1) {
    return kEmptyHash;  // cannot happen with the default provider; keep the format anyway
  }
  std::string out(12, '0');
  for (int i = 0; i < 6; ++i) {
    out[2 * i] = kHexDigits[md[i] >> 4];
    out[2 * i + 1] = kHexDigits[md[i] & 0xf];
  }
  return out;
}

std::vector<std::uint16_t> WithoutGrease(const std::vector<std::uint16_t>& values) {
  std::vector<std::uint16_t> out;
  out.reserve(values.size());
  for (std::uint16_t v : values) {
    if (!IsGrease(v)) {
      out.push_back(v);
    }
  }
  return out;
}

std::string TwoDigits(std::size_t n) {
  char buf[4];
  std::snprintf(buf, sizeof(buf), "%02zu", std::min<std::size_t>(n, 99));
  return buf;
}

}  // namespace

std::string Ja4VersionCode(std::uint16_t version) {
  switch (version) {
    case kTls13:
      return "13";
    case kTls12:
      return "12";
    case kTls11:
      return "11";
    case kTls10:
      return "10";
    case kSsl30:
      return "s3";
    case 0x0002:
      return "s2";
    case kDtls10:
      return "d1";
    case kDtls12:
      return "d2";
    case kDtls13:
      return "d3";
    default:
      return "00";
  }
}

std::string Ja4AlpnCode(const std::string& first_alpn_raw) {
  if (first_alpn_raw.empty()) {
    return "00";
  }
  const auto first = static_cast<std::uint8_t>(first_alpn_raw.front());
  const auto last = static_cast<std::uint8_t>(first_alpn_raw.back());
  if (IsAlnum(first) && IsAlnum(last)) {
    return {static_cast<char>(first), static_cast<char>(last)};
  }
  // JA4.md "ALPN Extension Value": otherwise the first and last characters of the value's
  // hex form, i.e. the high nibble of the first byte and the low nibble of the last.
  return {kHexDigits[first >> 4], kHexDigits[last & 0xf]};
}

Ja4 ComputeJa4(const ClientHello& hello, Ja4Transport transport) {
  const std::vector<std::uint16_t> ciphers = WithoutGrease(hello.cipher_suites);
  const std::vector<std::uint16_t> extensions = WithoutGrease(hello.extensions);
  const std::vector<std::uint16_t> sigalgs = WithoutGrease(hello.signature_algorithms);

  std::string a;
  a.push_back(static_cast<char>(transport));
  a += Ja4VersionCode(hello.MaxOfferedVersion());
  a.push_back(hello.has_sni ? 'd' : 'i');
  a += TwoDigits(ciphers.size());
  a += TwoDigits(extensions.size());
  a += hello.has_alpn ? Ja4AlpnCode(hello.alpn_first_raw) : "00";

  std::vector<std::uint16_t> sorted_ciphers = ciphers;
  std::sort(sorted_ciphers.begin(), sorted_ciphers.end());
  // The sorted extension list leaves out SNI and ALPN, already in `a`.
  std::vector<std::uint16_t> sorted_extensions;
  for (std::uint16_t e : extensions) {
    if (e != kExtServerName && e != kExtAlpn) {
      sorted_extensions.push_back(e);
    }
  }
  std::sort(sorted_extensions.begin(), sorted_extensions.end());

  const std::string sigs = JoinHex(sigalgs);
  const auto with_sigs = [&](std::string list) {
    if (!sigs.empty()) {
      list.push_back('_');
      list += sigs;
    }
    return list;
  };
  const std::string ciphers_sorted = JoinHex(sorted_ciphers);
  const std::string ciphers_original = JoinHex(ciphers);
  const std::string ext_sorted = with_sigs(JoinHex(sorted_extensions));
  const std::string ext_original = with_sigs(JoinHex(extensions));

  // "000000000000" marks an empty list. For c, both forms test the sorted list, which has
  // SNI and ALPN removed: a hello whose only extension is SNI has an empty c in every form.
  const bool no_ciphers = ciphers.empty();
  const bool no_extensions = sorted_extensions.empty();
  Ja4 out;
  out.ja4 = a + "_" + (no_ciphers ? kEmptyHash : Hash12(ciphers_sorted)) + "_" +
            (no_extensions ? kEmptyHash : Hash12(ext_sorted));
  out.ja4_o = a + "_" + (no_ciphers ? kEmptyHash : Hash12(ciphers_original)) + "_" +
              (no_extensions ? kEmptyHash : Hash12(ext_original));
  const bool raw_ok = hello.cipher_suites.size() <= kMaxJa4RawListValues &&
                      hello.extensions.size() <= kMaxJa4RawListValues &&
                      hello.signature_algorithms.size() <= kMaxJa4RawListValues;
  if (raw_ok) {
    out.ja4_r = a + "_" + ciphers_sorted + "_" + ext_sorted;
    out.ja4_ro = a + "_" + ciphers_original + "_" + ext_original;
  }
  return out;
}

}  // namespace relaywatch::detectors::common
