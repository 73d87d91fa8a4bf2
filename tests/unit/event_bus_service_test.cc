// EventBusService through a real in-process gRPC server (bound to
// 127.0.0.1:0) and the generated stub, over a FakeProducer.

#include "common/trace_context.h"
#include "server/event_bus_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/errors.h"
#include "tests/unit/fake_producer.h"
#include "tests/unit/loopback_server.h"

namespace eventbus::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

constexpr char kSource[] = "//eventbus/unit-test";
// Every client call gets this deadline so that a hang fails the test.
constexpr absl::Duration kCallTimeout = absl::Seconds(5);

bool IsUuidV4(const std::string& s) {
  static const std::regex re(
      "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  return std::regex_match(s, re);
}

std::optional<std::string> HeaderValue(const kafka::Record& r,
                                       const std::string& name) {
  for (const kafka::Header& h : r.headers) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

v1::PublishRequest Request(std::string correlation_id,
                           std::string topic = "orders") {
  v1::PublishRequest r;
  r.set_topic(std::move(topic));
  r.set_correlation_id(std::move(correlation_id));
  r.mutable_event()->set_type("com.example.order.created");
  r.mutable_event()->set_data("{\"order\":42}");
  r.mutable_event()->set_data_content_type("application/json");
  return r;
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// The client side of one PublishStream: a reader thread collects every
// result until the server ends the stream.
class StreamClient {
 public:
  explicit StreamClient(v1::EventBus::Stub* stub) {
    SetDeadline(&ctx_, kCallTimeout);
    stream_ = stub->PublishStream(&ctx_);
    reader_ = std::thread([this] {
      v1::PublishBatchResponse response;
      while (stream_->Read(&response)) {
        absl::MutexLock lock(&mu_);
        for (v1::PublishResponse& r : *response.mutable_responses()) {
          results_.push_back(std::move(r));
        }
      }
      absl::MutexLock lock(&mu_);
      read_ended_ = true;
    });
  }
  ~StreamClient() {
    if (reader_.joinable()) {
      ctx_.TryCancel();
      reader_.join();
    }
  }

  bool Write(const v1::PublishBatchRequest& batch) {
    return stream_->Write(batch);
  }
  bool Write(std::vector<v1::PublishRequest> requests) {
    v1::PublishBatchRequest batch;
    for (auto& r : requests) *batch.add_requests() = std::move(r);
    return Write(batch);
  }
  bool WritesDone() { return stream_->WritesDone(); }

  // Waits until `n` results arrived; false on timeout.
  bool WaitForResults(size_t n, absl::Duration timeout = absl::Seconds(2)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return results_.size() >= n || read_ended_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return results_.size() >= n;
  }
  bool read_ended() {
    absl::MutexLock lock(&mu_);
    return read_ended_;
  }
  // Waits for the server to end the stream and returns its status.
  grpc::Status Finish() {
    reader_.join();
    return stream_->Finish();
  }
  std::vector<v1::PublishResponse> results() {
    absl::MutexLock lock(&mu_);
    return results_;
  }
  // The results by correlation id; fails the test on a repeated id.
  std::map<std::string, v1::PublishResponse> ResultsById() {
    std::map<std::string, v1::PublishResponse> out;
    for (v1::PublishResponse& r : results()) {
      const std::string id = r.correlation_id();
      EXPECT_TRUE(out.emplace(id, std::move(r)).second)
          << "two results for " << id;
    }
    return out;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PublishBatchRequest,
                                           v1::PublishBatchResponse>>
      stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<v1::PublishResponse> results_ ABSL_GUARDED_BY(mu_);
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;
};

class EventBusServiceTest : public ::testing::Test {
 protected:
  static PublishOptions DefaultOptions() {
    PublishOptions o;
    o.default_source = kSource;
    o.structured_topics = {"audit"};
    o.publish_timeout = absl::Seconds(7);
    return o;
  }

  void Start(PublishOptions options = DefaultOptions()) {
    service_ = std::make_unique<EventBusService>(&producer_, std::move(options));
    fakes::LoopbackServer started = fakes::StartLoopbackServer(service_.get());
    ASSERT_NE(started.server, nullptr);
    server_ = std::move(started.server);
    stub_ = std::move(started.stub);
  }

  void TearDown() override {
    // Every delivery must have run before the server and service go away.
    producer_.Release();
    absl::Time give_up = absl::Now() + absl::Seconds(2);
    while (producer_.outstanding() > 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_EQ(producer_.outstanding(), 0u);
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
  }

  grpc::Status Publish(const v1::PublishRequest& request,
                       v1::PublishResponse* response,
                       absl::Duration timeout = kCallTimeout) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, timeout);
    return stub_->Publish(&ctx, request, response);
  }

  // Declared first: outlives the server and the service.
  fakes::FakeProducer producer_;
  std::unique_ptr<EventBusService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::EventBus::Stub> stub_;
};

// ---------------------------------------------------------------------------
// Publish

TEST_F(EventBusServiceTest, PublishReturnsWhereKafkaStoredTheEvent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.CompleteWith(absl::OkStatus(), /*partition=*/3,
                         /*first_offset=*/41);
  v1::PublishRequest request = Request("c-1");
  request.set_key("order-42");
  const absl::Time before = absl::Now();
  v1::PublishResponse response;
  grpc::Status status = Publish(request, &response);
  const absl::Time after = absl::Now();

  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(response.correlation_id(), "c-1");
  EXPECT_TRUE(IsUuidV4(response.event_id())) << response.event_id();
  EXPECT_EQ(response.topic(), "orders");
  EXPECT_EQ(response.partition(), 3);
  EXPECT_EQ(response.offset(), 41);
  EXPECT_EQ(response.status().code(), 0);
  EXPECT_EQ(response.status().message(), "");

  std::vector<fakes::FakeProducer::Call> calls = producer_.calls();
  ASSERT_EQ(calls.size(), 1u);
  const kafka::Record& record = calls[0].record;
  EXPECT_EQ(record.topic, "orders");
  EXPECT_THAT(record.key, Optional(std::string("order-42")));
  EXPECT_EQ(record.value, "{\"order\":42}");
  EXPECT_EQ(record.headers.size(), 6u);
  EXPECT_THAT(HeaderValue(record, "ce_id"), Optional(response.event_id()));
  EXPECT_THAT(HeaderValue(record, "ce_specversion"),
              Optional(std::string("1.0")));
  EXPECT_THAT(HeaderValue(record, "ce_source"), Optional(std::string(kSource)));
  EXPECT_THAT(HeaderValue(record, "ce_type"),
              Optional(std::string("com.example.order.created")));
  EXPECT_THAT(HeaderValue(record, "content-type"),
              Optional(std::string("application/json")));
  std::optional<std::string> time = HeaderValue(record, "ce_time");
  ASSERT_TRUE(time.has_value());
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, *time, &t, &err))
      << *time << ": " << err;
  EXPECT_GE(t, before);
  EXPECT_LE(t, after);
}

// W3C trace context from the call's metadata travels with the event as the
// CloudEvents distributed tracing extension (ce_traceparent, ce_tracestate).
TEST_F(EventBusServiceTest, TraceContextInTheCallMetadataBecomesTheEventsExtension) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr char kParent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  v1::PublishRequest req;
  req.set_topic("orders");
  req.mutable_event()->set_type("t");
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    ctx.AddMetadata("traceparent", kParent);
    ctx.AddMetadata("tracestate", "vendor=abc");
    v1::PublishResponse response;
    ASSERT_TRUE(stub_->Publish(&ctx, req, &response).ok());
  }
  // The event's own trace context wins over the call's.
  (*req.mutable_event()->mutable_extensions())["traceparent"] =
      "00-11111111111111111111111111111111-2222222222222222-00";
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    ctx.AddMetadata("traceparent", kParent);
    v1::PublishResponse response;
    ASSERT_TRUE(stub_->Publish(&ctx, req, &response).ok());
  }
  // A traceparent that is not W3C's is ignored (as W3C asks), not refused.
  req.mutable_event()->mutable_extensions()->clear();
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    ctx.AddMetadata("traceparent", "00-not-a-trace");
    v1::PublishResponse response;
    ASSERT_TRUE(stub_->Publish(&ctx, req, &response).ok());
  }
  const std::vector<fakes::FakeProducer::Call> calls = producer_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_THAT(HeaderValue(calls[0].record, "ce_traceparent"), Optional(std::string(kParent)));
  EXPECT_THAT(HeaderValue(calls[0].record, "ce_tracestate"), Optional(std::string("vendor=abc")));
  EXPECT_THAT(HeaderValue(calls[1].record, "ce_traceparent"),
              Optional(std::string("00-11111111111111111111111111111111-2222222222222222-00")));
  EXPECT_EQ(HeaderValue(calls[2].record, "ce_traceparent"), std::nullopt);
}

TEST_F(EventBusServiceTest, TraceContextOfAStreamGoesToEveryEventOfIt) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr char kParent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  ctx.AddMetadata("traceparent", kParent);
  auto stream = stub_->PublishStream(&ctx);
  v1::PublishBatchRequest batch;
  for (int i = 0; i < 3; ++i) {
    v1::PublishRequest* r = batch.add_requests();
    r->set_topic("orders");
    r->mutable_event()->set_type("t");
  }
  ASSERT_TRUE(stream->Write(batch));
  stream->WritesDone();
  v1::PublishBatchResponse response;
  int answered = 0;
  while (stream->Read(&response)) answered += response.responses_size();
  EXPECT_EQ(answered, 3);
  EXPECT_TRUE(stream->Finish().ok());
  for (const fakes::FakeProducer::Call& call : producer_.calls()) {
    EXPECT_THAT(HeaderValue(call.record, "ce_traceparent"), Optional(std::string(kParent)));
  }
}

TEST(TraceIdOfTest, ValidAndInvalidTraceparents) {
  EXPECT_EQ(common::TraceIdOf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  // A later version may append fields.
  EXPECT_EQ(common::TraceIdOf("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  for (const char* bad : {
           "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // uppercase
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero parent id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // version 00 is exact
       }) {
    EXPECT_EQ(common::TraceIdOf(bad), "") << bad;
  }
}

TEST_F(EventBusServiceTest, PublishKeepsTheCallersEventId) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::PublishRequest request = Request("c-1");
  request.mutable_event()->set_id("evt-7");
  request.mutable_event()->set_source("//orders/eu-1");
  v1::PublishResponse response;
  ASSERT_TRUE(Publish(request, &response).ok());
  EXPECT_EQ(response.event_id(), "evt-7");
  ASSERT_EQ(producer_.produce_count(), 1u);
  const kafka::Record record = producer_.calls()[0].record;
  EXPECT_THAT(HeaderValue(record, "ce_id"), Optional(std::string("evt-7")));
  EXPECT_THAT(HeaderValue(record, "ce_source"),
              Optional(std::string("//orders/eu-1")));
  EXPECT_EQ(record.key, std::nullopt);
}

TEST_F(EventBusServiceTest, PublishToStructuredTopicWritesCloudEventsJson) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::PublishRequest request = Request("c-1", "audit");
  request.mutable_event()->set_id("evt-7");
  v1::PublishResponse response;
  ASSERT_TRUE(Publish(request, &response).ok());
  ASSERT_EQ(producer_.produce_count(), 1u);
  const kafka::Record record = producer_.calls()[0].record;
  EXPECT_EQ(record.topic, "audit");
  ASSERT_EQ(record.headers.size(), 1u);
  EXPECT_EQ(record.headers[0].name, "content-type");
  EXPECT_THAT(record.headers[0].value,
              StartsWith("application/cloudevents+json"));
  EXPECT_THAT(record.value, HasSubstr("\"id\":\"evt-7\""));
  EXPECT_THAT(record.value, HasSubstr("\"data\":{\"order\":42}"));
}

TEST_F(EventBusServiceTest, PublishRefusedByProducerReturnsThatStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.RefuseWith(absl::ResourceExhaustedError(
      "the wait list is full (64 MiB); slow down"));
  v1::PublishResponse response;
  grpc::Status status = Publish(Request("c-1"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(),
            "the wait list is full (64 MiB); slow down");
  EXPECT_EQ(producer_.produce_count(), 1u);

  producer_.RefuseWith(absl::NotFoundError("topic \"orders\" does not exist"));
  status = Publish(Request("c-2"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "topic \"orders\" does not exist");
}

TEST_F(EventBusServiceTest, PublishDeliveryFailureReturnsThatStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const absl::Status failure = kafka::DeliveryErrorToStatus(
      RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "orders", false);
  producer_.CompleteWith(failure);
  v1::PublishResponse response;
  grpc::Status status = Publish(Request("c-1"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), failure.message());
  EXPECT_THAT(status.error_message(), HasSubstr("\"orders\""));
}

TEST_F(EventBusServiceTest, PublishPossiblyPersistedIsUnknown) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.CompleteWith(kafka::DeliveryErrorToStatus(
      RD_KAFKA_RESP_ERR__TRANSPORT, "orders", true));
  v1::PublishResponse response;
  grpc::Status status = Publish(Request("c-1"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(status.error_message(), HasSubstr("possibly persisted"));
}

TEST_F(EventBusServiceTest, PublishWithoutTypeIsInvalidArgument) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::PublishRequest request = Request("c-1");
  request.mutable_event()->clear_type();
  v1::PublishResponse response;
  grpc::Status status = Publish(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("event.type"));
  EXPECT_EQ(producer_.produce_count(), 0u);
}

TEST_F(EventBusServiceTest, PublishWithBadTopicIsInvalidArgument) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::PublishResponse response;
  grpc::Status status = Publish(Request("c-1", "a b"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("topic"));
  EXPECT_EQ(producer_.produce_count(), 0u);
}

TEST_F(EventBusServiceTest, PublishOfTooLargeEventIsResourceExhausted) {
  PublishOptions options = DefaultOptions();
  options.max_event_bytes = 200;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  v1::PublishRequest request = Request("c-1");
  request.mutable_event()->set_data(std::string(300, 'x'));
  request.mutable_event()->set_data_content_type("text/plain");
  v1::PublishResponse response;
  grpc::Status status = Publish(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("limits.max_event_bytes"));
  EXPECT_EQ(producer_.produce_count(), 0u);
}

TEST_F(EventBusServiceTest, ProducerDeadlineIsJustBeforeTheCallDeadline) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const absl::Time call_deadline = absl::Now() + absl::Seconds(4);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(call_deadline));
  v1::PublishResponse response;
  ASSERT_TRUE(stub_->Publish(&ctx, Request("c-1"), &response).ok());
  ASSERT_EQ(producer_.produce_count(), 1u);
  const absl::Time deadline = producer_.calls()[0].deadline;
  EXPECT_LT(deadline, call_deadline);
  EXPECT_GE(deadline, call_deadline - absl::Milliseconds(400));
}

TEST_F(EventBusServiceTest, ProducerDeadlineIsCappedAtThePublishTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start());  // publish_timeout 7 s
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Hours(1)));
  v1::PublishResponse response;
  ASSERT_TRUE(stub_->Publish(&ctx, Request("c-1"), &response).ok());
  const absl::Time after = absl::Now();
  ASSERT_EQ(producer_.produce_count(), 1u);
  EXPECT_LE(producer_.calls()[0].deadline, after + absl::Seconds(7));
}

TEST_F(EventBusServiceTest, ProducerDeadlineWithoutCallDeadlineIsTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start());
  grpc::ClientContext ctx;  // no deadline
  v1::PublishResponse response;
  const absl::Time before = absl::Now();
  ASSERT_TRUE(stub_->Publish(&ctx, Request("c-1"), &response).ok());
  const absl::Time after = absl::Now();
  ASSERT_EQ(producer_.produce_count(), 1u);
  const absl::Time deadline = producer_.calls()[0].deadline;
  EXPECT_GE(deadline, before + absl::Seconds(7));
  EXPECT_LE(deadline, after + absl::Seconds(7));
}

TEST_F(EventBusServiceTest, PublishAfterDrainIsUnavailable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  service_->Drain();
  v1::PublishResponse response;
  grpc::Status status = Publish(Request("c-1"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(producer_.produce_count(), 0u);
}

// ---------------------------------------------------------------------------
// PublishBatch

TEST_F(EventBusServiceTest, PublishBatchAnswersEachRequestInOrder) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Deliveries are held and then released in reverse, so results arrive in
  // the opposite order of the requests. Records with key "fail" fail.
  producer_.Hold();
  producer_.CompleteWith([](const kafka::Record& r, int64_t index) {
    kafka::DeliveryResult result;
    if (r.key == std::optional<std::string>("fail")) {
      result.status = absl::UnavailableError("broker gone for \"orders\"");
    } else {
      result.partition = 2;
      result.offset = 100 + index;
    }
    return result;
  });
  v1::PublishBatchRequest batch;
  *batch.add_requests() = Request("c0");
  *batch.add_requests() = Request("c1");
  batch.mutable_requests(1)->mutable_event()->clear_type();
  *batch.add_requests() = Request("c2", "a b");
  *batch.add_requests() = Request("c3");
  batch.mutable_requests(3)->set_key("fail");
  *batch.add_requests() = Request("c4");
  batch.mutable_requests(4)->mutable_event()->set_id("evt-4");

  v1::PublishBatchResponse response;
  grpc::Status status;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    status = stub_->PublishBatch(&ctx, batch, &response);
  });
  ASSERT_TRUE(producer_.WaitForHeld(3, absl::Seconds(2)));
  EXPECT_EQ(producer_.Release(/*keep_holding=*/false, /*reverse=*/true), 3u);
  caller.join();

  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.responses_size(), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(response.responses(i).correlation_id(), absl::StrCat("c", i));
  }
  const v1::PublishResponse& r0 = response.responses(0);
  EXPECT_EQ(r0.status().code(), 0);
  EXPECT_EQ(r0.topic(), "orders");
  EXPECT_TRUE(IsUuidV4(r0.event_id())) << r0.event_id();
  EXPECT_EQ(r0.partition(), 2);
  EXPECT_EQ(r0.offset(), 100);

  const v1::PublishResponse& r1 = response.responses(1);
  EXPECT_EQ(r1.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r1.status().message(), StartsWith("event.type"));
  EXPECT_EQ(r1.partition(), -1);
  EXPECT_EQ(r1.offset(), -1);

  const v1::PublishResponse& r2 = response.responses(2);
  EXPECT_EQ(r2.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r2.status().message(), StartsWith("topic"));
  EXPECT_EQ(r2.topic(), "a b");
  EXPECT_EQ(r2.partition(), -1);

  const v1::PublishResponse& r3 = response.responses(3);
  EXPECT_EQ(r3.status().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(r3.status().message(), "broker gone for \"orders\"");
  EXPECT_EQ(r3.partition(), -1);
  EXPECT_EQ(r3.offset(), -1);

  const v1::PublishResponse& r4 = response.responses(4);
  EXPECT_EQ(r4.status().code(), 0);
  EXPECT_EQ(r4.status().message(), "");
  EXPECT_EQ(r4.event_id(), "evt-4");
  EXPECT_EQ(r4.partition(), 2);
  EXPECT_EQ(r4.offset(), 102);

  std::vector<fakes::FakeProducer::Call> calls = producer_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_THAT(HeaderValue(calls[0].record, "ce_id"), Optional(r0.event_id()));
  EXPECT_THAT(HeaderValue(calls[1].record, "ce_id"), Optional(r3.event_id()));
  EXPECT_THAT(HeaderValue(calls[2].record, "ce_id"),
              Optional(std::string("evt-4")));
}

TEST_F(EventBusServiceTest, PublishBatchItemRefusedByProducerGetsThatStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.RefuseWith(absl::ResourceExhaustedError("queue full"));
  v1::PublishBatchRequest batch;
  *batch.add_requests() = Request("c0");
  *batch.add_requests() = Request("c1");
  v1::PublishBatchResponse response;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  ASSERT_TRUE(stub_->PublishBatch(&ctx, batch, &response).ok());
  ASSERT_EQ(response.responses_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(response.responses(i).correlation_id(), absl::StrCat("c", i));
    EXPECT_EQ(response.responses(i).status().code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(response.responses(i).status().message(), "queue full");
    EXPECT_EQ(response.responses(i).partition(), -1);
  }
}

TEST_F(EventBusServiceTest, EmptyPublishBatchIsOk) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::PublishBatchResponse response;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  grpc::Status status =
      stub_->PublishBatch(&ctx, v1::PublishBatchRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.responses_size(), 0);
}

// ---------------------------------------------------------------------------
// PublishStream

TEST_F(EventBusServiceTest, StreamAnswersEveryEventOnceAndEndsOk) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.CompleteWith(absl::OkStatus(), /*partition=*/1);
  constexpr int kBatches = 50;
  constexpr int kBatchSize = 100;
  StreamClient client(stub_.get());
  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      v1::PublishBatchRequest batch;
      for (int i = 0; i < kBatchSize; ++i) {
        *batch.add_requests() = Request(absl::StrCat("c", b * kBatchSize + i));
      }
      if (!client.Write(batch)) return;
    }
    client.WritesDone();
  });
  writer.join();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();

  std::map<std::string, v1::PublishResponse> by_id = client.ResultsById();
  EXPECT_EQ(client.results().size(), size_t{kBatches * kBatchSize});
  ASSERT_EQ(by_id.size(), size_t{kBatches * kBatchSize});
  std::set<int64_t> offsets;
  std::set<std::string> event_ids;
  for (int i = 0; i < kBatches * kBatchSize; ++i) {
    auto it = by_id.find(absl::StrCat("c", i));
    ASSERT_NE(it, by_id.end()) << "no result for c" << i;
    const v1::PublishResponse& r = it->second;
    EXPECT_EQ(r.status().code(), 0) << r.status().message();
    EXPECT_EQ(r.topic(), "orders");
    EXPECT_EQ(r.partition(), 1);
    offsets.insert(r.offset());
    event_ids.insert(r.event_id());
  }
  EXPECT_EQ(offsets.size(), size_t{kBatches * kBatchSize});
  EXPECT_EQ(*offsets.begin(), 0);
  EXPECT_EQ(*offsets.rbegin(), kBatches * kBatchSize - 1);
  EXPECT_EQ(event_ids.size(), size_t{kBatches * kBatchSize});
  EXPECT_EQ(producer_.produce_count(), size_t{kBatches * kBatchSize});
}

TEST_F(EventBusServiceTest, StreamStopsReadingWhileTheWindowIsFull) {
  PublishOptions options = DefaultOptions();
  options.stream_max_in_flight = 50;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  producer_.Hold();
  constexpr int kBatches = 20;
  constexpr int kBatchSize = 100;
  StreamClient client(stub_.get());
  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      v1::PublishBatchRequest batch;
      for (int i = 0; i < kBatchSize; ++i) {
        *batch.add_requests() = Request(absl::StrCat("c", b * kBatchSize + i));
      }
      if (!client.Write(batch)) return;
    }
    client.WritesDone();
  });

  // The first batch fills the window: nothing more is read until deliveries
  // come back.
  ASSERT_TRUE(producer_.WaitForHeld(kBatchSize, absl::Seconds(2)));
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(producer_.produce_count(), size_t{kBatchSize});
  EXPECT_EQ(client.results().size(), 0u);

  // Releasing lets the stream go on, one window at a time.
  const absl::Time give_up = absl::Now() + absl::Seconds(3);
  while (producer_.delivered() < size_t{kBatches * kBatchSize} &&
         absl::Now() < give_up) {
    producer_.Release(/*keep_holding=*/true);
    producer_.WaitForHeld(1, absl::Milliseconds(20));
  }
  writer.join();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(client.ResultsById().size(), size_t{kBatches * kBatchSize});
  EXPECT_EQ(producer_.produce_count(), size_t{kBatches * kBatchSize});
  EXPECT_LE(producer_.max_outstanding(), size_t{50 + kBatchSize});
  EXPECT_GE(producer_.max_outstanding(), size_t{kBatchSize});
}

// A client that writes and never reads its results: the results waiting to
// be written count against the window, so the stream stops reading instead
// of holding ever more results in memory.
TEST_F(EventBusServiceTest, StreamStopsReadingWhileItsResultsAreNotRead) {
  PublishOptions options = DefaultOptions();
  options.stream_max_in_flight = 50;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  constexpr int kBatches = 200;
  constexpr int kBatchSize = 10;
  grpc::ClientContext ctx;
  auto stream = stub_->PublishStream(&ctx);
  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      v1::PublishBatchRequest batch;
      for (int i = 0; i < kBatchSize; ++i) {
        // Large results, so that they fill the transport's buffers soon.
        v1::PublishRequest r = Request(absl::StrCat(b * kBatchSize + i, "-"));
        r.mutable_correlation_id()->resize(4096, 'c');
        *batch.add_requests() = std::move(r);
      }
      if (!stream->Write(batch)) return;
    }
  });
  // Deliveries come back at once; the results pile up unread.
  absl::SleepFor(absl::Seconds(2));
  const size_t produced = producer_.produce_count();
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(producer_.produce_count(), produced) << "still reading";
  EXPECT_LT(produced, size_t{kBatches * kBatchSize})
      << "read everything while no result was read";
  std::cerr << "events read while results went unread: " << produced << "\n";
  ctx.TryCancel();
  writer.join();
  stream->Finish();
}

// Results waiting together are written in messages of at most 1 MiB (plus
// the result that crosses it), well under a client's default 4 MiB receive
// limit: 1,000 results of 4 KiB each, completed at once, arrive whole.
TEST_F(EventBusServiceTest, StreamResultWritesStayUnderOneMebibyte) {
  PublishOptions options = DefaultOptions();
  options.stream_max_in_flight = 2000;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  producer_.Hold();
  constexpr int kBatches = 2;
  constexpr int kBatchSize = 500;
  grpc::ClientContext ctx;
  auto stream = stub_->PublishStream(&ctx);
  for (int b = 0; b < kBatches; ++b) {
    v1::PublishBatchRequest batch;
    for (int i = 0; i < kBatchSize; ++i) {
      v1::PublishRequest r = Request(absl::StrCat(b * kBatchSize + i, "-"));
      r.mutable_correlation_id()->resize(4096, 'c');
      *batch.add_requests() = std::move(r);
    }
    ASSERT_TRUE(stream->Write(batch));
  }
  ASSERT_TRUE(producer_.WaitForHeld(kBatches * kBatchSize, absl::Seconds(5)));
  producer_.Release();
  ASSERT_TRUE(stream->WritesDone());
  std::set<std::string> ids;
  std::vector<size_t> sizes;
  v1::PublishBatchResponse response;
  while (stream->Read(&response)) {
    sizes.push_back(response.ByteSizeLong());
    for (const v1::PublishResponse& r : response.responses()) {
      EXPECT_EQ(r.status().code(), 0) << r.status().message();
      ids.insert(r.correlation_id());
    }
  }
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(ids.size(), size_t{kBatches * kBatchSize});
  EXPECT_GE(sizes.size(), 4u) << "about 4 MiB of results in fewer messages";
  for (size_t size : sizes) EXPECT_LE(size, (size_t{1} << 20) + 8192);
}

TEST_F(EventBusServiceTest, StreamProducesEachKeysEventsInTheOrderSent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kKeys = 5;
  constexpr int kPerKey = 200;
  constexpr int kBatchSize = 50;
  StreamClient client(stub_.get());
  std::vector<v1::PublishRequest> all;
  for (int seq = 0; seq < kPerKey; ++seq) {
    for (int k = 0; k < kKeys; ++k) {
      v1::PublishRequest r = Request(absl::StrCat("k", k, "-", seq));
      r.set_key(absl::StrCat("k", k));
      r.mutable_event()->set_data(absl::StrCat(seq));
      r.mutable_event()->set_data_content_type("text/plain");
      all.push_back(std::move(r));
    }
  }
  for (size_t i = 0; i < all.size(); i += kBatchSize) {
    ASSERT_TRUE(client.Write(std::vector<v1::PublishRequest>(
        all.begin() + i, all.begin() + i + kBatchSize)));
  }
  client.WritesDone();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(client.ResultsById().size(), all.size());

  std::map<std::string, std::vector<int>> seen;  // key -> data in Produce order
  for (const fakes::FakeProducer::Call& call : producer_.calls()) {
    ASSERT_TRUE(call.record.key.has_value());
    seen[*call.record.key].push_back(std::stoi(call.record.value));
  }
  ASSERT_EQ(seen.size(), size_t{kKeys});
  for (const auto& [key, seqs] : seen) {
    ASSERT_EQ(seqs.size(), size_t{kPerKey}) << key;
    for (int i = 0; i < kPerKey; ++i) {
      ASSERT_EQ(seqs[i], i) << "key " << key << " position " << i;
    }
  }
}

TEST_F(EventBusServiceTest, InvalidEventInStreamGetsItsOwnStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.CompleteWith(absl::OkStatus(), /*partition=*/0, /*first_offset=*/7);
  StreamClient client(stub_.get());
  std::vector<v1::PublishRequest> first = {Request("ok-1"), Request("no-type"),
                                           Request("bad-topic", ".."),
                                           Request("ok-2")};
  first[1].mutable_event()->clear_type();
  ASSERT_TRUE(client.Write(first));
  ASSERT_TRUE(client.WaitForResults(4));

  // The stream goes on after the failures.
  ASSERT_TRUE(client.Write({Request("ok-3")}));
  ASSERT_TRUE(client.WaitForResults(5));
  EXPECT_FALSE(client.read_ended());
  client.WritesDone();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  std::map<std::string, v1::PublishResponse> by_id = client.ResultsById();
  ASSERT_EQ(by_id.size(), 5u);
  EXPECT_EQ(by_id["no-type"].status().code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(by_id["no-type"].status().message(), StartsWith("event.type"));
  EXPECT_EQ(by_id["no-type"].partition(), -1);
  EXPECT_EQ(by_id["bad-topic"].status().code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(by_id["bad-topic"].status().message(), StartsWith("topic"));
  EXPECT_EQ(by_id["bad-topic"].topic(), "..");
  std::set<int64_t> offsets;
  for (const char* id : {"ok-1", "ok-2", "ok-3"}) {
    EXPECT_EQ(by_id[id].status().code(), 0) << id;
    EXPECT_TRUE(IsUuidV4(by_id[id].event_id())) << id;
    offsets.insert(by_id[id].offset());
  }
  EXPECT_EQ(offsets, (std::set<int64_t>{7, 8, 9}));
  EXPECT_EQ(producer_.produce_count(), 3u);
}

TEST_F(EventBusServiceTest, StreamItemsRefusedOrFailedGetTheirStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.RefuseWith(absl::ResourceExhaustedError("queue full"));
  StreamClient client(stub_.get());
  ASSERT_TRUE(client.Write({Request("refused")}));
  ASSERT_TRUE(client.WaitForResults(1));
  producer_.RefuseWith(absl::OkStatus());
  producer_.CompleteWith(kafka::DeliveryErrorToStatus(
      RD_KAFKA_RESP_ERR__TRANSPORT, "orders", true));
  ASSERT_TRUE(client.Write({Request("unknown")}));
  ASSERT_TRUE(client.WaitForResults(2));
  client.WritesDone();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  std::map<std::string, v1::PublishResponse> by_id = client.ResultsById();
  EXPECT_EQ(by_id["refused"].status().code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(by_id["refused"].status().message(), "queue full");
  EXPECT_EQ(by_id["refused"].offset(), -1);
  EXPECT_EQ(by_id["unknown"].status().code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(by_id["unknown"].status().message(),
              HasSubstr("possibly persisted"));
  EXPECT_EQ(by_id["unknown"].partition(), -1);
}

TEST_F(EventBusServiceTest, EmptyStreamEndsOk) {
  ASSERT_NO_FATAL_FAILURE(Start());
  StreamClient client(stub_.get());
  client.WritesDone();
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(client.results().empty());
}

// ---------------------------------------------------------------------------
// Drain

TEST_F(EventBusServiceTest, DrainEndsAnIdleStreamWithUnavailable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  StreamClient client(stub_.get());
  std::vector<v1::PublishRequest> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Request(absl::StrCat("c", i)));
  ASSERT_TRUE(client.Write(batch));
  ASSERT_TRUE(client.WaitForResults(10));
  ASSERT_TRUE(producer_.WaitForDelivered(10, absl::Seconds(1)));

  service_->Drain();
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(client.ResultsById().size(), 10u);
}

TEST_F(EventBusServiceTest, DrainAnswersEverythingReadBeforeEnding) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  StreamClient client(stub_.get());
  std::vector<v1::PublishRequest> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Request(absl::StrCat("c", i)));
  ASSERT_TRUE(client.Write(batch));
  ASSERT_TRUE(producer_.WaitForHeld(10, absl::Seconds(2)));

  service_->Drain();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(client.read_ended()) << "ended before the results were sent";
  // A request sent after Drain is not published. (The stream may already
  // have had a read pending; if it read the request, it answers it.)
  client.Write({Request("late")});
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(producer_.produce_count(), 10u);

  producer_.Release();
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(producer_.produce_count(), 10u);
  std::map<std::string, v1::PublishResponse> by_id = client.ResultsById();
  for (int i = 0; i < 10; ++i) {
    const std::string id = absl::StrCat("c", i);
    ASSERT_EQ(by_id.count(id), 1u) << id;
    EXPECT_EQ(by_id[id].status().code(), 0) << id;
  }
  if (by_id.count("late") != 0) {
    EXPECT_EQ(by_id["late"].status().code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(by_id["late"].status().message(), HasSubstr("not published"));
    EXPECT_EQ(by_id.size(), 11u);
  } else {
    EXPECT_EQ(by_id.size(), 10u);
  }
}

TEST_F(EventBusServiceTest, StreamOpenedAfterDrainEndsUnavailable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  service_->Drain();
  StreamClient client(stub_.get());
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_TRUE(client.results().empty());
  EXPECT_EQ(producer_.produce_count(), 0u);
}

// ---------------------------------------------------------------------------
// Cancellation

TEST_F(EventBusServiceTest, CancelledStreamStillTakesItsDeliveries) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  auto client = std::make_unique<StreamClient>(stub_.get());
  std::vector<v1::PublishRequest> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Request(absl::StrCat("c", i)));
  ASSERT_TRUE(client->Write(batch));
  ASSERT_TRUE(producer_.WaitForHeld(10, absl::Seconds(2)));
  client.reset();  // cancels the call

  // The deliveries come back after gRPC is done with the stream; the
  // reactor must still be alive to take them.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(producer_.Release(), 10u);
  EXPECT_TRUE(producer_.WaitForDelivered(10, absl::Seconds(1)));

  // The server still works.
  v1::PublishResponse response;
  EXPECT_TRUE(Publish(Request("after"), &response).ok());
}

// ---------------------------------------------------------------------------
// Subscribe

TEST_F(EventBusServiceTest, SubscribeIsUnimplemented) {
  ASSERT_NO_FATAL_FAILURE(Start());
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  auto stream = stub_->Subscribe(&ctx);
  v1::SubscribeRequest request;
  request.mutable_subscription()->add_topics("orders");
  stream->Write(request);
  v1::SubscribeResponse response;
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace eventbus::server
