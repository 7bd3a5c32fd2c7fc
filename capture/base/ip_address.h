#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace relaywatch {

// An IPv4 or IPv6 address held by value (IPv4 in the first four bytes). Cheap to copy,
// hashable, totally ordered by (family, bytes) so flow keys can be canonicalised.
class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress FromV4(const std::uint8_t* bytes);
  static IpAddress FromV6(const std::uint8_t* bytes);
  // Parses dotted-quad or RFC 4291 text.
  static absl::StatusOr<IpAddress> Parse(absl::string_view text);

  bool is_v4() const { return family_ == 4; }
  bool is_v6() const { return family_ == 6; }
  std::uint8_t family() const { return family_; }
  // 4 or 16 bytes in network order.
  const std::uint8_t* data() const { return bytes_.data(); }
  std::size_t size() const { return is_v4() ? 4 : 16; }
  // RFC 5952 text for IPv6 (inet_ntop), dotted quad for IPv4.
  std::string ToString() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
  friend std::strong_ordering operator<=>(const IpAddress&, const IpAddress&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine(std::move(h), a.family_, a.bytes_);
  }

 private:
  std::uint8_t family_ = 0;
  std::array<std::uint8_t, 16> bytes_{};
};

// An address prefix such as 10.0.0.0/8 or fc00::/7.
class Cidr {
 public:
  static absl::StatusOr<Cidr> Parse(absl::string_view text);
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;

 private:
  IpAddress network_;
  int prefix_length_ = 0;
};

// Whether any of `prefixes` contains `address` (none: false).
bool AnyContains(const std::vector<Cidr>& prefixes, const IpAddress& address);

}  // namespace relaywatch
