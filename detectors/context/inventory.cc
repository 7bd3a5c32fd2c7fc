#include "detectors/context/inventory.h"

#include <sys/stat.h>

#include <cstdlib>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "capture/base/status_macros.h"
#include "detectors/context/csv.h"
#include "detectors/context/text.h"

namespace relaywatch::detectors::context {
namespace {

enum Column { kAddress, kHostname, kMac, kPerson, kLocation, kTimezone, kColumnCount };
static_assert(kColumnCount == kInventoryColumns.size());

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = absl::ascii_tolower(static_cast<unsigned char>(c));
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// RFC 1123 host names, plus '_' (seen in Windows and DHCP names). Returns the name in lower
// case without a trailing dot, or an empty string when the name is not valid.
std::string NormalizeHostname(absl::string_view text) {
  if (!text.empty() && text.back() == '.') {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 253) {
    return "";
  }
  for (absl::string_view label : absl::StrSplit(text, '.')) {
    if (label.empty() || label.size() > 63) {
      return "";
    }
    for (const char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
        return "";
      }
    }
  }
  return absl::AsciiStrToLower(text);
}

bool IsIanaNameComponent(absl::string_view part) {
  if (part.empty() || part.size() > 32) {
    return false;
  }
  for (const char c : part) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '+') {
      return false;
    }
  }
  return part.front() != '-' && part.front() != '+';
}

}  // namespace

MacAddress MacAddress::FromBytes(const std::uint8_t* six_bytes) {
  MacAddress mac;
  std::copy(six_bytes, six_bytes + 6, mac.bytes.begin());
  return mac;
}

absl::StatusOr<MacAddress> MacAddress::Parse(absl::string_view text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(text), " is not a MAC address (write aa:bb:cc:dd:ee:ff)"));
  };
  if (text.size() != 17) {
    return bad();
  }
  const char separator = text[2];
  if (separator != ':' && separator != '-') {
    return bad();
  }
  MacAddress mac;
  for (int i = 0; i < 6; ++i) {
    const int high = HexValue(text[3 * i]);
    const int low = HexValue(text[3 * i + 1]);
    if (high < 0 || low < 0 || (i < 5 && text[3 * i + 2] != separator)) {
      return bad();
    }
    mac.bytes[i] = static_cast<std::uint8_t>(high * 16 + low);
  }
  return mac;
}

std::string MacAddress::ToString() const {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2], bytes[3],
                         bytes[4], bytes[5]);
}

absl::StatusOr<absl::TimeZone> LoadIanaTimeZone(absl::string_view name) {
  // absl::LoadTimeZone opens any path it is given ("/dev/stdin", "file:/etc/shadow", "../x")
  // and, in Abseil 20220623, caches every name it was asked for, found or not. So only
  // names shaped like IANA ones, naming a regular file under the tzdata directory, reach it.
  if (name.empty() || name.size() > 64 || name == "localtime") {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(name), " is not an IANA time zone name such as America/Phoenix"));
  }
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (!IsIanaNameComponent(part)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(name), " is not an IANA time zone name such as America/Phoenix"));
    }
  }
  const char* tzdir = std::getenv("TZDIR");
  const std::string path =
      absl::StrCat(tzdir != nullptr && *tzdir != '\0' ? tzdir : "/usr/share/zoneinfo", "/", name);
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("unknown time zone ", Quote(name), " (no ", path,
                                            "; is the tzdata package installed?)"));
  }
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(std::string(name), &zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time zone ", Quote(name), ": ", path, " is not a tzdata file"));
  }
  return zone;
}

const Asset* Inventory::FindByAddress(const IpAddress& address) const {
  const std::uint32_t* index = by_address_.FindLongest(address);
  return index == nullptr ? nullptr : &assets_[*index];
}

const Asset* Inventory::FindByMac(const MacAddress& mac) const {
  const auto it = by_mac_.find(mac);
  return it == by_mac_.end() ? nullptr : &assets_[it->second];
}

const Asset* Inventory::FindByHostname(absl::string_view hostname) const {
  if (!hostname.empty() && hostname.back() == '.') {
    hostname.remove_suffix(1);
  }
  const auto it = by_hostname_.find(absl::AsciiStrToLower(hostname));
  return it == by_hostname_.end() ? nullptr : &assets_[it->second];
}

absl::StatusOr<Inventory> ParseInventory(absl::string_view text, absl::string_view name,
                                         const InventoryLimits& limits) {
  CsvLimits csv_limits;
  csv_limits.max_fields = 64;
  csv_limits.max_field_bytes = limits.max_field_bytes;
  CsvReader reader(text, name, csv_limits);
  CsvRecord record;
  const std::string expected = absl::StrJoin(kInventoryColumns, ",");

  RW_ASSIGN_OR_RETURN(const bool has_header, reader.Next(record));
  if (!has_header) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":1: empty file; the first line must be the header ", expected));
  }
  const int header_line = record.line;
  const std::size_t field_count = record.fields.size();
  std::array<std::size_t, kColumnCount> column_of;
  column_of.fill(field_count);
  for (std::size_t i = 0; i < field_count; ++i) {
    const std::string key = absl::AsciiStrToLower(TrimBlanks(record.fields[i]));
    std::size_t c = 0;
    while (c < kColumnCount && kInventoryColumns[c] != key) {
      ++c;
    }
    if (c == kColumnCount) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", header_line, ": column ", i + 1,
                                                     ": unknown column ", Quote(key),
                                                     "; the header must be ", expected));
    }
    if (column_of[c] != field_count) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", header_line, ": column ", key, ": named twice in the header"));
    }
    column_of[c] = i;
  }
  for (std::size_t c = 0; c < kColumnCount; ++c) {
    if (column_of[c] == field_count) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", header_line, ": the header lacks column ", kInventoryColumns[c],
                       " (it must name ", expected, ", in any order)"));
    }
  }

  Inventory inventory;
  inventory.source_ = std::string(name);
  absl::flat_hash_map<std::string, absl::TimeZone> zones;
  while (true) {
    RW_ASSIGN_OR_RETURN(const bool more, reader.Next(record));
    if (!more) {
      break;
    }
    // A line of blanks is as empty as an empty line.
    if (record.fields.size() == 1 && TrimBlanks(record.fields[0]).empty()) {
      continue;
    }
    const int line = record.line;
    if (record.fields.size() != field_count) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line, ": ", record.fields.size(),
                                                     " fields, but the header has ", field_count));
    }
    if (inventory.assets_.size() >= limits.max_rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ":", line, ": more than ", limits.max_rows, " rows (the inventory limit)"));
    }
    const auto cell = [&](Column c) {
      return TrimBlanks(record.fields[column_of[c]]);
    };
    const auto error = [&](Column c, absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line, ": column ", kInventoryColumns[c], ": ", what));
    };
    const auto duplicate = [&](Column c, absl::string_view value, std::uint32_t first) {
      return error(c, absl::StrCat(value, " is already on line ", inventory.assets_[first].line));
    };
    // Every cell is text that may end up in an alert, a log line or JSON.
    for (std::size_t c = 0; c < kColumnCount; ++c) {
      const absl::string_view value = cell(static_cast<Column>(c));
      if (HasControlCharacter(value)) {
        return error(static_cast<Column>(c), "control character (line break, tab, ...) in value");
      }
      if (!IsValidUtf8(value)) {
        return error(static_cast<Column>(c), "not valid UTF-8");
      }
    }

    Asset asset;
    asset.line = line;
    const auto index = static_cast<std::uint32_t>(inventory.assets_.size());
    if (const absl::string_view text = cell(kAddress); !text.empty()) {
      absl::StatusOr<Prefix> prefix = ParsePrefix(text);
      if (!prefix.ok()) {
        return error(kAddress, prefix.status().message());
      }
      const auto [stored, inserted] = inventory.by_address_.Insert(*prefix, index);
      if (!inserted) {
        return duplicate(kAddress, prefix->ToString(), *stored);
      }
      asset.address = *prefix;
    }
    if (const absl::string_view text = cell(kHostname); !text.empty()) {
      asset.hostname = NormalizeHostname(text);
      if (asset.hostname.empty()) {
        return error(kHostname, absl::StrCat(Quote(text),
                                             " is not a host name (letters, digits, '-', '_' "
                                             "and dots; at most 253 bytes)"));
      }
      const auto [it, inserted] = inventory.by_hostname_.try_emplace(asset.hostname, index);
      if (!inserted) {
        return duplicate(kHostname, asset.hostname, it->second);
      }
    }
    if (const absl::string_view text = cell(kMac); !text.empty()) {
      absl::StatusOr<MacAddress> mac = MacAddress::Parse(text);
      if (!mac.ok()) {
        return error(kMac, mac.status().message());
      }
      const auto [it, inserted] = inventory.by_mac_.try_emplace(*mac, index);
      if (!inserted) {
        return duplicate(kMac, mac->ToString(), it->second);
      }
      asset.mac = *mac;
    }
    if (!asset.address && !asset.mac && asset.hostname.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ":", line, ": the row names no host (address, hostname and mac are all empty)"));
    }
    asset.person = std::string(cell(kPerson));
    asset.location = std::string(cell(kLocation));
    if (const absl::string_view text = cell(kTimezone); !text.empty()) {
      auto it = zones.find(text);
      if (it == zones.end()) {
        absl::StatusOr<absl::TimeZone> zone = LoadIanaTimeZone(text);
        if (!zone.ok()) {
          return error(kTimezone, zone.status().message());
        }
        it = zones.emplace(std::string(text), *zone).first;
      }
      asset.timezone_name = std::string(text);
      asset.timezone = it->second;
      asset.country = CountryOfTimeZone(text);
    }
    inventory.assets_.push_back(std::move(asset));
  }
  return inventory;
}

std::string CountryOfTimeZone(absl::string_view name) {
  // zone.tab: "CC<TAB>coordinates<TAB>zone[<TAB>comment]", one zone per line, '#' comments.
  static const auto* const kCountries = [] {
    auto* countries = new absl::flat_hash_map<std::string, std::string>();
    const char* tzdir = std::getenv("TZDIR");
    const std::string path = absl::StrCat(
        tzdir != nullptr && *tzdir != '\0' ? tzdir : "/usr/share/zoneinfo", "/zone.tab");
    absl::StatusOr<std::string> text = ReadTextFile(path, 1 << 20);
    if (!text.ok()) {
      return countries;  // no tzdata: countries stay unknown, nothing else depends on them
    }
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (line.empty() || line.front() == '#') {
        continue;
      }
      const std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
      if (fields.size() >= 3 && fields[0].size() == 2) {
        countries->emplace(std::string(fields[2]), std::string(fields[0]));
      }
    }
    return countries;
  }();
  const auto it = kCountries->find(name);
  return it == kCountries->end() ? std::string() : it->second;
}

absl::StatusOr<Inventory> LoadInventory(const std::string& path, const InventoryLimits& limits) {
  RW_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path, limits.max_file_bytes));
  return ParseInventory(text, path, limits);
}

}  // namespace relaywatch::detectors::context
