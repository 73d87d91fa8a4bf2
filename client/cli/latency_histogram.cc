#include "client/cli/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace eventbus::cli {

int LatencyHistogram::BucketOf(int64_t micros) {
  if (micros < 1) return 0;
  const uint64_t v = static_cast<uint64_t>(micros);
  const int exp = std::bit_width(v) - 1;  // 2^exp <= v < 2^(exp+1)
  const uint64_t base = uint64_t{1} << exp;
  const int sub = static_cast<int>(((v - base) * kSubBuckets) >> exp);
  return std::min(kBuckets - 1, exp * kSubBuckets + sub);
}

double LatencyHistogram::LowerBound(int i) {
  const int exp = i / kSubBuckets;
  const int sub = i % kSubBuckets;
  return std::ldexp(1.0 + static_cast<double>(sub) / kSubBuckets, exp);
}

void LatencyHistogram::Record(absl::Duration d) {
  counts_[BucketOf(absl::ToInt64Microseconds(d))].fetch_add(
      1, std::memory_order_relaxed);
}

int64_t LatencyHistogram::count() const {
  int64_t n = 0;
  for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
  return n;
}

absl::Duration LatencyHistogram::Percentile(double q) const {
  const int64_t total = count();
  if (total == 0) return absl::ZeroDuration();
  const int64_t rank =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * total)));
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i].load(std::memory_order_relaxed);
    if (seen >= rank) {
      const double mid = (LowerBound(i) + LowerBound(i + 1)) / 2;
      return absl::Microseconds(i == 0 ? 0.5 : mid);
    }
  }
  return absl::Microseconds(LowerBound(kBuckets));
}

}  // namespace eventbus::cli
