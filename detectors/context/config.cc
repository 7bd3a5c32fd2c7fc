#include "detectors/context/config.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "capture/base/status_macros.h"

namespace relaywatch::detectors::context {
namespace {

// A path relative to the config file's directory, so the daemon finds its files whatever
// its working directory (systemd starts it in /).
std::string ResolvePath(const std::string& config_file, const std::string& path) {
  if (path.empty() || path.front() == '/') {
    return path;
  }
  const std::size_t slash = config_file.rfind('/');
  if (slash == std::string::npos) {
    return path;
  }
  return absl::StrCat(config_file.substr(0, slash + 1), path);
}

absl::StatusOr<std::string> ReadPath(const config::Section& s, absl::string_view key) {
  RW_ASSIGN_OR_RETURN(std::string path, s.String(key, ""));
  if (path.find('\0') != std::string::npos) {
    return s.Error(s.At(key), key, "a path cannot hold a NUL byte");
  }
  return ResolvePath(s.file(), path);
}

absl::StatusOr<int> ReadHour(const config::Section& s, absl::string_view key, int fallback) {
  if (!s.Has(key)) {
    return fallback;
  }
  RW_ASSIGN_OR_RETURN(const std::string text, s.String(key, ""));
  absl::StatusOr<int> hour = ParseHourOfDay(text);
  if (!hour.ok()) {
    return s.Error(s.At(key), key, hour.status().message());
  }
  return *hour;
}

absl::Status ReadWindow(const config::Section& s, absl::string_view start_key,
                        absl::string_view end_key, HourWindow& window) {
  RW_ASSIGN_OR_RETURN(window.start_hour, ReadHour(s, start_key, window.start_hour));
  RW_ASSIGN_OR_RETURN(window.end_hour, ReadHour(s, end_key, window.end_hour));
  if (window.start_hour == 24) {
    return s.Error(s.At(start_key), start_key, "a window cannot start at 24:00");
  }
  if (window.end_hour == 0) {
    window.end_hour = 24;
  }
  if (window.start_hour == window.end_hour) {
    return s.Error(s.At(end_key), end_key,
                   absl::StrCat(end_key, " equals ", start_key, ": the window would be empty"));
  }
  return absl::OkStatus();
}

absl::Status ParseWorkHours(const config::Section& s, WorkHoursConfig& c) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"start", "end", "days", "night_start", "night_end",
                                  "min_active_hours", "outside_share", "night_share",
                                  "min_connections_per_minute"}));
  RW_RETURN_IF_ERROR(ReadWindow(s, "start", "end", c.work));
  RW_RETURN_IF_ERROR(ReadWindow(s, "night_start", "night_end", c.night));
  if (s.Has("days")) {
    RW_ASSIGN_OR_RETURN(const std::vector<std::string> days, s.StringList("days", {}));
    c.work.days = 0;
    for (const std::string& day : days) {
      absl::StatusOr<std::uint8_t> bit = ParseDay(day);
      if (!bit.ok()) {
        return s.Error(s.At("days"), "days", bit.status().message());
      }
      c.work.days |= *bit;
    }
    if (c.work.days == 0) {
      return s.Error(s.At("days"), "days", "name at least one working day");
    }
  }
  RW_ASSIGN_OR_RETURN(const std::uint64_t min_hours,
                      s.Uint("min_active_hours", c.min_active_hours, 1, 24 * 366));
  c.min_active_hours = static_cast<std::uint32_t>(min_hours);
  RW_ASSIGN_OR_RETURN(c.outside_share, s.Double("outside_share", c.outside_share, 0.01, 1.0));
  RW_ASSIGN_OR_RETURN(c.night_share, s.Double("night_share", c.night_share, 0.01, 1.0));
  RW_ASSIGN_OR_RETURN(const std::uint64_t per_minute,
                      s.Uint("min_connections_per_minute", c.min_connections_per_minute, 1, 1000));
  c.min_connections_per_minute = static_cast<std::uint32_t>(per_minute);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ContextConfig> ParseContextConfig(const config::Section& s) {
  RW_RETURN_IF_ERROR(
      s.CheckKeys({"inventory", "max_inventory_rows", "address_lists", "max_list_prefixes",
                   "max_total_list_prefixes", "geoip", "geoip_asn", "work_hours",
                   "expected_countries"}));
  ContextConfig c;
  RW_ASSIGN_OR_RETURN(c.inventory, ReadPath(s, "inventory"));
  RW_ASSIGN_OR_RETURN(const std::uint64_t max_rows,
                      s.Uint("max_inventory_rows", c.inventory_limits.max_rows, 1, 1000000));
  c.inventory_limits.max_rows = max_rows;
  RW_ASSIGN_OR_RETURN(
      const std::uint64_t max_list,
      s.Uint("max_list_prefixes", c.list_limits.max_prefixes_per_list, 1, 10000000));
  c.list_limits.max_prefixes_per_list = max_list;
  RW_ASSIGN_OR_RETURN(
      const std::uint64_t max_total,
      s.Uint("max_total_list_prefixes", c.list_limits.max_total_prefixes, 1, 20000000));
  c.list_limits.max_total_prefixes = max_total;
  RW_ASSIGN_OR_RETURN(c.geoip, ReadPath(s, "geoip"));
  RW_ASSIGN_OR_RETURN(c.geoip_asn, ReadPath(s, "geoip_asn"));

  const YAML::Node lists = s.At("address_lists");
  if (lists.IsDefined() && !lists.IsNull()) {
    if (!lists.IsSequence()) {
      return s.Error(lists, "address_lists", "expected a list of {name, kind, file}");
    }
    if (lists.size() > AddressLists::kMaxLists) {
      return s.Error(lists, "address_lists",
                     absl::StrCat("at most ", AddressLists::kMaxLists, " lists"));
    }
    std::vector<std::string> kinds;
    for (const ListKind kind : {ListKind::kConsumerVpn, ListKind::kHosting, ListKind::kTorExit,
                                ListKind::kProxy, ListKind::kCorporate, ListKind::kOther}) {
      kinds.emplace_back(ListKindName(kind));
    }
    for (std::size_t i = 0; i < lists.size(); ++i) {
      const config::Section item(lists[i], absl::StrCat(s.path(), ".address_lists[", i, "]"),
                                 std::make_shared<const std::string>(s.file()));
      RW_RETURN_IF_ERROR(item.CheckKeys({"name", "kind", "file"}));
      AddressListSpec spec;
      RW_ASSIGN_OR_RETURN(spec.name, item.String("name", ""));
      RW_ASSIGN_OR_RETURN(const std::string kind, item.String("kind", ""));
      RW_ASSIGN_OR_RETURN(spec.file, ReadPath(item, "file"));
      if (spec.name.empty() || spec.name.size() > AddressLists::kMaxNameBytes ||
          spec.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") !=
              std::string::npos) {
        return item.Error(item.At("name"), "name",
                          "a list needs a name of a-z, 0-9, _ and - (at most 64 characters)");
      }
      for (const AddressListSpec& other : c.address_lists) {
        if (other.name == spec.name) {
          return item.Error(item.At("name"), "name",
                            absl::StrCat("a list named ", spec.name, " is already defined"));
        }
      }
      const std::optional<ListKind> parsed_kind = ParseListKind(kind);
      if (!parsed_kind) {
        return item.Error(
            item.At("kind"), "kind",
            absl::StrCat("expected one of ", absl::StrJoin(kinds, ", "), ", got \"", kind, "\""));
      }
      spec.kind = *parsed_kind;
      if (spec.file.empty()) {
        return item.Error(item.At("file"), "file", "a list needs a file");
      }
      c.address_lists.push_back(std::move(spec));
    }
  }
  RW_RETURN_IF_ERROR(ParseWorkHours(s.Child("work_hours"), c.work_hours));
  RW_ASSIGN_OR_RETURN(c.expected_countries, s.StringList("expected_countries", {}));
  for (const std::string& code : c.expected_countries) {
    if (code.size() != 2 || !absl::ascii_isupper(code[0]) || !absl::ascii_isupper(code[1])) {
      return s.Error(s.At("expected_countries"), "expected_countries",
                     absl::StrCat("\"", code, "\" is not an ISO 3166 country code such as US"));
    }
  }
  return c;
}

std::optional<GeoIpRecord> Context::LookupGeo(const IpAddress& address) const {
  std::optional<GeoIpRecord> record;
  if (geoip) {
    record = geoip->Lookup(address);
  }
  if (geoip_asn) {
    if (const std::optional<GeoIpRecord> as = geoip_asn->Lookup(address)) {
      if (!record) {
        record = as;
      } else {
        record->asn = as->asn;
        record->organization = as->organization;
      }
    }
  }
  return record;
}

absl::StatusOr<std::shared_ptr<const Context>> LoadContext(const ContextConfig& config) {
  const auto prefixed = [](absl::string_view key, const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat("context.", key, ": ", status.message()));
  };
  auto context = std::make_shared<Context>();
  context->work_hours = config.work_hours;
  context->expected_countries = config.expected_countries;
  if (!config.inventory.empty()) {
    absl::StatusOr<Inventory> inventory = LoadInventory(config.inventory, config.inventory_limits);
    if (!inventory.ok()) {
      return prefixed("inventory", inventory.status());
    }
    context->inventory = *std::move(inventory);
  }
  context->address_lists = AddressLists(config.list_limits);
  for (const AddressListSpec& spec : config.address_lists) {
    if (absl::Status status = context->address_lists.AddFile(spec.name, spec.kind, spec.file);
        !status.ok()) {
      return prefixed(absl::StrCat("address_lists.", spec.name), status);
    }
  }
  if (!config.geoip.empty()) {
    absl::StatusOr<GeoIp> geoip = OpenGeoIp(config.geoip);
    if (!geoip.ok()) {
      return prefixed("geoip", geoip.status());
    }
    context->geoip = *std::move(geoip);
  }
  if (!config.geoip_asn.empty()) {
    absl::StatusOr<GeoIp> geoip = OpenGeoIp(config.geoip_asn);
    if (!geoip.ok()) {
      return prefixed("geoip_asn", geoip.status());
    }
    context->geoip_asn = *std::move(geoip);
  }
  return std::shared_ptr<const Context>(std::move(context));
}

}  // namespace relaywatch::detectors::context
