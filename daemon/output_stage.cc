#include "daemon/output_stage.h"

#include "daemon/log.h"

namespace relaywatch::daemon {

OutputStage::OutputStage(std::vector<std::unique_ptr<sinks::Sink>> sinks, std::size_t capacity)
    : sinks_(std::move(sinks)), capacity_(capacity) {}

OutputStage::~OutputStage() { Stop(); }

void OutputStage::Start() { thread_ = std::thread([this] { Run(); }); }

void OutputStage::Push(Event event, bool wait) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= capacity_) {
    if (!wait && !event.must_deliver()) {
      ++dropped_;
      return;
    }
    const auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() < capacity_ || stopping_;
    };
    mu_.Await(absl::Condition(&has_room));
  }
  queue_.push_back(std::move(event));
}

void OutputStage::RequestReopen() {
  absl::MutexLock lock(&mu_);
  reopen_ = true;
}

void OutputStage::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::uint64_t OutputStage::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

std::uint64_t OutputStage::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void OutputStage::Run() {
  std::deque<Event> batch;
  while (true) {
    bool stopping = false;
    bool reopen = false;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_ || reopen_;
      };
      // Wake at least once a second so sinks flush and retry even when idle.
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
      batch.swap(queue_);
      stopping = stopping_;
      reopen = reopen_;
      reopen_ = false;
    }
    if (reopen) {
      for (auto& sink : sinks_) {
        if (absl::Status s = sink->Reopen(); !s.ok()) {
          RW_LOG(kWarning, "%s output: reopen failed: %s", sink->name(), s.ToString());
        }
      }
    }
    for (const Event& event : batch) {
      for (auto& sink : sinks_) {
        sink->Write(event);
      }
    }
    batch.clear();
    for (auto& sink : sinks_) {
      sink->Flush();
    }
    if (stopping) {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) {
        return;
      }
    }
  }
}

}  // namespace relaywatch::daemon
