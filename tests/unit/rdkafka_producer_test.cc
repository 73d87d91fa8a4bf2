// RdKafkaProducer against librdkafka's in-process mock cluster: the faults a
// real broker can't be made to show on demand (fatal errors, a slow broker, no
// broker at all).

#include "kafka/rdkafka_producer.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kafka/errors.h"
#include "kafka/rdkafka_handles.h"

namespace eventbus::kafka {
namespace {

// A mock cluster with one broker, owned by a throwaway handle.
class MockCluster {
 public:
  MockCluster() {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    cluster_ = rd_kafka_mock_cluster_new(rk_.get(), 1);
    rd_kafka_mock_topic_create(cluster_, "events", 3, 1);
  }
  ~MockCluster() { rd_kafka_mock_cluster_destroy(cluster_); }
  std::string bootstraps() const {
    return rd_kafka_mock_cluster_bootstraps(cluster_);
  }
  rd_kafka_mock_cluster_t* get() { return cluster_; }

 private:
  RdKafkaPtr rk_;
  rd_kafka_mock_cluster_t* cluster_;
};

// Collects delivery results; every callback must run exactly once.
class Results {
 public:
  DeliveryCallback Callback() {
    return [this](DeliveryResult r) {
      absl::MutexLock lock(&mu_);
      results_.push_back(std::move(r));
    };
  }
  // Waits until `n` results arrived or `timeout` passed; returns them.
  std::vector<DeliveryResult> Wait(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return results_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return results_;
  }

 private:
  absl::Mutex mu_;
  std::vector<DeliveryResult> results_ ABSL_GUARDED_BY(mu_);
};

Record MakeRecord(std::string key, std::string value) {
  Record r;
  r.topic = "events";
  r.key = std::move(key);
  r.value = std::move(value);
  r.headers.push_back({"ce_id", "1"});
  return r;
}

std::unique_ptr<RdKafkaProducer> NewProducer(
    const std::string& bootstraps,
    std::map<std::string, std::string> extra = {}) {
  ProducerOptions options;
  options.properties = {{"bootstrap.servers", bootstraps},
                        {"enable.idempotence", "true"},
                        {"acks", "all"},
                        {"linger.ms", "1"}};
  for (auto& [k, v] : extra) options.properties[k] = v;
  options.connect_check_interval = absl::Milliseconds(100);
  auto producer = RdKafkaProducer::Create(std::move(options));
  EXPECT_TRUE(producer.ok()) << producer.status();
  return *std::move(producer);
}

void WaitConnected(const Producer& p) {
  for (int i = 0; i < 100 && !p.Connected(); ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(p.Connected());
}

TEST(RdKafkaProducerTest, RejectsAnUnknownPropertyNamingIt) {
  ProducerOptions options;
  options.properties = {{"bootstrap.servers", "127.0.0.1:1"},
                        {"no.such.property", "1"}};
  auto producer = RdKafkaProducer::Create(std::move(options));
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(producer.status().message(), "no.such.property"))
      << producer.status();
}

TEST(RdKafkaProducerTest, SecretValuesNeverAppearInErrors) {
  EXPECT_TRUE(IsSecretProperty("sasl.password"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.password"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.pem"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_FALSE(IsSecretProperty("sasl.username"));
  EXPECT_FALSE(IsSecretProperty("security.protocol"));
  // A property librdkafka rejects, named like a secret: its value is not
  // repeated; a plain one is.
  absl::StatusOr<RdKafkaConfPtr> conf =
      MakeRdKafkaConf({{"sasl.mechanism", "PLAIN"}, {"x.password", "hunter2"}});
  ASSERT_FALSE(conf.ok());
  EXPECT_TRUE(absl::StrContains(conf.status().message(), "x.password"));
  EXPECT_FALSE(absl::StrContains(conf.status().message(), "hunter2")) << conf.status();
  conf = MakeRdKafkaConf({{"security.protocol", "carrier-pigeon"}});
  ASSERT_FALSE(conf.ok());
  EXPECT_TRUE(absl::StrContains(conf.status().message(), "carrier-pigeon"));
}

TEST(RdKafkaProducerTest, DeliversWithPartitionAndOffset) {
  MockCluster cluster;
  auto producer = NewProducer(cluster.bootstraps());
  WaitConnected(*producer);
  Results results;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(producer->Produce(MakeRecord("k", absl::StrCat(i)),
                                  absl::Now() + absl::Seconds(10),
                                  results.Callback())
                    .ok());
  }
  std::vector<DeliveryResult> got = results.Wait(100, absl::Seconds(10));
  ASSERT_EQ(got.size(), 100u);
  int32_t partition = got[0].partition;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status;
    EXPECT_EQ(got[i].partition, partition);  // one key, one partition
    EXPECT_EQ(got[i].offset, static_cast<int64_t>(i));  // in order
  }
  EXPECT_TRUE(producer->Shutdown(absl::Seconds(5)).ok());
}

TEST(RdKafkaProducerTest, AnAckWithoutAnOffsetSaysMinusOne) {
  // librdkafka reports RD_KAFKA_OFFSET_INVALID (-1001) when it knows a
  // record was stored but not where: with acks=0 always, with acks=all when
  // a later request's ack covers one that timed out. The API says -1.
  MockCluster cluster;
  auto producer = NewProducer(cluster.bootstraps(),
                              {{"enable.idempotence", "false"}, {"acks", "0"}});
  WaitConnected(*producer);
  Results results;
  ASSERT_TRUE(producer->Produce(MakeRecord("k", "v"),
                                absl::Now() + absl::Seconds(10),
                                results.Callback())
                  .ok());
  std::vector<DeliveryResult> got = results.Wait(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].status.ok()) << got[0].status;
  EXPECT_GE(got[0].partition, 0);
  EXPECT_EQ(got[0].offset, -1);
  EXPECT_TRUE(producer->Shutdown(absl::Seconds(5)).ok());
}

TEST(RdKafkaProducerTest, FatalErrorRecreatesTheProducer) {
  MockCluster cluster;
  auto producer = NewProducer(cluster.bootstraps());
  WaitConnected(*producer);
  Results before;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(producer->Produce(MakeRecord(absl::StrCat(i), "x"),
                                  absl::Now() + absl::Seconds(10),
                                  before.Callback())
                    .ok());
  }
  ASSERT_TRUE(producer->TriggerFatalErrorForTesting("test: spurious fatal idempotence error").ok());
  // Every record in flight gets exactly one outcome: delivered, or an error
  // that says it was not written / possibly written.
  std::vector<DeliveryResult> got = before.Wait(50, absl::Seconds(15));
  ASSERT_EQ(got.size(), 50u);
  for (const DeliveryResult& r : got) {
    if (r.status.ok()) continue;
    EXPECT_TRUE(r.status.code() == absl::StatusCode::kUnavailable ||
                IsPossiblyPersisted(r.status))
        << r.status;
  }
  for (int i = 0; i < 100 && producer->recreations() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(producer->recreations(), 1);
  WaitConnected(*producer);
  Results after;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(producer->Produce(MakeRecord("k", "y"),
                                  absl::Now() + absl::Seconds(10),
                                  after.Callback())
                    .ok());
  }
  got = after.Wait(20, absl::Seconds(10));
  ASSERT_EQ(got.size(), 20u);
  for (const DeliveryResult& r : got) EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(producer->Shutdown(absl::Seconds(5)).ok());
}

TEST(RdKafkaProducerTest, NoBrokerFailsUnavailableAtTheDeadline) {
  auto producer = NewProducer("127.0.0.1:1");
  Results results;
  const absl::Time start = absl::Now();
  ASSERT_TRUE(producer->Produce(MakeRecord("k", "v"),
                                start + absl::Milliseconds(500),
                                results.Callback())
                  .ok());
  std::vector<DeliveryResult> got = results.Wait(1, absl::Seconds(5));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(got[0].status.message(),
                                "no Kafka broker reachable"))
      << got[0].status;
  EXPECT_TRUE(absl::StrContains(got[0].status.message(), "127.0.0.1:1"));
  EXPECT_FALSE(producer->Connected());
}

TEST(RdKafkaProducerTest, BoundedWaitingBytesRefuseAtOnce) {
  ProducerOptions options;
  options.properties = {{"bootstrap.servers", "127.0.0.1:1"}};
  options.max_waiting_bytes = 10000;
  auto producer = RdKafkaProducer::Create(std::move(options));
  ASSERT_TRUE(producer.ok());
  Results results;
  absl::Status last;
  int accepted = 0;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    last = (*producer)->Produce(MakeRecord("k", std::string(1000, 'x')),
                                absl::Now() + absl::Seconds(30),
                                results.Callback());
    if (last.ok()) ++accepted;
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_LE(accepted, 10);
  // Shutting down fails what waits, each exactly once.
  EXPECT_EQ((*producer)->Shutdown(absl::Milliseconds(100)).code(),
            absl::StatusCode::kDeadlineExceeded);
  std::vector<DeliveryResult> got = results.Wait(accepted, absl::Seconds(1));
  ASSERT_EQ(got.size(), static_cast<size_t>(accepted));
  for (const DeliveryResult& r : got) {
    EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  }
}

TEST(RdKafkaProducerTest, FullQueueWaitsThenResourceExhausted) {
  MockCluster cluster;
  auto producer = NewProducer(cluster.bootstraps(),
                              {{"queue.buffering.max.messages", "5"},
                               {"linger.ms", "0"}});
  WaitConnected(*producer);
  rd_kafka_mock_broker_set_rtt(cluster.get(), 1, 3000);
  Results results;
  int accepted = 0;
  for (int i = 0; i < 30; ++i) {
    if (producer->Produce(MakeRecord("k", absl::StrCat(i)),
                          absl::Now() + absl::Milliseconds(500),
                          results.Callback())
            .ok()) {
      ++accepted;
    }
  }
  EXPECT_EQ(accepted, 30);  // the rest wait for room, up to the deadline
  std::vector<DeliveryResult> got = results.Wait(25, absl::Seconds(5));
  int exhausted = 0;
  for (const DeliveryResult& r : got) {
    if (r.status.code() == absl::StatusCode::kResourceExhausted) {
      ++exhausted;
      EXPECT_TRUE(absl::StrContains(r.status.message(), "queue stayed full"))
          << r.status;
    }
  }
  EXPECT_EQ(exhausted, 25);
  rd_kafka_mock_broker_set_rtt(cluster.get(), 1, 0);
  got = results.Wait(30, absl::Seconds(15));
  EXPECT_EQ(got.size(), 30u);
  EXPECT_TRUE(producer->Shutdown(absl::Seconds(10)).ok());
}

TEST(RdKafkaProducerTest, RefusesAfterShutdown) {
  MockCluster cluster;
  auto producer = NewProducer(cluster.bootstraps());
  EXPECT_TRUE(producer->Shutdown(absl::Seconds(1)).ok());
  Results results;
  absl::Status s = producer->Produce(MakeRecord("k", "v"),
                                     absl::Now() + absl::Seconds(1),
                                     results.Callback());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(s.message(), "shutting down")) << s;
}

}  // namespace
}  // namespace eventbus::kafka
