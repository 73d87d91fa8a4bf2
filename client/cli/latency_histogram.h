#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace eventbus::cli {

// A log-bucket histogram of durations: each power of two of microseconds is
// split into 8 buckets, so a percentile is within about 9% of the truth.
// Record is lock-free and thread-safe.
class LatencyHistogram {
 public:
  void Record(absl::Duration d);
  int64_t count() const;
  // The q-quantile (0 < q <= 1) as the middle of its bucket; zero when
  // nothing was recorded.
  absl::Duration Percentile(double q) const;

 private:
  static constexpr int kSubBuckets = 8;
  static constexpr int kBuckets = 40 * kSubBuckets;  // up to ~2^40 us
  static int BucketOf(int64_t micros);
  // Lower bound (in microseconds) of bucket `i`.
  static double LowerBound(int i);

  std::array<std::atomic<int64_t>, kBuckets> counts_{};
};

}  // namespace eventbus::cli
