#include "detectors/context/work_hours.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "detectors/context/text.h"

namespace relaywatch::detectors::context {
namespace {

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::min();

// Floor division: minutes before 1970 must not round towards zero into the next minute.
std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int DayIndex(absl::Weekday day) {
  switch (day) {
    case absl::Weekday::monday:
      return 0;
    case absl::Weekday::tuesday:
      return 1;
    case absl::Weekday::wednesday:
      return 2;
    case absl::Weekday::thursday:
      return 3;
    case absl::Weekday::friday:
      return 4;
    case absl::Weekday::saturday:
      return 5;
    case absl::Weekday::sunday:
      return 6;
  }
  return 0;
}

int HourOfWeek(const absl::CivilHour& hour) {
  return DayIndex(absl::GetWeekday(absl::CivilDay(hour))) * 24 + hour.hour();
}

template <std::size_t N>
bool Remember(std::array<std::int64_t, N>& recent, int& next, std::int64_t value) {
  if (std::find(recent.begin(), recent.end(), value) != recent.end()) {
    return false;
  }
  recent[next] = value;
  next = (next + 1) % static_cast<int>(N);
  return true;
}

void SaturatingIncrement(std::uint32_t& count) {
  if (count != std::numeric_limits<std::uint32_t>::max()) {
    ++count;
  }
}

}  // namespace

bool HourWindow::Contains(int hour_of_week) const {
  const int day = hour_of_week / 24;
  const int hour = hour_of_week % 24;
  if ((days & (1U << day)) == 0) {
    return false;
  }
  if (start_hour <= end_hour) {
    return hour >= start_hour && hour < end_hour;
  }
  return hour >= start_hour || hour < end_hour;
}

absl::StatusOr<int> ParseHourOfDay(absl::string_view text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(text), " is not a whole hour such as 07:00 (00:00 to 24:00)"));
  };
  absl::string_view hours = text;
  if (const std::size_t colon = text.find(':'); colon != absl::string_view::npos) {
    if (text.substr(colon + 1) != "00") {
      return bad();
    }
    hours = text.substr(0, colon);
  }
  int hour = 0;
  if (hours.empty() || hours.size() > 2 ||
      !std::all_of(hours.begin(), hours.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(hours, &hour) || hour > 24) {
    return bad();
  }
  return hour;
}

absl::StatusOr<std::uint8_t> ParseDay(absl::string_view text) {
  static constexpr absl::string_view kDays[] = {"monday", "tuesday",  "wednesday", "thursday",
                                                "friday", "saturday", "sunday"};
  const std::string lower = absl::AsciiStrToLower(text);
  for (int i = 0; i < 7; ++i) {
    if (lower == kDays[i] || (lower.size() == 3 && kDays[i].substr(0, 3) == lower)) {
      return static_cast<std::uint8_t>(1U << i);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(Quote(text), " is not a day (mon, tue, wed, thu, fri, sat, sun)"));
}

int HourOfWeek(PacketTime time, const absl::TimeZone& zone) {
  return HourOfWeek(absl::ToCivilHour(time, zone));
}

WorkHoursProfile::WorkHoursProfile(absl::TimeZone zone) : zone_(zone) {
  Clear();
}

void WorkHoursProfile::Clear() {
  minutes_.fill(0);
  active_hours_ = 0;
  recent_minutes_.fill(kNever);
  recent_hours_.fill(kNever);
  next_minute_slot_ = 0;
  next_hour_slot_ = 0;
}

void WorkHoursProfile::Restore(const std::array<std::uint32_t, kHoursPerWeek>& minutes,
                               std::uint32_t active_hours) {
  Clear();
  minutes_ = minutes;
  active_hours_ = active_hours;
}

void WorkHoursProfile::Add(PacketTime time) {
  if (time == absl::InfinitePast() || time == absl::InfiniteFuture()) {
    return;
  }
  // Whole-minute offsets (every zone in use today) make UTC and local minutes coincide, so
  // the zone lookup is needed only once per new minute.
  const std::int64_t minute = FloorDiv(absl::ToUnixSeconds(time), 60);
  if (!Remember(recent_minutes_, next_minute_slot_, minute)) {
    return;
  }
  const absl::CivilHour local = absl::ToCivilHour(time, zone_);
  SaturatingIncrement(minutes_[HourOfWeek(local)]);
  // Local clock hours, not UTC ones: they differ in zones such as Asia/Kolkata (+05:30).
  if (Remember(recent_hours_, next_hour_slot_, local - absl::CivilHour(1970, 1, 1, 0))) {
    SaturatingIncrement(active_hours_);
  }
}

WorkHoursReport WorkHoursProfile::Report(const WorkHoursConfig& config) const {
  WorkHoursReport report;
  report.active_hours = active_hours_;
  std::uint64_t outside = 0;
  std::uint64_t night = 0;
  for (int bin = 0; bin < kHoursPerWeek; ++bin) {
    report.active_minutes += minutes_[bin];
    outside += config.work.Contains(bin) ? 0 : minutes_[bin];
    night += config.night.Contains(bin) ? minutes_[bin] : 0;
  }
  if (report.active_minutes == 0) {
    return report;
  }
  const auto total = static_cast<double>(report.active_minutes);
  report.outside_share = static_cast<double>(outside) / total;
  report.night_share = static_cast<double>(night) / total;
  report.enough_data = active_hours_ >= config.min_active_hours;
  report.mostly_outside = report.enough_data && report.outside_share >= config.outside_share;
  report.night_concentrated = report.enough_data && report.night_share >= config.night_share;

  // Shifts that tie for the most activity inside the window form runs (a 9-hour day fits a
  // 13-hour window at five shifts); the middle of a run is the best estimate, and of several
  // runs the one closest to no shift. Shifts span -23..+23: a Hawaii laptop worked from
  // Tokyo is 19 hours off, and the days of the week tell +5 from -19 apart.
  constexpr int kMaxShift = 23;
  std::array<std::uint64_t, 2 * kMaxShift + 1> inside{};  // index = shift + kMaxShift
  std::uint64_t best_inside = 0;
  for (int shift = -kMaxShift; shift <= kMaxShift; ++shift) {
    for (int bin = 0; bin < kHoursPerWeek; ++bin) {
      if (config.work.Contains((bin + shift + kHoursPerWeek) % kHoursPerWeek)) {
        inside[shift + kMaxShift] += minutes_[bin];
      }
    }
    best_inside = std::max(best_inside, inside[shift + kMaxShift]);
  }
  if (inside[kMaxShift] < best_inside) {
    int best_middle = 0;
    bool found = false;
    for (int shift = -kMaxShift; shift <= kMaxShift; ++shift) {
      if (inside[shift + kMaxShift] != best_inside) {
        continue;
      }
      int end = shift;
      while (end < kMaxShift && inside[end + 1 + kMaxShift] == best_inside) {
        ++end;
      }
      const int middle = shift + (end - shift) / 2;
      if (!found || std::abs(middle) < std::abs(best_middle)) {
        best_middle = middle;
        found = true;
      }
      shift = end;
    }
    report.best_shift_hours = best_middle;
  }
  report.best_shift_inside_share = static_cast<double>(best_inside) / total;
  return report;
}

}  // namespace relaywatch::detectors::context
