#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "capture/base/ip_address.h"

namespace relaywatch::detectors::context {

// An address prefix whose host bits are zero: 192.0.2.0/24, 2001:db8::/32, 198.51.100.7/32.
struct Prefix {
  IpAddress network;
  int length = 0;

  std::string ToString() const;
  friend bool operator==(const Prefix&, const Prefix&) = default;
};

// Parses "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128). Host bits set
// ("192.0.2.1/24") are an error, since they usually mean a typo in the length. IPv4-mapped
// IPv6 text (::ffff:192.0.2.1) is taken as IPv4, like Canonical().
absl::StatusOr<Prefix> ParsePrefix(absl::string_view text);

// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) become IPv4, so a lookup gives the same answer
// whichever form a decoder produced. Other addresses are returned unchanged.
IpAddress Canonical(const IpAddress& address);

// The prefix of `length` bits containing `address` (host bits zeroed).
Prefix MaskedPrefix(const IpAddress& address, int length);

// Maps prefixes to values, with one hash map per prefix length and address family: a lookup
// costs one hash probe per prefix length present in the table (at most 33 or 129), whatever
// the number of entries. Not thread-safe for writes; concurrent const lookups are fine.
template <typename V>
class PrefixTable {
 public:
  // Inserts `value` for `prefix` unless the prefix is already present. Returns the stored
  // value and whether it was inserted.
  std::pair<V*, bool> Insert(const Prefix& prefix, V value) {
    const int length = prefix.length;
    std::pair<V*, bool> result = prefix.network.is_v4()
                                     ? Emplace(v4_[length], v4_lengths_, length,
                                               V4Key(prefix.network, length), std::move(value))
                                     : Emplace(v6_[length], v6_lengths_, length,
                                               V6Key(prefix.network, length), std::move(value));
    size_ += result.second ? 1 : 0;
    return result;
  }

  // The value of the longest prefix containing `address`, or nullptr. `matched`, when not
  // null, receives that prefix.
  const V* FindLongest(const IpAddress& address, Prefix* matched = nullptr) const {
    const V* found = nullptr;
    ForEachMatch(address, [&](const Prefix& prefix, const V& value) {
      found = &value;
      if (matched != nullptr) {
        *matched = prefix;
      }
      return false;
    });
    return found;
  }

  // Calls fn(const Prefix&, const V&) for each prefix containing `address`, longest first,
  // until fn returns false.
  template <typename Fn>
  void ForEachMatch(const IpAddress& raw, Fn&& fn) const {
    const IpAddress address = Canonical(raw);
    if (address.is_v4()) {
      for (const int length : v4_lengths_) {
        const auto it = v4_[length].find(V4Key(address, length));
        if (it != v4_[length].end() && !fn(MaskedPrefix(address, length), it->second)) {
          return;
        }
      }
    } else if (address.is_v6()) {
      for (const int length : v6_lengths_) {
        const auto it = v6_[length].find(V6Key(address, length));
        if (it != v6_[length].end() && !fn(MaskedPrefix(address, length), it->second)) {
          return;
        }
      }
    }
  }

  std::size_t size() const { return size_; }

  // Hash keys: the address with its host bits zeroed, as an integer.
  static std::uint32_t V4Key(const IpAddress& address, int length) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v = (v << 8) | address.data()[i];
    }
    return length == 0 ? 0 : v & (~std::uint32_t{0} << (32 - length));
  }
  static absl::uint128 V6Key(const IpAddress& address, int length) {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    for (int i = 0; i < 8; ++i) {
      hi = (hi << 8) | address.data()[i];
      lo = (lo << 8) | address.data()[i + 8];
    }
    const absl::uint128 v = absl::MakeUint128(hi, lo);
    return length == 0 ? absl::uint128(0) : v & (~absl::uint128(0) << (128 - length));
  }

 private:
  template <typename Map, typename Key>
  static std::pair<V*, bool> Emplace(Map& map, std::vector<int>& lengths, int length, Key key,
                                     V value) {
    auto [it, inserted] = map.try_emplace(key, std::move(value));
    if (inserted && std::find(lengths.begin(), lengths.end(), length) == lengths.end()) {
      lengths.push_back(length);
      std::sort(lengths.begin(), lengths.end(), std::greater<int>());
    }
    return {&it->second, inserted};
  }

  std::array<absl::flat_hash_map<std::uint32_t, V>, 33> v4_;
  std::array<absl::flat_hash_map<absl::uint128, V>, 129> v6_;
  std::vector<int> v4_lengths_;  // lengths present, longest first
  std::vector<int> v6_lengths_;
  std::size_t size_ = 0;
};

}  // namespace relaywatch::detectors::context
