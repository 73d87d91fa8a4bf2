// The sidecar's producer defaults against librdkafka's mock cluster with an
// injected leader error: every event reported delivered must be in Kafka.
// With more than one request in flight this fails (events 0 and 1
// "implicitly acked" though never stored): with librdkafka 2.0.2 and still
// with 2.8. The default of max.in.flight.requests.per.connection=1 is what
// makes it pass; a second test shows the loss with 5 in flight, so that the
// day librdkafka fixes it, it fails and the workaround can go.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kafka/rdkafka_handles.h"
#include "kafka/rdkafka_producer.h"
#include "server/config.h"
#include "server/sidecar.h"

namespace eventbus::server {
namespace {

struct Acked {
  absl::Mutex mu;
  std::set<std::string> values ABSL_GUARDED_BY(mu);
  int done ABSL_GUARDED_BY(mu) = 0;
};

// Every value in partition 0 of `topic`, read from the mock cluster.
std::set<std::string> ReadAll(const std::string& bootstraps,
                              const std::string& topic, size_t expect) {
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", "reader", errstr, sizeof(errstr));
  kafka::RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
  kafka::RdKafkaTopicPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk.get(), list.get());
  std::set<std::string> out;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (out.size() < expect && absl::Now() < deadline) {
    kafka::RdKafkaMessagePtr msg(rd_kafka_consumer_poll(rk.get(), 100));
    if (msg == nullptr || msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    out.emplace(static_cast<const char*>(msg->payload), msg->len);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

// Publishes 50 events through RdKafkaProducer with the sidecar's producer
// defaults (plus `extra`) while the first two produce requests fail with
// NOT_LEADER_FOR_PARTITION. Returns the events reported delivered that are
// not in Kafka.
std::set<std::string> AckedButMissingAfterALeaderError(
    const std::map<std::string, std::string>& extra) {
  char errstr[256];
  kafka::RdKafkaPtr owner(rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(),
                                       errstr, sizeof(errstr)));
  rd_kafka_mock_cluster_t* mock = rd_kafka_mock_cluster_new(owner.get(), 1);
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(mock);
  rd_kafka_mock_topic_create(mock, "events", 1, 1);

  Config config;
  config.brokers = bootstraps;
  config.producer_properties["linger.ms"] = "0";
  config.producer_properties["batch.num.messages"] = "1";
  for (const auto& [k, v] : extra) config.producer_properties[k] = v;
  kafka::ProducerOptions options;
  options.properties = ProducerProperties(config);
  options.connect_check_interval = absl::Milliseconds(100);
  auto producer = kafka::RdKafkaProducer::Create(std::move(options));
  EXPECT_TRUE(producer.ok()) << producer.status();
  if (!producer.ok()) return {};
  for (int i = 0; i < 100 && !(*producer)->Connected(); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  // The first produce requests fail as they do while a leader is set up.
  constexpr int16_t kProduceApiKey = 0;  // Kafka protocol ApiKey of Produce
  rd_kafka_mock_push_request_errors(mock, kProduceApiKey, 2,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  Acked acked;
  constexpr int kEvents = 50;
  for (int i = 0; i < kEvents; ++i) {
    kafka::Record r;
    r.topic = "events";
    r.key = "k";
    r.value = absl::StrCat("v", i);
    EXPECT_TRUE((*producer)
                    ->Produce(r, absl::Now() + absl::Seconds(20),
                              [&acked, value = r.value](kafka::DeliveryResult d) {
                                absl::MutexLock lock(&acked.mu);
                                if (d.status.ok()) acked.values.insert(value);
                                ++acked.done;
                              })
                    .ok());
  }
  {
    absl::MutexLock lock(&acked.mu);
    auto all = [&acked]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(acked.mu) {
      return acked.done == kEvents;
    };
    EXPECT_TRUE(acked.mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30)));
  }
  EXPECT_TRUE((*producer)->Shutdown(absl::Seconds(5)).ok());
  std::set<std::string> acked_values;
  {
    absl::MutexLock lock(&acked.mu);
    acked_values = acked.values;
  }
  const std::set<std::string> stored = ReadAll(bootstraps, "events", acked_values.size());
  std::set<std::string> missing;
  for (const std::string& v : acked_values) {
    if (!stored.count(v)) missing.insert(v);
  }
  EXPECT_EQ(acked_values.size(), static_cast<size_t>(kEvents));
  producer->reset();
  rd_kafka_mock_cluster_destroy(mock);
  return missing;
}

TEST(ProducerDefaultsTest, NothingAckedIsMissingAfterALeaderError) {
  for (const std::string& v : AckedButMissingAfterALeaderError({})) {
    ADD_FAILURE() << v << " was reported delivered but is not in Kafka";
  }
}

// The reason for max.in.flight.requests.per.connection=1. If this fails,
// librdkafka no longer acks events it never stored, and the default can go
// (see docs/reliability.md).
TEST(ProducerDefaultsTest, LibrdkafkaStillAcksLostEventsWithFiveInFlight) {
  // The loss depends on how requests and the injected errors interleave
  // (it showed in 4 of 5 runs): a few tries.
  std::set<std::string> missing;
  for (int attempt = 0; attempt < 5 && missing.empty(); ++attempt) {
    missing = AckedButMissingAfterALeaderError(
        {{"max.in.flight.requests.per.connection", "5"}});
  }
  EXPECT_FALSE(missing.empty())
      << "with 5 requests in flight every acked event is in Kafka: librdkafka "
      << rd_kafka_version_str()
      << " fixed the implicit-ack loss; max.in.flight.requests.per.connection=1 "
         "may go";
  std::cerr << "librdkafka " << rd_kafka_version_str() << ", 5 in flight: "
            << missing.size() << " events acked but not in Kafka\n";
}

}  // namespace
}  // namespace eventbus::server
