#include "kafka/offset_tracker.h"

#include <algorithm>

namespace eventbus::kafka {

bool PartitionAckTracker::Track(int64_t offset) {
  if (last_tracked_ && offset <= *last_tracked_) return false;
  last_tracked_ = offset;
  offsets_.emplace_back(offset, false);
  ++outstanding_;
  return true;
}

bool PartitionAckTracker::Ack(int64_t offset) {
  auto it = std::lower_bound(
      offsets_.begin(), offsets_.end(), offset,
      [](const std::pair<int64_t, bool>& e, int64_t o) { return e.first < o; });
  if (it == offsets_.end() || it->first != offset || it->second) return false;
  it->second = true;
  --outstanding_;
  while (!offsets_.empty() && offsets_.front().second) {
    commit_ = offsets_.front().first + 1;
    offsets_.pop_front();
  }
  return true;
}

}  // namespace eventbus::kafka
