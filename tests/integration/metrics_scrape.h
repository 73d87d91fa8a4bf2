#pragma once

// Reads a sidecar's /metrics as Prometheus would and sums its samples, so a
// test can check the figures an operator's dashboard would show.

#include <httplib.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace eventbus::testing {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The samples of the text exposition `text` (comments skipped). Label
// values are taken as written (the sidecar's contain no quotes or commas
// in the tests' topic and group names).
inline std::vector<MetricSample> ParseMetrics(absl::string_view text) {
  std::vector<MetricSample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    MetricSample s;
    if (!absl::SimpleAtod(line.substr(space + 1), &s.value)) continue;
    absl::string_view series = line.substr(0, space);
    const size_t brace = series.find('{');
    s.name = std::string(series.substr(0, brace));
    if (brace != absl::string_view::npos) {
      absl::string_view labels = series.substr(brace + 1);
      absl::ConsumeSuffix(&labels, "}");
      for (absl::string_view pair : absl::StrSplit(labels, ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        if (eq == absl::string_view::npos) continue;
        absl::string_view value = pair.substr(eq + 1);
        absl::ConsumePrefix(&value, "\"");
        absl::ConsumeSuffix(&value, "\"");
        s.labels[std::string(pair.substr(0, eq))] = std::string(value);
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

// GET http://<host_port>/metrics, parsed.
inline absl::StatusOr<std::vector<MetricSample>> ScrapeMetrics(
    const std::string& host_port) {
  httplib::Client client(absl::StrCat("http://", host_port));
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  httplib::Result r = client.Get("/metrics");
  if (!r) {
    return absl::UnavailableError(absl::StrCat(
        "GET http://", host_port, "/metrics: ", httplib::to_string(r.error())));
  }
  if (r->status != 200) {
    return absl::UnavailableError(absl::StrCat(
        "GET http://", host_port, "/metrics answered ", r->status));
  }
  return ParseMetrics(r->body);
}

// The sum of the samples called `name` whose labels include `match`.
inline double SumOf(const std::vector<MetricSample>& samples,
                    absl::string_view name,
                    const std::map<std::string, std::string>& match = {}) {
  double sum = 0;
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      all = all && it != s.labels.end() && it->second == v;
    }
    if (all) sum += s.value;
  }
  return sum;
}

}  // namespace eventbus::testing
