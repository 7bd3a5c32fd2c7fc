#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "capture/base/ip_address.h"
#include "detectors/context/prefix.h"

// The asset inventory: what the organisation says each laptop is, who uses it, where, and in
// which time zone. Format and limits: docs/context.md.
namespace relaywatch::detectors::context {

// An Ethernet address.
struct MacAddress {
  std::array<std::uint8_t, 6> bytes{};

  static MacAddress FromBytes(const std::uint8_t* six_bytes);
  // Six hex pairs separated by ':' or '-' (one kind throughout), any case:
  // "aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF".
  static absl::StatusOr<MacAddress> Parse(absl::string_view text);
  // Lower-case, colon-separated.
  std::string ToString() const;

  friend bool operator==(const MacAddress&, const MacAddress&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const MacAddress& mac) {
    return H::combine(std::move(h), mac.bytes);
  }
};

// One row of the inventory. A row names at least one of address, mac and hostname.
struct Asset {
  std::optional<Prefix> address;  // an address is a /32 or /128
  std::string hostname;           // lower case, no trailing dot; may be empty
  std::optional<MacAddress> mac;
  std::string person;    // free text (UTF-8, no control characters); may be empty
  std::string location;  // free text; may be empty
  // IANA name as written ("America/Phoenix") and the loaded zone; both empty when the
  // row gives no time zone.
  std::string timezone_name;
  std::optional<absl::TimeZone> timezone;
  // The zone's country (ISO 3166 alpha-2) from tzdata's zone.tab: "US" for America/Phoenix.
  // Empty for UTC, Etc/* and zones tzdata gives no single country.
  std::string country;
  int line = 0;  // where the row starts in the file
};

// Limits on what a file may hold; a file beyond them is refused, not truncated.
struct InventoryLimits {
  std::size_t max_rows = 100000;
  std::size_t max_file_bytes = 32 << 20;
  std::size_t max_field_bytes = 256;
};

// The six columns, in the order the example file uses. The header names each exactly once,
// in any order.
inline constexpr std::array<absl::string_view, 6> kInventoryColumns = {
    "address", "hostname", "mac", "person", "location", "timezone"};

// A loaded inventory with lookups by address (longest prefix), MAC and host name.
// Immutable once built; const lookups are safe from any number of threads. Pointers it
// returns stay valid as long as the Inventory (moves included) lives.
class Inventory {
 public:
  Inventory() = default;
  Inventory(Inventory&&) = default;
  Inventory& operator=(Inventory&&) = default;

  // The row whose address or prefix is the longest one containing `address`, or nullptr.
  // IPv4-mapped IPv6 addresses are looked up as IPv4.
  const Asset* FindByAddress(const IpAddress& address) const;
  const Asset* FindByMac(const MacAddress& mac) const;
  // Case-insensitive; a trailing dot is ignored.
  const Asset* FindByHostname(absl::string_view hostname) const;

  const std::vector<Asset>& assets() const { return assets_; }
  std::size_t size() const { return assets_.size(); }
  bool empty() const { return assets_.empty(); }
  // The file name or label it was parsed from.
  const std::string& source() const { return source_; }

 private:
  friend absl::StatusOr<Inventory> ParseInventory(absl::string_view text, absl::string_view name,
                                                  const InventoryLimits& limits);

  std::string source_;
  std::vector<Asset> assets_;
  PrefixTable<std::uint32_t> by_address_;  // values index assets_
  absl::flat_hash_map<MacAddress, std::uint32_t> by_mac_;
  absl::flat_hash_map<std::string, std::uint32_t> by_hostname_;
};

// Parses inventory CSV text; `name` labels errors, which read
// "name:line: column X: what is wrong" (or "name:line: what" for the CSV structure).
// Duplicate addresses, MACs or host names are errors naming the first line.
absl::StatusOr<Inventory> ParseInventory(absl::string_view text, absl::string_view name,
                                         const InventoryLimits& limits = {});
// Reads and parses a file (regular files of at most limits.max_file_bytes).
absl::StatusOr<Inventory> LoadInventory(const std::string& path,
                                        const InventoryLimits& limits = {});

// Loads an IANA time zone ("America/Phoenix", "Europe/Berlin", "UTC") from the system's
// tzdata (TZDIR or /usr/share/zoneinfo). Names are checked before anything is opened: no
// absolute paths, "..", "localtime" or POSIX TZ strings. NotFound when tzdata lacks it.
absl::StatusOr<absl::TimeZone> LoadIanaTimeZone(absl::string_view name);

// The country of an IANA zone from $TZDIR/zone.tab (default /usr/share/zoneinfo), read once
// per process; "" when the zone is not listed (UTC, backward links such as US/Eastern).
std::string CountryOfTimeZone(absl::string_view name);

}  // namespace relaywatch::detectors::context
