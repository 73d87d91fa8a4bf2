// PartitionAckTracker: out-of-order acks on one partition become a commit
// offset that never passes an offset handed out and not yet acked.

#include "kafka/offset_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

namespace eventbus::kafka {
namespace {

TEST(PartitionAckTrackerTest, NothingToCommitBeforeTheFirstAck) {
  PartitionAckTracker t;
  EXPECT_EQ(t.CommitOffset(), std::nullopt);
  EXPECT_EQ(t.outstanding(), 0u);
  ASSERT_TRUE(t.Track(0));
  ASSERT_TRUE(t.Track(1));
  EXPECT_EQ(t.CommitOffset(), std::nullopt);
  EXPECT_EQ(t.outstanding(), 2u);
}

TEST(PartitionAckTrackerTest, InOrderAcksCommitOnePastEachAck) {
  PartitionAckTracker t;
  for (int64_t o = 100; o < 110; ++o) ASSERT_TRUE(t.Track(o));
  EXPECT_EQ(t.outstanding(), 10u);
  for (int64_t o = 100; o < 110; ++o) {
    ASSERT_TRUE(t.Ack(o)) << o;
    EXPECT_EQ(t.CommitOffset(), o + 1);
    EXPECT_EQ(t.outstanding(), static_cast<size_t>(109 - o));
  }
}

TEST(PartitionAckTrackerTest, AckAboveAGapDoesNotMoveTheCommit) {
  PartitionAckTracker t;
  for (int64_t o = 0; o < 5; ++o) ASSERT_TRUE(t.Track(o));
  ASSERT_TRUE(t.Ack(1));
  ASSERT_TRUE(t.Ack(3));
  ASSERT_TRUE(t.Ack(4));
  EXPECT_EQ(t.CommitOffset(), std::nullopt) << "offset 0 is still unacked";
  EXPECT_EQ(t.outstanding(), 2u);
  ASSERT_TRUE(t.Ack(0));
  EXPECT_EQ(t.CommitOffset(), 2) << "offset 2 is still unacked";
  ASSERT_TRUE(t.Ack(2));
  EXPECT_EQ(t.CommitOffset(), 5);
  EXPECT_EQ(t.outstanding(), 0u);
}

TEST(PartitionAckTrackerTest, SkippedOffsetsAreNotWaitedFor) {
  // Compaction and transaction markers leave holes in the offsets handed out.
  PartitionAckTracker t;
  ASSERT_TRUE(t.Track(5));
  ASSERT_TRUE(t.Track(9));
  ASSERT_TRUE(t.Track(10));
  ASSERT_TRUE(t.Ack(5));
  EXPECT_EQ(t.CommitOffset(), 6);
  ASSERT_TRUE(t.Ack(10));
  EXPECT_EQ(t.CommitOffset(), 6) << "9 is unacked";
  ASSERT_TRUE(t.Ack(9));
  EXPECT_EQ(t.CommitOffset(), 11);
  ASSERT_TRUE(t.Track(20));
  EXPECT_EQ(t.CommitOffset(), 11) << "tracking does not move the commit";
  ASSERT_TRUE(t.Ack(20));
  EXPECT_EQ(t.CommitOffset(), 21);
}

TEST(PartitionAckTrackerTest, DoubleAckIsRefused) {
  PartitionAckTracker t;
  ASSERT_TRUE(t.Track(0));
  ASSERT_TRUE(t.Track(1));
  ASSERT_TRUE(t.Track(2));
  ASSERT_TRUE(t.Ack(2));
  EXPECT_FALSE(t.Ack(2)) << "acked, above the committed prefix";
  EXPECT_EQ(t.outstanding(), 2u);
  ASSERT_TRUE(t.Ack(0));
  EXPECT_FALSE(t.Ack(0)) << "acked, inside the committed prefix";
  EXPECT_EQ(t.CommitOffset(), 1);
  EXPECT_EQ(t.outstanding(), 1u);
}

TEST(PartitionAckTrackerTest, AckOfAnUntrackedOffsetIsRefused) {
  PartitionAckTracker t;
  EXPECT_FALSE(t.Ack(0)) << "nothing tracked";
  ASSERT_TRUE(t.Track(5));
  ASSERT_TRUE(t.Track(9));
  EXPECT_FALSE(t.Ack(4)) << "below the first tracked";
  EXPECT_FALSE(t.Ack(7)) << "in a gap";
  EXPECT_FALSE(t.Ack(10)) << "above the last tracked";
  EXPECT_EQ(t.CommitOffset(), std::nullopt);
  EXPECT_EQ(t.outstanding(), 2u);
}

TEST(PartitionAckTrackerTest, TrackOfANonRisingOffsetIsRefusedAndRecordsNothing) {
  PartitionAckTracker t;
  ASSERT_TRUE(t.Track(10));
  EXPECT_FALSE(t.Track(10)) << "same offset";
  EXPECT_FALSE(t.Track(3)) << "lower offset";
  EXPECT_EQ(t.outstanding(), 1u);
  EXPECT_FALSE(t.Ack(3)) << "the refused offset must not be tracked";
  ASSERT_TRUE(t.Ack(10));
  EXPECT_EQ(t.CommitOffset(), 11);
  EXPECT_FALSE(t.Track(10)) << "still not rising after the ack";
  EXPECT_FALSE(t.Track(5));
  EXPECT_EQ(t.outstanding(), 0u);
  EXPECT_EQ(t.CommitOffset(), 11);
  EXPECT_TRUE(t.Track(11));
  EXPECT_EQ(t.outstanding(), 1u);
}

// The obvious model: every offset ever tracked, with its acked flag. The
// commit is one past the last offset of the longest fully acked prefix.
class Model {
 public:
  void Track(int64_t o) { offsets_[o] = false; }
  void Ack(int64_t o) { offsets_[o] = true; }
  std::optional<int64_t> CommitOffset() const {
    std::optional<int64_t> commit;
    for (const auto& [o, acked] : offsets_) {
      if (!acked) break;
      commit = o + 1;
    }
    return commit;
  }
  std::optional<int64_t> SmallestUnacked() const {
    for (const auto& [o, acked] : offsets_) {
      if (!acked) return o;
    }
    return std::nullopt;
  }
  size_t Outstanding() const {
    return static_cast<size_t>(std::count_if(
        offsets_.begin(), offsets_.end(), [](const auto& e) { return !e.second; }));
  }

 private:
  std::map<int64_t, bool> offsets_;
};

TEST(PartitionAckTrackerTest, RandomAckOrderNeverCommitsPastAnUnackedOffset) {
  std::mt19937_64 rng(20240501);
  for (int round = 0; round < 2000; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    PartitionAckTracker t;
    Model m;
    // Rising offsets with random holes, interleaved with acks in random
    // order (as a client does, acking while new deliveries arrive).
    const int n = 1 + static_cast<int>(rng() % 40);
    int64_t next = static_cast<int64_t>(rng() % 1000);
    std::vector<int64_t> pending;  // tracked, not acked
    int tracked = 0;
    while (tracked < n || !pending.empty()) {
      const bool track = tracked < n && (pending.empty() || rng() % 3 != 0);
      if (track) {
        next += 1 + static_cast<int64_t>(rng() % 4 == 0 ? rng() % 5 : 0);
        ASSERT_TRUE(t.Track(next)) << next;
        m.Track(next);
        pending.push_back(next);
        ++tracked;
      } else {
        const size_t i = rng() % pending.size();
        const int64_t o = pending[i];
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        ASSERT_TRUE(t.Ack(o)) << o;
        m.Ack(o);
        if (rng() % 5 == 0) EXPECT_FALSE(t.Ack(o)) << "double ack of " << o;
      }
      ASSERT_EQ(t.CommitOffset(), m.CommitOffset());
      ASSERT_EQ(t.outstanding(), m.Outstanding());
      if (std::optional<int64_t> low = m.SmallestUnacked();
          low && t.CommitOffset()) {
        ASSERT_LE(*t.CommitOffset(), *low)
            << "commit passes unacked offset " << *low;
      }
    }
    EXPECT_EQ(t.CommitOffset(), next + 1);
    EXPECT_EQ(t.outstanding(), 0u);
  }
}

TEST(PartitionAckTrackerTest, EveryPermutationOfSixAcksMatchesTheModel) {
  const std::vector<int64_t> offsets = {3, 4, 7, 8, 9, 15};
  std::vector<int> order(offsets.size());
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    PartitionAckTracker t;
    Model m;
    for (int64_t o : offsets) {
      ASSERT_TRUE(t.Track(o));
      m.Track(o);
    }
    for (int i : order) {
      ASSERT_TRUE(t.Ack(offsets[i]));
      m.Ack(offsets[i]);
      ASSERT_EQ(t.CommitOffset(), m.CommitOffset());
      if (std::optional<int64_t> low = m.SmallestUnacked();
          low && t.CommitOffset()) {
        ASSERT_LE(*t.CommitOffset(), *low);
      }
    }
    EXPECT_EQ(t.CommitOffset(), 16);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 720);
}

}  // namespace
}  // namespace eventbus::kafka
