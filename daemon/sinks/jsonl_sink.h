#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "daemon/sinks/sink.h"

namespace relaywatch::sinks {

struct JsonlConfig {
  // File to append to; "-" writes to stdout.
  std::string path = "-";
  // Event types written; other events are counted in filtered() and skipped.
  std::vector<std::string> events = {"alert", "remote_session"};
};

// Writes events as EVE-compatible JSON lines (EventToJson): one compact object per line,
// '\n' terminated. Invalid UTF-8 in packet-derived strings is replaced by U+FFFD.
//
// Files are opened with O_APPEND|O_CREAT and mode 0640 (before umask). Output is buffered
// by stdio; Flush() pushes it to the kernel (no fsync). Reopen() implements log rotation:
// the path is opened again and the old handle closed; stdout is never reopened.
// Errors: a failed write or flush is counted in write_errors() and the sink carries on;
// Write() and Flush() never throw.
// Thread-safety: Write/Flush/Reopen from the single output thread (see Sink); the counter
// accessors may be called from any thread.
class JsonlSink : public Sink {
 public:
  // Opens config.path. Fails (with the path and errno text) if the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<JsonlSink>> Open(JsonlConfig config);
  ~JsonlSink() override;

  JsonlSink(const JsonlSink&) = delete;
  JsonlSink& operator=(const JsonlSink&) = delete;

  void Write(const Event& event) override;
  void Flush() override;
  // Opens the path anew and only then closes the old file, so a failed reopen (for example
  // the directory vanished) keeps writing to the old file and returns the error.
  absl::Status Reopen() override;
  std::string_view name() const override { return "jsonl"; }

  // Lines written (handed to stdio without error).
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  // Events skipped because their type is not in config.events.
  std::uint64_t filtered() const { return filtered_.load(std::memory_order_relaxed); }
  // Failed writes and flushes (e.g. ENOSPC). Data in a failed write is lost.
  std::uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  JsonlSink(JsonlConfig config, std::FILE* file);
  bool is_stdout() const { return config_.path == "-"; }
  // Single writer (the output thread), so load+store needs no read-modify-write.
  static void Bump(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  JsonlConfig config_;
  std::FILE* file_;   // Owned unless it is stdout.
  std::string line_;  // Reused buffer for one serialised event.
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> filtered_{0};
  std::atomic<std::uint64_t> write_errors_{0};
};

}  // namespace relaywatch::sinks
