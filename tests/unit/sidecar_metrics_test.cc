// The publish metrics as the service records them, over a fake producer and
// a real in-process gRPC server: outcomes by topic and code, bytes, latency,
// in-flight events, the topic label's bounds, and gRPC calls by method.

#include "server/sidecar_metrics.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "server/event_bus_service.h"
#include "tests/unit/fake_producer.h"
#include "tests/unit/loopback_server.h"

namespace eventbus::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class PublishMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_ = std::make_unique<PublishMetrics>(registry_);
    metered_ = std::make_unique<MeteredProducer>(&producer_, metrics_.get());
    PublishOptions options;
    options.default_source = "//test";
    options.max_event_bytes = 1000;
    service_ = std::make_unique<EventBusService>(metered_.get(), options,
                                                 nullptr, metrics_.get());
    grpc::ServerBuilder builder;
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(
        std::make_unique<GrpcMetricsInterceptorFactory>(registry_));
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::EventBus::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Publish(const std::string& topic, const std::string& data) {
    v1::PublishRequest req;
    req.set_topic(topic);
    req.mutable_event()->set_type("t");
    req.mutable_event()->set_data(data);
    v1::PublishResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    return stub_->Publish(&ctx, req, &resp);
  }

  common::Registry registry_;
  fakes::FakeProducer producer_;
  std::unique_ptr<PublishMetrics> metrics_;
  std::unique_ptr<MeteredProducer> metered_;
  std::unique_ptr<EventBusService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::EventBus::Stub> stub_;
};

TEST_F(PublishMetricsTest, OutcomesBytesAndLatencyByTopicAndCode) {
  ASSERT_TRUE(Publish("orders", "hello").ok());
  ASSERT_TRUE(Publish("orders", "hello").ok());
  // Too large: refused before the producer.
  EXPECT_EQ(Publish("orders", std::string(2000, 'x')).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Failed by Kafka.
  producer_.CompleteWith(absl::UnavailableError("all brokers down"));
  EXPECT_EQ(Publish("audit", "x").error_code(), grpc::StatusCode::UNAVAILABLE);
  // Refused by the producer.
  producer_.RefuseWith(absl::ResourceExhaustedError("buffer full"));
  EXPECT_EQ(Publish("audit", "x").error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  const std::string text = registry_.Expose();
  EXPECT_THAT(text, HasSubstr("eventbus_publish_events_total{topic=\"orders\",code=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_publish_events_total{topic=\"orders\",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_publish_events_total{topic=\"audit\",code=\"UNAVAILABLE\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_publish_events_total{topic=\"audit\",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
  // Bytes of acknowledged events only: the record's value, key and headers.
  // (The first two calls; their ce_time headers may differ in length.)
  const std::vector<fakes::FakeProducer::Call> calls = producer_.calls();
  const size_t record_bytes =
      calls[0].record.PayloadBytes() + calls[1].record.PayloadBytes();
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "eventbus_publish_bytes_total{topic=\"orders\"} ",
                        record_bytes, "\n")));
  // Latency for each event the producer answered (2 OK + 1 failed).
  EXPECT_THAT(text, HasSubstr("eventbus_publish_latency_seconds_count{topic=\"orders\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_publish_latency_seconds_count{topic=\"audit\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_publish_in_flight_events 0\n"));
  // gRPC calls by method and code.
  EXPECT_THAT(text, HasSubstr("eventbus_grpc_handled_total{method=\"/eventbus.v1.EventBus/Publish\",code=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_grpc_handled_total{method=\"/eventbus.v1.EventBus/Publish\",code=\"RESOURCE_EXHAUSTED\"} 2\n"));
}

TEST_F(PublishMetricsTest, InFlightCountsEventsKafkaHasNotAnswered) {
  producer_.Hold();
  std::thread call([this] { EXPECT_TRUE(Publish("orders", "x").ok()); });
  // Counted before the producer took it.
  ASSERT_TRUE(producer_.WaitForHeld(1, absl::Seconds(5)));
  EXPECT_EQ(metrics_->in_flight().Value(), 1);
  producer_.Release();
  call.join();
  EXPECT_EQ(metrics_->in_flight().Value(), 0);
}

TEST(PublishMetricsLabelsTest, TopicsPastTheCapShareOneLabelAndBadNamesAnother) {
  common::Registry registry;
  PublishMetrics metrics(registry);
  for (size_t i = 0; i < kMaxTopicLabels; ++i) {
    metrics.Refused(absl::StrCat("t", i), absl::InvalidArgumentError("x"));
  }
  metrics.Refused("one-more", absl::InvalidArgumentError("x"));
  metrics.Refused("and-another", absl::InvalidArgumentError("x"));
  metrics.Refused("bad topic!", absl::InvalidArgumentError("x"));
  metrics.Refused("", absl::InvalidArgumentError("x"));
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("{topic=\"t999\",code=\"INVALID_ARGUMENT\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("{topic=\"_other\",code=\"INVALID_ARGUMENT\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("{topic=\"_invalid\",code=\"INVALID_ARGUMENT\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("one-more")));
  // A topic seen before the cap keeps its own label.
  metrics.Refused("t0", absl::InvalidArgumentError("x"));
  EXPECT_THAT(registry.Expose(),
              HasSubstr("{topic=\"t0\",code=\"INVALID_ARGUMENT\"} 2\n"));
}

}  // namespace
}  // namespace eventbus::server

namespace eventbus::server {
namespace {

TEST(SubscribeMetricsTest, StreamsCountTheirEventsByGroupAndTopic) {
  common::Registry registry;
  SubscribeMetrics metrics(registry);
  auto record = std::make_shared<const kafka::InboundRecord>(
      kafka::InboundRecord::Make("orders", 0, 7, std::nullopt, "v", {},
                                 /*timestamp_ms=*/1000));
  {
    std::unique_ptr<kafka::ConsumerObserver> a = metrics.StreamObserver("billing");
    std::unique_ptr<kafka::ConsumerObserver> b = metrics.StreamObserver("billing");
    EXPECT_THAT(registry.Expose(),
                HasSubstr("eventbus_subscribe_streams{group=\"billing\"} 2\n"));
    // Delivered 1.5 s after the record's timestamp; acked 20 ms later.
    a->Delivered(*record, 1, absl::FromUnixMillis(2500));
    a->Acked(*record, absl::Milliseconds(20));
    b->Delivered(*record, 2, absl::FromUnixMillis(9000));  // a redelivery
    b->Nacked(*record);
    b->Redelivering(*record, kafka::RedeliveryReason::kNack);
    b->Redelivering(*record, kafka::RedeliveryReason::kDeadline);
    b->DeadLettered(*record);
    metrics.SetOutstanding({{"billing", 3}});
    const std::string text = registry.Expose();
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_deliveries_total{group=\"billing\",topic=\"orders\"} 2\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_acks_total{group=\"billing\",topic=\"orders\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_nacks_total{group=\"billing\",topic=\"orders\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_redeliveries_total{group=\"billing\",topic=\"orders\",reason=\"nack\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_redeliveries_total{group=\"billing\",topic=\"orders\",reason=\"deadline\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_dead_lettered_total{group=\"billing\",topic=\"orders\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_outstanding_deliveries{group=\"billing\"} 3\n"));
    // Consumer latency counts first deliveries only.
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_delivery_latency_seconds_sum{group=\"billing\",topic=\"orders\"} 1.5\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_delivery_latency_seconds_count{group=\"billing\",topic=\"orders\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("eventbus_subscribe_ack_latency_seconds_sum{group=\"billing\",topic=\"orders\"} 0.02\n"));
  }
  EXPECT_THAT(registry.Expose(),
              HasSubstr("eventbus_subscribe_streams{group=\"billing\"} 0\n"));
  metrics.SetOutstanding({});
  EXPECT_THAT(registry.Expose(), Not(HasSubstr("eventbus_subscribe_outstanding_deliveries{")));
}

}  // namespace
}  // namespace eventbus::server

namespace eventbus::server {
namespace {

TEST(SubscribeMetricsTest, LagSeriesFollowThePartitionsEachStreamFetches) {
  common::Registry registry;
  SubscribeMetrics metrics(registry);
  std::unique_ptr<kafka::ConsumerObserver> a = metrics.StreamObserver("billing");
  std::unique_ptr<kafka::ConsumerObserver> b = metrics.StreamObserver("billing");
  a->PartitionLags({{"orders", 0, 20}, {"orders", 1, 5}});
  std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("eventbus_subscribe_lag_records{group=\"billing\",topic=\"orders\",partition=\"0\"} 20\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_subscribe_lag_records{group=\"billing\",topic=\"orders\",partition=\"1\"} 5\n"));
  // A rebalance moves partition 1 to b: b reports it first, then a drops
  // it; the series stays, b's.
  b->PartitionLags({{"orders", 1, 7}});
  a->PartitionLags({{"orders", 0, 18}});
  text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("partition=\"0\"} 18\n"));
  EXPECT_THAT(text, HasSubstr("partition=\"1\"} 7\n"));
  // A stream that ends takes its series with it.
  a.reset();
  text = registry.Expose();
  EXPECT_THAT(text, Not(HasSubstr("partition=\"0\"")));
  EXPECT_THAT(text, HasSubstr("partition=\"1\"} 7\n"));
}

TEST(BrokerMetricsTest, BrokersFromTheStatisticsAndGoneOnesRemoved) {
  common::Registry registry;
  BrokerMetrics metrics(registry);
  kafka::RdKafkaStats stats;
  stats.brokers = {{.name = "k1:9092", .node_id = 1, .up = true,
                    .rtt_avg_seconds = 0.002, .retries = 3},
                   {.name = "k2:9092", .node_id = 2, .up = false}};
  metrics.Update(stats);
  std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("eventbus_kafka_broker_up{broker=\"k1:9092\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_kafka_broker_up{broker=\"k2:9092\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_kafka_broker_rtt_avg_seconds{broker=\"k1:9092\"} 0.002\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE eventbus_kafka_broker_retries_total counter\n"));
  EXPECT_THAT(text, HasSubstr("eventbus_kafka_broker_retries_total{broker=\"k1:9092\"} 3\n"));
  stats.brokers.pop_back();
  metrics.Update(stats);
  EXPECT_THAT(registry.Expose(), Not(HasSubstr("k2:9092")));
}

}  // namespace
}  // namespace eventbus::server
