#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/ip_address.h"

struct MMDB_s;  // libmaxminddb; kept out of this header

// Country and AS of an address from a MaxMind-format database (.mmdb: GeoLite2-Country,
// GeoLite2-City, GeoLite2-ASN, DB-IP Lite and others with the same field names).
namespace relaywatch::detectors::context {

struct GeoIpRecord {
  // ISO 3166-1 alpha-2 ("US", "CN") from country.iso_code, else registered_country.iso_code;
  // empty when the database has neither for this network.
  std::string country;
  // autonomous_system_number and autonomous_system_organization, when the database has them
  // (ASN databases do; country and city databases do not): 0 and empty otherwise.
  std::uint32_t asn = 0;
  std::string organization;
  // Length of the database network holding the address, in the address's own family. It
  // is the network as stored in the tree, which may be narrower than the one the vendor
  // inserted (a /32 with a /48 carved out of it answers /33 for its other half).
  int prefix_length = 0;
};

// An open database, memory-mapped read-only. Lookups are const and safe from any number of
// threads. Move-only; the file is unmapped when the GeoIp is destroyed. Replacing the file
// on disk (geoipupdate renames a new one into place) does not affect an open GeoIp: reopen
// on reload.
class GeoIp {
 public:
  GeoIp(GeoIp&&) noexcept;
  GeoIp& operator=(GeoIp&&) noexcept;
  ~GeoIp();

  // The record of the network holding `address`, or nullopt when the database has none (or
  // the address is IPv6 and the database IPv4-only). Malformed data in the database is
  // counted in lookup_errors() and treated as no record. Strings are checked (country: two
  // letters; organization: UTF-8 without control characters, at most 128 bytes) and dropped
  // when they fail, since they go into alerts.
  std::optional<GeoIpRecord> Lookup(const IpAddress& address) const;

  const std::string& path() const { return path_; }
  // metadata.database_type, e.g. "GeoLite2-Country"; and build time.
  const std::string& database_type() const { return database_type_; }
  absl::Time build_time() const { return build_time_; }
  int ip_version() const { return ip_version_; }
  std::uint64_t lookup_errors() const { return lookup_errors_->load(std::memory_order_relaxed); }

 private:
  friend absl::StatusOr<GeoIp> OpenGeoIp(const std::string& path);
  GeoIp();

  std::unique_ptr<MMDB_s> db_;
  std::string path_;
  std::string database_type_;
  absl::Time build_time_;
  int ip_version_ = 0;
  std::unique_ptr<std::atomic<std::uint64_t>> lookup_errors_;
};

// Opens a database. NotFound when the file is missing; InvalidArgument ("path: what") when
// it is not a regular file or not a valid MaxMind DB.
absl::StatusOr<GeoIp> OpenGeoIp(const std::string& path);

}  // namespace relaywatch::detectors::context
