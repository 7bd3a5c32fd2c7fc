#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_format.h"

namespace relaywatch::log {

// sd-daemon priorities: journald reads a "<N>" prefix on stderr lines.
enum Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// Operator-facing log lines to stderr. Under systemd (JOURNAL_STREAM set) each line carries
// the priority prefix; on a terminal it reads as plain text.
inline void Write(Level level, const std::string& message) {
  static const bool journald = std::getenv("JOURNAL_STREAM") != nullptr;
  static constexpr const char* kNames[] = {"", "", "", "error", "warning", "notice", "info",
                                           "debug"};
  if (journald) {
    std::fprintf(stderr, "<%d>%s\n", level, message.c_str());
  } else {
    std::fprintf(stderr, "relaywatch: %s: %s\n", kNames[level], message.c_str());
  }
}

}  // namespace relaywatch::log

#define RW_LOG(level, ...) \
  ::relaywatch::log::Write(::relaywatch::log::level, ::absl::StrFormat(__VA_ARGS__))
