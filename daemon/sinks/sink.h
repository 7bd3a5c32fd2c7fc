#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

#include "detectors/event.h"

namespace relaywatch::sinks {

// An output for events. Called from the one output thread only, in order; a sink may block
// (disk, network) because the packet path never waits on it: the output queue sits between.
class Sink {
 public:
  virtual ~Sink() = default;
  // Writes one event. Errors are the sink's to count, retry or spool; alerts must not be
  // lost while the process runs (a down receiver means buffering, not dropping).
  virtual void Write(const Event& event) = 0;
  // Pushes buffered output out (periodically, after alerts, and at shutdown).
  virtual void Flush() = 0;
  // SIGHUP: reopen files (log rotation) or reconnect. Default: nothing to reopen.
  virtual absl::Status Reopen() { return absl::OkStatus(); }
  virtual std::string_view name() const = 0;
  // Events this output dropped plus those it still holds, which are lost if the process
  // ends now: what a replay reports when it could not deliver everything. Any thread.
  virtual std::uint64_t undelivered() const { return 0; }
};

}  // namespace relaywatch::sinks
