#include "daemon/sinks/jsonl_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

#include "daemon/log.h"
#include "daemon/sinks/event_json.h"

namespace relaywatch::sinks {
namespace {

// Lines are gathered up to this much before a writev(), as stdio's buffer did.
constexpr std::size_t kGatherBytes = 64 * 1024;
// Lines per writev() (IOV_MAX is 1024 on Linux).
constexpr std::size_t kMaxIov = 256;

absl::StatusOr<int> OpenForAppend(const std::string& path) {
  // O_APPEND keeps each line's write atomic with respect to other appenders and makes
  // logrotate's rename-then-HUP safe; O_CLOEXEC keeps the fd out of any child process.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("jsonl sink: cannot open '", path, "'"));
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonlSink>> JsonlSink::Open(JsonlConfig config) {
  if (config.path.empty()) {
    return absl::InvalidArgumentError("jsonl sink: path is empty (use \"-\" for stdout)");
  }
  int fd = STDOUT_FILENO;
  if (config.path != "-") {
    absl::StatusOr<int> opened = OpenForAppend(config.path);
    if (!opened.ok()) {
      return opened.status();
    }
    fd = *opened;
  }
  return std::unique_ptr<JsonlSink>(new JsonlSink(std::move(config), fd));
}

JsonlSink::JsonlSink(JsonlConfig config, int fd)
    : config_(std::move(config)), fd_(fd), held_(config_.max_pending) {}

JsonlSink::~JsonlSink() {
  // What is still held after this try is lost; the owner reads undelivered() first.
  Drain();
  CutTornLine();
  if (!is_stdout()) {
    ::close(fd_);
  }
}

void JsonlSink::Write(const Event& event) {
  if (std::find(config_.events.begin(), config_.events.end(), event.event_type) ==
      config_.events.end()) {
    Bump(filtered_);
    return;
  }
  std::string line;
  try {
    line = EventToJson(event).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception&) {
    // Not expected with the replace handler; an event we cannot serialise is counted,
    // never allowed to take down the output thread.
    Bump(dropped_);
    return;
  }
  line.push_back('\n');
  if (!held_.Push(std::move(line), event.must_deliver(), front_written_ > 0)) {
    Bump(dropped_);
  }
  pending_count_.store(held_.size(), std::memory_order_relaxed);
  // While the file refuses, only Flush() tries again: not a failing syscall per event.
  if (!failing_ && held_.bytes() >= kGatherBytes) {
    Drain();
  }
}

bool JsonlSink::Drain() {
  iovec iov[kMaxIov];
  while (!held_.empty()) {
    const std::size_t count = std::min(kMaxIov, held_.size());
    for (std::size_t i = 0; i < count; ++i) {
      const std::string& text = held_[i].text;
      const std::size_t skip = i == 0 ? front_written_ : 0;
      iov[i] = {const_cast<char*>(text.data()) + skip, text.size() - skip};
    }
    const ssize_t n = ::writev(fd_, iov, static_cast<int>(count));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      Bump(write_errors_);
      if (!failing_) {
        failing_ = true;
        dropped_at_failure_ = dropped();
        const absl::Status status =
            absl::ErrnoToStatus(error, absl::StrCat("cannot write to '", config_.path, "'"));
        RW_LOG(kError, "jsonl output: %s; holding up to %u lines until it can", status.message(),
               config_.max_pending);
      }
      break;
    }
    // The kernel may take part of a line (a disk that fills up): the rest goes first next.
    auto left = static_cast<std::size_t>(n);
    while (left > 0) {
      const std::size_t rest = held_.front().text.size() - front_written_;
      if (left < rest) {
        front_written_ += left;
        break;
      }
      left -= rest;
      front_written_ = 0;
      held_.PopFront();
      Bump(written_);
    }
  }
  pending_count_.store(held_.size(), std::memory_order_relaxed);
  if (failing_ && held_.empty()) {
    failing_ = false;
    const std::uint64_t lost = dropped() - dropped_at_failure_;
    RW_LOG(kNotice, "jsonl output: writing to '%s' again; %s", config_.path,
           lost == 0 ? std::string("every held line is written")
                     : absl::StrCat(lost, " lines were dropped meanwhile (hold full)"));
  }
  return held_.empty();
}

void JsonlSink::Flush() {
  Drain();
}

void JsonlSink::CutTornLine() {
  if (front_written_ == 0) {
    return;
  }
  // Only this sink appends, so the file ends with the head written so far; cutting it
  // keeps the file valid JSON lines for jq and SIEM shippers.
  struct stat st = {};
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<std::size_t>(st.st_size) >= front_written_) {
    (void)::ftruncate(fd_, st.st_size - static_cast<off_t>(front_written_));
  }
  front_written_ = 0;
}

absl::Status JsonlSink::Reopen() {
  if (is_stdout()) {
    Drain();
    return absl::OkStatus();
  }
  absl::StatusOr<int> opened = OpenForAppend(config_.path);
  // Lines written before the rotation belong in the old file, if it takes them.
  Drain();
  if (!opened.ok()) {
    return opened.status();
  }
  // A line the old file has the head of gets no more there; its tail would start the new
  // file torn, so it is sent whole to the new file instead.
  CutTornLine();
  ::close(fd_);
  fd_ = *opened;
  return absl::OkStatus();
}

}  // namespace relaywatch::sinks
