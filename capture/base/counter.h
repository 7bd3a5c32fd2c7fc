#pragma once

#include <atomic>
#include <cstdint>

namespace relaywatch {

// A counter written by exactly one thread and read by the metrics thread. The single
// writer makes load+store safe without a read-modify-write on the packet path.
class WorkerCounter {
 public:
  void Increment(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Set(std::uint64_t v) { value_.store(v, std::memory_order_relaxed); }
  std::uint64_t Read() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

}  // namespace relaywatch
