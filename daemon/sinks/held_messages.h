#pragma once

#include <cstddef>
#include <deque>
#include <string>

namespace relaywatch::sinks {

// Formatted messages an output holds while its receiver (a collector, a full disk) cannot
// take them, oldest first, at most `capacity`. When full, the oldest message that is no
// alert goes first; alerts go only when nothing else is held, and then the oldest. A front
// message already partly delivered is never the one dropped: the rest of it must follow
// what the receiver has, or its record is torn.
// Thread-compatible: one output thread owns it.
class HeldMessages {
 public:
  struct Message {
    std::string text;
    bool alert = false;
  };

  explicit HeldMessages(std::size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  // Holds `text`. Returns false when a message was dropped to make room (perhaps the
  // newcomer itself: a non-alert when only alerts are held).
  bool Push(std::string text, bool alert, bool front_in_progress = false);
  void PopFront();

  bool empty() const { return messages_.empty(); }
  std::size_t size() const { return messages_.size(); }
  // Bytes of text held.
  std::size_t bytes() const { return bytes_; }
  const Message& front() const { return messages_.front(); }
  const Message& operator[](std::size_t i) const { return messages_[i]; }

 private:
  std::size_t capacity_;
  std::deque<Message> messages_;
  std::size_t non_alerts_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace relaywatch::sinks
