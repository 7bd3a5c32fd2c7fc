#include "daemon/sinks/held_messages.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace relaywatch::sinks {
namespace {

std::vector<std::string> Texts(const HeldMessages& held) {
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < held.size(); ++i) {
    texts.push_back(held[i].text);
  }
  return texts;
}

TEST(HeldMessages, KeepsOrderAndCountsBytes) {
  HeldMessages held(4);
  EXPECT_TRUE(held.Push("ab", false));
  EXPECT_TRUE(held.Push("cde", true));
  EXPECT_EQ(held.bytes(), 5u);
  EXPECT_EQ(held.front().text, "ab");
  held.PopFront();
  EXPECT_EQ(held.bytes(), 3u);
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"cde"}));
}

TEST(HeldMessages, WhenFullTheOldestRecordGoesBeforeAnyAlert) {
  HeldMessages held(3);
  held.Push("alert1", true);
  held.Push("flow2", false);
  held.Push("flow3", false);
  EXPECT_FALSE(held.Push("alert4", true));
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"alert1", "flow3", "alert4"}));
  EXPECT_FALSE(held.Push("flow5", false));
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"alert1", "alert4", "flow5"}));
  EXPECT_EQ(held.bytes(), 6u + 6u + 5u);
}

TEST(HeldMessages, WhenOnlyAlertsAreHeldANewRecordIsTheOneLost) {
  HeldMessages held(2);
  held.Push("alert1", true);
  held.Push("alert2", true);
  EXPECT_FALSE(held.Push("flow3", false));
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"alert1", "alert2"}));
  EXPECT_FALSE(held.Push("alert3", true));  // An alert displaces the oldest alert.
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"alert2", "alert3"}));
}

TEST(HeldMessages, AFrontInProgressIsNeverDropped) {
  HeldMessages held(2);
  held.Push("flow1", false);
  held.Push("alert2", true);
  // flow1 is partly delivered: the next candidate is alert2, behind it.
  EXPECT_FALSE(held.Push("alert3", true, /*front_in_progress=*/true));
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"flow1", "alert3"}));
  EXPECT_FALSE(held.Push("flow4", false, /*front_in_progress=*/true));
  EXPECT_EQ(Texts(held), (std::vector<std::string>{"flow1", "alert3"}));
  HeldMessages one(1);
  one.Push("flow1", false);
  EXPECT_FALSE(one.Push("alert2", true, /*front_in_progress=*/true));
  EXPECT_EQ(Texts(one), (std::vector<std::string>{"flow1"}));
}

}  // namespace
}  // namespace relaywatch::sinks
