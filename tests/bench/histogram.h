#pragma once

// A log-bucketed latency histogram in the style of HdrHistogram: values
// (nanoseconds) below 2^kSubBits are counted exactly; above, every power of
// two is split into 2^(kSubBits-1) linear sub-buckets, so a recorded value is
// off by less than 2^-(kSubBits-1) of itself (< 0.8% with kSubBits = 8).
// Percentiles report the upper edge of the bucket, clamped to the maximum
// recorded. Not thread-safe: guard it, or merge per-thread copies.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace eventbus::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 8;
  static constexpr int64_t kSubCount = int64_t{1} << kSubBits;  // 256
  static constexpr int64_t kHalf = kSubCount / 2;              // 128
  // Magnitudes up to 2^63.
  static constexpr int kBuckets = 64 - kSubBits + 1;

  void Record(int64_t value) {
    if (value < 0) value = 0;
    ++counts_[Index(value)];
    ++total_;
    max_ = std::max(max_, value);
    min_ = total_ == 1 ? value : std::min(min_, value);
  }

  void Merge(const Histogram& other) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    if (other.total_ > 0) {
      min_ = total_ == 0 ? other.min_ : std::min(min_, other.min_);
      max_ = std::max(max_, other.max_);
    }
    total_ += other.total_;
  }

  int64_t count() const { return total_; }
  int64_t max() const { return max_; }
  int64_t min() const { return min_; }

  // The smallest bucket's upper edge at or below which at least `q` (0..1)
  // of the values lie; 0 when empty.
  int64_t Percentile(double q) const {
    if (total_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    int64_t rank = static_cast<int64_t>(q * static_cast<double>(total_) + 0.5);
    rank = std::clamp<int64_t>(rank, 1, total_);
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperEdge(static_cast<int64_t>(i)), max_);
    }
    return max_;
  }

 private:
  // Bucket 0 holds [0, kSubCount) exactly; bucket b >= 1 holds
  // [2^(b+kSubBits-1), 2^(b+kSubBits)) in kHalf steps of 2^b.
  static int64_t Index(int64_t value) {
    const uint64_t v = static_cast<uint64_t>(value);
    if (v < static_cast<uint64_t>(kSubCount)) return static_cast<int64_t>(v);
    const int magnitude = 63 - std::countl_zero(v);  // >= kSubBits
    const int bucket = magnitude - kSubBits + 1;
    const int64_t sub = static_cast<int64_t>(v >> bucket) - kHalf;  // 0..kHalf-1
    return kSubCount + (bucket - 1) * kHalf + sub;
  }

  static int64_t UpperEdge(int64_t index) {
    if (index < kSubCount) return index;
    const int64_t bucket = (index - kSubCount) / kHalf + 1;
    const int64_t sub = (index - kSubCount) % kHalf;
    const int64_t low = (kHalf + sub) << bucket;
    return low + (int64_t{1} << bucket) - 1;
  }

  std::array<int64_t, kSubCount + (kBuckets - 1) * kHalf> counts_{};
  int64_t total_ = 0;
  int64_t max_ = 0;
  int64_t min_ = 0;
};

}  // namespace eventbus::bench
