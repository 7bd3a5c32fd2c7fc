#include "capture/offload.h"

#include <net/if.h>

#include <string>

#include "gtest/gtest.h"

namespace relaywatch::capture {
namespace {

// Loopback exists in every network namespace and answers ethtool queries without root.
TEST(ReceiveOffloadsTest, LoopbackIsReadAndNeverHasLro) {
  absl::StatusOr<ReceiveOffloads> lo = ReadReceiveOffloads("lo");
  ASSERT_TRUE(lo.ok()) << lo.status();
  EXPECT_FALSE(lo->lro);  // "large-receive-offload: off [fixed]" on every kernel
}

TEST(ReceiveOffloadsTest, WhatIsNoNetworkDeviceIsNotFound) {
  for (const std::string& name : {std::string("nflog:7"), std::string("rw-no-such0"), std::string(),
                                  std::string(IFNAMSIZ, 'x')}) {
    absl::StatusOr<ReceiveOffloads> offloads = ReadReceiveOffloads(name);
    EXPECT_TRUE(absl::IsNotFound(offloads.status())) << name << ": " << offloads.status();
  }
}

TEST(ReceiveOffloadsTest, NamesTheOnesThatAreOn) {
  EXPECT_EQ(OffloadNames({}), "");
  EXPECT_FALSE(ReceiveOffloads{}.any());
  EXPECT_EQ(OffloadNames({.gro = true}), "gro");
  EXPECT_EQ(OffloadNames({.gro = true, .lro = true}), "gro, lro");
  EXPECT_TRUE(ReceiveOffloads{.lro = true}.any());
}

}  // namespace
}  // namespace relaywatch::capture
