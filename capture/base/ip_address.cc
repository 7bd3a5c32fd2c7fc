#include "capture/base/ip_address.h"

#include <arpa/inet.h>

#include <cstring>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace relaywatch {

IpAddress IpAddress::FromV4(const std::uint8_t* bytes) {
  IpAddress a;
  a.family_ = 4;
  std::memcpy(a.bytes_.data(), bytes, 4);
  return a;
}

IpAddress IpAddress::FromV6(const std::uint8_t* bytes) {
  IpAddress a;
  a.family_ = 6;
  std::memcpy(a.bytes_.data(), bytes, 16);
  return a;
}

absl::StatusOr<IpAddress> IpAddress::Parse(absl::string_view text) {
  // inet_pton reads a C string: an embedded NUL would hide the rest of the text.
  if (text.size() >= INET6_ADDRSTRLEN || text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"",
                                                   absl::CHexEscape(text), "\""));
  }
  const std::string s(text);
  std::uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    return FromV4(buf);
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    return FromV6(buf);
  }
  return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"", text, "\""));
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (family_ == 0) {
    return "";
  }
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(absl::string_view text) {
  const std::size_t slash = text.find('/');
  Cidr cidr;
  absl::StatusOr<IpAddress> address = IpAddress::Parse(text.substr(0, slash));
  if (!address.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a CIDR prefix: \"", text, "\""));
  }
  cidr.network_ = *address;
  const int max_length = address->is_v4() ? 32 : 128;
  cidr.prefix_length_ = max_length;
  if (slash != absl::string_view::npos) {
    const absl::string_view digits = text.substr(slash + 1);
    // SimpleAtoi also takes signs and blanks ("+8", " 8"); a prefix length is digits only.
    const bool all_digits = !digits.empty() && digits.size() <= 3 &&
                            std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
    if (!all_digits || !absl::SimpleAtoi(digits, &cidr.prefix_length_) ||
        cidr.prefix_length_ < 0 || cidr.prefix_length_ > max_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad prefix length in \"", text, "\" (0..", max_length, ")"));
    }
  }
  return cidr;
}

bool AnyContains(const std::vector<Cidr>& prefixes, const IpAddress& address) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const Cidr& p) { return p.Contains(address); });
}

bool Cidr::Contains(const IpAddress& address) const {
  if (address.family() != network_.family()) {
    return false;
  }
  const int full_bytes = prefix_length_ / 8;
  if (std::memcmp(address.data(), network_.data(), full_bytes) != 0) {
    return false;
  }
  const int rest = prefix_length_ % 8;
  if (rest == 0) {
    return true;
  }
  const std::uint8_t mask = static_cast<std::uint8_t>(0xff00 >> rest);
  return (address.data()[full_bytes] & mask) == (network_.data()[full_bytes] & mask);
}

std::string Cidr::ToString() const {
  return absl::StrCat(network_.ToString(), "/", prefix_length_);
}

}  // namespace relaywatch
