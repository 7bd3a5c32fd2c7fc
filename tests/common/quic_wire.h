#pragma once

// QUIC v1 Initial packets sealed as an endpoint seals them (RFC 9001 5: AEAD_AES_128_GCM with
// the Initial keys, then header protection), for tests of code that reads them. A one-byte
// packet number; the datagram is padded with PADDING frames to `datagram_bytes`.

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "detectors/common/quic.h"

namespace relaywatch::detectors::quic_wire {

// A QUIC v1 long-header packet, unsealed: `first` its first byte (the type in bits 4-5; an
// Initial gets an empty token), then `body`, padded with 'q' so that the datagram holds at
// least `datagram_bytes` (the Length field covers body and padding). For code that reads
// only headers.
inline std::string LongPacket(std::uint8_t first, const std::string& dcid, const std::string& scid,
                              const std::string& body, std::size_t datagram_bytes) {
  std::string p(1, static_cast<char>(first));
  p += std::string("\x00\x00\x00\x01", 4);
  p += static_cast<char>(dcid.size()) + dcid + static_cast<char>(scid.size()) + scid;
  if (((first >> 4) & 3) == 0)
    p += '\0';  // an Initial's empty token
  std::size_t length = body.size();
  if (p.size() + 2 + length < datagram_bytes)
    length = datagram_bytes - p.size() - 2;
  p += static_cast<char>(0x40 | ((length >> 8) & 0x3f));  // Length, a 2-byte varint
  p += static_cast<char>(length & 0xff);
  return p + body + std::string(length - body.size(), 'q');
}

// An ACK frame (RFC 9000 19.3) acknowledging packets 0..largest.
inline std::string Ack(std::uint8_t largest) {
  return std::string("\x02", 1) + static_cast<char>(largest) + std::string("\x00\x00", 2) +
         static_cast<char>(largest);
}

// A CRYPTO frame at offset 0 with `bytes` of data (at most 63).
inline std::string Crypto(std::uint8_t bytes) {
  return std::string("\x06\x00", 2) + static_cast<char>(bytes) + std::string(bytes, 'c');
}

// An Initial packet with `frames`, numbered `number`, between the two connection IDs, sealed
// with the keys of the connection whose client first wrote to `client_dcid`; sent by the
// server when `from_server`.
inline std::string SealedInitial(const std::string& client_dcid, bool from_server,
                                 const std::string& dcid, const std::string& scid,
                                 std::uint8_t number, const std::string& frames,
                                 std::size_t datagram_bytes = 1200) {
  common::QuicInitialKeys keys;
  common::DeriveQuicInitialKeys(
      1, {reinterpret_cast<const std::uint8_t*>(client_dcid.data()), client_dcid.size()},
      from_server, keys);
  std::string header(1, '\xc0');  // long header, Initial, a one-byte packet number
  header += std::string("\x00\x00\x00\x01", 4);
  header += static_cast<char>(dcid.size()) + dcid + static_cast<char>(scid.size()) + scid;
  header += '\0';  // no token
  constexpr std::size_t kTag = 16;
  std::string payload = frames;
  const std::size_t fixed = header.size() + 2 + 1 + kTag;  // Length, number, tag
  if (datagram_bytes > fixed + payload.size())
    payload.append(datagram_bytes - fixed - payload.size(), '\0');
  if (payload.size() < 4)
    payload.append(4 - payload.size(), '\0');  // the header-protection sample needs 16 bytes
  const std::size_t length = 1 + payload.size() + kTag;
  header += static_cast<char>(0x40 | (length >> 8));
  header += static_cast<char>(length & 0xff);
  const std::size_t pn_offset = header.size();
  header += static_cast<char>(number);

  std::array<std::uint8_t, 12> nonce = keys.iv;
  nonce[11] ^= number;
  std::string sealed(payload.size() + kTag, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr);
  EVP_EncryptInit_ex(ctx, nullptr, nullptr, keys.key.data(), nonce.data());
  EVP_EncryptUpdate(ctx, nullptr, &n, reinterpret_cast<const std::uint8_t*>(header.data()),
                    static_cast<int>(header.size()));
  EVP_EncryptUpdate(ctx, reinterpret_cast<std::uint8_t*>(sealed.data()), &n,
                    reinterpret_cast<const std::uint8_t*>(payload.data()),
                    static_cast<int>(payload.size()));
  EVP_EncryptFinal_ex(ctx, reinterpret_cast<std::uint8_t*>(sealed.data()) + n, &n);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTag,
                      reinterpret_cast<std::uint8_t*>(sealed.data()) + payload.size());
  EVP_CIPHER_CTX_free(ctx);

  std::string packet = header + sealed;
  // Header protection (RFC 9001 5.4): the sample starts 4 bytes after the packet number.
  std::uint8_t mask[32];
  ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, keys.hp.data(), nullptr);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EVP_EncryptUpdate(ctx, mask, &n,
                    reinterpret_cast<const std::uint8_t*>(packet.data()) + pn_offset + 4, 16);
  EVP_CIPHER_CTX_free(ctx);
  packet[0] = static_cast<char>(packet[0] ^ (mask[0] & 0x0f));
  packet[pn_offset] = static_cast<char>(packet[pn_offset] ^ mask[1]);
  return packet;
}

}  // namespace relaywatch::detectors::quic_wire
