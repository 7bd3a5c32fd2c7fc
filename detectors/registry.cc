#include "detectors/detector.h"
#include "detectors/dns/dns.h"
#include "detectors/flow_shape/flow_shape.h"
#include "detectors/relay/relay.h"
#include "detectors/remote_access/remote_access.h"
#include "detectors/stack/stack.h"
#include "detectors/tls/tls.h"

namespace relaywatch::detectors {

// The whole list, in one place. Adding a detector is one line here plus its folder; there
// are no static registrars, whose objects a static library can silently drop.
const std::vector<DetectorEntry>& Registry() {
  static const std::vector<DetectorEntry> kDetectors = {
      {"remote_access", &remote_access::Create},
      {"tls", &tls::Create},
      {"dns", &dns::Create},
      {"stack", &stack::Create},
      // After the named identifications: its findings defer to every one of the same flow.
      {"flow_shape", &flow_shape::Create},
      // Last: a flow's record comes after every identification of it, also those made only
      // at the flow's end (a shape judged on its last window), so that the host stage knows
      // the session when it reads the controller's round trip from the record.
      {"relay", &relay::Create},
  };
  return kDetectors;
}

}  // namespace relaywatch::detectors
