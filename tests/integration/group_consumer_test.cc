// kafka::GroupConsumer on its own (no gRPC) against the real local Kafka:
// what it holds in memory and how often it wakes librdkafka's fetcher, which
// a Subscribe stream cannot show.

#include "kafka/group_consumer.h"

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "kafka/rdkafka_producer.h"
#include "tests/integration/kafka_test_env.h"

namespace eventbus::testing {
namespace {

// Collects deliveries; the test acks them (a sink must not call back).
class CollectingSink : public kafka::DeliverySink {
 public:
  void Deliver(std::vector<kafka::Delivery> deliveries) override {
    absl::MutexLock lock(&mu_);
    for (kafka::Delivery& d : deliveries) received_.push_back(std::move(d));
  }
  void Revoked(const std::vector<kafka::TopicPartition>&) override {}
  uint64_t FirstUnsentId() override { return UINT64_MAX; }
  void Failed(absl::Status status) override {
    ADD_FAILURE() << "the consumer failed: " << status;
  }

  // Waits until `n` deliveries arrived in all (or `timeout`); all so far.
  std::vector<kafka::Delivery> WaitFor(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return received_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return received_;
  }

 private:
  absl::Mutex mu_;
  std::vector<kafka::Delivery> received_ ABSL_GUARDED_BY(mu_);
};

std::vector<kafka::Record> Records(const std::string& topic, int count,
                                   size_t bytes, const std::string& prefix) {
  std::vector<kafka::Record> out;
  for (int i = 0; i < count; ++i) {
    kafka::Record r;
    r.topic = topic;
    r.key = absl::StrCat("key-", i);
    r.value = absl::StrCat(prefix, "-", i);
    if (r.value.size() < bytes) r.value.resize(bytes, '.');
    out.push_back(std::move(r));
  }
  return out;
}

class GroupConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka::ProducerOptions options;
    options.properties["bootstrap.servers"] = KafkaBrokers();
    absl::StatusOr<std::unique_ptr<kafka::RdKafkaProducer>> producer =
        kafka::RdKafkaProducer::Create(options);
    ASSERT_TRUE(producer.ok()) << producer.status();
    dead_letters_ = *std::move(producer);
  }

  std::unique_ptr<kafka::GroupConsumer> Start(kafka::GroupConsumerOptions o) {
    o.properties["bootstrap.servers"] = KafkaBrokers();
    o.properties["log_level"] = "3";
    o.group = group_;
    o.start = kafka::StartPosition::kEarliest;
    absl::StatusOr<std::unique_ptr<kafka::GroupConsumer>> c =
        kafka::GroupConsumer::Start(std::move(o), dead_letters_.get(), &sink_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string group_ = UniqueTopic("gc-group");
  std::unique_ptr<kafka::RdKafkaProducer> dead_letters_;
  CollectingSink sink_;
};

// Partitions that end in transaction markers, and hold aborted records: the
// position a consumer reaches stays below the high watermark for good. The
// consumer delivers the committed records only, and commits past them.
TEST_F(GroupConsumerTest, TransactionalPartitionsDeliverCommittedRecordsOnly) {
  const std::string topic = UniqueTopic("gc-transactions");
  CreateTopic(topic, 2);
  const std::vector<kafka::DeliveryResult> committed = ProduceRecords(
      Records(topic, 20, 100, "committed"), Transaction::kCommit);
  ProduceRecords(Records(topic, 20, 100, "aborted"), Transaction::kAbort);

  kafka::GroupConsumerOptions o;
  o.topics = {topic};
  std::unique_ptr<kafka::GroupConsumer> consumer = Start(std::move(o));
  ASSERT_NE(consumer, nullptr);
  std::vector<kafka::Delivery> got = sink_.WaitFor(20, absl::Seconds(30));
  ASSERT_EQ(got.size(), 20u);
  std::vector<uint64_t> ids;
  std::map<int32_t, int64_t> want;  // partition -> after its last record
  for (const kafka::Delivery& d : got) {
    ids.push_back(d.id);
    EXPECT_TRUE(absl::StartsWith(*d.record->value, "committed-")) << *d.record->value;
  }
  for (const kafka::DeliveryResult& r : committed) {
    want[r.partition] = std::max(want[r.partition], r.offset + 1);
  }
  EXPECT_TRUE(consumer->Ack(ids).empty());

  // Each partition's high watermark is past the last record delivered.
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  for (const auto& [partition, after_last] : want) {
    EXPECT_GT(high.at(partition), after_last) << "partition " << partition;
  }
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(consumer->stats().in_progress_messages, 0);
  EXPECT_TRUE(sink_.WaitFor(21, absl::Milliseconds(200)).size() == 20u)
      << "an aborted record was delivered";
  consumer->Close();
  EXPECT_EQ(CommittedOffsets(group_, topic), want);
}

// Large records against max_outstanding_bytes: besides what is delivered,
// the consumer must not take a large batch from librdkafka into its own
// memory, past the limit; what the client has no room for stays in
// librdkafka's bounded read-ahead.
TEST_F(GroupConsumerTest, LargeRecordsAreNotTakenPastTheByteLimit) {
  const std::string topic = UniqueTopic("gc-large");
  CreateTopic(topic, 1);
  constexpr int kRecords = 60;
  constexpr size_t kBytes = 100 << 10;
  ProduceRecords(Records(topic, kRecords, kBytes, "large"));

  kafka::GroupConsumerOptions o;
  o.topics = {topic};
  o.max_outstanding_bytes = 1 << 20;
  std::unique_ptr<kafka::GroupConsumer> consumer = Start(std::move(o));
  ASSERT_NE(consumer, nullptr);
  std::vector<kafka::Delivery> got = sink_.WaitFor(1, absl::Seconds(30));
  ASSERT_FALSE(got.empty());
  absl::SleepFor(absl::Seconds(2));  // let it take whatever it would
  got = sink_.WaitFor(kRecords, absl::ZeroDuration());
  kafka::DeliveryLedger::Stats s = consumer->stats();
  // 1 MiB holds ten records of 100 KiB; the eleventh crosses the limit.
  EXPECT_LE(got.size(), 11u);
  EXPECT_GE(got.size(), 10u);
  EXPECT_LE(s.waiting, 1) << "records taken from librdkafka past the limit";
  EXPECT_LE(s.in_progress_bytes, static_cast<int64_t>(12 * (kBytes + 64)));

  // Acking everything lets the rest through, all of it.
  std::vector<uint64_t> acked;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (acked.size() < kRecords && absl::Now() < deadline) {
    got = sink_.WaitFor(acked.size() + 1, absl::Seconds(5));
    std::vector<uint64_t> ids;
    for (size_t i = acked.size(); i < got.size(); ++i) ids.push_back(got[i].id);
    EXPECT_TRUE(consumer->Ack(ids).empty());
    acked.insert(acked.end(), ids.begin(), ids.end());
    EXPECT_LE(consumer->stats().waiting, 1);
  }
  EXPECT_EQ(acked.size(), static_cast<size_t>(kRecords));
  consumer->Close();
  EXPECT_EQ(CommittedOffsets(group_, topic), (std::map<int32_t, int64_t>{{0, kRecords}}));
}

}  // namespace
}  // namespace eventbus::testing
