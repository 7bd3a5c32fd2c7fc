#include "capture/flow/community_id.h"

#include <openssl/sha.h>

#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/strings/escaping.h"

namespace relaywatch::flow {
namespace {

// The spec's table of ICMP types that have a counterpart (request <-> reply); the
// counterpart becomes the destination "port".
bool IcmpCounterpart(bool v6, std::uint8_t type, std::uint8_t* counterpart) {
  static constexpr std::uint8_t kV4[][2] = {{8, 0},   {0, 8},   {13, 14}, {14, 13}, {15, 16},
                                            {16, 15}, {10, 9},  {9, 10},  {17, 18}, {18, 17}};
  static constexpr std::uint8_t kV6[][2] = {{128, 129}, {129, 128}, {133, 134}, {134, 133},
                                            {135, 136}, {136, 135}, {130, 131}, {131, 130},
                                            {139, 140}, {140, 139}, {144, 145}, {145, 144}};
  const auto find = [&](const auto& table) {
    for (const auto& row : table) {
      if (row[0] == type) {
        *counterpart = row[1];
        return true;
      }
    }
    return false;
  };
  return v6 ? find(kV6) : find(kV4);
}

}  // namespace

std::string CommunityId(std::uint16_t seed, const IpAddress& src, const IpAddress& dst,
                        std::uint8_t protocol, std::uint16_t src_port, std::uint16_t dst_port) {
  const IpAddress* a = &src;
  const IpAddress* b = &dst;
  std::uint16_t pa = src_port;
  std::uint16_t pb = dst_port;
  bool has_ports = protocol == 6 || protocol == 17 || protocol == 132;
  bool one_way = false;
  if (protocol == 1 || protocol == 58) {
    // For ICMP the caller passes type and code as the ports.
    has_ports = true;
    std::uint8_t counterpart = 0;
    const auto type = static_cast<std::uint8_t>(src_port);
    if (IcmpCounterpart(protocol == 58, type, &counterpart)) {
      pb = counterpart;
    } else {
      one_way = true;  // sport = type, dport = code, and no endpoint swap
    }
  }
  if (!one_way) {
    const int cmp = std::memcmp(a->data(), b->data(), a->size());
    if (cmp > 0 || (cmp == 0 && pa > pb)) {
      std::swap(a, b);
      std::swap(pa, pb);
    }
  }
  std::uint8_t buffer[2 + 16 + 16 + 2 + 4];
  std::size_t n = 0;
  buffer[n++] = static_cast<std::uint8_t>(seed >> 8);
  buffer[n++] = static_cast<std::uint8_t>(seed);
  std::memcpy(buffer + n, a->data(), a->size());
  n += a->size();
  std::memcpy(buffer + n, b->data(), b->size());
  n += b->size();
  buffer[n++] = protocol;
  buffer[n++] = 0;
  if (has_ports) {
    buffer[n++] = static_cast<std::uint8_t>(pa >> 8);
    buffer[n++] = static_cast<std::uint8_t>(pa);
    buffer[n++] = static_cast<std::uint8_t>(pb >> 8);
    buffer[n++] = static_cast<std::uint8_t>(pb);
  }
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(buffer, n, digest);
  return "1:" + absl::Base64Escape(
                    absl::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

}  // namespace relaywatch::flow
