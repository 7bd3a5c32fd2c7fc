#include "daemon/sinks/held_messages.h"

#include <algorithm>
#include <utility>

namespace relaywatch::sinks {

bool HeldMessages::Push(std::string text, bool alert, bool front_in_progress) {
  bool dropped = false;
  if (messages_.size() >= capacity_) {
    // Candidates start after a front that is partly delivered.
    const auto first = messages_.begin() + ((front_in_progress && !messages_.empty()) ? 1 : 0);
    auto victim = messages_.end();
    if (non_alerts_ > 0) {
      victim = std::find_if(first, messages_.end(), [](const Message& m) { return !m.alert; });
    }
    if (victim == messages_.end()) {
      if (!alert || first == messages_.end()) {
        // Only alerts (or nothing that may go) are held: the newcomer is the one to lose.
        return false;
      }
      victim = first;
    }
    if (!victim->alert) {
      --non_alerts_;
    }
    bytes_ -= victim->text.size();
    messages_.erase(victim);
    dropped = true;
  }
  bytes_ += text.size();
  messages_.push_back(Message{std::move(text), alert});
  if (!alert) {
    ++non_alerts_;
  }
  return !dropped;
}

void HeldMessages::PopFront() {
  if (!messages_.front().alert) {
    --non_alerts_;
  }
  bytes_ -= messages_.front().text.size();
  messages_.pop_front();
}

}  // namespace relaywatch::sinks
