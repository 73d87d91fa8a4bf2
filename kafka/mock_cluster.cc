#include "kafka/mock_cluster.h"

#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"

namespace eventbus::kafka {

absl::StatusOr<std::unique_ptr<MockCluster>> MockCluster::Start(int brokers) {
  std::unique_ptr<MockCluster> mock(new MockCluster());
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  rd_kafka_conf_set(conf.get(), "log_level", "3", errstr, sizeof(errstr));
  mock->owner_.reset(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr)));
  if (mock->owner_ == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create the mock cluster's handle: ", errstr));
  }
  conf.release();
  mock->cluster_ = rd_kafka_mock_cluster_new(mock->owner_.get(), brokers);
  if (mock->cluster_ == nullptr) {
    return absl::InternalError("cannot start librdkafka's mock cluster");
  }
  mock->bootstraps_ = rd_kafka_mock_cluster_bootstraps(mock->cluster_);
  return mock;
}

MockCluster::~MockCluster() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
}

}  // namespace eventbus::kafka
