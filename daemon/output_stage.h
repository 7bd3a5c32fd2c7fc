#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "daemon/sinks/sink.h"
#include "detectors/event.h"

namespace relaywatch::daemon {

// The bounded queue in front of the sinks and the one thread that drains it, so a slow
// disk or syslog receiver never slows the packet path.
//
// Back-pressure: alerts, and every record in replay mode, wait for room (nothing found is
// lost); other records in live mode are shed when the queue is full and counted.
class OutputStage {
 public:
  OutputStage(std::vector<std::unique_ptr<sinks::Sink>> sinks, std::size_t capacity);
  ~OutputStage();

  void Start();
  // Queues `event`; `wait` makes a full queue block instead of shedding.
  void Push(Event event, bool wait);
  // Asks every sink to reopen its files/connections (SIGHUP) on the output thread.
  void RequestReopen();
  // Delivers everything queued, flushes every sink and joins the thread.
  void Stop();

  std::uint64_t dropped() const;
  std::uint64_t queued() const;
  const std::vector<std::unique_ptr<sinks::Sink>>& sinks() const { return sinks_; }

 private:
  void Run();

  std::vector<std::unique_ptr<sinks::Sink>> sinks_;
  const std::size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Event> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reopen_ ABSL_GUARDED_BY(mu_) = false;
  std::uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace relaywatch::daemon
