// Fuzz target for GeoIP lookups on untrusted database bytes:
// relaywatch::detectors::context::OpenGeoIp(input as a file), then Lookup() of a fixed set
// of addresses. libmaxminddb checks the metadata on open and the tree and data offsets on
// every lookup (MMDB_CORRUPT_SEARCH_TREE_ERROR, MMDB_INVALID_DATA_ERROR); this target makes
// sure those checks hold for our use of it and that our own checks on the strings hold.
//
// The input goes into a memfd opened as /proc/self/fd/N, because MMDB_open reads only
// named files. Contracts besides crashes and sanitizer reports: nothing throws; a record's
// country is empty or two upper-case letters; its organization is UTF-8 without control
// characters; its prefix length fits the address family.

#include "detectors/context/geoip.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

#include "capture/base/ip_address.h"
#include "detectors/context/prefix.h"
#include "detectors/context/text.h"
#include "tests/fuzz/fuzz_util.h"

// libmaxminddb before 1.12.0 (Debian 12 has 1.7.1) leaks a few KiB in MMDB_open() when the
// metadata of an invalid database is malformed ("Fixed memory leaks in MMDB_open()",
// libmaxminddb Changes.md, 1.12.0). The daemon opens a database once per start or reload,
// so the leak is harmless there, but LeakSanitizer would fail every fuzzing run on it.
// Leaks whose allocation stack is inside libmaxminddb are therefore ignored in this target
// only; leaks in our code are still reported.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libmaxminddb.so\n";
}

namespace {

namespace fuzz = relaywatch::fuzz;
namespace context = relaywatch::detectors::context;
using relaywatch::IpAddress;

constexpr char kTarget[] = "geoip_fuzz";

void Fail(const char* what, const std::string& detail) {
  fuzz::Fail(kTarget, what, detail);
}

void Check(const context::GeoIp& db, const char* text) {
  const IpAddress address = *IpAddress::Parse(text);
  const std::optional<context::GeoIpRecord> record = db.Lookup(address);
  if (!record) {
    return;
  }
  const std::string& country = record->country;
  if (!country.empty() && (country.size() != 2 || country[0] < 'A' || country[0] > 'Z' ||
                           country[1] < 'A' || country[1] > 'Z')) {
    Fail("country", country);
  }
  if (!context::IsValidUtf8(record->organization) ||
      context::HasControlCharacter(record->organization)) {
    Fail("organization", record->organization);
  }
  const bool v4 = context::Canonical(address).is_v4();
  if (record->prefix_length < 0 || record->prefix_length > (v4 ? 32 : 128)) {
    Fail("prefix length", std::to_string(record->prefix_length));
  }
}

void Run(const std::uint8_t* data, std::size_t size) {
  const int fd = memfd_create("geoip_fuzz", MFD_CLOEXEC);
  if (fd < 0) {
    Fail("memfd_create", "failed");
  }
  std::size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) {
      Fail("write", "failed");
    }
    written += static_cast<std::size_t>(n);
  }
  {
    absl::StatusOr<context::GeoIp> db = context::OpenGeoIp(absl::StrCat("/proc/self/fd/", fd));
    if (db.ok()) {
      for (const char* address :
           {"192.0.2.1", "198.51.100.200", "203.0.113.129", "10.1.2.3", "0.0.0.0",
            "255.255.255.255", "2001:db8::1", "2001:db8:1::1", "::", "::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
        Check(*db, address);
      }
    }
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FailOnException(kTarget, [&] { Run(data, size); });
  return 0;
}
