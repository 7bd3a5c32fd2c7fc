#include "capture/offload.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace relaywatch::capture {
namespace {

// One legacy ethtool query (ETHTOOL_GGRO, ETHTOOL_GFLAGS): these answer on every kernel
// and driver, where ETHTOOL_GFEATURES needs the feature-name table first.
absl::StatusOr<std::uint32_t> Query(int fd, const std::string& interface, std::uint32_t cmd) {
  ethtool_value value{};
  value.cmd = cmd;
  ifreq request{};
  std::memcpy(request.ifr_name, interface.data(), interface.size());
  request.ifr_data = reinterpret_cast<char*>(&value);
  if (::ioctl(fd, SIOCETHTOOL, &request) == 0) {
    return value.data;
  }
  const int error = errno;
  if (error == EOPNOTSUPP || error == EINVAL) {
    return 0;  // the driver cannot say: it does not do it
  }
  const std::string what = absl::StrCat(interface, ": ethtool: ", std::strerror(error));
  return error == ENODEV ? absl::NotFoundError(what) : absl::UnavailableError(what);
}

}  // namespace

absl::StatusOr<ReceiveOffloads> ReadReceiveOffloads(const std::string& interface) {
  if (interface.empty() || interface.size() >= IFNAMSIZ) {
    return absl::NotFoundError(absl::StrCat(interface, ": not a network device name"));
  }
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  ReceiveOffloads offloads;
  absl::StatusOr<std::uint32_t> gro = Query(fd, interface, ETHTOOL_GGRO);
  absl::StatusOr<std::uint32_t> flags =
      gro.ok() ? Query(fd, interface, ETHTOOL_GFLAGS) : absl::StatusOr<std::uint32_t>(0);
  ::close(fd);
  if (!gro.ok()) {
    return gro.status();
  }
  if (!flags.ok()) {
    return flags.status();
  }
  offloads.gro = *gro != 0;
  offloads.lro = (*flags & ETH_FLAG_LRO) != 0;
  return offloads;
}

std::string OffloadNames(const ReceiveOffloads& offloads) {
  std::vector<const char*> on;
  if (offloads.gro) {
    on.push_back("gro");
  }
  if (offloads.lro) {
    on.push_back("lro");
  }
  return absl::StrJoin(on, ", ");
}

}  // namespace relaywatch::capture
