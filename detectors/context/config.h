#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "capture/base/config_reader.h"
#include "capture/base/ip_address.h"
#include "detectors/context/address_lists.h"
#include "detectors/context/geoip.h"
#include "detectors/context/inventory.h"
#include "detectors/context/work_hours.h"

// The `context:` section: where the inventory, address lists and GeoIP databases are, and
// the work-hours profile settings. Every key is optional; an absent section loads nothing.
namespace relaywatch::detectors::context {

struct AddressListSpec {
  std::string name;
  ListKind kind = ListKind::kOther;
  std::string file;
};

struct ContextConfig {
  std::string inventory;  // empty: no inventory
  InventoryLimits inventory_limits;
  std::vector<AddressListSpec> address_lists;
  AddressListLimits list_limits;
  std::string geoip;      // country (or city) database; empty: none
  std::string geoip_asn;  // a separate ASN database (GeoLite2-ASN); empty: none
  WorkHoursConfig work_hours;
  // Countries (ISO 3166 alpha-2) the company's people work from; empty: only the inventory's
  // zones say where a host belongs.
  std::vector<std::string> expected_countries;
};

// Validates the section without touching any file. Relative paths are resolved against the
// directory of the config file. Errors read "file:line:col: context.key: what".
absl::StatusOr<ContextConfig> ParseContextConfig(const config::Section& section);

// Everything loaded, immutable: share one snapshot (std::shared_ptr<const Context>) with
// the host stage and replace it whole on reload.
struct Context {
  Inventory inventory;
  AddressLists address_lists;
  std::optional<GeoIp> geoip;
  std::optional<GeoIp> geoip_asn;
  WorkHoursConfig work_hours;
  std::vector<std::string> expected_countries;

  // Country from `geoip`, AS number and organisation from `geoip_asn` when configured (else
  // from `geoip` when it has them). nullopt when no database knows the address.
  std::optional<GeoIpRecord> LookupGeo(const IpAddress& address) const;
};

// Reads every configured file. Errors name the key and the file:
// "context.inventory: /etc/relaywatch/inventory.csv:4: column mac: ...".
absl::StatusOr<std::shared_ptr<const Context>> LoadContext(const ContextConfig& config);

}  // namespace relaywatch::detectors::context
