#pragma once

// The host stage's bounded tables (internal to detectors/host).

#include <utility>

namespace relaywatch::host {

// The entry whose `time_of(value)` is earliest: the one a full table forgets. A linear scan,
// but only when a table is full, which a sensor sized for its network rarely meets.
template <typename Map, typename TimeOf>
auto Oldest(Map& map, TimeOf time_of) {
  auto oldest = map.begin();
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (time_of(it->second) < time_of(oldest->second)) oldest = it;
  }
  return oldest;
}

}  // namespace relaywatch::host
