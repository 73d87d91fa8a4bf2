#pragma once

// Prometheus metrics: counters, gauges and histograms with labels, kept in a
// Registry that writes them in the Prometheus text exposition format
// (version 0.0.4), which every Prometheus version scrapes.
//
// Updating a metric is a relaxed atomic operation, safe from any thread and
// never blocking; finding a labelled series takes the family's lock, so hot
// paths look a series up once and keep the reference.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace eventbus::common {

// Counters and gauges take a cache line each: series updated from different
// threads (a stream's deliveries on the consumer's, its acks on gRPC's)
// would otherwise share one.
inline constexpr size_t kMetricAlignment = 64;

// A count that only goes up (Prometheus type counter; its name ends in
// _total).
class alignas(kMetricAlignment) Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class alignas(kMetricAlignment) Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in buckets with fixed upper bounds, their count and
// their sum.
class Histogram {
 public:
  // `bounds`: increasing upper bounds, without +Inf; must outlive this.
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);

  struct Snapshot {
    // Cumulative counts per bound, then +Inf (= count).
    std::vector<uint64_t> cumulative;
    double sum = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* const bounds_;
  // Per bucket (not cumulative); the last is above every bound.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Bucket bounds for latencies in seconds, 100 µs to 60 s.
const std::vector<double>& LatencySecondsBuckets();

// What a family of one metric type shares: name, help, label names.
class MetricFamily {
 public:
  MetricFamily(std::string name, std::string help, std::string type,
               std::vector<std::string> label_names);
  virtual ~MetricFamily() = default;
  const std::string& name() const { return name_; }
  // Appends the family (HELP, TYPE and every series) to `out`.
  virtual void Write(std::string* out) const = 0;

 protected:
  // Appends `{a="x",b="y"}` (nothing without labels), with `extra` (a
  // histogram's le) last.
  void WriteLabels(absl::Span<const std::string> values,
                   absl::string_view extra_name, absl::string_view extra_value,
                   std::string* out) const;
  void WriteHeader(std::string* out) const;
  size_t label_count() const { return label_names_.size(); }

 private:
  const std::string name_;
  const std::string help_;
  const std::string type_;
  const std::vector<std::string> label_names_;
};

// Orders label-value lists, and compares them with lists of views, so that a
// series is found without copying its labels.
struct LabelValuesLess {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](absl::string_view x, absl::string_view y) { return x < y; });
  }
};

// The series of one metric, one per combination of label values.
template <class M>
class Family final : public MetricFamily {
 public:
  Family(std::string name, std::string help, std::string type,
         std::vector<std::string> label_names,
         const std::vector<double>* bounds = nullptr)
      : MetricFamily(std::move(name), std::move(help), std::move(type),
                     std::move(label_names)),
        bounds_(bounds) {}

  // The series with these label values (one per label name), made at the
  // first call. The reference stays valid until Remove of the same values.
  M& With(std::initializer_list<absl::string_view> values) {
    return With(absl::MakeConstSpan(values.begin(), values.size()));
  }
  M& With(absl::Span<const absl::string_view> values) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops a series (for example of a partition no longer served).
  void Remove(absl::Span<const absl::string_view> values)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Drops every series `drop` says yes to, given its label values.
  void RemoveIf(const std::function<bool(absl::Span<const std::string>)>& drop)
      ABSL_LOCKS_EXCLUDED(mu_);

  void Write(std::string* out) const override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::unique_ptr<M> Make() const;

  const std::vector<double>* const bounds_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>, LabelValuesLess>
      series_ ABSL_GUARDED_BY(mu_);
};

// The metrics of one process, and their exposition.
class Registry {
 public:
  // Names must be valid Prometheus names (eventbus_..., base units,
  // counters ending in _total); each may be added once.
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  // A counter whose value is read from elsewhere at scrape time (set in an
  // OnCollect hook), such as the process's CPU time.
  Family<Gauge>& AddSampledCounter(std::string name, std::string help,
                                   std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names,
                                  const std::vector<double>* bounds);

  // Runs before every exposition, to set values read at scrape time (the
  // process's memory, for example). Hooks run one at a time.
  void OnCollect(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);

  // Every metric in the text exposition format, families in the order they
  // were added, series ordered by label values.
  std::string Expose() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  template <class F>
  F& Add(std::unique_ptr<F> family) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex collect_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

// A number as the exposition format writes it: integers without a
// fraction, others in their shortest exact form, +Inf, -Inf, NaN.
std::string FormatMetricValue(double v);

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

}  // namespace eventbus::common
