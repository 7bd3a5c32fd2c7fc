#pragma once

// Reading detectors' findings in the host stage's rules (internal to detectors/host).

#include <optional>

#include "nlohmann/json.hpp"

namespace relaywatch::host {

// A numeric field of a finding's body; nullopt when it is absent or not a number (a
// detector writes integers and doubles alike, and a finding may lack what it could not
// measure).
inline std::optional<double> Number(const nlohmann::json& body, const char* key) {
  if (!body.is_object() || !body.contains(key) || !body[key].is_number()) return std::nullopt;
  return body[key].get<double>();
}

}  // namespace relaywatch::host
