#include "detectors/context/geoip.h"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "detectors/context/prefix.h"
#include "detectors/context/text.h"

namespace relaywatch::detectors::context {
namespace {

constexpr std::size_t kMaxOrganizationBytes = 128;

// Reads a value at `path` (nullptr-terminated). Returns nullopt when absent; counts
// malformed data in `errors`.
std::optional<MMDB_entry_data_s> Get(MMDB_entry_s entry, const char* const* path,
                                     std::atomic<std::uint64_t>& errors) {
  MMDB_entry_data_s data;
  const int status = MMDB_aget_value(&entry, &data, path);
  if (status == MMDB_SUCCESS) {
    if (!data.has_data) {
      return std::nullopt;
    }
    return data;
  }
  // A path that the record does not have is normal (an ASN database has no country).
  if (status != MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) {
    errors.fetch_add(1, std::memory_order_relaxed);
  }
  return std::nullopt;
}

std::string CountryCode(const std::optional<MMDB_entry_data_s>& data) {
  if (!data || data->type != MMDB_DATA_TYPE_UTF8_STRING || data->data_size != 2) {
    return "";
  }
  const char a = data->utf8_string[0];
  const char b = data->utf8_string[1];
  if (!absl::ascii_isalpha(static_cast<unsigned char>(a)) ||
      !absl::ascii_isalpha(static_cast<unsigned char>(b))) {
    return "";
  }
  return {absl::ascii_toupper(static_cast<unsigned char>(a)),
          absl::ascii_toupper(static_cast<unsigned char>(b))};
}

}  // namespace

GeoIp::GeoIp() : lookup_errors_(std::make_unique<std::atomic<std::uint64_t>>(0)) {}
GeoIp::GeoIp(GeoIp&&) noexcept = default;
GeoIp& GeoIp::operator=(GeoIp&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr) {
      MMDB_close(db_.get());
    }
    db_ = std::move(other.db_);
    path_ = std::move(other.path_);
    database_type_ = std::move(other.database_type_);
    build_time_ = other.build_time_;
    ip_version_ = other.ip_version_;
    lookup_errors_ = std::move(other.lookup_errors_);
  }
  return *this;
}

GeoIp::~GeoIp() {
  if (db_ != nullptr) {
    MMDB_close(db_.get());
  }
}

absl::StatusOr<GeoIp> OpenGeoIp(const std::string& path) {
  if (absl::StatusOr<std::uint64_t> size = RegularFileSize(path); !size.ok()) {
    return size.status();
  }
  GeoIp geoip;
  auto db = std::make_unique<MMDB_s>();
  const int status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, db.get());
  if (status != MMDB_SUCCESS) {
    const std::string what =
        absl::StrCat(path, ": not a usable MaxMind DB: ", MMDB_strerror(status));
    return status == MMDB_IO_ERROR || status == MMDB_FILE_OPEN_ERROR
               ? absl::UnavailableError(what)
               : absl::InvalidArgumentError(what);
  }
  geoip.db_ = std::move(db);
  geoip.path_ = path;
  const MMDB_metadata_s& meta = geoip.db_->metadata;
  if (meta.database_type != nullptr) {
    const absl::string_view type(meta.database_type);
    if (IsValidUtf8(type) && !HasControlCharacter(type) && type.size() <= 128) {
      geoip.database_type_ = std::string(type);
    }
  }
  geoip.build_time_ = absl::FromUnixSeconds(
      static_cast<std::int64_t>(std::min<std::uint64_t>(meta.build_epoch, std::uint64_t{1} << 40)));
  geoip.ip_version_ = meta.ip_version;
  if (meta.ip_version != 4 && meta.ip_version != 6) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": metadata ip_version is ", meta.ip_version, ", not 4 or 6"));
  }
  return geoip;
}

std::optional<GeoIpRecord> GeoIp::Lookup(const IpAddress& raw) const {
  if (db_ == nullptr) {
    return std::nullopt;
  }
  const IpAddress address = Canonical(raw);
  sockaddr_storage storage{};
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, address.data(), 4);
  } else if (address.is_v6()) {
    if (ip_version_ == 4) {
      return std::nullopt;
    }
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, address.data(), 16);
  } else {
    return std::nullopt;
  }
  int error = MMDB_SUCCESS;
  MMDB_lookup_result_s result =
      MMDB_lookup_sockaddr(db_.get(), reinterpret_cast<const sockaddr*>(&storage), &error);
  if (error != MMDB_SUCCESS) {
    if (error != MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
      lookup_errors_->fetch_add(1, std::memory_order_relaxed);
    }
    return std::nullopt;
  }
  if (!result.found_entry) {
    return std::nullopt;
  }
  GeoIpRecord record;
  // An IPv4 address in an IPv6 tree sits under ::/96; libmaxminddb counts those bits.
  int prefix_length = result.netmask;
  if (address.is_v4() && ip_version_ == 6) {
    prefix_length -= 96;
  }
  record.prefix_length = std::clamp(prefix_length, 0, address.is_v4() ? 32 : 128);

  static constexpr const char* kCountry[] = {"country", "iso_code", nullptr};
  static constexpr const char* kRegisteredCountry[] = {"registered_country", "iso_code", nullptr};
  static constexpr const char* kAsn[] = {"autonomous_system_number", nullptr};
  static constexpr const char* kOrganization[] = {"autonomous_system_organization", nullptr};
  record.country = CountryCode(Get(result.entry, kCountry, *lookup_errors_));
  if (record.country.empty()) {
    record.country = CountryCode(Get(result.entry, kRegisteredCountry, *lookup_errors_));
  }
  if (const auto asn = Get(result.entry, kAsn, *lookup_errors_)) {
    if (asn->type == MMDB_DATA_TYPE_UINT32) {
      record.asn = asn->uint32;
    } else if (asn->type == MMDB_DATA_TYPE_UINT16) {
      record.asn = asn->uint16;
    } else if (asn->type == MMDB_DATA_TYPE_UINT64 && asn->uint64 <= UINT32_MAX) {
      record.asn = static_cast<std::uint32_t>(asn->uint64);
    }
  }
  if (const auto org = Get(result.entry, kOrganization, *lookup_errors_)) {
    if (org->type == MMDB_DATA_TYPE_UTF8_STRING && org->data_size <= kMaxOrganizationBytes) {
      const absl::string_view text(org->utf8_string, org->data_size);
      if (IsValidUtf8(text) && !HasControlCharacter(text)) {
        record.organization = std::string(text);
      }
    }
  }
  return record;
}

}  // namespace relaywatch::detectors::context
