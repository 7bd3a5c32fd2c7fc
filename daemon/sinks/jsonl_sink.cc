#include "daemon/sinks/jsonl_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

#include "daemon/sinks/event_json.h"

namespace relaywatch::sinks {
namespace {

absl::StatusOr<std::FILE*> OpenForAppend(const std::string& path) {
  // O_APPEND keeps each line's write atomic with respect to other appenders and makes
  // logrotate's rename-then-HUP safe; O_CLOEXEC keeps the fd out of any child process.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("jsonl sink: cannot open '", path, "'"));
  }
  std::FILE* file = ::fdopen(fd, "a");
  if (file == nullptr) {
    const int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("jsonl sink: fdopen '", path, "'"));
  }
  return file;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonlSink>> JsonlSink::Open(JsonlConfig config) {
  if (config.path.empty()) {
    return absl::InvalidArgumentError("jsonl sink: path is empty (use \"-\" for stdout)");
  }
  std::FILE* file = stdout;
  if (config.path != "-") {
    absl::StatusOr<std::FILE*> opened = OpenForAppend(config.path);
    if (!opened.ok()) {
      return opened.status();
    }
    file = *opened;
  }
  return std::unique_ptr<JsonlSink>(new JsonlSink(std::move(config), file));
}

JsonlSink::JsonlSink(JsonlConfig config, std::FILE* file)
    : config_(std::move(config)), file_(file) {}

JsonlSink::~JsonlSink() {
  if (is_stdout()) {
    std::fflush(file_);
  } else {
    std::fclose(file_);
  }
}

void JsonlSink::Write(const Event& event) {
  if (std::find(config_.events.begin(), config_.events.end(), event.event_type) ==
      config_.events.end()) {
    Bump(filtered_);
    return;
  }
  try {
    line_ = EventToJson(event).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception&) {
    // Not expected with the replace handler; an event we cannot serialise is counted,
    // never allowed to take down the output thread.
    Bump(write_errors_);
    return;
  }
  line_.push_back('\n');
  if (std::fwrite(line_.data(), 1, line_.size(), file_) != line_.size()) {
    // Clear the sticky error so one full disk does not fail every later line.
    std::clearerr(file_);
    Bump(write_errors_);
    return;
  }
  Bump(written_);
}

void JsonlSink::Flush() {
  if (std::fflush(file_) != 0) {
    std::clearerr(file_);
    Bump(write_errors_);
  }
}

absl::Status JsonlSink::Reopen() {
  if (is_stdout()) {
    Flush();
    return absl::OkStatus();
  }
  absl::StatusOr<std::FILE*> opened = OpenForAppend(config_.path);
  if (!opened.ok()) {
    Flush();
    return opened.status();
  }
  // fclose flushes the tail of the old file (the rotated one) before it is closed.
  if (std::fclose(file_) != 0) {
    Bump(write_errors_);
  }
  file_ = *opened;
  return absl::OkStatus();
}

}  // namespace relaywatch::sinks
