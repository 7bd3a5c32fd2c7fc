#include "detectors/context/work_hours.h"

#include <string>

#include "absl/time/civil_time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "detectors/context/inventory.h"
#include "tests/unit/detectors/context/test_util.h"

namespace relaywatch::detectors::context {
namespace {

using ::testing::HasSubstr;
using testing::Must;

absl::TimeZone Zone(const std::string& name) {
  return Must(LoadIanaTimeZone(name));
}

absl::Time Utc(int y, int mo, int d, int h, int mi = 0, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

constexpr int kMondayIndex = 0;
constexpr int kSundayIndex = 6;

// Feeds one event every `step` minutes from local `from` to `to` hours on each day of
// `days` (bit 0 = Monday) in the weeks starting at the local Mondays given.
void FeedLocal(WorkHoursProfile& profile, absl::CivilDay first_monday, int weeks, std::uint8_t days,
               int from_hour, int hours, int step_minutes = 10) {
  for (int week = 0; week < weeks; ++week) {
    for (int day = 0; day < 7; ++day) {
      if ((days & (1 << day)) == 0) {
        continue;
      }
      const absl::CivilMinute start(first_monday + week * 7 + day);
      for (int m = 0; m < hours * 60; m += step_minutes) {
        profile.Add(absl::FromCivil(start + from_hour * 60 + m, profile.zone()));
      }
    }
  }
}

TEST(HourOfWeek, UsesTheZoneAndItsDaylightSavingTime) {
  const absl::TimeZone new_york = Zone("America/New_York");
  // 2024-01-08 and 2024-07-08 are Mondays: 09:00 local is 14:00Z in winter, 13:00Z in summer.
  EXPECT_EQ(HourOfWeek(Utc(2024, 1, 8, 14), new_york), kMondayIndex * 24 + 9);
  EXPECT_EQ(HourOfWeek(Utc(2024, 7, 8, 13), new_york), kMondayIndex * 24 + 9);
  // Spring forward, Sunday 2024-03-10: 01:59:59 EST is followed by 03:00:00 EDT.
  EXPECT_EQ(HourOfWeek(Utc(2024, 3, 10, 6, 59, 59), new_york), kSundayIndex * 24 + 1);
  EXPECT_EQ(HourOfWeek(Utc(2024, 3, 10, 7), new_york), kSundayIndex * 24 + 3);
  // Phoenix has no DST: UTC-7 in both seasons.
  const absl::TimeZone phoenix = Zone("America/Phoenix");
  EXPECT_EQ(HourOfWeek(Utc(2024, 1, 8, 16), phoenix), kMondayIndex * 24 + 9);
  EXPECT_EQ(HourOfWeek(Utc(2024, 7, 8, 16), phoenix), kMondayIndex * 24 + 9);
  // Sunday 23:00 UTC is already Monday in Shanghai (UTC+8).
  EXPECT_EQ(HourOfWeek(Utc(2024, 7, 7, 23), Zone("Asia/Shanghai")), kMondayIndex * 24 + 7);
}

TEST(WorkHoursProfile, CountsEachMinuteOnce) {
  WorkHoursProfile profile(absl::UTCTimeZone());
  const absl::Time t = Utc(2024, 7, 8, 10, 15);
  profile.Add(t);
  profile.Add(t + absl::Seconds(30));
  profile.Add(t + absl::Minutes(1));
  // Slightly out of order, as when several workers feed the host stage.
  profile.Add(t + absl::Seconds(59));
  profile.Add(t - absl::Seconds(1));
  const WorkHoursReport report = profile.Report(WorkHoursConfig{});
  EXPECT_EQ(report.active_minutes, 3u);  // 10:14, 10:15, 10:16
  EXPECT_EQ(report.active_hours, 1u);
  EXPECT_EQ(profile.minutes()[kMondayIndex * 24 + 10], 3u);
}

TEST(WorkHoursProfile, CountsLocalClockHours) {
  // India is UTC+05:30: 03:20Z and 03:40Z are in one UTC hour but two local ones.
  WorkHoursProfile profile(Zone("Asia/Kolkata"));
  profile.Add(Utc(2024, 7, 8, 3, 20));
  profile.Add(Utc(2024, 7, 8, 3, 40));
  EXPECT_EQ(profile.active_hours(), 2u);
  EXPECT_EQ(profile.minutes()[kMondayIndex * 24 + 8], 1u);
  EXPECT_EQ(profile.minutes()[kMondayIndex * 24 + 9], 1u);
}

TEST(WorkHoursProfile, FallBackHourHoldsBothHours) {
  // Sunday 2024-11-03 in New York: 01:30 EDT (05:30Z) and 01:30 EST (06:30Z).
  WorkHoursProfile profile(Zone("America/New_York"));
  profile.Add(Utc(2024, 11, 3, 5, 30));
  profile.Add(Utc(2024, 11, 3, 6, 30));
  EXPECT_EQ(profile.minutes()[kSundayIndex * 24 + 1], 2u);
  // One local clock hour, lived twice.
  EXPECT_EQ(profile.active_hours(), 1u);
}

TEST(WorkHoursProfile, SaysNothingBelowMinimumActiveHours) {
  WorkHoursProfile profile(Zone("America/Phoenix"));
  // Three nights of activity: 01:00-04:00 local, Monday to Wednesday.
  FeedLocal(profile, absl::CivilDay(2024, 7, 8), 1, 0x07, 1, 3);
  WorkHoursConfig config;
  config.min_active_hours = 10;
  const WorkHoursReport report = profile.Report(config);
  EXPECT_EQ(report.active_hours, 9u);
  EXPECT_FALSE(report.enough_data);
  EXPECT_DOUBLE_EQ(report.outside_share, 1.0);
  EXPECT_DOUBLE_EQ(report.night_share, 1.0);
  EXPECT_FALSE(report.mostly_outside);
  EXPECT_FALSE(report.night_concentrated);
  config.min_active_hours = 9;
  EXPECT_TRUE(profile.Report(config).night_concentrated);
}

TEST(WorkHoursProfile, OfficeWorkerInTheClaimedZoneIsNotFlagged) {
  WorkHoursProfile profile(Zone("America/Phoenix"));
  FeedLocal(profile, absl::CivilDay(2024, 7, 8), 3, kWeekdays, 9, 8);
  const WorkHoursReport report = profile.Report(WorkHoursConfig{});
  EXPECT_EQ(report.active_hours, 3u * 5 * 8);
  EXPECT_TRUE(report.enough_data);
  EXPECT_DOUBLE_EQ(report.outside_share, 0.0);
  EXPECT_DOUBLE_EQ(report.night_share, 0.0);
  EXPECT_FALSE(report.mostly_outside);
  EXPECT_FALSE(report.night_concentrated);
  EXPECT_EQ(report.best_shift_hours, 0);
  EXPECT_DOUBLE_EQ(report.best_shift_inside_share, 1.0);
}

TEST(WorkHoursProfile, BeijingOfficeHoursOnANewYorkLaptop) {
  // Someone in Beijing works 09:00-18:00 China time, Monday to Friday, on a laptop the
  // inventory puts in America/New_York. In July that is 21:00-06:00 EDT, Sunday to Thursday.
  WorkHoursProfile profile(Zone("America/New_York"));
  const absl::TimeZone beijing = Zone("Asia/Shanghai");
  for (int week = 0; week < 3; ++week) {
    for (int day = 0; day < 5; ++day) {
      const absl::CivilMinute start(absl::CivilDay(2024, 7, 8) + week * 7 + day);
      for (int m = 0; m < 9 * 60; m += 10) {
        profile.Add(absl::FromCivil(start + 9 * 60 + m, beijing));
      }
    }
  }
  const WorkHoursReport report = profile.Report(WorkHoursConfig{});
  EXPECT_TRUE(report.enough_data);
  EXPECT_DOUBLE_EQ(report.outside_share, 1.0);
  EXPECT_TRUE(report.mostly_outside);
  // 00:00-06:00 of each 21:00-06:00 stretch falls in the 00:00-08:00 night window.
  EXPECT_NEAR(report.night_share, 6.0 / 9.0, 1e-9);
  EXPECT_TRUE(report.night_concentrated);
  // New York in summer is UTC-4; a working day 12 hours ahead is UTC+8.
  EXPECT_EQ(report.best_shift_hours, 12);
  EXPECT_DOUBLE_EQ(report.best_shift_inside_share, 1.0);
}

TEST(WorkHoursProfile, BeijingOfficeHoursOnAPhoenixLaptop) {
  // 09:00-18:00 in Beijing is 18:00-03:00 in Phoenix (UTC-7, no DST): mostly evening, so
  // the night window sees only a third of it, but the shift says +15.
  WorkHoursProfile profile(Zone("America/Phoenix"));
  const absl::TimeZone beijing = Zone("Asia/Shanghai");
  for (int day = 0; day < 5; ++day) {
    const absl::CivilMinute start(absl::CivilDay(2024, 1, 8) + day);
    for (int m = 0; m < 9 * 60; m += 10) {
      profile.Add(absl::FromCivil(start + 9 * 60 + m, beijing));
    }
  }
  const WorkHoursReport report = profile.Report(WorkHoursConfig{});
  EXPECT_TRUE(report.mostly_outside);
  EXPECT_NEAR(report.night_share, 3.0 / 9.0, 1e-9);
  EXPECT_FALSE(report.night_concentrated);
  EXPECT_EQ(report.best_shift_hours, 15);
}

TEST(WorkHoursProfile, NewYorkOfficeHoursOnAShanghaiLaptopShiftBackwards) {
  // 09:00-17:00 New York time in July (UTC-4) is 21:00-05:00 in Shanghai (UTC+8), starting
  // on the same weekday: a working day 12 hours behind.
  WorkHoursProfile profile(Zone("Asia/Shanghai"));
  const absl::TimeZone new_york = Zone("America/New_York");
  for (int day = 0; day < 5; ++day) {
    const absl::CivilMinute start(absl::CivilDay(2024, 7, 8) + day);
    for (int m = 0; m < 8 * 60; m += 10) {
      profile.Add(absl::FromCivil(start + 9 * 60 + m, new_york));
    }
  }
  const WorkHoursReport report = profile.Report(WorkHoursConfig{});
  EXPECT_TRUE(report.enough_data);
  EXPECT_EQ(report.best_shift_hours, -12);
  EXPECT_DOUBLE_EQ(report.best_shift_inside_share, 1.0);
}

TEST(WorkHoursProfile, SameLocalHoursAcrossDaylightSavingTime) {
  // 09:00-12:00 New York time in the week before and the week after spring forward: the
  // UTC hours move, the local bins do not.
  WorkHoursProfile profile(Zone("America/New_York"));
  FeedLocal(profile, absl::CivilDay(2024, 3, 4), 2, kWeekdays, 9, 3, 30);
  for (int bin = 0; bin < kHoursPerWeek; ++bin) {
    const bool expected = bin / 24 < 5 && bin % 24 >= 9 && bin % 24 < 12;
    EXPECT_EQ(profile.minutes()[bin], expected ? 2u * 2 : 0u) << "bin " << bin;
  }
}

TEST(WorkHoursProfile, ThresholdsAndWindowsComeFromConfig) {
  WorkHoursProfile profile(absl::UTCTimeZone());
  // Monday 2024-07-08: 6 hours 14:00-20:00 UTC, then 2 hours 20:00-22:00.
  FeedLocal(profile, absl::CivilDay(2024, 7, 8), 1, 1 << kMondayIndex, 14, 8, 60);
  WorkHoursConfig config;
  config.min_active_hours = 1;
  WorkHoursReport report = profile.Report(config);
  EXPECT_DOUBLE_EQ(report.outside_share, 2.0 / 8.0);
  EXPECT_FALSE(report.mostly_outside);
  config.outside_share = 0.25;
  EXPECT_TRUE(profile.Report(config).mostly_outside);
  config.work.end_hour = 22;
  EXPECT_DOUBLE_EQ(profile.Report(config).outside_share, 0.0);
  config.work.days = 1 << 1;  // Tuesday only
  EXPECT_DOUBLE_EQ(profile.Report(config).outside_share, 1.0);
}

TEST(WorkHoursProfile, ClearForgetsEverything) {
  WorkHoursProfile profile(absl::UTCTimeZone());
  profile.Add(Utc(2024, 7, 8, 10));
  profile.Clear();
  EXPECT_EQ(profile.Report(WorkHoursConfig{}).active_minutes, 0u);
  EXPECT_EQ(profile.active_hours(), 0u);
  // The minute is counted again after a Clear.
  profile.Add(Utc(2024, 7, 8, 10));
  EXPECT_EQ(profile.Report(WorkHoursConfig{}).active_minutes, 1u);
}

TEST(WorkHoursProfile, IgnoresInfiniteTimes) {
  WorkHoursProfile profile(absl::UTCTimeZone());
  profile.Add(absl::InfinitePast());
  profile.Add(absl::InfiniteFuture());
  EXPECT_EQ(profile.Report(WorkHoursConfig{}).active_minutes, 0u);
}

TEST(WorkHoursProfile, StaysUnderOneKibibyte) {
  // The host stage keeps one per host; docs/context.md promises this bound.
  EXPECT_LE(sizeof(WorkHoursProfile), 1024u);
}

TEST(HourWindow, WrapsPastMidnight) {
  const HourWindow night_shift{22, 6, kAllDays};
  EXPECT_TRUE(night_shift.Contains(kMondayIndex * 24 + 23));
  EXPECT_TRUE(night_shift.Contains(kMondayIndex * 24 + 0));
  EXPECT_TRUE(night_shift.Contains(kMondayIndex * 24 + 5));
  EXPECT_FALSE(night_shift.Contains(kMondayIndex * 24 + 6));
  EXPECT_FALSE(night_shift.Contains(kMondayIndex * 24 + 21));
  const HourWindow office;  // 07-20 Monday to Friday
  EXPECT_TRUE(office.Contains(4 * 24 + 19));
  EXPECT_FALSE(office.Contains(4 * 24 + 20));
  EXPECT_FALSE(office.Contains(5 * 24 + 10));
}

TEST(ParseHourOfDay, ReadsWholeHours) {
  EXPECT_EQ(Must(ParseHourOfDay("07:00")), 7);
  EXPECT_EQ(Must(ParseHourOfDay("7:00")), 7);
  EXPECT_EQ(Must(ParseHourOfDay("20")), 20);
  EXPECT_EQ(Must(ParseHourOfDay("24:00")), 24);
  for (const char* bad : {"07:30", "25:00", "", ":00", "7:0", "-1", "+7", "7am", "007:00"}) {
    EXPECT_FALSE(ParseHourOfDay(bad).ok()) << bad;
  }
  EXPECT_THAT(std::string(ParseHourOfDay("07:30").status().message()), HasSubstr("whole hour"));
}

TEST(ParseDay, ReadsShortAndLongNames) {
  EXPECT_EQ(Must(ParseDay("mon")), 1);
  EXPECT_EQ(Must(ParseDay("Sunday")), 1 << 6);
  EXPECT_EQ(Must(ParseDay("FRI")), 1 << 4);
  EXPECT_FALSE(ParseDay("mo").ok());
  EXPECT_FALSE(ParseDay("funday").ok());
}

}  // namespace
}  // namespace relaywatch::detectors::context
