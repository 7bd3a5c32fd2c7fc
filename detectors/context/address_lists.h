#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "capture/base/ip_address.h"
#include "detectors/context/prefix.h"

// Named lists of address prefixes (consumer VPN exits, hosting ranges, Tor exits, ...), one
// file each. Format and limits: docs/context.md and conf/lists/README.md.
namespace relaywatch::detectors::context {

// What the addresses of a list are. Scoring decides what each kind is worth.
enum class ListKind : std::uint8_t {
  kConsumerVpn,  // commercial VPN services (Astrill, ...) exits
  kHosting,      // cloud and hosting providers: VPS relays, remote desktops
  kTorExit,      // Tor exit relays
  kProxy,        // open or commercial proxies
  kCorporate,    // the organisation's own egress and VPN concentrators
  kOther,
};

// "consumer_vpn", "hosting", "tor_exit", "proxy", "corporate", "other".
absl::string_view ListKindName(ListKind kind);
std::optional<ListKind> ParseListKind(absl::string_view name);

struct AddressListLimits {
  std::size_t max_prefixes_per_list = 1000000;
  std::size_t max_total_prefixes = 2000000;  // all lists together (about 40 bytes each)
  std::size_t max_file_bytes = 64 << 20;
  std::size_t max_line_bytes = 1024;
};

struct AddressListInfo {
  std::string name;
  ListKind kind = ListKind::kOther;
  std::string source;        // file name (or label) it was read from
  std::size_t prefixes = 0;  // distinct prefixes in the list
};

// A list that contains an address, and the most specific prefix of that list holding it.
struct AddressListMatch {
  std::uint32_t list = 0;  // index into AddressLists::lists()
  Prefix prefix;
};

// Up to kMaxLists lists in one table: a lookup costs one hash probe per distinct prefix
// length used by any list, and answers for all lists at once.
// Built at start-up (or reload); const lookups are safe from any number of threads.
class AddressLists {
 public:
  static constexpr std::size_t kMaxLists = 64;
  static constexpr std::size_t kMaxNameBytes = 64;

  explicit AddressLists(AddressListLimits limits = {}) : limits_(limits) {}
  AddressLists(AddressLists&&) = default;
  AddressLists& operator=(AddressLists&&) = default;

  // Parses `text` (the list file format) and adds it as list `name`. `source` labels
  // errors: "source:line: what". Names are [a-z0-9_-], at most 64 bytes, unique. On error
  // nothing is added.
  absl::Status Add(absl::string_view name, ListKind kind, absl::string_view text,
                   absl::string_view source);
  // Reads the file at `path` and adds it.
  absl::Status AddFile(absl::string_view name, ListKind kind, const std::string& path);

  // Bit i is set when list i holds the address. IPv4-mapped IPv6 is looked up as IPv4.
  std::uint64_t MatchMask(const IpAddress& address) const;
  // The lists holding the address, in list order, each with its most specific prefix.
  absl::InlinedVector<AddressListMatch, 4> Lookup(const IpAddress& address) const;

  const std::vector<AddressListInfo>& lists() const { return lists_; }
  const AddressListInfo& list(std::uint32_t index) const { return lists_[index]; }
  // Index of the list called `name`, if any.
  std::optional<std::uint32_t> FindList(absl::string_view name) const;
  // Distinct (prefix, list) pairs held.
  std::size_t total_prefixes() const { return total_prefixes_; }

 private:
  AddressListLimits limits_;
  std::vector<AddressListInfo> lists_;
  PrefixTable<std::uint64_t> table_;  // prefix -> lists holding it (bit mask)
  std::size_t total_prefixes_ = 0;
};

// Parses the list file format into its prefixes, in file order (duplicates kept). Errors:
// "source:line: what". Refuses more than limits.max_prefixes_per_list entries.
absl::StatusOr<std::vector<Prefix>> ParseAddressList(absl::string_view text,
                                                     absl::string_view source,
                                                     const AddressListLimits& limits = {});

}  // namespace relaywatch::detectors::context
