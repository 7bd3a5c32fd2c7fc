#include "detectors/common/quic.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

namespace relaywatch::detectors::common {
namespace {

constexpr std::uint32_t kQuicV1 = 0x00000001;
constexpr std::uint32_t kQuicV2 = 0x6b3343cf;  // RFC 9369

// Initial salts: RFC 9001 5.2, RFC 9369 3.3.1, and the drafts that introduced each.
constexpr std::uint8_t kSaltV1[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                      0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
constexpr std::uint8_t kSaltV2[20] = {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                                      0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};
constexpr std::uint8_t kSaltDraft29[20] = {0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2,
                                           0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61,
                                           0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99};
constexpr std::uint8_t kSaltDraft23[20] = {0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb,
                                           0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4,
                                           0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02};
constexpr std::uint8_t kSaltDraft22[20] = {0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb,
                                           0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51,
                                           0x9e, 0xbd, 0x7a, 0x02, 0x64, 0x4a};

const std::uint8_t* SaltFor(std::uint32_t version) {
  if (version == kQuicV1) {
    return kSaltV1;
  }
  if (version == kQuicV2) {
    return kSaltV2;
  }
  if (version == 0xfaceb001) {
    return kSaltDraft22;
  }
  if (version == 0xfaceb002) {
    return kSaltDraft23;
  }
  if ((version & 0xffffff00) == 0xff000000) {
    const std::uint32_t draft = version & 0xff;
    if (draft >= 29 && draft <= 34) {
      return kSaltDraft29;
    }
    if (draft >= 23 && draft <= 28) {
      return kSaltDraft23;
    }
    if (draft == 22) {
      return kSaltDraft22;
    }
  }
  return nullptr;
}

// RFC 8446 7.1 HKDF-Expand-Label with an empty context, for outputs of at most one
// SHA-256 block (all QUIC Initial secrets and keys are <= 32 bytes).
bool ExpandLabel(const std::uint8_t* secret, const std::string& label, std::uint8_t* out,
                 std::size_t out_bytes) {
  const std::string full = "tls13 " + label;
  std::vector<std::uint8_t> info;
  info.push_back(static_cast<std::uint8_t>(out_bytes >> 8));
  info.push_back(static_cast<std::uint8_t>(out_bytes));
  info.push_back(static_cast<std::uint8_t>(full.size()));
  info.insert(info.end(), full.begin(), full.end());
  info.push_back(0);  // context length
  info.push_back(1);  // RFC 5869 2.3: T(1) = HMAC(PRK, info | 0x01)
  std::uint8_t block[EVP_MAX_MD_SIZE];
  unsigned int block_bytes = 0;
  if (HMAC(EVP_sha256(), secret, 32, info.data(), info.size(), block, &block_bytes) == nullptr ||
      block_bytes < out_bytes) {
    return false;
  }
  std::memcpy(out, block, out_bytes);
  return true;
}

// QUIC variable-length integer (RFC 9000 16).
bool ReadVarint(Bytes data, std::size_t& pos, std::uint64_t& value) {
  if (pos >= data.size()) {
    return false;
  }
  const std::size_t length = std::size_t{1} << (data[pos] >> 6);
  if (data.size() - pos < length) {
    return false;
  }
  value = data[pos] & 0x3f;
  for (std::size_t i = 1; i < length; ++i) {
    value = (value << 8) | data[pos + i];
  }
  pos += length;
  return true;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

}  // namespace

bool IsSupportedQuicVersion(std::uint32_t version) {
  return SaltFor(version) != nullptr;
}

bool DeriveQuicInitialKeys(std::uint32_t version, Bytes client_dcid, bool server,
                           QuicInitialKeys& out) {
  const std::uint8_t* salt = SaltFor(version);
  if (salt == nullptr || client_dcid.size() > kMaxQuicConnectionIdBytes) {
    return false;
  }
  // HKDF-Extract(salt, DCID) is HMAC(salt, DCID) (RFC 5869 2.2).
  std::uint8_t initial_secret[EVP_MAX_MD_SIZE];
  unsigned int secret_bytes = 0;
  static const std::uint8_t kEmpty = 0;
  if (HMAC(EVP_sha256(), salt, 20, client_dcid.empty() ? &kEmpty : client_dcid.data(),
           client_dcid.size(), initial_secret, &secret_bytes) == nullptr ||
      secret_bytes != 32) {
    return false;
  }
  std::uint8_t secret[32];
  const std::string prefix = version == kQuicV2 ? "quicv2 " : "quic ";
  return ExpandLabel(initial_secret, server ? "server in" : "client in", secret, 32) &&
         ExpandLabel(secret, prefix + "key", out.key.data(), out.key.size()) &&
         ExpandLabel(secret, prefix + "iv", out.iv.data(), out.iv.size()) &&
         ExpandLabel(secret, prefix + "hp", out.hp.data(), out.hp.size());
}

bool ParseQuicLongHeaderIds(Bytes datagram, QuicLongHeaderIds& out) {
  out = QuicLongHeaderIds{};
  // 1 flags byte, 4 version, 1 DCID length at least.
  if (datagram.size() < 7 || (datagram[0] & 0x80) == 0) {
    return false;
  }
  out.version = (std::uint32_t{datagram[1]} << 24) | (std::uint32_t{datagram[2]} << 16) |
                (std::uint32_t{datagram[3]} << 8) | datagram[4];
  std::size_t pos = 5;
  const std::size_t dcid_bytes = datagram[pos++];
  if (dcid_bytes > kMaxQuicConnectionIdBytes || datagram.size() - pos < dcid_bytes + 1) {
    return false;
  }
  out.dcid = datagram.subspan(pos, dcid_bytes);
  pos += dcid_bytes;
  const std::size_t scid_bytes = datagram[pos++];
  if (scid_bytes > kMaxQuicConnectionIdBytes || datagram.size() - pos < scid_bytes) {
    return false;
  }
  out.scid = datagram.subspan(pos, scid_bytes);
  out.end = pos + scid_bytes;
  return true;
}

namespace {

// RFC 9369 3.2: v2 renumbers the long packet types (Initial 1, 0-RTT 2, Handshake 3,
// Retry 0); v1 and the drafts use Initial 0, 0-RTT 1, Handshake 2, Retry 3.
int RetryType(std::uint32_t version) {
  return version == kQuicV2 ? 0 : 3;
}

}  // namespace

bool IsQuicRetry(Bytes datagram) {
  QuicLongHeaderIds ids;
  return ParseQuicLongHeaderIds(datagram, ids) && IsSupportedQuicVersion(ids.version) &&
         ((datagram[0] >> 4) & 0x03) == RetryType(ids.version);
}

bool ParseQuicLongHeader(Bytes datagram, QuicLongHeader& out) {
  out = QuicLongHeader{};
  QuicLongHeaderIds ids;
  if (!ParseQuicLongHeaderIds(datagram, ids) || !IsSupportedQuicVersion(ids.version)) {
    return false;  // also Version Negotiation (version 0)
  }
  out.version = ids.version;
  out.dcid = ids.dcid;
  out.scid = ids.scid;
  std::size_t pos = ids.end;
  const int type = (datagram[0] >> 4) & 0x03;
  if (type == RetryType(out.version)) {
    return false;
  }
  out.initial = type == (out.version == kQuicV2 ? 1 : 0);
  out.handshake = type == (out.version == kQuicV2 ? 3 : 2);
  if (out.initial) {
    std::uint64_t token_bytes = 0;
    if (!ReadVarint(datagram, pos, token_bytes) || datagram.size() - pos < token_bytes) {
      return false;
    }
    pos += static_cast<std::size_t>(token_bytes);
  }
  std::uint64_t length = 0;
  if (!ReadVarint(datagram, pos, length) || datagram.size() - pos < length) {
    return false;
  }
  out.pn_offset = pos;
  out.packet_bytes = pos + static_cast<std::size_t>(length);
  return true;
}

bool DecryptQuicInitial(Bytes packet, const QuicLongHeader& header, const QuicInitialKeys& keys,
                        std::vector<std::uint8_t>& plaintext, std::uint64_t* packet_number) {
  constexpr std::size_t kTagBytes = 16;
  constexpr std::size_t kSampleBytes = 16;
  // RFC 9001 5.4.2: the sample starts 4 bytes after the packet number's start.
  if (header.packet_bytes > packet.size() ||
      header.packet_bytes < header.pn_offset + 4 + kSampleBytes) {
    return false;
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) {
    return false;
  }
  std::uint8_t mask[32];
  int mask_bytes = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_ecb(), nullptr, keys.hp.data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_EncryptUpdate(ctx.get(), mask, &mask_bytes, &packet[header.pn_offset + 4],
                        kSampleBytes) != 1 ||
      mask_bytes != 16) {
    return false;
  }
  // RFC 9001 5.4.1: long headers protect the low 4 bits of the first byte.
  const std::uint8_t first = packet[0] ^ (mask[0] & 0x0f);
  const std::size_t pn_bytes = (first & 0x03) + 1;
  if (header.packet_bytes < header.pn_offset + pn_bytes + kTagBytes) {
    return false;
  }
  std::vector<std::uint8_t> aad(packet.begin(), packet.begin() + header.pn_offset + pn_bytes);
  aad[0] = first;
  std::uint64_t pn = 0;
  for (std::size_t i = 0; i < pn_bytes; ++i) {
    aad[header.pn_offset + i] ^= mask[1 + i];
    pn = (pn << 8) | aad[header.pn_offset + i];
  }
  // RFC 9001 5.3: nonce = IV xor the packet number, left-padded. The truncated number is
  // exact for the first 2^(8 * pn_bytes) packets, which covers every Initial a flow sends.
  std::array<std::uint8_t, 12> nonce = keys.iv;
  for (int i = 0; i < 8; ++i) {
    nonce[11 - i] ^= static_cast<std::uint8_t>(pn >> (8 * i));
  }
  const std::size_t payload_start = header.pn_offset + pn_bytes;
  const std::size_t ciphertext_bytes = header.packet_bytes - payload_start - kTagBytes;
  plaintext.resize(ciphertext_bytes + 16);
  int n = 0;
  int total = 0;
  std::uint8_t tag[kTagBytes];
  std::memcpy(tag, &packet[header.packet_bytes - kTagBytes], kTagBytes);
  ctx.reset(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, keys.key.data(), nonce.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plaintext.data(), &n, &packet[payload_start],
                        static_cast<int>(ciphertext_bytes)) != 1) {
    return false;
  }
  total = n;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + total, &n) != 1) {
    return false;  // authentication failed: wrong keys or a damaged packet
  }
  plaintext.resize(static_cast<std::size_t>(total) + static_cast<std::size_t>(n));
  if (packet_number != nullptr)
    *packet_number = pn;
  return true;
}

namespace {

// Walks the frames of an Initial packet's plaintext: CRYPTO frames to `on_crypto`, the
// Largest Acknowledged of ACK frames to `on_ack`; either returns false to stop. False at a
// malformed frame or one not allowed in Initial packets (RFC 9000 12.4).
bool WalkInitialFrames(Bytes plaintext,
                       absl::FunctionRef<bool(std::uint64_t offset, Bytes data)> on_crypto,
                       absl::FunctionRef<bool(std::uint64_t largest)> on_ack) {
  std::size_t pos = 0;
  while (pos < plaintext.size()) {
    std::uint64_t type = 0;
    if (!ReadVarint(plaintext, pos, type)) {
      return false;
    }
    switch (type) {
      case 0x00:  // PADDING
      case 0x01:  // PING
        break;
      case 0x02:  // ACK
      case 0x03: {
        std::uint64_t largest = 0;
        std::uint64_t delay = 0;
        std::uint64_t ranges = 0;
        std::uint64_t first = 0;
        if (!ReadVarint(plaintext, pos, largest) || !ReadVarint(plaintext, pos, delay) ||
            !ReadVarint(plaintext, pos, ranges) || !ReadVarint(plaintext, pos, first)) {
          return false;
        }
        if (!on_ack(largest)) {
          return true;
        }
        const std::uint64_t fields = 2 * ranges + (type == 0x03 ? 3 : 0);
        if (fields > plaintext.size()) {
          return false;
        }
        for (std::uint64_t i = 0; i < fields; ++i) {
          std::uint64_t unused = 0;
          if (!ReadVarint(plaintext, pos, unused)) {
            return false;
          }
        }
        break;
      }
      case 0x06: {  // CRYPTO
        std::uint64_t offset = 0;
        std::uint64_t length = 0;
        if (!ReadVarint(plaintext, pos, offset) || !ReadVarint(plaintext, pos, length) ||
            plaintext.size() - pos < length) {
          return false;
        }
        if (!on_crypto(offset, plaintext.subspan(pos, static_cast<std::size_t>(length)))) {
          return true;
        }
        pos += static_cast<std::size_t>(length);
        break;
      }
      case 0x1c: {  // CONNECTION_CLOSE: nothing of interest follows
        return true;
      }
      default:
        return false;
    }
  }
  return true;
}

}  // namespace

bool ForEachQuicCryptoFrame(Bytes plaintext,
                            absl::FunctionRef<void(std::uint64_t offset, Bytes data)> on_crypto) {
  return WalkInitialFrames(
      plaintext,
      [&](std::uint64_t offset, Bytes data) {
        on_crypto(offset, data);
        return true;
      },
      [](std::uint64_t) { return true; });
}

std::optional<std::uint64_t> QuicLargestAcknowledged(Bytes plaintext) {
  std::optional<std::uint64_t> out;
  WalkInitialFrames(
      plaintext, [](std::uint64_t, Bytes) { return true; },
      [&](std::uint64_t largest) {
        out = largest;
        return false;
      });
  return out;
}

void QuicCryptoStream::Add(std::uint64_t offset, Bytes data,
                           absl::FunctionRef<void(Bytes)> on_contiguous) {
  std::uint64_t begin = offset;
  std::uint64_t end = offset + data.size();
  if (end > max_bytes_) {
    dropped_ += end - std::max<std::uint64_t>(begin, max_bytes_);
    end = max_bytes_;
  }
  if (begin < delivered_) {
    begin = delivered_;  // a retransmission of bytes already handed out
  }
  if (begin >= end) {
    return;
  }
  data =
      data.subspan(static_cast<std::size_t>(begin - offset), static_cast<std::size_t>(end - begin));
  if (begin == delivered_ && ranges_.empty()) {
    delivered_ = end;  // the common case: in order, no copy
    on_contiguous(data);
    return;
  }
  if (ranges_.size() >= kMaxRanges) {
    dropped_ += data.size();
    return;
  }
  const auto at = static_cast<std::size_t>(begin - delivered_);
  if (window_.size() < at + data.size()) {
    window_.resize(at + data.size());
  }
  std::copy(data.begin(), data.end(), window_.begin() + static_cast<std::ptrdiff_t>(at));
  ranges_.emplace_back(begin, end);
  std::sort(ranges_.begin(), ranges_.end());
  std::vector<std::pair<std::uint64_t, std::uint64_t>> merged;
  for (const auto& r : ranges_) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges_.swap(merged);
  if (ranges_.front().first != delivered_) {
    return;
  }
  const auto ready = static_cast<std::size_t>(ranges_.front().second - delivered_);
  delivered_ = ranges_.front().second;
  ranges_.erase(ranges_.begin());
  on_contiguous(Bytes(window_).first(ready));
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(ready));
  if (ranges_.empty()) {
    std::vector<std::uint8_t>().swap(window_);
  }
}

}  // namespace relaywatch::detectors::common
