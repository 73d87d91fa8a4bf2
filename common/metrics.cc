#include "common/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace eventbus::common {
namespace {

bool IsMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = absl::ascii_isalpha(static_cast<unsigned char>(c)) ||
                    c == '_' || c == ':' ||
                    (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(absl::string_view name) {
  return IsMetricName(name) && name.find(':') == absl::string_view::npos &&
         !absl::StartsWith(name, "__");
}

// A misnamed metric is a programming error: fail at start-up, loudly.
void CheckName(bool ok, absl::string_view what, absl::string_view name) {
  if (!ok) {
    std::fprintf(stderr, "invalid Prometheus %s name \"%.*s\"\n",
                 std::string(what).c_str(), static_cast<int>(name.size()),
                 name.data());
    std::abort();
  }
}

void AppendEscaped(absl::string_view s, bool quotes, std::string* out) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '"':
        if (quotes) {
          out->append("\\\"");
          break;
        }
        [[fallthrough]];
      default:
        out->push_back(c);
    }
  }
}

}  // namespace

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds->size() + 1)) {}

void Histogram::Observe(double v) {
  const auto it = std::lower_bound(bounds_->begin(), bounds_->end(), v);
  counts_[static_cast<size_t>(it - bounds_->begin())].fetch_add(
      1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.reserve(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

const std::vector<double>& LatencySecondsBuckets() {
  static const std::vector<double> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  return kBounds;
}

MetricFamily::MetricFamily(std::string name, std::string help,
                           std::string type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(std::move(type)),
      label_names_(std::move(label_names)) {
  CheckName(IsMetricName(name_), "metric", name_);
  for (const std::string& l : label_names_) {
    CheckName(IsLabelName(l) && l != "le", "label", l);
  }
}

void MetricFamily::WriteHeader(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ");
  AppendEscaped(help_, /*quotes=*/false, out);
  absl::StrAppend(out, "\n# TYPE ", name_, " ", type_, "\n");
}

void MetricFamily::WriteLabels(absl::Span<const std::string> values,
                               absl::string_view extra_name,
                               absl::string_view extra_value,
                               std::string* out) const {
  if (values.empty() && extra_name.empty()) return;
  out->push_back('{');
  bool first = true;
  auto label = [&](absl::string_view name, absl::string_view value) {
    if (!first) out->push_back(',');
    first = false;
    absl::StrAppend(out, name, "=\"");
    AppendEscaped(value, /*quotes=*/true, out);
    out->push_back('"');
  };
  for (size_t i = 0; i < values.size(); ++i) label(label_names_[i], values[i]);
  if (!extra_name.empty()) label(extra_name, extra_value);
  out->push_back('}');
}

template <class M>
std::unique_ptr<M> Family<M>::Make() const {
  if constexpr (std::is_same_v<M, Histogram>) {
    return std::make_unique<Histogram>(bounds_);
  } else {
    return std::make_unique<M>();
  }
}

template <class M>
M& Family<M>::With(absl::Span<const absl::string_view> values) {
  if (values.size() != label_count()) {
    std::fprintf(stderr, "metric %s: %zu label values for %zu labels\n",
                 name().c_str(), values.size(), label_count());
    std::abort();
  }
  absl::MutexLock lock(&mu_);
  auto it = series_.find(values);
  if (it == series_.end()) {
    it = series_
             .emplace(std::vector<std::string>(values.begin(), values.end()),
                      Make())
             .first;
  }
  return *it->second;
}

template <class M>
void Family<M>::Remove(absl::Span<const absl::string_view> values) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(values);
  if (it != series_.end()) series_.erase(it);
}

template <class M>
void Family<M>::RemoveIf(
    const std::function<bool(absl::Span<const std::string>)>& drop) {
  absl::MutexLock lock(&mu_);
  std::erase_if(series_, [&drop](const auto& s) { return drop(s.first); });
}

template <class M>
void Family<M>::Write(std::string* out) const {
  WriteHeader(out);
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, metric] : series_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      const Histogram::Snapshot s = metric->Read();
      const std::vector<double>& bounds = metric->bounds();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        absl::StrAppend(out, name(), "_bucket");
        WriteLabels(labels, "le",
                    i < bounds.size() ? FormatMetricValue(bounds[i]) : "+Inf",
                    out);
        absl::StrAppend(out, " ", s.cumulative[i], "\n");
      }
      absl::StrAppend(out, name(), "_sum");
      WriteLabels(labels, "", "", out);
      absl::StrAppend(out, " ", FormatMetricValue(s.sum), "\n");
      absl::StrAppend(out, name(), "_count");
      WriteLabels(labels, "", "", out);
      absl::StrAppend(out, " ", s.cumulative.back(), "\n");
    } else {
      out->append(name());
      WriteLabels(labels, "", "", out);
      if constexpr (std::is_same_v<M, Counter>) {
        absl::StrAppend(out, " ", metric->Value(), "\n");
      } else {
        absl::StrAppend(out, " ", FormatMetricValue(metric->Value()), "\n");
      }
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <class F>
F& Registry::Add(std::unique_ptr<F> family) {
  F& ref = *family;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    CheckName(f->name() != ref.name(), "unique metric", ref.name());
  }
  families_.push_back(std::move(family));
  return ref;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  CheckName(absl::EndsWith(name, "_total"), "counter (ends in _total)", name);
  return Add(std::make_unique<Family<Counter>>(
      std::move(name), std::move(help), "counter", std::move(label_names)));
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return Add(std::make_unique<Family<Gauge>>(std::move(name), std::move(help),
                                             "gauge", std::move(label_names)));
}

Family<Gauge>& Registry::AddSampledCounter(
    std::string name, std::string help, std::vector<std::string> label_names) {
  CheckName(absl::EndsWith(name, "_total"), "counter (ends in _total)", name);
  return Add(std::make_unique<Family<Gauge>>(
      std::move(name), std::move(help), "counter", std::move(label_names)));
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          const std::vector<double>* bounds) {
  return Add(std::make_unique<Family<Histogram>>(
      std::move(name), std::move(help), "histogram", std::move(label_names),
      bounds));
}

void Registry::OnCollect(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::Expose() {
  absl::MutexLock collect(&collect_mu_);
  std::vector<std::function<void()>> hooks;
  {
    absl::MutexLock lock(&mu_);
    hooks = hooks_;
  }
  for (const auto& hook : hooks) hook();
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) f->Write(&out);
  return out;
}

}  // namespace eventbus::common
