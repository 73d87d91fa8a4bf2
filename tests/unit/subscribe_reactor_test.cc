// The Subscribe stream (SubscribeReactor, opened by Subscriptions) through a
// real in-process gRPC server (bound to 127.0.0.1:0) and the generated stub,
// over FakeConsumers: the test plays the Kafka consumer (deliveries,
// revocations, failures) and reads back what the stream asked of it (acks,
// nacks, dead letters, extensions, stop, close).
//
// No sleeps: the tests wait on the fake's conditions or on the stream, and
// every call has a deadline so that a hang fails instead of blocking. A
// client that "does not read" relies on HTTP/2 flow control: writes of
// several MiB stall until it reads.

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "eventbus/v1/eventbus.grpc.pb.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/consumer.h"
#include "server/event_bus_service.h"
#include "server/subscribe_reactor.h"
#include "tests/unit/fake_consumer.h"
#include "tests/unit/fake_producer.h"
#include "tests/unit/loopback_server.h"

namespace eventbus::server {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

using Records = std::vector<std::shared_ptr<const kafka::InboundRecord>>;

// Every client call gets this deadline so that a hang fails the test.
constexpr absl::Duration kCallTimeout = absl::Seconds(5);
// How long a test waits for something the server does on its own.
constexpr absl::Duration kWait = absl::Seconds(2);
constexpr uint64_t kAllSent = UINT64_MAX;
constexpr int64_t kRecordTimeMs = 1700000000123;
constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
// Together well above what HTTP/2 flow control lets the server write to a
// client that does not read: these writes stall until it reads.
constexpr size_t kStallingBytes = 1536 * kKiB;
constexpr int kStallingRecords = 4;

std::shared_ptr<const kafka::InboundRecord> Rec(
    absl::string_view topic, int32_t partition, int64_t offset,
    std::optional<absl::string_view> key, std::optional<absl::string_view> value,
    const std::vector<kafka::HeaderView>& headers = {}) {
  return std::make_shared<const kafka::InboundRecord>(kafka::InboundRecord::Make(
      topic, partition, offset, key, value, headers, kRecordTimeMs));
}

// A record of `orders` that is not a CloudEvent, of `bytes` value bytes.
std::shared_ptr<const kafka::InboundRecord> Plain(int32_t partition,
                                                  int64_t offset,
                                                  size_t bytes = 1) {
  const std::string value(bytes, 'x');
  return Rec("orders", partition, offset, std::nullopt, value);
}

Records Plains(int32_t partition, int64_t first_offset, int n,
               size_t bytes = 1) {
  Records out;
  for (int i = 0; i < n; ++i) out.push_back(Plain(partition, first_offset + i, bytes));
  return out;
}

// Records big enough that their writes stall while the client does not read
// (partition 9, which the tests keep for them).
Records Stalling() { return Plains(9, 0, kStallingRecords, kStallingBytes); }

v1::Subscription Valid() {
  v1::Subscription s;
  s.add_topics("orders");
  s.set_group("billing");
  return s;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

v1::SubscribeRequest SubscribeTo(const v1::Subscription& s) {
  v1::SubscribeRequest r;
  *r.mutable_subscription() = s;
  return r;
}

v1::SubscribeRequest AckOf(const std::vector<uint64_t>& ids) {
  v1::SubscribeRequest r;
  r.mutable_ack()->mutable_delivery_ids()->Add(ids.begin(), ids.end());
  return r;
}

// An ack of `n` ids from `first` up, none of which was ever sent.
v1::SubscribeRequest AckOfUnknown(uint64_t first, int n) {
  v1::SubscribeRequest r;
  for (int i = 0; i < n; ++i) r.mutable_ack()->add_delivery_ids(first + i);
  return r;
}

v1::SubscribeRequest NackOf(const std::vector<uint64_t>& ids,
                            std::optional<absl::Duration> delay = std::nullopt) {
  v1::SubscribeRequest r;
  r.mutable_nack()->mutable_delivery_ids()->Add(ids.begin(), ids.end());
  if (delay) *r.mutable_nack()->mutable_retry_delay() = ToProto(*delay);
  return r;
}

v1::SubscribeRequest DeadLetterOf(const std::vector<uint64_t>& ids,
                                  const std::string& reason) {
  v1::SubscribeRequest r;
  r.mutable_dead_letter()->mutable_delivery_ids()->Add(ids.begin(), ids.end());
  r.mutable_dead_letter()->set_reason(reason);
  return r;
}

v1::SubscribeRequest ExtendOf(const std::vector<uint64_t>& ids,
                              std::optional<absl::Duration> deadline) {
  v1::SubscribeRequest r;
  v1::ModifyAckDeadline* m = r.mutable_modify_ack_deadline();
  m->mutable_delivery_ids()->Add(ids.begin(), ids.end());
  if (deadline) *m->mutable_ack_deadline() = ToProto(*deadline);
  return r;
}

std::vector<uint64_t> IdsOf(const std::vector<v1::Delivery>& deliveries) {
  std::vector<uint64_t> out;
  for (const v1::Delivery& d : deliveries) out.push_back(d.delivery_id());
  return out;
}

// The client side of one Subscribe stream, read on the test's thread (a
// test that does not read simply does not call Read*). Keeps every
// delivery and ack error read, and how many deliveries each response held.
class SubscribeClient {
 public:
  explicit SubscribeClient(v1::EventBus::Stub* stub) {
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    stream_ = stub->Subscribe(&ctx_);
  }
  ~SubscribeClient() {
    if (!finished_) {
      ctx_.TryCancel();
      Finish();
    }
  }

  bool Write(const v1::SubscribeRequest& request) {
    return stream_->Write(request);
  }
  bool WritesDone() { return stream_->WritesDone(); }
  void Cancel() { ctx_.TryCancel(); }

  // Reads until `deliveries` deliveries and `ack_errors` ack errors arrived
  // in all; false when the stream ended first.
  bool ReadUntil(size_t deliveries, size_t ack_errors = 0) {
    while (deliveries_.size() < deliveries || ack_errors_.size() < ack_errors) {
      if (!ReadOne()) return false;
    }
    return true;
  }

  // Reads what is left, then returns the stream's status.
  grpc::Status Finish() {
    while (ReadOne()) {
    }
    finished_ = true;
    return stream_->Finish();
  }

  // The eventbus-features initial metadata (valid once a read completed).
  std::vector<std::string> Features() {
    std::vector<std::string> out;
    auto [begin, end] =
        ctx_.GetServerInitialMetadata().equal_range("eventbus-features");
    for (auto it = begin; it != end; ++it) {
      out.emplace_back(it->second.data(), it->second.size());
    }
    return out;
  }

  const std::vector<v1::Delivery>& deliveries() const { return deliveries_; }
  const std::vector<v1::AckError>& ack_errors() const { return ack_errors_; }
  // Deliveries per response that carried any.
  const std::vector<int>& write_sizes() const { return write_sizes_; }
  // The delivery id each such response started with.
  const std::vector<uint64_t>& write_starts() const { return write_starts_; }

 private:
  bool ReadOne() {
    if (ended_) return false;
    v1::SubscribeResponse response;
    if (!stream_->Read(&response)) {
      ended_ = true;
      return false;
    }
    if (response.deliveries_size() > 0) {
      write_sizes_.push_back(response.deliveries_size());
      write_starts_.push_back(response.deliveries(0).delivery_id());
    }
    for (v1::Delivery& d : *response.mutable_deliveries()) {
      deliveries_.push_back(std::move(d));
    }
    for (v1::AckError& e : *response.mutable_ack_errors()) {
      ack_errors_.push_back(std::move(e));
    }
    return true;
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>>
      stream_;
  bool ended_ = false;
  bool finished_ = false;
  std::vector<v1::Delivery> deliveries_;
  std::vector<v1::AckError> ack_errors_;
  std::vector<int> write_sizes_;
  std::vector<uint64_t> write_starts_;
};

class SubscribeReactorTest : public ::testing::Test {
 protected:
  // gRPC stays initialized from here to the end of the program. Otherwise
  // each test's ~Server, dropping the last reference, runs grpc_shutdown,
  // which after a test whose writes stalled can wait up to 10 s for the TCP
  // backup poller (a 10 s poll on gRPC's executor thread) to return.
  static void SetUpTestSuite() {
    static const bool initialized = [] {
      grpc_init();
      return true;
    }();
    (void)initialized;
  }

  void Start(SubscribeOptions options = SubscribeOptions()) {
    subscriptions_ = std::make_unique<Subscriptions>(
        [this](kafka::GroupConsumerOptions o, kafka::DeliverySink* s) {
          return fakes_.Start(std::move(o), s);
        },
        std::move(options));
    service_ = std::make_unique<EventBusService>(&producer_, PublishOptions(),
                                                 subscriptions_.get());
    fakes::LoopbackServer started = fakes::StartLoopbackServer(service_.get());
    ASSERT_NE(started.server, nullptr);
    server_ = std::move(started.server);
    stub_ = std::move(started.stub);
    channel_ = std::move(started.channel);
  }

  void TearDown() override {
    // The clients (locals of the test) are gone: every stream must end and
    // have its consumer closed.
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
    if (subscriptions_ != nullptr) {
      EXPECT_TRUE(subscriptions_->WaitClosed(absl::Now() + kWait));
    }
  }

  // Sends `subscription` as the stream's first message and returns the
  // consumer it started (null, failing the test, when none starts).
  std::shared_ptr<fakes::FakeConsumerState> Subscribe(
      SubscribeClient& client, const v1::Subscription& subscription = Valid()) {
    const size_t index = fakes_.started();
    EXPECT_TRUE(client.Write(SubscribeTo(subscription)));
    std::shared_ptr<fakes::FakeConsumerState> state =
        fakes_.WaitStarted(index, kWait);
    EXPECT_NE(state, nullptr) << "no consumer started";
    return state;
  }

  // Declared first: outlive the server, the service and the streams.
  fakes::FakeProducer producer_;
  fakes::FakeConsumers fakes_;
  std::unique_ptr<Subscriptions> subscriptions_;
  std::unique_ptr<EventBusService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EventBus::Stub> stub_;
};

// ---------------------------------------------------------------------------
// The subscription and the protocol

TEST_F(SubscribeReactorTest, BadSubscriptionEndsTheStreamNamingTheField) {
  ASSERT_NO_FATAL_FAILURE(Start());
  struct Case {
    std::string field;
    v1::Subscription subscription;
  };
  std::vector<Case> cases;
  {
    v1::Subscription s = Valid();
    s.clear_topics();
    cases.push_back({"subscription.topics:", s});
  }
  {
    v1::Subscription s = Valid();
    s.add_topics("orders/eu");
    cases.push_back({"subscription.topics[1]:", s});
  }
  {
    v1::Subscription s = Valid();
    s.clear_group();
    cases.push_back({"subscription.group:", s});
  }
  {
    v1::Subscription s = Valid();
    s.set_max_outstanding_messages(1000000);
    cases.push_back({"subscription.max_outstanding_messages:", s});
  }
  {
    v1::Subscription s = Valid();
    *s.mutable_ack_deadline() = ToProto(absl::Minutes(11));
    cases.push_back({"subscription.ack_deadline:", s});
  }
  {
    v1::Subscription s = Valid();
    s.set_dead_letter_topic("no spaces");
    cases.push_back({"subscription.dead_letter_topic:", s});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    SubscribeClient client(stub_.get());
    client.Write(SubscribeTo(c.subscription));
    grpc::Status status = client.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.field));
    EXPECT_THAT(client.deliveries(), IsEmpty());
  }
  EXPECT_EQ(fakes_.started(), 0u) << "a bad subscription started a consumer";
}

TEST_F(SubscribeReactorTest, FirstMessageThatIsNotASubscriptionEndsTheStream) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  client.Write(AckOf({1}));
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("must be a subscription"));
  EXPECT_EQ(fakes_.started(), 0u);
}

// The stream parses its requests itself (Subscribe is served raw): bytes
// that are not a SubscribeRequest end it with INVALID_ARGUMENT saying so.
TEST_F(SubscribeReactorTest, MessageThatDoesNotParseEndsTheStreamSayingSo) {
  ASSERT_NO_FATAL_FAILURE(Start());
  grpc::GenericStub generic(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      generic.PrepareCall(&context, "/eventbus.v1.EventBus/Subscribe", &cq);
  auto next = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(next(1));
  // Field 1 (the subscription), 16 bytes long, of which one follows.
  grpc::Slice slice(std::string("\x0a\x10\x01", 3));
  grpc::ByteBuffer bytes(&slice, 1);
  call->Write(bytes, reinterpret_cast<void*>(2));
  next(2);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(3));
  ASSERT_TRUE(next(3));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("not a SubscribeRequest"));
  EXPECT_EQ(fakes_.started(), 0u);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(SubscribeReactorTest, ProtocolErrorAfterSubscribingEndsTheStreamAndClosesTheConsumer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::vector<std::pair<std::string, v1::SubscribeRequest>> cases = {
      {"a second subscription", SubscribeTo(Valid())},
      {"modify_ack_deadline.ack_deadline: 11m",
       ExtendOf({1}, absl::Minutes(11))},
      {"modify_ack_deadline.ack_deadline: 500ms",
       ExtendOf({1}, absl::Milliseconds(500))},
      {"modify_ack_deadline.ack_deadline: unset", ExtendOf({1}, std::nullopt)},
      {"nack.retry_delay", NackOf({1}, absl::Hours(25))},
      {"nack.retry_delay", NackOf({1}, absl::Seconds(-1))},
      {"empty SubscribeRequest", v1::SubscribeRequest()},
  };
  for (const auto& [message, request] : cases) {
    SCOPED_TRACE(message);
    SubscribeClient client(stub_.get());
    std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
    ASSERT_NE(state, nullptr);
    client.Write(request);
    grpc::Status status = client.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(message));
    EXPECT_TRUE(state->WaitClosed(kWait));
    EXPECT_THAT(state->acked(), IsEmpty());
    EXPECT_THAT(state->nacks(), IsEmpty());
    EXPECT_THAT(state->extends(), IsEmpty());
  }
  EXPECT_EQ(fakes_.started(), cases.size());
}

TEST_F(SubscribeReactorTest, TheSubscriptionsValuesReachTheConsumer) {
  SubscribeOptions server;
  server.consumer_properties = {{"bootstrap.servers", "broker-1:9092"}};
  server.dead_letter_suffix = ".dead";
  server.retry_backoff = absl::Milliseconds(250);
  server.dead_letter_timeout = absl::Seconds(9);
  ASSERT_NO_FATAL_FAILURE(Start(server));
  v1::Subscription s;
  s.add_topics("orders");
  s.add_topics("payments");
  s.set_group("billing-eu");
  s.set_start_position(v1::START_POSITION_EARLIEST);
  s.set_max_outstanding_messages(250);
  s.set_max_outstanding_bytes(3 * kMiB);
  *s.mutable_ack_deadline() = ToProto(absl::Seconds(45));
  s.set_max_delivery_attempts(7);
  s.set_dead_letter_topic("orders.poison");
  s.set_ordering(v1::ORDERING_PER_KEY);

  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client, s);
  ASSERT_NE(state, nullptr);
  const kafka::GroupConsumerOptions& o = state->options();
  EXPECT_THAT(o.topics, ElementsAre("orders", "payments"));
  EXPECT_EQ(o.group, "billing-eu");
  EXPECT_EQ(o.start, kafka::StartPosition::kEarliest);
  EXPECT_EQ(o.max_outstanding_messages, 250);
  EXPECT_EQ(o.max_outstanding_bytes, static_cast<int64_t>(3 * kMiB));
  EXPECT_EQ(o.ack_deadline, absl::Seconds(45));
  EXPECT_EQ(o.max_delivery_attempts, 7);
  EXPECT_EQ(o.dead_letter_topic, "orders.poison");
  EXPECT_EQ(o.ordering, kafka::Ordering::kPerKey);
  // The server's own settings come along.
  EXPECT_THAT(o.properties, ElementsAre(Pair("bootstrap.servers", "broker-1:9092")));
  EXPECT_EQ(o.dead_letter_suffix, ".dead");
  EXPECT_EQ(o.retry_backoff, absl::Milliseconds(250));
  EXPECT_EQ(o.dead_letter_timeout, absl::Seconds(9));
  EXPECT_FALSE(state->stopped());
}

TEST_F(SubscribeReactorTest, ConsumerThatCannotStartEndsTheStreamWithItsStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  fakes_.RefuseWith(absl::UnavailableError(
      "Kafka is unreachable (bootstrap.servers broker-1:9092)"));
  SubscribeClient client(stub_.get());
  client.Write(SubscribeTo(Valid()));
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(),
            "Kafka is unreachable (bootstrap.servers broker-1:9092)");
  EXPECT_EQ(fakes_.started(), 0u);
}

TEST_F(SubscribeReactorTest, InitialMetadataAnnouncesModifyAckDeadline) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  state->Deliver({Plain(0, 0)});
  ASSERT_TRUE(client.ReadUntil(1));
  EXPECT_THAT(client.Features(), ElementsAre("modify_ack_deadline"));
}

// ---------------------------------------------------------------------------
// Deliveries

TEST_F(SubscribeReactorTest, DeliveriesArriveWithTheirRecordAndDecodedEvent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);

  const std::vector<kafka::HeaderView> ce_headers = {
      {"ce_specversion", "1.0"},
      {"ce_id", "evt-1"},
      {"ce_source", "//orders/eu-1"},
      {"ce_type", "com.example.order.created"},
      {"ce_time", "2024-01-02T03:04:05Z"},
      {"ce_tenant", "acme"},
      {"content-type", "application/json"},
  };
  const std::vector<kafka::HeaderView> plain_headers = {
      {"trace", "t-1"},
      {"content-type", "text/plain"},
  };
  const std::string binary_key("\xff\x00\x01\x02", 4);
  std::vector<uint64_t> first = state->Deliver(
      {Rec("orders", 3, 41, "order-42", "{\"order\":42}", ce_headers),
       Rec("orders", 4, 7, std::nullopt, "not an event", plain_headers)});
  std::vector<uint64_t> retry = state->Deliver(
      {Rec("payments", 0, 9, binary_key, "v")}, /*attempt=*/3);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(retry.size(), 1u);

  ASSERT_TRUE(client.ReadUntil(3));
  ASSERT_EQ(client.deliveries().size(), 3u);

  const v1::Delivery& ce = client.deliveries()[0];
  EXPECT_EQ(ce.delivery_id(), first[0]);
  EXPECT_EQ(ce.topic(), "orders");
  EXPECT_EQ(ce.partition(), 3);
  EXPECT_EQ(ce.offset(), 41);
  EXPECT_EQ(ce.key(), "order-42");
  EXPECT_EQ(ce.raw_key(), "");
  EXPECT_EQ(ce.attempt(), 1);
  EXPECT_EQ(ce.record_time().seconds(), kRecordTimeMs / 1000);
  EXPECT_EQ(ce.record_time().nanos(), 123000000);
  EXPECT_FALSE(ce.raw());
  EXPECT_THAT(ce.headers(), IsEmpty());
  EXPECT_EQ(ce.event().id(), "evt-1");
  EXPECT_EQ(ce.event().source(), "//orders/eu-1");
  EXPECT_EQ(ce.event().type(), "com.example.order.created");
  EXPECT_EQ(ce.event().spec_version(), "1.0");
  EXPECT_EQ(ce.event().time().seconds(), 1704164645);
  EXPECT_EQ(ce.event().data_content_type(), "application/json");
  EXPECT_EQ(ce.event().data(), "{\"order\":42}");
  EXPECT_THAT(ce.event().extensions(), ElementsAre(Pair("tenant", "acme")));

  const v1::Delivery& raw = client.deliveries()[1];
  EXPECT_EQ(raw.delivery_id(), first[1]);
  EXPECT_EQ(raw.topic(), "orders");
  EXPECT_EQ(raw.partition(), 4);
  EXPECT_EQ(raw.offset(), 7);
  EXPECT_EQ(raw.key(), "");
  EXPECT_TRUE(raw.raw());
  EXPECT_EQ(raw.event().data(), "not an event");
  EXPECT_EQ(raw.event().data_content_type(), "text/plain");
  EXPECT_EQ(raw.event().type(), "");
  ASSERT_EQ(raw.headers_size(), 2);
  EXPECT_EQ(raw.headers(0).name(), "trace");
  EXPECT_EQ(raw.headers(0).value(), "t-1");
  EXPECT_EQ(raw.headers(1).name(), "content-type");
  EXPECT_EQ(raw.headers(1).value(), "text/plain");

  const v1::Delivery& keyed = client.deliveries()[2];
  EXPECT_EQ(keyed.delivery_id(), retry[0]);
  EXPECT_EQ(keyed.topic(), "payments");
  EXPECT_EQ(keyed.attempt(), 3);
  EXPECT_EQ(keyed.key(), "");
  EXPECT_EQ(keyed.raw_key(), binary_key);
  EXPECT_TRUE(keyed.raw());
}

// ---------------------------------------------------------------------------
// Acks, nacks, dead letters, extensions

TEST_F(SubscribeReactorTest, SettlementsReachTheConsumerWithTheirIdsAndValues) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  const std::vector<uint64_t> ids = state->Deliver(Plains(0, 0, 7));
  ASSERT_TRUE(client.ReadUntil(7));
  ASSERT_EQ(IdsOf(client.deliveries()), ids);

  ASSERT_TRUE(client.Write(AckOf({ids[0], ids[1]})));
  ASSERT_TRUE(client.Write(NackOf({ids[2]})));
  ASSERT_TRUE(client.Write(NackOf({ids[3]}, absl::Milliseconds(1500))));
  ASSERT_TRUE(client.Write(DeadLetterOf({ids[4]}, "schema mismatch")));
  ASSERT_TRUE(client.Write(ExtendOf({ids[5], ids[6]}, absl::Seconds(45))));
  // Messages are applied in order: once this ack is in, so is the rest.
  ASSERT_TRUE(client.Write(AckOf({ids[5]})));
  ASSERT_TRUE(state->WaitAcked(3, kWait));

  EXPECT_THAT(state->acked(), ElementsAre(ids[0], ids[1], ids[5]));
  const auto nacks = state->nacks();
  ASSERT_EQ(nacks.size(), 2u);
  EXPECT_THAT(nacks[0].ids, ElementsAre(ids[2]));
  EXPECT_EQ(nacks[0].delay, std::nullopt);
  EXPECT_THAT(nacks[1].ids, ElementsAre(ids[3]));
  EXPECT_EQ(nacks[1].delay, absl::Milliseconds(1500));
  const auto dead_letters = state->dead_letters();
  ASSERT_EQ(dead_letters.size(), 1u);
  EXPECT_THAT(dead_letters[0].ids, ElementsAre(ids[4]));
  EXPECT_EQ(dead_letters[0].reason, "schema mismatch");
  const auto extends = state->extends();
  ASSERT_EQ(extends.size(), 1u);
  EXPECT_THAT(extends[0].ids, ElementsAre(ids[5], ids[6]));
  EXPECT_EQ(extends[0].deadline, absl::Seconds(45));

  // None was refused: no ack errors came.
  ASSERT_TRUE(client.WritesDone());
  EXPECT_TRUE(client.Finish().ok());
  EXPECT_THAT(client.ack_errors(), IsEmpty());
}

TEST_F(SubscribeReactorTest, AckErrorsReachTheClientAndTheStreamGoesOn) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  const std::vector<uint64_t> ids = state->Deliver(Plains(0, 0, 2));
  ASSERT_TRUE(client.ReadUntil(2));

  ASSERT_TRUE(client.Write(AckOf({ids[0]})));
  // Acked twice, and one that never was sent.
  ASSERT_TRUE(client.Write(AckOf({ids[0], 999})));
  ASSERT_TRUE(client.Write(ExtendOf({ids[0]}, absl::Seconds(10))));
  ASSERT_TRUE(client.ReadUntil(2, 3));
  ASSERT_EQ(client.ack_errors().size(), 3u);
  const v1::AckError& gone = client.ack_errors()[0];
  EXPECT_EQ(gone.delivery_id(), ids[0]);
  EXPECT_EQ(gone.status().code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(gone.status().message(),
            absl::StrCat("delivery ", ids[0], " is no longer outstanding"));
  const v1::AckError& unknown = client.ack_errors()[1];
  EXPECT_EQ(unknown.delivery_id(), 999u);
  EXPECT_EQ(unknown.status().code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.status().message(),
            "delivery 999 was never sent on this stream");
  EXPECT_EQ(client.ack_errors()[2].delivery_id(), ids[0]);
  EXPECT_EQ(client.ack_errors()[2].status().code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // The stream goes on: more deliveries, more acks.
  const std::vector<uint64_t> more = state->Deliver({Plain(0, 2)});
  ASSERT_TRUE(client.ReadUntil(3, 3));
  EXPECT_EQ(client.deliveries()[2].delivery_id(), more[0]);
  ASSERT_TRUE(client.Write(AckOf({ids[1], more[0]})));
  ASSERT_TRUE(state->WaitAcked(5, kWait));
  EXPECT_FALSE(state->stopped());
}

TEST_F(SubscribeReactorTest, TooManyAckErrorsWaitingForAClientThatDoesNotReadEndTheStream) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  // Acks of ids never sent, 2,500 a message, while the client does not
  // read: the first errors go out until flow control stalls the writes, the
  // rest wait, up to 10,000.
  constexpr int kIdsPerAck = 2500;
  size_t sent = 0;
  bool stopped = false;
  for (int i = 0; i < 100 && !stopped; ++i) {
    if (!client.Write(AckOfUnknown(1000000 + sent, kIdsPerAck))) break;
    sent += kIdsPerAck;
    stopped = !state->WaitAckedOrStopped(sent, kWait);
  }
  EXPECT_TRUE(state->WaitStopped(kWait))
      << "still going after " << sent << " ack errors";
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("read the stream"));
  EXPECT_LT(client.ack_errors().size(), sent);
  EXPECT_TRUE(state->WaitClosed(kWait));
}

// The limit is on ack errors a client leaves unread; one ack of many stale
// ids is not that (after a rebalance every id of the revoked partitions is
// FAILED_PRECONDITION, and the C++ client sends all its pending acks in one
// message, up to max_outstanding_messages, whose cap is 100,000).
TEST_F(SubscribeReactorTest, OneAckOfMoreBadIdsThanTheLimitDoesNotEndAStreamThatReads) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  constexpr int kIds = 10001;
  ASSERT_TRUE(client.Write(AckOfUnknown(1000000, kIds)));
  ASSERT_TRUE(client.ReadUntil(0, kIds))
      << "the stream ended: " << client.Finish().error_message();
  const std::vector<uint64_t> more = state->Deliver({Plain(0, 0)});
  ASSERT_TRUE(client.ReadUntil(1, kIds));
  EXPECT_EQ(client.deliveries()[0].delivery_id(), more[0]);
}

// ---------------------------------------------------------------------------
// Write batching and flow

TEST_F(SubscribeReactorTest, ManySmallDeliveriesArriveInWritesOfAtMost500) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  const std::vector<uint64_t> ids = state->Deliver(Plains(0, 0, 1200));
  ASSERT_TRUE(client.ReadUntil(1200));
  EXPECT_THAT(client.write_sizes(), ElementsAre(500, 500, 200));
  EXPECT_EQ(IdsOf(client.deliveries()), ids);
  EXPECT_EQ(client.deliveries()[1199].offset(), 1199);
}

TEST_F(SubscribeReactorTest, LargeDeliveriesSplitAtOneMebibytePerWrite) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  // 400 KiB each: a write takes deliveries until it holds 1 MiB, so the
  // third goes in and tips it over.
  std::vector<uint64_t> ids = state->Deliver(Plains(0, 0, 5, 400 * kKiB));
  ASSERT_TRUE(client.ReadUntil(5));
  EXPECT_THAT(client.write_sizes(), ElementsAre(3, 2));
  // One above 1 MiB still goes, alone.
  std::vector<uint64_t> more = state->Deliver(
      {Plain(1, 0, kStallingBytes), Plain(1, 1), Plain(1, 2)});
  ASSERT_TRUE(client.ReadUntil(8));
  EXPECT_THAT(client.write_sizes(), ElementsAre(3, 2, 1, 2));
  ids.insert(ids.end(), more.begin(), more.end());
  EXPECT_EQ(IdsOf(client.deliveries()), ids);
  EXPECT_EQ(client.deliveries()[5].event().data().size(), kStallingBytes);
}

TEST_F(SubscribeReactorTest, FirstUnsentIdIsTheFirstDeliveryNotYetWritten) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->FirstUnsentId(), kAllSent);

  // The client does not read yet: the first write goes, the rest wait.
  const std::vector<uint64_t> ids = state->Deliver(Stalling());
  const uint64_t unsent = state->FirstUnsentId();
  EXPECT_GT(unsent, ids.front());
  EXPECT_LE(unsent, ids.back());

  ASSERT_TRUE(client.ReadUntil(ids.size()));
  EXPECT_EQ(IdsOf(client.deliveries()), ids);
  // What it reported began a write of its own.
  EXPECT_THAT(client.write_starts(), Contains(unsent));
  EXPECT_EQ(state->FirstUnsentId(), kAllSent);
}

TEST_F(SubscribeReactorTest, DeliveriesOfARevokedPartitionNotYetWrittenAreDropped) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  // Stalled writes ahead of them keep the orders/0 and orders/1 deliveries
  // waiting while the client does not read.
  Records records = Stalling();
  for (int offset = 0; offset < 3; ++offset) {
    records.push_back(Plain(0, offset));
    records.push_back(Plain(1, offset));
  }
  const std::vector<uint64_t> ids = state->Deliver(std::move(records));
  ASSERT_LE(state->FirstUnsentId(), ids[kStallingRecords])
      << "the writes did not stall";
  state->Revoke({{"orders", 0}});

  // Everything still coming arrives before this one.
  const std::vector<uint64_t> last = state->Deliver({Plain(1, 3)});
  ASSERT_TRUE(client.ReadUntil(kStallingRecords + 4));
  std::vector<std::pair<int32_t, int64_t>> got;
  for (const v1::Delivery& d : client.deliveries()) {
    if (d.partition() != 9) got.emplace_back(d.partition(), d.offset());
  }
  EXPECT_THAT(got, ElementsAre(Pair(1, 0), Pair(1, 1), Pair(1, 2), Pair(1, 3)));
  EXPECT_EQ(client.deliveries().back().delivery_id(), last[0]);
}

// ---------------------------------------------------------------------------
// The end of a stream

TEST_F(SubscribeReactorTest, ConsumerFailureEndsTheStreamWithItsStatus) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  state->Fail(absl::PermissionDeniedError(
      "Kafka refused the subscription: TOPIC_AUTHORIZATION_FAILED"));
  grpc::Status status = client.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "Kafka refused the subscription: TOPIC_AUTHORIZATION_FAILED");
  EXPECT_TRUE(state->WaitClosed(kWait));
}

TEST_F(SubscribeReactorTest, ClientCancelStopsAndClosesTheConsumer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  state->Deliver({Plain(0, 0)});
  ASSERT_TRUE(client.ReadUntil(1));
  client.Cancel();
  EXPECT_EQ(client.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(state->WaitClosed(kWait));
  EXPECT_TRUE(state->stopped());
  EXPECT_TRUE(subscriptions_->WaitClosed(absl::Now() + kWait));
}

TEST_F(SubscribeReactorTest, ClientCancelWhileWritesAreStalledClosesTheConsumer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  state->Deliver(Stalling());
  ASSERT_NE(state->FirstUnsentId(), kAllSent);
  client.Cancel();
  EXPECT_EQ(client.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(state->WaitClosed(kWait));
  EXPECT_TRUE(subscriptions_->WaitClosed(absl::Now() + kWait));
}

TEST_F(SubscribeReactorTest, ClientClosingItsSideEndsTheStreamOkAndClosesTheConsumer) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient client(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> state = Subscribe(client);
  ASSERT_NE(state, nullptr);
  const std::vector<uint64_t> ids = state->Deliver({Plain(0, 0)});
  ASSERT_TRUE(client.ReadUntil(1));
  ASSERT_TRUE(client.Write(AckOf(ids)));
  ASSERT_TRUE(client.WritesDone());
  grpc::Status status = client.Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_TRUE(state->WaitClosed(kWait));
  EXPECT_THAT(state->acked(), ElementsAre(ids[0]));
  EXPECT_TRUE(subscriptions_->WaitClosed(absl::Now() + kWait));
}

TEST_F(SubscribeReactorTest, DrainEndsOpenAndLaterStreamsWithUnavailable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  SubscribeClient a(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> a_state = Subscribe(a);
  ASSERT_NE(a_state, nullptr);
  SubscribeClient b(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> b_state = Subscribe(b);
  ASSERT_NE(b_state, nullptr);
  b_state->Deliver({Plain(0, 0)});
  ASSERT_TRUE(b.ReadUntil(1));

  subscriptions_->Drain();
  for (SubscribeClient* client : {&a, &b}) {
    grpc::Status status = client->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  }
  EXPECT_TRUE(a_state->WaitClosed(kWait));
  EXPECT_TRUE(b_state->WaitClosed(kWait));

  SubscribeClient later(stub_.get());
  later.Write(SubscribeTo(Valid()));
  grpc::Status status = later.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(fakes_.started(), 2u);
  EXPECT_TRUE(subscriptions_->WaitClosed(absl::Now() + kWait));
}

TEST_F(SubscribeReactorTest, StreamsBeyondMaxStreamsAreRefused) {
  SubscribeOptions options;
  options.max_streams = 2;
  ASSERT_NO_FATAL_FAILURE(Start(options));
  SubscribeClient a(stub_.get());
  std::shared_ptr<fakes::FakeConsumerState> a_state = Subscribe(a);
  ASSERT_NE(a_state, nullptr);
  SubscribeClient b(stub_.get());
  ASSERT_NE(Subscribe(b), nullptr);

  // A stream that ends frees its place.
  ASSERT_TRUE(a.WritesDone());
  ASSERT_TRUE(a.Finish().ok());
  ASSERT_TRUE(a_state->WaitClosed(kWait));
  SubscribeClient c(stub_.get());
  ASSERT_NE(Subscribe(c), nullptr);

  SubscribeClient d(stub_.get());
  d.Write(SubscribeTo(Valid()));
  grpc::Status status = d.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("subscribe.max_streams"));
  EXPECT_EQ(fakes_.started(), 3u);
}

}  // namespace
}  // namespace eventbus::server
