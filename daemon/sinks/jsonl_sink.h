#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "daemon/sinks/held_messages.h"
#include "daemon/sinks/sink.h"

namespace relaywatch::sinks {

struct JsonlConfig {
  // File to append to; "-" writes to stdout.
  std::string path = "-";
  // Event types written; other events are counted in filtered() and skipped.
  std::vector<std::string> events = {"alert", "remote_session"};
  // Lines held while the file cannot be written (a full disk); see JsonlSink.
  std::size_t max_pending = 100000;
};

// Writes events as EVE-compatible JSON lines (EventToJson): one compact object per line,
// '\n' terminated. Invalid UTF-8 in packet-derived strings is replaced by U+FFFD.
//
// Files are opened with O_APPEND|O_CREAT and mode 0640 (before umask). Lines are gathered
// and handed to the kernel with writev() once 64 KiB are waiting and at every Flush() (no
// fsync). Reopen() implements log rotation: the path is opened again and the old file
// closed; stdout is never reopened.
//
// A write the file refuses (ENOSPC, EFBIG, EIO) loses nothing: the lines stay held, at most
// config.max_pending of them, and are written again at each later Flush(), in order. A line
// the kernel took only part of is completed first; if it cannot be (a rotation, the end of
// the process), its head is cut off the file again, so a regular file holds whole lines
// only. When the hold is full the oldest line that is no alert goes first (HeldMessages);
// each drop is counted. The first refusal and the recovery are logged to stderr
// (journald), once each.
// Thread-safety: Write/Flush/Reopen from the single output thread (see Sink); the counter
// accessors may be called from any thread.
class JsonlSink : public Sink {
 public:
  // Opens config.path. Fails (with the path and errno text) if the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<JsonlSink>> Open(JsonlConfig config);
  // Writes what it holds, one last try; what still cannot be written is lost.
  ~JsonlSink() override;

  JsonlSink(const JsonlSink&) = delete;
  JsonlSink& operator=(const JsonlSink&) = delete;

  void Write(const Event& event) override;
  void Flush() override;
  // Opens the path anew and only then closes the old file, so a failed reopen (for example
  // the directory vanished) keeps writing to the old file and returns the error. Held lines
  // go to the old file if it takes them, else to the new one (a line the old file took
  // only part of is cut off it and goes whole to the new one).
  absl::Status Reopen() override;
  std::string_view name() const override { return "jsonl"; }
  std::uint64_t undelivered() const override { return dropped() + pending(); }

  // Lines written whole.
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  // Events skipped because their type is not in config.events.
  std::uint64_t filtered() const { return filtered_.load(std::memory_order_relaxed); }
  // Lines lost: the hold was full, or they could not be serialised.
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Lines waiting to be written.
  std::uint64_t pending() const { return pending_count_.load(std::memory_order_relaxed); }
  // writev() calls the file refused (e.g. ENOSPC).
  std::uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  JsonlSink(JsonlConfig config, int fd);
  bool is_stdout() const { return config_.path == "-"; }
  // Writes held lines until none is left or the file refuses one (returns false).
  bool Drain();
  // Removes the head of held_.front() from the end of the file, so the file holds whole
  // lines only; the line stays held whole.
  void CutTornLine();
  // Single writer (the output thread), so load+store needs no read-modify-write.
  static void Bump(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  JsonlConfig config_;
  int fd_;  // Owned unless it is stdout.
  HeldMessages held_;
  // Bytes of held_.front() the file already has.
  std::size_t front_written_ = 0;
  // Set at the first refusal (logged), cleared (logged) when a write goes through again.
  bool failing_ = false;
  std::uint64_t dropped_at_failure_ = 0;
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> filtered_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> pending_count_{0};
  std::atomic<std::uint64_t> write_errors_{0};
};

}  // namespace relaywatch::sinks
