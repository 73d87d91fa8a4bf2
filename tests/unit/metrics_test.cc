// The Prometheus registry and its text exposition format. promtool checks
// the sidecar's whole output in the integration tests.

#include "common/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace eventbus::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CountersGaugesAndLabelsInTheTextFormat) {
  Registry r;
  Family<Counter>& events = r.AddCounter(
      "eventbus_test_events_total", "Events by topic and code.",
      {"topic", "code"});
  Family<Gauge>& up = r.AddGauge("eventbus_test_up", "Whether it is up.");
  events.With({"orders", "OK"}).Add(3);
  events.With({"orders", "OK"}).Add();
  events.With({"audit", "INVALID_ARGUMENT"}).Add();
  up.With({}).Set(1);
  EXPECT_EQ(r.Expose(),
            "# HELP eventbus_test_events_total Events by topic and code.\n"
            "# TYPE eventbus_test_events_total counter\n"
            "eventbus_test_events_total{topic=\"audit\",code=\"INVALID_ARGUMENT\"} 1\n"
            "eventbus_test_events_total{topic=\"orders\",code=\"OK\"} 4\n"
            "# HELP eventbus_test_up Whether it is up.\n"
            "# TYPE eventbus_test_up gauge\n"
            "eventbus_test_up 1\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  static const std::vector<double> kBounds = {0.001, 0.01, 0.1};
  Family<Histogram>& h = r.AddHistogram("eventbus_test_latency_seconds",
                                        "Latency.", {"topic"}, &kBounds);
  Histogram& orders = h.With({"orders"});
  orders.Observe(0.0005);
  orders.Observe(0.001);  // a bound counts in its own bucket (le)
  orders.Observe(0.05);
  orders.Observe(7);
  EXPECT_EQ(r.Expose(),
            "# HELP eventbus_test_latency_seconds Latency.\n"
            "# TYPE eventbus_test_latency_seconds histogram\n"
            "eventbus_test_latency_seconds_bucket{topic=\"orders\",le=\"0.001\"} 2\n"
            "eventbus_test_latency_seconds_bucket{topic=\"orders\",le=\"0.01\"} 2\n"
            "eventbus_test_latency_seconds_bucket{topic=\"orders\",le=\"0.1\"} 3\n"
            "eventbus_test_latency_seconds_bucket{topic=\"orders\",le=\"+Inf\"} 4\n"
            "eventbus_test_latency_seconds_sum{topic=\"orders\"} 7.0515\n"
            "eventbus_test_latency_seconds_count{topic=\"orders\"} 4\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry r;
  r.AddGauge("eventbus_test_g", "A \\ help\nline.", {"name"})
      .With({"a\"b\\c\nd"})
      .Set(2);
  const std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("# HELP eventbus_test_g A \\\\ help\\nline.\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_test_g{name=\"a\\\"b\\\\c\\nd\"} 2\n"));
}

TEST(MetricsTest, ValuesKeepTheirPrecision) {
  EXPECT_EQ(FormatMetricValue(123456789012.0), "123456789012");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(-2.5), "-2.5");
  EXPECT_EQ(FormatMetricValue(1e300), "1e+300");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, RemovedSeriesDisappearAndCollectHooksRunFirst) {
  Registry r;
  Family<Gauge>& lag = r.AddGauge("eventbus_test_lag", "Lag.", {"partition"});
  lag.With({"0"}).Set(5);
  lag.With({"1"}).Set(7);
  lag.With({"2"}).Set(9);
  lag.Remove(std::vector<absl::string_view>{"0"});
  lag.RemoveIf([](absl::Span<const std::string> l) { return l[0] == "2"; });
  int collected = 0;
  r.OnCollect([&] { lag.With({"1"}).Set(++collected * 100); });
  const std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("eventbus_test_lag{partition=\"1\"} 100\n"));
  EXPECT_THAT(text, Not(HasSubstr("partition=\"0\"")));
  EXPECT_THAT(text, Not(HasSubstr("partition=\"2\"")));
  EXPECT_EQ(collected, 1);
}

TEST(MetricsTest, UpdatesFromManyThreadsAllCount) {
  Registry r;
  Counter& c = r.AddCounter("eventbus_test_total", "Count.").With({});
  Gauge& g = r.AddGauge("eventbus_test_gauge", "Gauge.").With({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.Add();
        g.Add(1);
        g.Add(-1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 400000u);
  EXPECT_EQ(g.Value(), 0);
}

TEST(MetricsDeathTest, BadNamesFailAtStartUp) {
  Registry r;
  EXPECT_DEATH(r.AddCounter("eventbus_events", "Not a _total name."), "_total");
  EXPECT_DEATH(r.AddGauge("eventbus-dash", "Bad."), "invalid Prometheus");
  EXPECT_DEATH(r.AddGauge("eventbus_ok", "Bad label.", {"le"}), "label");
  r.AddGauge("eventbus_twice", "Once.");
  EXPECT_DEATH(r.AddGauge("eventbus_twice", "Twice."), "unique");
}

}  // namespace
}  // namespace eventbus::common
