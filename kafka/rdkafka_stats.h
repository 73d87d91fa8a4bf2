#pragma once

// The parts of librdkafka's statistics (the JSON its stats callback gets
// every statistics.interval.ms; see librdkafka's STATISTICS.md) that eventbus
// exports as metrics. Plain types: no librdkafka here.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace eventbus::kafka {

// One broker as a client sees it.
struct BrokerStats {
  std::string name;  // "host:port", the broker's advertised address
  int32_t node_id = -1;
  bool up = false;  // state "UP"
  // Request round-trip time over the last interval; 0 without requests.
  double rtt_avg_seconds = 0;
  double rtt_p99_seconds = 0;
  int64_t outbuf_requests = 0;   // waiting to be sent
  int64_t waitresp_requests = 0;  // sent, waiting for a response
  // Totals since the client started.
  int64_t retries = 0;     // requests sent again
  int64_t timeouts = 0;    // requests that timed out
  int64_t disconnects = 0;
};

// A partition a consumer fetches, with its lag: the high watermark minus
// the group's committed offset (librdkafka's consumer_lag).
struct PartitionLag {
  std::string topic;
  int32_t partition = -1;
  int64_t lag = 0;
};

struct RdKafkaStats {
  std::vector<BrokerStats> brokers;  // real brokers only (node id >= 0)
  // Partitions whose lag is known (consumers only).
  std::vector<PartitionLag> lags;
};

// Parses one statistics JSON document. INVALID_ARGUMENT when it is not a
// JSON object; members it does not know or cannot read are skipped.
absl::StatusOr<RdKafkaStats> ParseRdKafkaStats(absl::string_view json);

}  // namespace eventbus::kafka
