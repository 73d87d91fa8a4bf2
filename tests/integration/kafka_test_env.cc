#include "tests/integration/kafka_test_env.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <cstdlib>
#include <random>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kafka/rdkafka_handles.h"

namespace eventbus::testing {
namespace {

kafka::RdKafkaPtr NewClient(rd_kafka_type_t type,
                            std::map<std::string, std::string> extra = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  extra["bootstrap.servers"] = KafkaBrokers();
  extra["log_level"] = "3";
  for (const auto& [k, v] : extra) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << k << ": " << errstr;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    ADD_FAILURE() << "rd_kafka_new: " << errstr;
  }
  return kafka::RdKafkaPtr(rk);
}

// The number of partitions of `topic`, or the error that says why there is
// none (yet).
absl::StatusOr<int> PartitionCount(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  kafka::RdKafkaMetadataPtr owned(md);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
    err = md->topics[0].err;
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("metadata for ", topic, ": ", rd_kafka_err2str(err)));
  }
  for (int p = 0; p < md->topics[0].partition_cnt; ++p) {
    if (md->topics[0].partitions[p].leader < 0) {
      return absl::UnavailableError(
          absl::StrCat(topic, " partition ", p, " has no leader yet"));
    }
  }
  return md->topics[0].partition_cnt;
}

// Fails the run before any test when Kafka is not there: nothing is
// skipped silently.
class KafkaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* brokers = std::getenv("TEST_KAFKA_BROKERS");
    ASSERT_TRUE(brokers != nullptr && *brokers != '\0')
        << "TEST_KAFKA_BROKERS is not set: start the local Kafka with "
           "deploy/kafka/kafka.sh start and export its address (deploy/test.sh "
           "does both)";
    kafka::RdKafkaPtr rk = NewClient(RD_KAFKA_PRODUCER);
    ASSERT_TRUE(rk != nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk.get(), 0, nullptr, &md, 15000);
    kafka::RdKafkaMetadataPtr owned(md);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR)
        << "Kafka at " << brokers << " does not answer: " << rd_kafka_err2str(err);
  }
};

const auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new KafkaEnvironment);

}  // namespace

const std::string& KafkaBrokers() {
  static const std::string brokers = [] {
    const char* b = std::getenv("TEST_KAFKA_BROKERS");
    return std::string(b == nullptr ? "" : b);
  }();
  return brokers;
}

std::string UniqueTopic(const std::string& prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  return absl::StrCat(prefix, "-", rng() % 1000000000);
}

void CreateTopic(const std::string& topic, int partitions) {
  kafka::RdKafkaPtr rk = NewClient(RD_KAFKA_PRODUCER);
  char errstr[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1,
                                                  errstr, sizeof(errstr));
  ASSERT_NE(nt, nullptr) << errstr;
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  ASSERT_NE(ev, nullptr) << "CreateTopics timed out";
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(rd_kafka_topic_result_error(results[0]), RD_KAFKA_RESP_ERR_NO_ERROR)
      << topic << ": " << rd_kafka_topic_result_error_string(results[0]);
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  // Wait until the topic's metadata shows every partition with a leader.
  absl::StatusOr<int> count;
  for (int i = 0; i < 100; ++i) {
    count = PartitionCount(rk.get(), topic);
    if (count.ok() && *count == partitions) return;
    absl::SleepFor(absl::Milliseconds(100));
  }
  FAIL() << "topic " << topic << " did not appear: " << count.status();
}

std::optional<std::string> ConsumedRecord::Header(const std::string& name) const {
  for (const kafka::Header& h : headers) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

kafka::Record ConsumedRecord::AsRecord(const std::string& topic) const {
  kafka::Record r;
  r.topic = topic;
  r.key = key;
  r.value = value.value_or("");
  r.headers = headers;
  return r;
}

std::map<int32_t, int64_t> HighWatermarks(const std::string& topic) {
  kafka::RdKafkaPtr rk = NewClient(RD_KAFKA_PRODUCER);
  std::map<int32_t, int64_t> out;
  absl::StatusOr<int> n = PartitionCount(rk.get(), topic);
  EXPECT_TRUE(n.ok()) << n.status();
  for (int p = 0; p < n.value_or(0); ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        rk.get(), topic.c_str(), p, &low, &high, 10000);
    EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    out[p] = high;
  }
  return out;
}

std::vector<ConsumedRecord> ReadTopic(const std::string& topic,
                                      absl::Duration timeout) {
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  kafka::RdKafkaPtr rk = NewClient(
      RD_KAFKA_CONSUMER, {{"group.id", "eventbus-test-reader"},
                          {"enable.auto.commit", "false"},
                          {"enable.partition.eof", "false"}});
  kafka::RdKafkaTopicPartitionListPtr list(
      rd_kafka_topic_partition_list_new(static_cast<int>(high.size())));
  size_t expected = 0;
  for (const auto& [p, h] : high) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    expected += static_cast<size_t>(h);
  }
  EXPECT_EQ(rd_kafka_assign(rk.get(), list.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::map<int32_t, std::vector<ConsumedRecord>> by_partition;
  size_t got = 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (got < expected && absl::Now() < deadline) {
    kafka::RdKafkaMessagePtr msg(rd_kafka_consumer_poll(rk.get(), 200));
    if (msg == nullptr) continue;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ADD_FAILURE() << "consume: " << rd_kafka_message_errstr(msg.get());
      continue;
    }
    if (msg->offset >= high.at(msg->partition)) continue;
    ConsumedRecord r;
    r.partition = msg->partition;
    r.offset = msg->offset;
    if (msg->key != nullptr) {
      r.key = std::string(static_cast<const char*>(msg->key), msg->key_len);
    }
    if (msg->payload != nullptr) {
      r.value = std::string(static_cast<const char*>(msg->payload), msg->len);
    }
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(msg.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0;
           rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
           RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        r.headers.push_back(
            {name, value ? std::string(static_cast<const char*>(value), size) : ""});
      }
    }
    rd_kafka_timestamp_type_t tstype;
    r.timestamp_ms = rd_kafka_message_timestamp(msg.get(), &tstype);
    by_partition[r.partition].push_back(std::move(r));
    ++got;
  }
  EXPECT_EQ(got, expected) << "read " << got << " of " << expected
                           << " records of " << topic;
  rd_kafka_consumer_close(rk.get());
  std::vector<ConsumedRecord> out;
  for (auto& [p, records] : by_partition) {
    for (ConsumedRecord& r : records) out.push_back(std::move(r));
  }
  return out;
}

std::map<int32_t, int64_t> CommittedOffsets(const std::string& group,
                                            const std::string& topic) {
  kafka::RdKafkaPtr rk = NewClient(
      RD_KAFKA_CONSUMER, {{"group.id", group},
                          {"enable.auto.commit", "false"},
                          {"enable.auto.offset.store", "false"}});
  std::map<int32_t, int64_t> out;
  if (rk == nullptr) return out;
  absl::StatusOr<int> n = PartitionCount(rk.get(), topic);
  EXPECT_TRUE(n.ok()) << n.status();
  if (!n.ok()) return out;
  kafka::RdKafkaTopicPartitionListPtr list(rd_kafka_topic_partition_list_new(*n));
  for (int p = 0; p < *n; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  }
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  // The group coordinator may still be loading right after a rebalance;
  // retry a few times on retriable errors.
  for (int attempt = 0; attempt < 20; ++attempt) {
    err = rd_kafka_committed(rk.get(), list.get(), 10000);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR)
      << "committed offsets of " << group << " on " << topic << ": "
      << rd_kafka_err2str(err);
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    EXPECT_EQ(tp.err, RD_KAFKA_RESP_ERR_NO_ERROR)
        << topic << " [" << tp.partition << "]: " << rd_kafka_err2str(tp.err);
    out[tp.partition] = tp.offset;
  }
  // A consumer that never subscribed leaves no group behind; close anyway so
  // destroy does not wait.
  rd_kafka_consumer_close(rk.get());
  return out;
}

void CommitOffsets(const std::string& group, const std::string& topic,
                   const std::map<int32_t, int64_t>& offsets) {
  kafka::RdKafkaPtr rk = NewClient(
      RD_KAFKA_CONSUMER, {{"group.id", group},
                          {"enable.auto.commit", "false"},
                          {"enable.auto.offset.store", "false"}});
  ASSERT_NE(rk, nullptr);
  kafka::RdKafkaTopicPartitionListPtr list(
      rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& [partition, offset] : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)
        ->offset = offset;
  }
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int attempt = 0; attempt < 20; ++attempt) {
    err = rd_kafka_commit(rk.get(), list.get(), 0);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR)
      << "commit of " << group << " on " << topic << ": " << rd_kafka_err2str(err);
  rd_kafka_consumer_close(rk.get());
}

namespace {

struct ProduceState {
  std::vector<kafka::DeliveryResult>* results;
  size_t done = 0;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg,
                void* opaque) noexcept {
  auto* state = static_cast<ProduceState*>(opaque);
  const size_t i = reinterpret_cast<uintptr_t>(msg->_private);
  kafka::DeliveryResult& r = (*state->results)[i];
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    r.status = absl::OkStatus();
    r.partition = msg->partition;
    r.offset = msg->offset;
  } else {
    r.status = absl::InternalError(rd_kafka_err2str(msg->err));
  }
  ++state->done;
}

}  // namespace

std::vector<kafka::DeliveryResult> ProduceRecords(
    const std::vector<kafka::Record>& records, Transaction transaction) {
  std::vector<kafka::DeliveryResult> results(records.size());
  for (kafka::DeliveryResult& r : results) {
    r.status = absl::UnknownError("no delivery report");
  }
  ProduceState state{&results};
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", KafkaBrokers()},
      {"log_level", "3"},
      {"acks", "all"},
      {"enable.idempotence", "true"},
      // As the sidecar: with more than one request in flight librdkafka can
      // report events of a freshly created topic delivered that were never
      // stored (docs/reliability.md). Seen here: a churn test's event
      // missing from Kafka.
      {"max.in.flight.requests.per.connection", "1"},
      {"linger.ms", "5"},
      {"queue.buffering.max.messages", "1000000"},
      {"queue.buffering.max.kbytes", "1048576"},
      {"message.timeout.ms", "60000"},
  };
  if (transaction != Transaction::kNone) {
    props["transactional.id"] = UniqueTopic("tx");
  }
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << k << ": " << errstr;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  rd_kafka_conf_set_opaque(conf, &state);
  kafka::RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    ADD_FAILURE() << "rd_kafka_new: " << errstr;
    return results;
  }
  // Fails the test when a transaction call returns an error.
  auto check = [](const char* what, rd_kafka_error_t* error) {
    if (error == nullptr) return;
    ADD_FAILURE() << what << ": " << rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
  };
  if (transaction != Transaction::kNone) {
    check("init_transactions", rd_kafka_init_transactions(rk.get(), 30000));
    check("begin_transaction", rd_kafka_begin_transaction(rk.get()));
  }
  for (size_t i = 0; i < records.size(); ++i) {
    const kafka::Record& rec = records[i];
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(rec.headers.size());
    for (const kafka::Header& h : rec.headers) {
      rd_kafka_header_add(hdrs, h.name.data(), static_cast<ssize_t>(h.name.size()),
                          h.value.data(), static_cast<ssize_t>(h.value.size()));
    }
    rd_kafka_resp_err_t err;
    for (;;) {
      err = rd_kafka_producev(
          rk.get(), RD_KAFKA_V_TOPIC(rec.topic.c_str()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY((rec.key ? rec.key->data() : nullptr),
                         (rec.key ? rec.key->size() : 0)),
          RD_KAFKA_V_VALUE(const_cast<char*>(rec.value.data()), rec.value.size()),
          RD_KAFKA_V_HEADERS(hdrs),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(i))),
          RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      rd_kafka_poll(rk.get(), 100);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(hdrs);
      results[i].status = absl::InternalError(rd_kafka_err2str(err));
      ++state.done;
    }
    rd_kafka_poll(rk.get(), 0);
  }
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(rk.get(), 60000);
  EXPECT_EQ(flushed, RD_KAFKA_RESP_ERR_NO_ERROR)
      << "flush: " << rd_kafka_err2str(flushed);
  rd_kafka_poll(rk.get(), 0);
  if (transaction == Transaction::kCommit) {
    check("commit_transaction", rd_kafka_commit_transaction(rk.get(), 30000));
  } else if (transaction == Transaction::kAbort) {
    check("abort_transaction", rd_kafka_abort_transaction(rk.get(), 30000));
  }
  EXPECT_EQ(state.done, records.size());
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok())
        << "record " << i << " to " << records[i].topic << ": " << results[i].status;
  }
  return results;
}

void ProduceRaw(const std::string& topic, std::optional<std::string> key,
                std::string value, std::vector<kafka::Header> headers) {
  kafka::Record rec;
  rec.topic = topic;
  rec.key = std::move(key);
  rec.value = std::move(value);
  rec.headers = std::move(headers);
  ProduceRecords({rec});
}

}  // namespace eventbus::testing
