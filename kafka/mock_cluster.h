#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kafka/rdkafka_handles.h"

struct rd_kafka_mock_cluster_s;

namespace eventbus::kafka {

// librdkafka's in-process mock Kafka cluster, for the sidecar's dev mode
// and for tests: brokers on loopback ports inside this process, topics
// created on first use, everything in memory only.
class MockCluster {
 public:
  // Starts a cluster of `brokers` brokers.
  static absl::StatusOr<std::unique_ptr<MockCluster>> Start(int brokers = 1);

  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;
  ~MockCluster();

  // The bootstrap servers, "127.0.0.1:port,...".
  const std::string& bootstrap_servers() const { return bootstraps_; }

 private:
  MockCluster() = default;

  RdKafkaPtr owner_;  // the handle the cluster belongs to
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstraps_;
};

}  // namespace eventbus::kafka
