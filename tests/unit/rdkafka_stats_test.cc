// Reading librdkafka's statistics JSON (the shape of STATISTICS.md).

#include "kafka/rdkafka_stats.h"

#include <gtest/gtest.h>

namespace eventbus::kafka {
namespace {

// A consumer's statistics, trimmed: a bootstrap entry and a logical broker
// (node id -1, left out), one real broker, and a topic with the internal
// unassigned partition (-1), an assigned one and one whose lag is unknown.
constexpr char kConsumerStats[] = R"({
  "name": "eventbus-sidecar#consumer-3", "type": "consumer", "ts": 1, "time": 2,
  "brokers": {
    "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1,
                                  "nodename": "127.0.0.1:9092", "state": "UP"},
    "GroupCoordinator": {"name": "GroupCoordinator", "nodeid": -1, "state": "UP"},
    "127.0.0.1:9092/1": {
      "name": "127.0.0.1:9092/1", "nodeid": 1, "nodename": "127.0.0.1:9092",
      "source": "learned", "state": "UP", "stateage": 1000,
      "outbuf_cnt": 2, "outbuf_msg_cnt": 0, "waitresp_cnt": 1,
      "tx": 10, "txretries": 3, "req_timeouts": 1, "disconnects": 4,
      "rtt": {"min": 100, "max": 9000, "avg": 1500, "sum": 15000, "p50": 1200,
              "p99": 8000, "cnt": 10},
      "toppars": {"orders-0": {"topic": "orders", "partition": 0}}
    },
    "127.0.0.1:9093/2": {"name": "127.0.0.1:9093/2", "nodeid": 2,
                         "nodename": "127.0.0.1:9093", "state": "DOWN",
                         "rtt": {"avg": 0, "p99": 0}}
  },
  "topics": {
    "orders": {"topic": "orders", "partitions": {
      "-1": {"partition": -1, "consumer_lag": -1},
      "0": {"partition": 0, "desired": true, "hi_offset": 120,
            "committed_offset": 100, "consumer_lag": 20, "consumer_lag_stored": 15},
      "1": {"partition": 1, "desired": true, "hi_offset": -1,
            "committed_offset": -1001, "consumer_lag": -1},
      "2": {"partition": 2, "desired": false, "hi_offset": 500,
            "committed_offset": 239, "consumer_lag": 261}
    }}
  },
  "cgrp": {"state": "up", "rebalance_cnt": 1}
})";

TEST(RdKafkaStatsTest, BrokersAndLagsOfAConsumer) {
  absl::StatusOr<RdKafkaStats> stats = ParseRdKafkaStats(kConsumerStats);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->brokers.size(), 2u);
  const BrokerStats& b = stats->brokers[0];
  EXPECT_EQ(b.name, "127.0.0.1:9092");
  EXPECT_EQ(b.node_id, 1);
  EXPECT_TRUE(b.up);
  EXPECT_DOUBLE_EQ(b.rtt_avg_seconds, 0.0015);
  EXPECT_DOUBLE_EQ(b.rtt_p99_seconds, 0.008);
  EXPECT_EQ(b.outbuf_requests, 2);
  EXPECT_EQ(b.waitresp_requests, 1);
  EXPECT_EQ(b.retries, 3);
  EXPECT_EQ(b.timeouts, 1);
  EXPECT_EQ(b.disconnects, 4);
  EXPECT_EQ(stats->brokers[1].name, "127.0.0.1:9093");
  EXPECT_FALSE(stats->brokers[1].up);
  ASSERT_EQ(stats->lags.size(), 1u);
  EXPECT_EQ(stats->lags[0].topic, "orders");
  EXPECT_EQ(stats->lags[0].partition, 0);
  EXPECT_EQ(stats->lags[0].lag, 20);
}

TEST(RdKafkaStatsTest, WhatIsNotAnObjectIsRefusedAndUnknownShapesSkipped) {
  EXPECT_EQ(ParseRdKafkaStats("[1, 2]").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRdKafkaStats("{\"brokers\": ").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<RdKafkaStats> odd = ParseRdKafkaStats(
      R"({"brokers": [1], "topics": {"t": {"partitions": "none"}}})");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->brokers.empty());
  EXPECT_TRUE(odd->lags.empty());
}

}  // namespace
}  // namespace eventbus::kafka
