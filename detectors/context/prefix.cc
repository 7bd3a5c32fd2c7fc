#include "detectors/context/prefix.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "detectors/context/text.h"

namespace relaywatch::detectors::context {

std::string Prefix::ToString() const {
  return absl::StrCat(network.ToString(), "/", length);
}

IpAddress Canonical(const IpAddress& address) {
  // RFC 4291 section 2.5.5.2: ::ffff:0:0/96 carries an IPv4 address in the last four bytes.
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address.is_v6() && std::memcmp(address.data(), kMapped, sizeof kMapped) == 0) {
    return IpAddress::FromV4(address.data() + 12);
  }
  return address;
}

Prefix MaskedPrefix(const IpAddress& address, int length) {
  std::uint8_t bytes[16] = {};
  const int size = static_cast<int>(address.size());
  for (int i = 0; i < size; ++i) {
    const int bits = std::clamp(length - 8 * i, 0, 8);
    bytes[i] = address.data()[i] & static_cast<std::uint8_t>(0xff00 >> bits);
  }
  Prefix prefix;
  prefix.network = address.is_v4() ? IpAddress::FromV4(bytes) : IpAddress::FromV6(bytes);
  prefix.length = length;
  return prefix;
}

absl::StatusOr<Prefix> ParsePrefix(absl::string_view text) {
  const std::size_t slash = text.find('/');
  const absl::string_view address_text = text.substr(0, slash);
  absl::StatusOr<IpAddress> parsed = IpAddress::Parse(address_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an IP address or CIDR prefix: ", Quote(text)));
  }
  IpAddress address = *parsed;
  int length = address.is_v4() ? 32 : 128;
  if (slash != absl::string_view::npos) {
    const absl::string_view digits = text.substr(slash + 1);
    // SimpleAtoi also takes signs and blanks ("+8", " 8"); a prefix length is digits only.
    const bool all_digits = !digits.empty() && digits.size() <= 3 &&
                            std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
    if (!all_digits || !absl::SimpleAtoi(digits, &length) ||
        length > (address.is_v4() ? 32 : 128)) {
      return absl::InvalidArgumentError(absl::StrCat("bad prefix length in ", Quote(text), " (0..",
                                                     address.is_v4() ? 32 : 128, ")"));
    }
  }
  const IpAddress canonical = Canonical(address);
  if (canonical.is_v4() && address.is_v6()) {
    if (length < 96) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(text), " mixes IPv4-mapped and other IPv6 space (use /96 or longer)"));
    }
    length -= 96;
    address = canonical;
  }
  const Prefix prefix = MaskedPrefix(address, length);
  if (prefix.network != address) {
    return absl::InvalidArgumentError(
        absl::StrCat("host bits set in ", Quote(text), "; the network is ", prefix.ToString()));
  }
  return prefix;
}

}  // namespace relaywatch::detectors::context
