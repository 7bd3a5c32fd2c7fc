#include "detectors/detector.h"
#include "detectors/remote_access/remote_access.h"

namespace relaywatch::detectors {

// The whole list, in one place. Adding a detector is one line here plus its folder; there
// are no static registrars, whose objects a static library can silently drop.
const std::vector<DetectorEntry>& Registry() {
  static const std::vector<DetectorEntry> kDetectors = {
      {"remote_access", &remote_access::Create},
  };
  return kDetectors;
}

}  // namespace relaywatch::detectors
