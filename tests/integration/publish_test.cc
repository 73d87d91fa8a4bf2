// Publish, PublishBatch and PublishStream against the real local Kafka. Every
// check reads Kafka directly with a plain librdkafka consumer.

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/event_codec.h"
#include "tests/integration/sidecar_fixture.h"

namespace eventbus::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;

v1::PublishRequest MakeRequest(const std::string& topic, const std::string& key,
                               const std::string& data) {
  v1::PublishRequest req;
  req.set_topic(topic);
  req.set_key(key);
  req.set_correlation_id(data);
  v1::Event* e = req.mutable_event();
  e->set_type("com.example.test");
  e->set_data(data);
  return req;
}

// Data is "<key>/<sequence>"; returns the sequence.
int64_t Sequence(const std::string& data) {
  std::vector<std::string> parts = absl::StrSplit(data, '/');
  int64_t n = -1;
  EXPECT_EQ(parts.size(), 2u) << data;
  if (parts.size() == 2) EXPECT_TRUE(absl::SimpleAtoi(parts[1], &n)) << data;
  return n;
}

// Checks that `records` hold each id in `acked` exactly once, that each
// record's key is the one in its data, and that per key the sequence
// numbers rise in offset order.
void ExpectExactlyOnceInOrder(const std::vector<ConsumedRecord>& records,
                              const std::map<std::string, std::string>& acked) {
  std::map<std::string, int> seen;
  std::map<std::string, std::pair<int32_t, int64_t>> last_by_key;
  for (const ConsumedRecord& r : records) {
    std::optional<std::string> id = r.Header("ce_id");
    ASSERT_TRUE(id.has_value());
    ++seen[*id];
    ASSERT_TRUE(r.key.has_value());
    ASSERT_TRUE(r.value.has_value());
    EXPECT_TRUE(absl::StartsWith(*r.value, *r.key + "/")) << *r.value;
    const int64_t seq = Sequence(*r.value);
    auto it = last_by_key.find(*r.key);
    if (it != last_by_key.end()) {
      EXPECT_EQ(it->second.first, r.partition) << "key " << *r.key;
      EXPECT_LT(it->second.second, seq) << "key " << *r.key << " out of order";
    }
    last_by_key[*r.key] = {r.partition, seq};
  }
  for (const auto& [id, data] : acked) {
    EXPECT_EQ(seen[id], 1) << "acked event " << id << " (" << data
                           << ") found " << seen[id] << " times";
  }
}

class PublishTest : public SidecarFixture {};

TEST_F(PublishTest, HealthIsServingWhenKafkaAnswers) {
  StartSidecar();
  WaitServing();
  EXPECT_EQ(Health("eventbus.v1.EventBus"), HealthCheckResponse::SERVING);
}

TEST_F(PublishTest, PublishWritesACloudEventsBinaryModeRecord) {
  const std::string topic = UniqueTopic("publish-binary");
  CreateTopic(topic, 3);
  StartSidecar();
  v1::PublishRequest req;
  req.set_topic(topic);
  req.set_key("order-42");
  req.set_correlation_id("c-1");
  v1::Event* e = req.mutable_event();
  e->set_id("evt-1");
  e->set_source("//orders/eu-1");
  e->set_type("com.example.order.created");
  e->set_subject("orders/42");
  e->mutable_time()->set_seconds(1714566896);
  e->mutable_time()->set_nanos(789000000);
  e->set_data_content_type("application/json");
  e->set_data_schema("https://example.com/order.json");
  e->set_data(R"({"id":42})");
  (*e->mutable_extensions())["traceparent"] = "00-abc-def-01";
  (*e->mutable_extensions())["tenant"] = "acme";

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::PublishResponse resp;
  grpc::Status s = stub_->Publish(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(resp.correlation_id(), "c-1");
  EXPECT_EQ(resp.event_id(), "evt-1");
  EXPECT_EQ(resp.topic(), topic);
  EXPECT_EQ(resp.status().code(), 0);

  std::vector<ConsumedRecord> records = ReadTopic(topic);
  ASSERT_EQ(records.size(), 1u);
  const ConsumedRecord& r = records[0];
  EXPECT_EQ(r.partition, resp.partition());
  EXPECT_EQ(r.offset, resp.offset());
  EXPECT_EQ(r.key, "order-42");
  EXPECT_EQ(r.value, R"({"id":42})");
  std::vector<kafka::Header> want = {
      {"ce_specversion", "1.0"},
      {"ce_id", "evt-1"},
      {"ce_source", "//orders/eu-1"},
      {"ce_type", "com.example.order.created"},
      {"ce_time", "2024-05-01T12:34:56.789Z"},
      {"ce_subject", "orders/42"},
      {"ce_dataschema", "https://example.com/order.json"},
      {"ce_tenant", "acme"},
      {"ce_traceparent", "00-abc-def-01"},
      {"content-type", "application/json"},
  };
  EXPECT_EQ(r.headers, want);

  // What a CloudEvents reader decodes from the record is what was published.
  e->set_spec_version("1.0");
  absl::StatusOr<v1::Event> decoded = server::DecodeRecord(r.AsRecord(topic));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*decoded, *e))
      << decoded->DebugString() << " vs " << e->DebugString();
}

TEST_F(PublishTest, PublishFillsInIdTimeSourceAndUsesPartitionKeyExtension) {
  const std::string topic = UniqueTopic("publish-defaults");
  CreateTopic(topic, 3);
  StartSidecar();
  v1::PublishRequest req;
  req.set_topic(topic);
  req.mutable_event()->set_type("com.example.ping");
  (*req.mutable_event()->mutable_extensions())["partitionkey"] = "pk-7";
  grpc::ClientContext ctx;
  v1::PublishResponse resp;
  const absl::Time before = absl::Now();
  grpc::Status s = stub_->Publish(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.event_id().size(), 36u) << resp.event_id();
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].key, "pk-7");
  EXPECT_EQ(records[0].Header("ce_id"), resp.event_id());
  EXPECT_EQ(records[0].Header("ce_source"), "//eventbus/test");
  EXPECT_EQ(records[0].Header("ce_specversion"), "1.0");
  EXPECT_EQ(records[0].Header("ce_partitionkey"), "pk-7");
  EXPECT_EQ(records[0].Header("content-type"), std::nullopt);
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, *records[0].Header("ce_time"), &t, &err)) << err;
  EXPECT_GE(t, before - absl::Seconds(1));
  EXPECT_LE(t, absl::Now());
}

TEST_F(PublishTest, UnaryPublishOfThousandsOverManyKeysIsExactlyOnceInOrder) {
  const std::string topic = UniqueTopic("publish-unary");
  CreateTopic(topic, 6);
  StartSidecar();
  constexpr int kThreads = 8, kKeysPerThread = 5, kPerKey = 60;
  std::vector<std::map<std::string, std::string>> acked(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerKey; ++i) {
        for (int k = 0; k < kKeysPerThread; ++k) {
          const std::string key = absl::StrCat("key-", t, "-", k);
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
          v1::PublishResponse resp;
          grpc::Status s = stub_->Publish(
              &ctx, MakeRequest(topic, key, absl::StrCat(key, "/", i)), &resp);
          ASSERT_TRUE(s.ok()) << s.error_message();
          acked[t][resp.event_id()] = absl::StrCat(key, "/", i);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::map<std::string, std::string> all;
  for (auto& m : acked) all.insert(m.begin(), m.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kKeysPerThread * kPerKey));
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  EXPECT_EQ(records.size(), all.size());
  ExpectExactlyOnceInOrder(records, all);
}

// Streams `events` events over `keys` keys in batches of `batch`; returns
// correlation id -> response. The stream must end OK.
std::map<std::string, v1::PublishResponse> StreamEvents(
    v1::EventBus::Stub* stub, const std::string& topic, int events, int keys,
    int batch) {
  grpc::ClientContext ctx;
  auto stream = stub->PublishStream(&ctx);
  std::map<std::string, v1::PublishResponse> results;
  std::thread reader([&] {
    v1::PublishBatchResponse resp;
    while (stream->Read(&resp)) {
      for (const v1::PublishResponse& r : resp.responses()) {
        EXPECT_TRUE(results.emplace(r.correlation_id(), r).second)
            << "two results for " << r.correlation_id();
      }
    }
  });
  std::vector<int> next(keys, 0);
  for (int sent = 0; sent < events;) {
    v1::PublishBatchRequest req;
    for (int i = 0; i < batch && sent < events; ++i, ++sent) {
      const int k = sent % keys;
      const std::string key = absl::StrCat("key-", k);
      *req.add_requests() =
          MakeRequest(topic, key, absl::StrCat(key, "/", next[k]++));
    }
    if (!stream->Write(req)) break;
  }
  stream->WritesDone();
  reader.join();
  grpc::Status s = stream->Finish();
  EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  return results;
}

TEST_F(PublishTest, PublishStreamOfTwentyThousandEventsIsExactlyOnceInOrderPerKey) {
  const std::string topic = UniqueTopic("publish-stream");
  CreateTopic(topic, 6);
  StartSidecar([](server::Config& c) { c.stream_max_in_flight = 2000; });
  constexpr int kEvents = 20000;
  std::map<std::string, v1::PublishResponse> results =
      StreamEvents(stub_.get(), topic, kEvents, 97, 100);
  ASSERT_EQ(results.size(), static_cast<size_t>(kEvents));
  std::map<std::string, std::string> acked;
  std::map<std::pair<int32_t, int64_t>, std::string> position;
  for (const auto& [corr, r] : results) {
    ASSERT_EQ(r.status().code(), 0) << r.status().message();
    acked[r.event_id()] = corr;
    position[{r.partition(), r.offset()}] = r.event_id();
  }
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  EXPECT_EQ(records.size(), static_cast<size_t>(kEvents));
  ExpectExactlyOnceInOrder(records, acked);
  for (const ConsumedRecord& r : records) {
    EXPECT_EQ(position[std::make_pair(r.partition, r.offset)], r.Header("ce_id").value_or(""))
        << "result partition/offset does not match the record";
  }
}

TEST_F(PublishTest, PublishBatchReturnsOneResultPerRequestInOrder) {
  const std::string topic = UniqueTopic("publish-batch");
  CreateTopic(topic, 3);
  StartSidecar();
  v1::PublishBatchRequest req;
  for (int i = 0; i < 10; ++i) {
    *req.add_requests() = MakeRequest(topic, "k", absl::StrCat("k/", i));
  }
  req.mutable_requests(4)->mutable_event()->clear_type();
  req.mutable_requests(7)->set_topic("no spaces allowed");
  grpc::ClientContext ctx;
  v1::PublishBatchResponse resp;
  grpc::Status s = stub_->PublishBatch(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.responses_size(), 10);
  std::map<std::string, std::string> acked;
  for (int i = 0; i < 10; ++i) {
    const v1::PublishResponse& r = resp.responses(i);
    EXPECT_EQ(r.correlation_id(), absl::StrCat("k/", i));
    if (i == 4) {
      EXPECT_EQ(r.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_TRUE(absl::StrContains(r.status().message(), "event.type"));
    } else if (i == 7) {
      EXPECT_EQ(r.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_TRUE(absl::StrContains(r.status().message(), "topic"));
    } else {
      EXPECT_EQ(r.status().code(), 0) << r.status().message();
      acked[r.event_id()] = r.correlation_id();
    }
  }
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  EXPECT_EQ(records.size(), 8u);
  ExpectExactlyOnceInOrder(records, acked);
}

TEST_F(PublishTest, StructuredModeTopicWritesCloudEventsJson) {
  const std::string topic = UniqueTopic("publish-structured");
  CreateTopic(topic, 1);
  StartSidecar([&](server::Config& c) { c.structured_topics = {topic}; });
  v1::PublishRequest req = MakeRequest(topic, "k", R"({"a":1})");
  req.mutable_event()->set_id("s-1");
  req.mutable_event()->set_data_content_type("application/json");
  grpc::ClientContext ctx;
  v1::PublishResponse resp;
  ASSERT_TRUE(stub_->Publish(&ctx, req, &resp).ok());
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].Header("content-type"),
            "application/cloudevents+json; charset=UTF-8");
  EXPECT_EQ(records[0].Header("ce_id"), std::nullopt);
  ASSERT_TRUE(records[0].value.has_value());
  EXPECT_TRUE(absl::StrContains(*records[0].value, R"("data":{"a":1})"))
      << *records[0].value;
  EXPECT_TRUE(absl::StrContains(*records[0].value, R"("id":"s-1")"));
  absl::StatusOr<v1::Event> decoded =
      server::DecodeRecord(records[0].AsRecord(topic));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->id(), "s-1");
  EXPECT_EQ(decoded->type(), "com.example.test");
  EXPECT_EQ(decoded->data(), R"({"a":1})");
}

struct BadInput {
  std::string name;
  std::function<void(v1::PublishRequest&)> edit;
  grpc::StatusCode code;
  std::string message_part;
};

TEST_F(PublishTest, BadInputGetsAClearStatusAndTheSidecarStaysUp) {
  const std::string topic = UniqueTopic("publish-bad");
  CreateTopic(topic, 1);
  StartSidecar([](server::Config& c) { c.max_event_bytes = 100000; });
  WaitServing();
  const std::vector<BadInput> cases = {
      {"missing type", [](auto& r) { r.mutable_event()->clear_type(); },
       grpc::StatusCode::INVALID_ARGUMENT, "event.type"},
      {"missing event", [](auto& r) { r.clear_event(); },
       grpc::StatusCode::INVALID_ARGUMENT, "event"},
      {"empty topic", [](auto& r) { r.set_topic(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "topic"},
      {"invalid topic", [](auto& r) { r.set_topic("orders/eu"); },
       grpc::StatusCode::INVALID_ARGUMENT, "topic"},
      {"topic too long", [](auto& r) { r.set_topic(std::string(250, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT, "249"},
      {"spec version", [](auto& r) { r.mutable_event()->set_spec_version("0.3"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec_version"},
      {"extension name",
       [](auto& r) { (*r.mutable_event()->mutable_extensions())["Bad-Name"] = "x"; },
       grpc::StatusCode::INVALID_ARGUMENT, "Bad-Name"},
      {"content type", [](auto& r) { r.mutable_event()->set_data_content_type("json"); },
       grpc::StatusCode::INVALID_ARGUMENT, "data_content_type"},
      // Consumers would take the data for a structured-mode event.
      {"structured content type on a binary topic",
       [](auto& r) {
         r.mutable_event()->set_data_content_type("application/cloudevents+json");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "events.structured_topics"},
      {"too large", [](auto& r) { r.mutable_event()->set_data(std::string(200000, 'x')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "limits.max_event_bytes"},
      {"larger than gRPC accepts",
       [](auto& r) { r.mutable_event()->set_data(std::string(5 << 20, 'x')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
  };
  for (const BadInput& c : cases) {
    v1::PublishRequest req = MakeRequest(topic, "k", "k/0");
    c.edit(req);
    grpc::ClientContext ctx;
    v1::PublishResponse resp;
    grpc::Status s = stub_->Publish(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), c.message_part))
        << c.name << ": " << s.error_message();
  }
  {
    // DEADLINE_EXCEEDED leaves the outcome open: gRPC sends the server a
    // deadline rounded up to a millisecond, so the event may still be
    // written (it is "deadline", not "refused").
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(1));
    v1::PublishResponse resp;
    grpc::Status s = stub_->Publish(&ctx, MakeRequest(topic, "k", "deadline"), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  }
  // Nothing bad was written, and the sidecar still publishes.
  grpc::ClientContext ctx;
  v1::PublishResponse resp;
  grpc::Status s = stub_->Publish(&ctx, MakeRequest(topic, "k", "k/1"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  std::map<std::string, int> count;
  for (const ConsumedRecord& r : records) ++count[r.value.value_or("null")];
  EXPECT_EQ(count["k/1"], 1);
  EXPECT_LE(count["deadline"], 1);
  EXPECT_EQ(records.size(), static_cast<size_t>(count["k/1"] + count["deadline"]))
      << "a refused event was written";
}

TEST_F(PublishTest, BadEventInAStreamGetsItsOwnStatusAndTheStreamGoesOn) {
  const std::string topic = UniqueTopic("publish-stream-bad");
  CreateTopic(topic, 1);
  StartSidecar();
  grpc::ClientContext ctx;
  auto stream = stub_->PublishStream(&ctx);
  for (int i = 0; i < 3; ++i) {
    v1::PublishBatchRequest req;
    *req.add_requests() = MakeRequest(topic, "k", absl::StrCat("k/", i));
    if (i == 1) req.mutable_requests(0)->mutable_event()->clear_type();
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  std::map<std::string, v1::PublishResponse> results;
  v1::PublishBatchResponse resp;
  while (stream->Read(&resp)) {
    for (const auto& r : resp.responses()) results[r.correlation_id()] = r;
  }
  grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results["k/0"].status().code(), 0);
  EXPECT_EQ(results["k/1"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(results["k/1"].status().message(), "event.type"));
  EXPECT_EQ(results["k/2"].status().code(), 0);
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].value, "k/0");
  EXPECT_EQ(records[1].value, "k/2");
}

TEST_F(PublishTest, MissingTopicIsNotFoundWhenAutoCreateIsOff) {
  StartSidecar([](server::Config& c) {
    c.producer_properties["allow.auto.create.topics"] = "false";
  });
  WaitServing();
  const std::string topic = UniqueTopic("publish-missing");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::PublishResponse resp;
  grpc::Status s = stub_->Publish(&ctx, MakeRequest(topic, "k", "k/0"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), topic)) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "does not exist"))
      << s.error_message();
}

TEST_F(PublishTest, NoBrokerIsUnavailableWithinTheDeadlineAndNotServing) {
  StartSidecar([](server::Config& c) { c.brokers = "127.0.0.1:1"; });
  EXPECT_EQ(Health(), HealthCheckResponse::NOT_SERVING);
  // Alive all the same: the liveness probes' service says so.
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::PublishResponse resp;
  grpc::Status s = stub_->Publish(&ctx, MakeRequest("t", "k", "k/0"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "no Kafka broker reachable"))
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "127.0.0.1:1"));
}

TEST_F(PublishTest, FullProducerQueueWaitsUntilTheDeadlineThenResourceExhausted) {
  const std::string topic = UniqueTopic("publish-queue-full");
  CreateTopic(topic, 1);
  // Ten records fill librdkafka's queue, and linger keeps them there for 3 s,
  // so the others wait for room until their deadline.
  StartSidecar([](server::Config& c) {
    c.publish_timeout = absl::Milliseconds(500);
    c.producer_properties["queue.buffering.max.messages"] = "10";
    c.producer_properties["linger.ms"] = "3000";
    c.producer_properties["message.timeout.ms"] = "20000";
  });
  WaitServing();
  v1::PublishBatchRequest req;
  for (int i = 0; i < 50; ++i) {
    *req.add_requests() = MakeRequest(topic, "k", absl::StrCat("k/", i));
  }
  grpc::ClientContext ctx;
  auto stream = stub_->PublishStream(&ctx);
  ASSERT_TRUE(stream->Write(req));
  stream->WritesDone();
  std::map<std::string, v1::PublishResponse> results;
  v1::PublishBatchResponse resp;
  while (stream->Read(&resp)) {
    for (const auto& r : resp.responses()) results[r.correlation_id()] = r;
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), 50u);
  std::map<std::string, std::string> acked;
  int exhausted = 0;
  for (const auto& [corr, r] : results) {
    if (r.status().code() == 0) {
      acked[r.event_id()] = corr;
    } else {
      EXPECT_EQ(r.status().code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << r.status().message();
      EXPECT_TRUE(absl::StrContains(r.status().message(), "queue stayed full"))
          << r.status().message();
      ++exhausted;
    }
  }
  EXPECT_EQ(acked.size(), 10u);
  EXPECT_EQ(exhausted, 40);
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  EXPECT_EQ(records.size(), 10u);
  ExpectExactlyOnceInOrder(records, acked);
}

TEST_F(PublishTest, HealthGoesNotServingWhenShutdownStarts) {
  StartSidecar();
  WaitServing();
  grpc::ClientContext ctx;
  auto watch = health_->Watch(&ctx, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(watch->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING);
  std::thread stopper([this] { EXPECT_TRUE(sidecar_->Shutdown().ok()); });
  bool saw_not_serving = false;
  while (watch->Read(&resp)) {
    if (resp.status() == HealthCheckResponse::NOT_SERVING) saw_not_serving = true;
  }
  stopper.join();
  EXPECT_TRUE(saw_not_serving);
}

TEST_F(PublishTest, FatalProducerErrorIsSurvivedAndNoAckedEventIsLost) {
  const std::string topic = UniqueTopic("publish-fatal");
  CreateTopic(topic, 3);
  StartSidecar();
  WaitServing();
  grpc::ClientContext ctx;
  auto stream = stub_->PublishStream(&ctx);
  std::map<std::string, v1::PublishResponse> results;
  std::thread reader([&] {
    v1::PublishBatchResponse resp;
    while (stream->Read(&resp)) {
      for (const auto& r : resp.responses()) results[r.correlation_id()] = r;
    }
  });
  constexpr int kBatches = 60;
  for (int b = 0; b < kBatches; ++b) {
    v1::PublishBatchRequest req;
    for (int i = 0; i < 50; ++i) {
      const std::string key = absl::StrCat("key-", i % 10);
      *req.add_requests() = MakeRequest(topic, key, absl::StrCat(key, "/", b * 50 + i));
    }
    ASSERT_TRUE(stream->Write(req));
    if (b == kBatches / 2) {
      ASSERT_TRUE(sidecar_->producer()
                      .TriggerFatalErrorForTesting("test: spurious fatal idempotence error")
                      .ok());
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  stream->WritesDone();
  reader.join();
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), static_cast<size_t>(kBatches * 50));
  std::map<std::string, std::string> acked;
  int failed = 0;
  for (const auto& [corr, r] : results) {
    if (r.status().code() == 0) {
      acked[r.event_id()] = corr;
    } else {
      ++failed;
      EXPECT_TRUE(r.status().code() == grpc::StatusCode::UNAVAILABLE ||
                  r.status().code() == grpc::StatusCode::UNKNOWN)
          << r.status().code() << " " << r.status().message();
    }
  }
  EXPECT_EQ(sidecar_->producer().recreations(), 1);
  EXPECT_GT(acked.size(), 0u);
  // Every acked event is in Kafka exactly once; failed ones may or may not be.
  std::vector<ConsumedRecord> records = ReadTopic(topic);
  std::map<std::string, int> count;
  for (const ConsumedRecord& r : records) ++count[r.Header("ce_id").value_or("")];
  for (const auto& [id, corr] : acked) {
    EXPECT_EQ(count[id], 1) << corr;
  }
  // And publishing works afterwards.
  grpc::ClientContext ctx2;
  v1::PublishResponse resp;
  grpc::Status s = stub_->Publish(&ctx2, MakeRequest(topic, "k", "k/after"), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::cerr << "fatal error test: " << acked.size() << " acked, " << failed
            << " failed\n";
}

}  // namespace
}  // namespace eventbus::testing
