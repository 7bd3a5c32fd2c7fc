#pragma once

#include <cstdint>
#include <ctime>

#include "absl/time/time.h"

namespace relaywatch {

// Time as seen by the pipeline: the capture timestamp of a packet. Detector windows, flow
// expiry, alert dedup and rate limits all run on it, so a replay at any speed gives
// identical output. Only sinks read the wall clock.
using PacketTime = absl::Time;

inline PacketTime PacketTimeFromTimespec(std::int64_t seconds, std::int64_t nanoseconds) {
  return absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanoseconds);
}

}  // namespace relaywatch
