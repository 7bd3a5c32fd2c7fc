#pragma once

// TLS wire builders for unit tests and fuzz targets: records, handshake messages, ClientHello
// and ServerHello bodies with the extensions the parsers read.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "detectors/common/tls.h"

namespace relaywatch::detectors::tls_wire {

using ByteVec = std::vector<std::uint8_t>;
using common::Bytes;

inline void Put8(ByteVec& b, std::uint8_t v) {
  b.push_back(v);
}
inline void Put16(ByteVec& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
inline void Put24(ByteVec& b, std::uint32_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 16));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
inline void Append(ByteVec& b, const ByteVec& x) {
  b.insert(b.end(), x.begin(), x.end());
}
inline ByteVec Str(const std::string& s) {
  return ByteVec(s.begin(), s.end());
}
inline ByteVec Vec8(const ByteVec& x) {
  ByteVec b;
  Put8(b, static_cast<std::uint8_t>(x.size()));
  Append(b, x);
  return b;
}
inline ByteVec Vec16(const ByteVec& x) {
  ByteVec b;
  Put16(b, static_cast<std::uint16_t>(x.size()));
  Append(b, x);
  return b;
}
inline ByteVec U16s(std::initializer_list<std::uint16_t> values) {
  ByteVec b;
  for (std::uint16_t v : values) {
    Put16(b, v);
  }
  return b;
}
// As a packet payload, for helpers that take one as a string.
inline std::string AsString(const ByteVec& b) {
  return std::string(b.begin(), b.end());
}
inline Bytes View(const ByteVec& b) {
  return Bytes(b.data(), b.size());
}

// The ClientHello of the JA4 specification's worked example (technical_details/JA4.md),
// with GREASE added in every list where browsers put it.
struct HelloSpec {
  std::uint16_t legacy_version = 0x0303;
  std::vector<std::uint16_t> ciphers = {0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f,
                                        0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
                                        0x009c, 0x009d, 0x002f, 0x0035};
  std::string sni = "www.example.com";
  std::vector<std::string> alpn = {"h2", "http/1.1"};
  bool with_extensions = true;
  // Extension order of the example; GREASE first and last.
  std::vector<std::uint16_t> extension_order = {0x1a1a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469,
                                                0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
                                                0x002b, 0xff01, 0x000b, 0x000a, 0x0015, 0x2a2a};
  std::size_t padding = 0;  // bytes of extension 0x0015 (padding), to make big hellos
  std::vector<std::uint16_t> versions = {0x3a3a, 0x0304, 0x0303};  // supported_versions
};

inline HelloSpec DtlsSpec() {
  HelloSpec spec;
  spec.legacy_version = 0xfefd;
  spec.versions = {0x5a5a, 0xfefc, 0xfefd};
  return spec;
}

inline ByteVec ExtensionData(const HelloSpec& spec, std::uint16_t type) {
  switch (type) {
    case 0x0000: {
      ByteVec entry;
      Put8(entry, 0);
      Append(entry, Vec16(Str(spec.sni)));
      return Vec16(entry);
    }
    case 0x0010: {
      ByteVec list;
      for (const std::string& a : spec.alpn) {
        Append(list, Vec8(Str(a)));
      }
      return Vec16(list);
    }
    case 0x002b: {
      ByteVec list;
      for (std::uint16_t v : spec.versions) {
        Put16(list, v);
      }
      return Vec8(list);
    }
    case 0x000d:
      return Vec16(U16s({0x4a4a, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}));
    case 0x0015:
      return ByteVec(spec.padding, 0);
    case 0x2a2a:
      return ByteVec{0};
    default:
      return {};
  }
}

inline ByteVec ClientHelloBody(const HelloSpec& spec = {}, bool dtls = false) {
  ByteVec b;
  Put16(b, spec.legacy_version);
  Append(b, ByteVec(32, 0x11));     // random
  Append(b, Vec8(ByteVec(32, 7)));  // session id
  if (dtls) {
    Append(b, Vec8({}));  // cookie
  }
  ByteVec ciphers;
  for (std::uint16_t c : spec.ciphers) {
    Put16(ciphers, c);
  }
  Append(b, Vec16(ciphers));
  Append(b, Vec8({0}));  // compression: null
  if (!spec.with_extensions) {
    return b;
  }
  ByteVec extensions;
  for (std::uint16_t type : spec.extension_order) {
    if ((type == 0x0000 && spec.sni.empty()) || (type == 0x0010 && spec.alpn.empty())) {
      continue;
    }
    Put16(extensions, type);
    Append(extensions, Vec16(ExtensionData(spec, type)));
  }
  Append(b, Vec16(extensions));
  return b;
}

inline ByteVec Handshake(std::uint8_t type, const ByteVec& body) {
  ByteVec b;
  Put8(b, type);
  Put24(b, static_cast<std::uint32_t>(body.size()));
  Append(b, body);
  return b;
}

inline ByteVec Record(std::uint8_t type, const ByteVec& fragment, std::uint16_t version = 0x0303) {
  ByteVec b;
  Put8(b, type);
  Put16(b, version);
  Put16(b, static_cast<std::uint16_t>(fragment.size()));
  Append(b, fragment);
  return b;
}

inline constexpr std::uint8_t kHrrRandom[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

inline ByteVec ServerHelloBody(std::uint16_t cipher, std::uint16_t selected_version = 0,
                               bool retry = false, const std::string& alpn = "") {
  ByteVec b;
  Put16(b, 0x0303);
  if (retry) {
    b.insert(b.end(), kHrrRandom, kHrrRandom + 32);
  } else {
    Append(b, ByteVec(32, 0x22));
  }
  Append(b, Vec8(ByteVec(32, 7)));
  Put16(b, cipher);
  Put8(b, 0);
  ByteVec extensions;
  if (selected_version != 0) {
    Put16(extensions, 0x002b);
    Append(extensions, Vec16(U16s({selected_version})));
  }
  if (!alpn.empty()) {
    Put16(extensions, 0x0010);
    Append(extensions, Vec16(Vec16(Vec8(Str(alpn)))));
  }
  Append(b, Vec16(extensions));
  return b;
}

}  // namespace relaywatch::detectors::tls_wire
