#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "capture/base/packet_time.h"

// When a host is used, in the time zone the inventory claims for it. A laptop said to be in
// America/Phoenix but used mostly between 18:00 and 03:00 Phoenix time is being worked from
// somewhere else (09:00-18:00 in Beijing). Pure code: packet times in, shares out.
namespace relaywatch::detectors::context {

// Hours of the week in local time: bin = day * 24 + hour, Monday 00:00 = bin 0.
inline constexpr int kHoursPerWeek = 7 * 24;

// Days as a bit set: bit 0 Monday ... bit 6 Sunday.
inline constexpr std::uint8_t kWeekdays = 0x1f;
inline constexpr std::uint8_t kAllDays = 0x7f;

// A daily window of whole local hours [start_hour, end_hour) on `days`. start_hour >
// end_hour wraps past midnight (22 -> 6 is 22:00-06:00); each hour counts on its own day.
struct HourWindow {
  int start_hour = 7;
  int end_hour = 20;
  std::uint8_t days = kWeekdays;

  bool Contains(int hour_of_week) const;
};

struct WorkHoursConfig {
  // When people work: 07:00-20:00 local, Monday to Friday.
  HourWindow work;
  // Night: 00:00-08:00 local, every day (Asian office hours for US time zones).
  HourWindow night{0, 8, kAllDays};
  // Nothing is said about a host active in fewer distinct clock hours than this.
  std::uint32_t min_active_hours = 20;
  // Thresholds of WorkHoursReport::mostly_outside and ::night_concentrated.
  double outside_share = 0.5;
  double night_share = 0.5;
  // A minute counts as worked when the host opens this many connections in it (or a remote
  // session starts): one connection a minute is background (updates, telemetry).
  std::uint32_t min_connections_per_minute = 3;
};

// Parses "07:00", "7:00" or "24:00" (end of day) into an hour; minutes must be 00 because
// the profile keeps whole hours.
absl::StatusOr<int> ParseHourOfDay(absl::string_view text);
// Parses a day name: "mon".."sun" or "monday".."sunday", any case. Returns its bit.
absl::StatusOr<std::uint8_t> ParseDay(absl::string_view text);

// What a profile says about one host.
struct WorkHoursReport {
  std::uint32_t active_hours = 0;    // distinct clock hours with activity
  std::uint64_t active_minutes = 0;  // distinct minutes with activity
  // Shares of active minutes; 0 when there are none.
  double outside_share = 0;  // outside config.work
  double night_share = 0;    // inside config.night
  // active_hours >= config.min_active_hours. When false, the flags below are false.
  bool enough_data = false;
  bool mostly_outside = false;      // outside_share >= config.outside_share
  bool night_concentrated = false;  // night_share >= config.night_share
  // The shift in hours (-23..+23) that, added to local time, puts the most activity inside
  // config.work (the middle one when several tie), and that share. +12 on an
  // America/New_York laptop means the activity fits a working day 12 hours ahead (UTC+8 in
  // summer). 0 when no shift does better than none.
  int best_shift_hours = 0;
  double best_shift_inside_share = 0;
};

// An hour-of-week histogram of one host's activity in its local time.
//
// Activity is counted in distinct minutes, so a bulk transfer weighs no more than a single
// keystroke in the same minute; feed it times of interactive evidence (new outbound flows,
// input events), not keepalives. Times may arrive slightly out of order (several workers
// feed the host stage): the last few minutes and hours are remembered, so a minute is
// counted once unless it comes back after more than kRecentSlots newer ones.
// Memory: fixed, under 1 KiB (about 760 bytes) per profile. Counts saturate; they never wrap.
// Thread-safety: none; one owner.
class WorkHoursProfile {
 public:
  static constexpr int kRecentSlots = 4;

  explicit WorkHoursProfile(absl::TimeZone zone);

  void Add(PacketTime time);
  WorkHoursReport Report(const WorkHoursConfig& config) const;

  const absl::TimeZone& zone() const { return zone_; }
  // Active minutes per local hour of the week (bin = day * 24 + hour, Monday = day 0).
  const std::array<std::uint32_t, kHoursPerWeek>& minutes() const { return minutes_; }
  std::uint32_t active_hours() const { return active_hours_; }
  void Clear();
  // A profile saved across a restart (scoring.state_file): its histogram and hour count.
  void Restore(const std::array<std::uint32_t, kHoursPerWeek>& minutes,
               std::uint32_t active_hours);

 private:
  absl::TimeZone zone_;
  std::array<std::uint32_t, kHoursPerWeek> minutes_{};
  std::uint32_t active_hours_ = 0;
  // Recently counted absolute minutes and hours since the epoch, for de-duplication.
  std::array<std::int64_t, kRecentSlots> recent_minutes_;
  std::array<std::int64_t, kRecentSlots> recent_hours_;
  int next_minute_slot_ = 0;
  int next_hour_slot_ = 0;
};

// The local hour of the week of `time` in `zone` (Monday 00:00-00:59 = 0). DST is the
// zone's: on a spring-forward day no time maps to the skipped hour.
int HourOfWeek(PacketTime time, const absl::TimeZone& zone);

}  // namespace relaywatch::detectors::context
