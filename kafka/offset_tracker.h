#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <optional>

namespace eventbus::kafka {

// Turns out-of-order acks on one partition into the offset that is safe to
// commit: the commit never passes an offset that was handed out and not yet
// acked (at-least-once).
//
// Not thread-safe; the owner serializes calls.
class PartitionAckTracker {
 public:
  // Records that `offset` was handed out for processing. Offsets must rise
  // from call to call (they may skip: compaction, transaction markers).
  // Returns false, and records nothing, for an offset at or below one
  // already tracked.
  bool Track(int64_t offset);

  // Marks `offset` processed. Returns false when it is not tracked or was
  // already acked.
  bool Ack(int64_t offset);

  // The offset to commit (one past the last offset of the fully acked
  // prefix), or nullopt while nothing tracked has been acked from the start.
  std::optional<int64_t> CommitOffset() const { return commit_; }

  // Offsets tracked and not yet acked.
  size_t outstanding() const { return outstanding_; }

 private:
  // Tracked offsets above the committed prefix, rising; true once acked.
  // A deque, not a map: offsets come in order, so tracking appends and the
  // prefix leaves from the front, without an allocation per offset.
  std::deque<std::pair<int64_t, bool>> offsets_;
  std::optional<int64_t> commit_;
  std::optional<int64_t> last_tracked_;
  size_t outstanding_ = 0;
};

}  // namespace eventbus::kafka
