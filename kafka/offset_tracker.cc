#include "kafka/offset_tracker.h"

namespace eventbus::kafka {

bool PartitionAckTracker::Track(int64_t offset) {
  if (last_tracked_ && offset <= *last_tracked_) return false;
  last_tracked_ = offset;
  offsets_.emplace(offset, false);
  ++outstanding_;
  return true;
}

bool PartitionAckTracker::Ack(int64_t offset) {
  auto it = offsets_.find(offset);
  if (it == offsets_.end() || it->second) return false;
  it->second = true;
  --outstanding_;
  while (!offsets_.empty() && offsets_.begin()->second) {
    commit_ = offsets_.begin()->first + 1;
    offsets_.erase(offsets_.begin());
  }
  return true;
}

}  // namespace eventbus::kafka
