#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include <gtest/gtest.h>

#include "capture/base/ip_address.h"

namespace relaywatch::detectors::context::testing {

inline IpAddress Ip(const std::string& text) {
  absl::StatusOr<IpAddress> a = IpAddress::Parse(text);
  EXPECT_TRUE(a.ok()) << text << ": " << a.status();
  return a.ok() ? *a : IpAddress();
}

// Unwraps a StatusOr in a test, failing with its status.
template <typename T>
T Must(absl::StatusOr<T> value) {
  EXPECT_TRUE(value.ok()) << value.status();
  if (!value.ok()) {
    throw std::runtime_error(std::string(value.status().message()));
  }
  return *std::move(value);
}

}  // namespace relaywatch::detectors::context::testing
